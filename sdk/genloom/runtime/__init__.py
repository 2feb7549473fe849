"""Running ONNX exports with ONNX Runtime, on CUDA or the CPU, without torch.

Imports numpy, onnxruntime (when a model opens), pydantic and tokenizers only.
``genloom.load(EXPORT_DIR)`` opens an export with the runtime driver its manifest
names (:class:`genloom.contracts.RuntimeDriver`); what every driver's model shares
is :class:`OnnxModel`. The core registers the ``image-from-latent`` driver; the
text drivers are the text plugin's.
"""

from __future__ import annotations

from genloom.runtime.base import OnnxModel
from genloom.runtime.image import ImageFromLatent, OnnxImageModel
from genloom.runtime.providers import Providers

__all__ = ["ImageFromLatent", "OnnxImageModel", "OnnxModel", "Providers"]

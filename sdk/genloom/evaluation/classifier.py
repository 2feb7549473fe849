"""The small image classifier whose features genloom's evaluation measures in.

Inception-based FID needs weights we cannot download, so genloom trains a small
CNN on the same data source instead and caches it: a domain-specific feature
space. With labels it learns the classes; without, it learns to tell the four
rotations of an image apart (a self-supervised task, Gidaris et al. 2018), which
also needs features that see shape.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genloom.data.types import ImageData
from genloom.fileio import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    import torch

CLASSIFIER_VERSION = 1
"""Bump when the network or its training changes: cached classifiers of other versions are not reused."""
FEATURE_DIM = 64
TRAIN_STEPS = 1500
BATCH_SIZE = 64
HELD_OUT = 0.1
"""Share of the source held out to measure the classifier's own accuracy (the reference for label accuracy)."""
ROTATIONS = 4


def cache_root() -> Path:
    """Where trained classifiers are kept: ``$GENLOOM_CACHE_DIR`` or ``~/.cache/genloom``."""
    return Path(os.environ.get("GENLOOM_CACHE_DIR") or Path.home() / ".cache" / "genloom") / "classifiers"


@dataclass
class FeatureClassifier:
    """A trained classifier: ``features()`` for the distances, ``predict()`` for label accuracy."""

    network: torch.nn.Module
    task: str
    """``"labels"`` (the source's classes) or ``"rotation"`` (unlabelled sources)."""
    accuracy: float
    """Accuracy on the held-out real images: what a perfect generator's label accuracy would be near."""
    cached: bool

    def features(self, images: np.ndarray) -> np.ndarray:
        """Float32 ``(N, 64)`` features of ``(N, C, H, W)`` images in [0, 1]."""
        return self._run(images, logits=False)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The predicted class of each image."""
        return np.asarray(self._run(images, logits=True).argmax(1))

    def _run(self, images: np.ndarray, logits: bool) -> np.ndarray:
        import torch

        self.network.eval()
        outputs = []
        with torch.no_grad():
            for start in range(0, len(images), 512):
                batch = torch.from_numpy(np.ascontiguousarray(images[start : start + 512], dtype=np.float32))
                features = self.network.get_submodule("features")(batch)
                outputs.append((self.network.get_submodule("head")(features) if logits else features).numpy())
        return np.concatenate(outputs)


def classifier_for(data: ImageData) -> FeatureClassifier:
    """The classifier for ``data``: from the cache when one was trained on exactly these images, else trained now."""
    import torch

    from genloom.weights import from_bytes, load_module_tensors, module_tensors, to_bytes

    task = "labels" if data.labels is not None else "rotation"
    classes = data.num_classes if task == "labels" else ROTATIONS
    torch.manual_seed(0)  # the same data gives the same classifier, cached or not
    network = _build(data.images.shape[1], classes)
    directory = cache_root() / _fingerprint(data)
    weights_file, facts_file = directory / "classifier.safetensors", directory / "classifier.json"
    if weights_file.is_file() and facts_file.is_file():
        load_module_tensors(
            {"classifier": network}, from_bytes(weights_file.read_bytes(), str(weights_file)), str(weights_file)
        )
        return FeatureClassifier(network, task, json.loads(facts_file.read_text())["accuracy"], cached=True)
    accuracy = _train(network, data, task)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(weights_file, to_bytes(module_tensors({"classifier": network})))
    atomic_write_text(
        facts_file,
        json.dumps({"task": task, "accuracy": accuracy, "version": CLASSIFIER_VERSION, "source": data.source}),
    )
    return FeatureClassifier(network, task, accuracy, cached=False)


def _fingerprint(data: ImageData) -> str:
    digest = hashlib.sha256(f"v{CLASSIFIER_VERSION}:{data.images.shape}".encode())
    digest.update(data.images.tobytes())
    if data.labels is not None:
        digest.update(data.labels.tobytes())
    return digest.hexdigest()[:32]


def _build(channels: int, classes: int) -> torch.nn.Module:
    from torch import nn

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(channels, 32, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(32, 64, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(64, 128, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(2),
                nn.Flatten(),
                nn.Linear(512, FEATURE_DIM),
                nn.ReLU(),
            )
            self.head = nn.Linear(FEATURE_DIM, classes)

    return Classifier()


def _examples(images: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The training pairs of the task: the images with their labels, or each image in its four rotations."""
    if labels is not None:
        return images, labels
    turns = range(ROTATIONS) if images.shape[2] == images.shape[3] else (0, 2)  # quarter turns need square images
    rotated = np.concatenate([np.rot90(images, turn, axes=(2, 3)) for turn in turns])
    return np.ascontiguousarray(rotated), np.repeat(np.array(turns), len(images))


def _train(network: torch.nn.Module, data: ImageData, task: str) -> float:
    """Train on the source's training split; return the accuracy on its held-out split."""
    import torch
    import torch.nn.functional as F

    train, held_out = data.split(HELD_OUT)
    images, targets = _examples(train.images, train.labels)
    rng = np.random.default_rng(0)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    network.train()
    for _ in range(TRAIN_STEPS):
        index = rng.choice(len(images), size=min(BATCH_SIZE, len(images)), replace=False)
        logits = network.get_submodule("head")(network.get_submodule("features")(torch.from_numpy(images[index])))
        loss = F.cross_entropy(logits, torch.from_numpy(targets[index]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
        optimizer.step()
    check = held_out or train
    check_images, check_targets = _examples(check.images, check.labels)
    trained = FeatureClassifier(network, task, accuracy=0.0, cached=False)
    return float((trained.predict(check_images) == check_targets).mean())

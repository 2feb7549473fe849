"""The Generator contract every plugin implements.

A generator is one kind of generative model. Its class declares a ``name``, a
``modality`` and a pydantic ``Config``; an instance holds one configured model:
what it learned about its training data (``facts``), its torch modules, and the
extra files it needs (a tokenizer, say). The SDK drives the lifecycle::

    gen = MyGenerator(config)
    gen.fit_data(data)                   # shapes, classes, tokenizer ...
    gen.modules = gen.build()            # torch modules, from config + facts
    optimizers = gen.configure_optimizers()
    losses = gen.train_step(gen.get_batch(data, rng), optimizers, step)   # many times
    gen.save("models/x");  Generator.load("models/x")                    # artifact round trip
    array = gen.sample(ImageSampling(n=16, seed=0))

A plugin implements ``build``, ``configure_optimizers``, ``train_step`` and
``sample``; everything else has a working default. Torch is imported by the
methods that need it, never at import time, so listing plugins stays fast.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from genloom.config import GeneratorConfig
from genloom.data.types import Dataset, ImageData
from genloom.errors import DataError, PluginError

if TYPE_CHECKING:
    import torch

    from genloom.artifacts import Manifest, TrainingSummary
    from genloom.sampling import ImageSampling

Modality = Literal["image", "text"]
MODALITIES: tuple[str, ...] = ("image", "text")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
SQUARE_SIZES = (8, 16, 32, 64)


@dataclass(frozen=True)
class Capabilities:
    """What a generator can do, so apps and the CLI can ask before they call."""

    conditional: bool = False
    """Takes class labels when sampling (``labels=``)."""
    exportable: bool = False
    """Describes an ONNX export through :meth:`Generator.export_spec`."""
    streamable: bool = False
    """Yields its output piece by piece (text, token by token)."""


@dataclass(frozen=True)
class GraphSpec:
    """One torch module to export as one ONNX graph."""

    name: str
    module: Any  # torch.nn.Module
    example_inputs: tuple[Any, ...]  # torch tensors, batch >= 2
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    sample_inputs: Callable[[int, np.random.Generator], tuple[np.ndarray, ...]] | None = None
    """Fresh valid inputs at a given batch size for the parity check (token ids, masks, caches);
    by default floats are drawn at random and integer inputs as class labels."""


@dataclass(frozen=True)
class ExportSpec:
    """How a generator goes to ONNX: its graphs, the runtime driver that runs them, and what the driver needs."""

    driver: str
    graphs: list[GraphSpec]
    driver_options: dict[str, Any] = field(default_factory=dict)
    """JSON-able settings for the driver (e.g. context length, cache layout); stored in the export's manifest."""


class Generator(ABC):
    """Base class of every generator; subclass it in a plugin and register the subclass."""

    name: ClassVar[str]
    """Unique name, lower case: used in ``genloom train NAME`` and in manifests."""
    modality: ClassVar[Modality]
    """``"image"`` or ``"text"``: which data it trains on and what it generates."""
    Config: ClassVar[type[GeneratorConfig]] = GeneratorConfig
    """The pydantic model of its knobs; its JSON schema is their documentation."""
    capabilities: ClassVar[Capabilities] = Capabilities()
    description: ClassVar[str] = ""
    monitor: ClassVar[str | None] = None
    """The :meth:`evaluate` figure (lower is better) that ``early_stopping_patience`` watches, e.g. ``"val_loss"``."""
    operations: ClassVar[dict[str, Literal["images", "array"]]] = {}
    """Extra methods a loaded model offers besides ``generate``, by name, with the kind of result:
    ``"images"`` (the method returns float32 ``(N, C, H, W)`` in ``[0, 1]``; users get an
    ``ImageResult``) or ``"array"`` (a numpy array, as is). They run in eval mode without gradients."""

    def __init__(self, config: GeneratorConfig) -> None:
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        self.facts: dict[str, Any] = {}
        self.modules: dict[str, torch.nn.Module] = {}

    @classmethod
    def check_declaration(cls) -> None:
        """Raise PluginError if the class does not declare a valid name, modality and Config."""
        where = f"{cls.__module__}.{cls.__qualname__}"
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise PluginError(f"{where}.name must be lower-case letters, digits, '-' or '_', got {name!r}")
        if getattr(cls, "modality", None) not in MODALITIES:
            raise PluginError(f"{where}.modality must be one of {', '.join(MODALITIES)}, got {getattr(cls, 'modality', None)!r}")
        if not (isinstance(cls.Config, type) and issubclass(cls.Config, GeneratorConfig)):
            raise PluginError(f"{where}.Config must subclass genloom.GeneratorConfig")

    # -- learning about the data ------------------------------------------------

    def fit_data(self, data: Dataset) -> None:
        """Learn what the model needs from its training data before it is built.

        The default checks the modality (and, for a conditional generator, that the
        data has labels) and keeps ``data.facts()`` (image shape and classes, or
        corpus size). Override to do more, e.g. train a tokenizer.
        """
        if data.modality != self.modality:
            raise DataError(
                f"generator '{self.name}' trains on {self.modality} data, but '{data.source}' holds {data.modality}; "
                "pick a data source of that modality (see `genloom plugins`)"
            )
        self.facts = data.facts()
        if self.capabilities.conditional and not self.facts.get("num_classes"):
            raise DataError(
                f"'{self.name}' is conditional and needs labelled data, but '{data.source}' has no labels; "
                "use class sub-folders or npz labels, or an unconditional generator"
            )

    def square_image_levels(self) -> int:
        """For convolutional nets built around a 4x4 map: how many doublings reach the image size.

        Returns 1, 2, 3 or 4 for square images of 8, 16, 32 or 64 pixels; any other
        shape is a DataError that tells the user to resize.
        """
        height, width = self.facts["height"], self.facts["width"]
        if height != width or height not in SQUARE_SIZES:
            sizes = ", ".join(str(size) for size in SQUARE_SIZES[:-1])
            raise DataError(f"{self.name}: images are {height}x{width}; it needs square images of {sizes} or {SQUARE_SIZES[-1]} pixels (resize them)")
        return SQUARE_SIZES.index(height) + 1

    def restore(self, facts: dict[str, Any], files: dict[str, bytes]) -> None:
        """Take back what :meth:`fit_data` learned, from a saved artifact or checkpoint."""
        self.facts = dict(facts)

    def extra_files(self) -> dict[str, bytes]:
        """Files to save beside the weights (e.g. ``{"tokenizer.json": ...}``); given back to :meth:`restore`."""
        return {}

    # -- training ---------------------------------------------------------------

    @abstractmethod
    def build(self) -> dict[str, torch.nn.Module]:
        """Create the torch modules from ``self.config`` and ``self.facts``; all of them are saved."""

    @abstractmethod
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Create the optimizers over ``self.modules``; their state is checkpointed."""

    def get_batch(self, data: Dataset, rng: np.random.Generator) -> Any:
        """Draw one training batch. The default returns ``(images, labels)`` tensors for image data."""
        import torch

        if not isinstance(data, ImageData):
            raise NotImplementedError(f"{type(self).__name__} must override get_batch for {data.modality} data")
        images, labels = data.sample_batch(rng, self.config.batch_size)
        return torch.from_numpy(images), None if labels is None else torch.from_numpy(labels)

    @abstractmethod
    def train_step(self, batch: Any, optimizers: dict[str, torch.optim.Optimizer], step: int) -> dict[str, float]:
        """Run one optimisation step on ``batch``; return the losses to log, by name."""

    def evaluate(self, data: Dataset) -> dict[str, float]:
        """Figures on held-out ``data`` (the validation split): validation loss, ...; none by default.

        Logged during training (``eval_every``) and reported by ``genloom eval``.
        """
        return {}

    def write_samples(self, directory: Path, step: int) -> Path | None:
        """Write what the model makes now (called every ``sample_every`` steps and at the end).

        Image generators write a grid of 64 samples with the config's seed; others write nothing by default.
        """
        if self.modality != "image":
            return None
        from genloom.results import image_grid
        from genloom.sampling import ImageSampling

        path = Path(directory) / f"samples-{step:06d}.png"
        image_grid(self.sample(ImageSampling(n=64, seed=self.config.seed))).save(path)
        return path

    # -- using the model --------------------------------------------------------

    @abstractmethod
    def sample(self, settings: ImageSampling) -> Any:
        """Generate. Image generators return float32 ``(N, C, H, W)`` in ``[0, 1]``.

        Called in eval mode without gradients. Draw randomness from
        ``settings.rng()`` (numpy) so that a seed means the same everywhere.
        """

    @property
    def num_classes(self) -> int:
        """Classes the model is conditioned on: the data's, for a conditional generator; 0 otherwise."""
        return int(self.facts.get("num_classes", 0)) if self.capabilities.conditional else 0

    def resolve_labels(self, labels: Sequence[int] | None, n: int, *, required: bool = False) -> np.ndarray | None:
        """The class label of each of ``n`` outputs, or None for an unconditional generator.

        ``labels`` repeat in turn to fill ``n``; None means every class in turn (an
        error when ``required``). A label outside the trained classes, or labels for
        an unconditional generator, is a :class:`ConfigError` that says what to pass.
        """
        from genloom.sampling import resolve_labels

        return resolve_labels(None if labels is None else list(labels), n, num_classes=self.num_classes,
                              conditional=self.capabilities.conditional, generator=self.name, required=required)

    def export_spec(self) -> ExportSpec | None:
        """Describe the ONNX export; ``None`` (the default) means not exportable."""
        return None

    # -- artifacts --------------------------------------------------------------

    def save(self, directory: str | Path, training: TrainingSummary | None = None) -> Manifest:
        """Save as an artifact directory (manifest.json, model.safetensors, extra files), atomically."""
        from genloom.artifacts import save_generator

        return save_generator(self, Path(directory), training)

    @classmethod
    def load(cls, directory: str | Path) -> Generator:
        """Load a saved artifact of this generator (hashes and format checked)."""
        from genloom.artifacts import load_generator

        generator = load_generator(Path(directory))
        if not isinstance(generator, cls):
            raise PluginError(f"'{directory}' holds a '{generator.name}' model, not a '{cls.name}' one")
        return generator

"""The Generator contract every plugin implements, and its typed bases per kind of data.

A generator is one kind of generative model. Its class declares a ``name``, a
``modality`` (a registered kind of data: ``image``, ``text``, or one a plugin adds)
and a pydantic ``Config``; an instance holds one configured model: what it learned
about its training data (``facts``), its torch modules, and the extra files it needs
(a tokenizer, say). The SDK drives the lifecycle::

    gen = MyGenerator(config)
    gen.fit_data(data)                   # shapes, classes, tokenizer ...
    gen.modules = gen.build()            # torch modules, from config + facts
    optimizers = gen.configure_optimizers()
    losses = gen.train_step(gen.get_batch(data, rng), optimizers, step)   # many times
    output = gen.sample(settings)        # settings: the kind's sampling model

A plugin implements ``build``, ``configure_optimizers``, ``get_batch`` (the image
base has one), ``train_step`` and ``sample`` (the text base has one); everything
else has a working default. A registered class that leaves one out is refused
with the names of what it lacks. Saving and loading are the
SDK's (:mod:`genloom.artifacts`), not the generator's. :class:`ImageGenerator` and
:class:`TextGenerator` say what ``sample`` takes and returns for the two built-in
kinds; a generator of a plugin's own kind subclasses :class:`Generator` directly.
Torch is imported by the methods that need it, never at import time, so listing
plugins stays fast.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic

import numpy as np
from typing_extensions import TypeVar

from genloom.config import NAME_PATTERN, GeneratorConfig
from genloom.contracts import ExportSpec, GraphSpec
from genloom.data.types import Dataset, ImageData, TextData
from genloom.errors import ConfigError, DataError, PluginError
from genloom.sampling import ImageSampling, TextSampling

if TYPE_CHECKING:
    import torch

    from genloom.precision import Precision
    from genloom.textgen import Decoded, DecoderSession
    from genloom.tokenizer import Tokenizer

__all__ = [
    "AnyGenerator",
    "Capabilities",
    "ExportSpec",
    "Generator",
    "GraphSpec",
    "ImageGenerator",
    "TextGenerator",
    "inference",
]

OPERATION_RESULTS = ("result", "array")
"""What an extra operation (``Generator.operations``) may return."""
SettingsT = TypeVar("SettingsT")
"""The kind's sampling settings (a pydantic model): what :meth:`Generator.sample` takes."""
OutputT = TypeVar("OutputT")
"""What :meth:`Generator.sample` returns: what the kind's ``make_result`` turns into the user's result."""
DataT = TypeVar("DataT", bound=Dataset, default=Dataset)
"""The kind's training data (its ``dataset`` class): what :meth:`Generator.fit_data` and ``get_batch`` take."""


@dataclass(frozen=True)
class Capabilities:
    """What a generator can do, so apps and the CLI can ask before they call."""

    conditional: bool = False
    """Takes class labels when sampling (``labels=``)."""
    exportable: bool = False
    """Describes an ONNX export through :meth:`Generator.export_spec`."""
    streamable: bool = False
    """Yields its output piece by piece (text, token by token)."""


class Generator(ABC, Generic[SettingsT, OutputT, DataT]):
    """Base class of every generator; subclass it (or a typed base) in a plugin and register the subclass.

    Its type parameters are the kind's sampling settings, what ``sample`` returns, and the kind's training data
    (e.g. ``Generator[SeriesSampling, np.ndarray, SeriesData]``; the data defaults to any :class:`Dataset`).
    """

    name: ClassVar[str]
    """Unique name, lower case: used in ``genloom train NAME`` and in manifests."""
    modality: ClassVar[str]
    """The registered kind of data it trains on and makes (``"image"``, ``"text"``, ...)."""
    Config: ClassVar[type[GeneratorConfig]] = GeneratorConfig
    """The pydantic model of its knobs; its JSON schema is their documentation."""
    capabilities: ClassVar[Capabilities] = Capabilities()
    description: ClassVar[str] = ""
    monitor: ClassVar[str | None] = None
    """The :meth:`evaluate` figure (lower is better) that ``early_stopping_patience`` watches, e.g. ``"val_loss"``."""
    fixed_fields: ClassVar[tuple[str, ...]] = ()
    """Config fields a trained model keeps (its shape, its audio format, ...): ``--resume`` refuses a ``--set`` that
    changes one, naming the field and the value the run trained with."""
    operations: ClassVar[dict[str, str]] = {}
    """Extra methods a loaded model offers besides ``generate``, by name, with what they return: ``"result"`` (what
    ``sample`` returns; users get the kind's result, e.g. an ``ImageResult``) or ``"array"`` (a numpy array, as
    is). They run in eval mode without gradients."""

    def __init__(self, config: GeneratorConfig) -> None:
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        self.facts: dict[str, Any] = {}
        self.modules: dict[str, torch.nn.Module] = {}
        self.device = "cpu"
        """Where training steps run (``"cpu"``, ``"cuda:0"``, ...): the batch arrives there; make noise there too.
        Evaluation and sampling run on the CPU."""
        self.precision: Precision | None = None
        """The running training's autocast and loss scaling (set by the training loop; None outside it)."""

    @classmethod
    def check_declaration(cls) -> None:
        """Raise PluginError if the class does not declare a valid name, modality and Config."""
        where = f"{cls.__module__}.{cls.__qualname__}"
        for attribute in ("name", "modality"):
            value = getattr(cls, attribute, None)
            if not isinstance(value, str) or not NAME_PATTERN.match(value):
                raise PluginError(f"{where}.{attribute} must be lower-case letters, digits, '-' or '_', got {value!r}")
        if not (isinstance(cls.Config, type) and issubclass(cls.Config, GeneratorConfig)):
            raise PluginError(f"{where}.Config must subclass genloom.GeneratorConfig")
        wrong = {name: kind for name, kind in cls.operations.items() if kind not in OPERATION_RESULTS}
        if wrong:
            name, kind = next(iter(wrong.items()))
            raise PluginError(
                f"{where}.operations['{name}'] is {kind!r}; an operation returns "
                f"{' or '.join(map(repr, OPERATION_RESULTS))}"
            )
        if cls.capabilities.streamable and cls.stream is Generator.stream:
            raise PluginError(f"{where} declares capabilities.streamable but does not implement stream()")
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise PluginError(
                f"{where} does not implement {', '.join(missing)}; every generator implements them "
                "(see docs/plugins.md)"
            )

    # -- learning about the data ------------------------------------------------

    def fit_data(self, data: DataT) -> None:
        """Learn what the model needs from its training data (of this generator's kind) before it is built.

        The SDK has checked the kind already. The default keeps ``data.facts()``
        (image shape and classes, or corpus size). Override to do more, e.g. train
        a tokenizer, or refuse data the model cannot take (a DataError).
        """
        self.facts = data.facts()

    def fit_data_from(self, data: DataT, facts: dict[str, Any], files: dict[str, bytes]) -> None:
        """Fine-tuning (``--init-from``): learn from the training split what a model that starts from a trained base
        needs, given the base's ``facts`` and ``files`` (as :meth:`restore` gets them). The config's
        ``fixed_fields`` are the base's already, and the SDK loads the base's weights after :meth:`build`.

        The default learns as :meth:`fit_data` does (image shape and the new data's class names: the label
        embedding's rows carry over by index), which suits a model whose shapes follow its config and its data.
        Override to keep what the base learned instead (a text model keeps its tokenizer), or to refuse data the
        base cannot take (a DataError).
        """
        self.fit_data(data)

    def added_tensors(self) -> set[str]:
        """Names (``module.tensor``, as saved) of the tensors :meth:`build` makes that a base does not hold, such as
        a GPT's LoRA adapters: a run that starts from a base keeps their built values. Default: none."""
        return set()

    def restore(self, facts: dict[str, Any], files: dict[str, bytes]) -> None:
        """Take back what :meth:`fit_data` learned, from a saved artifact or checkpoint: ``facts`` as saved, and
        ``files`` the bytes of every file :meth:`extra_files` returned, by name."""
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

    @abstractmethod
    def get_batch(self, data: DataT, rng: np.random.Generator) -> Any:
        """Draw one training batch from ``data`` with ``rng`` (the run's seeded numpy generator); ``train_step`` gets
        it.

        The batch is the generator's own business (typed ``Any`` here; a subclass names its type)."""

    @abstractmethod
    def train_step(self, batch: Any, optimizers: dict[str, torch.optim.Optimizer], step: int) -> dict[str, float]:
        """Run one optimisation step on ``batch``; return the losses to log, by name."""

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()`` in :meth:`train_step`; call this rather than ``loss.backward()`` so fp16 training can
        scale the loss."""
        if self.precision is None:
            loss.backward()  # type: ignore[no-untyped-call]
        else:
            self.precision.backward(loss)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()`` in :meth:`train_step`; under fp16 a step whose gradients overflowed is skipped."""
        if self.precision is None:
            optimizer.step()
        else:
            self.precision.step(optimizer)

    def unscale_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Call before clipping or reading ``optimizer``'s gradients (fp16 holds them scaled); nothing otherwise."""
        if self.precision is not None:
            self.precision.unscale_gradients(optimizer)

    def finish_training(self, data: DataT) -> None:
        """Fit what is estimated from the trained networks rather than by gradient steps (e.g. a prior over a
        VAE's latents), once the last step has run; nothing by default.

        ``data`` is the training split. It runs on every process of a multi-process
        run (with the same weights and data there), in eval mode without gradients,
        before the final evaluation, samples, checkpoint and save; so it must be
        deterministic, and anything it fits belongs in module buffers, which are saved.
        """

    def evaluate(self, data: DataT) -> dict[str, float]:
        """Figures on held-out ``data`` (the validation split): validation loss, ...; none by default.

        Logged during training (``eval_every``) and reported by ``genloom eval``.
        """
        return {}

    def training_samples(self) -> dict[str, Any] | None:
        """Sampling settings of the samples written during training; None (the default) takes the kind's."""
        return None

    # -- using the model --------------------------------------------------------

    @abstractmethod
    def sample(self, settings: SettingsT) -> OutputT:
        """Generate, from settings of the kind's sampling model; return what the kind's ``make_result`` takes.

        Called in eval mode without gradients. Draw randomness from the settings'
        seed (numpy) so that a seed means the same everywhere, the export included.
        """

    def check_request(self, settings: SettingsT) -> None:
        """Refuse settings this model cannot follow (a ConfigError) before :meth:`sample` runs; nothing by default."""

    def stream(self, settings: SettingsT) -> Iterator[object]:
        """Yield the output piece by piece (``capabilities.streamable``); a ConfigError by default."""
        raise ConfigError(f"'{self.name}' does not stream; use generate()")

    def export_spec(self) -> ExportSpec | None:
        """Describe the ONNX export; ``None`` (the default) means not exportable."""
        return None


class ImageGenerator(Generator[ImageSampling, np.ndarray, ImageData]):
    """A generator of the ``image`` kind: ``sample`` returns float32 ``(N, C, H, W)`` in ``[0, 1]``.

    Its data is :class:`genloom.data.ImageData`; the default :meth:`get_batch` draws
    ``(images, labels)`` tensors.
    """

    modality: ClassVar[str] = "image"

    def fit_data(self, data: ImageData) -> None:
        """Keep the image facts; a conditional generator needs labelled data (a DataError otherwise)."""
        super().fit_data(data)
        if self.capabilities.conditional and not self.facts.get("num_classes"):
            raise DataError(
                f"'{self.name}' is conditional and needs labelled data, but '{data.source}' has no labels; "
                "use class sub-folders or npz labels, or an unconditional generator"
            )

    def get_batch(self, data: ImageData, rng: np.random.Generator) -> Any:
        """``(images, labels)`` as torch tensors (labels None for unlabelled data), ``batch_size`` of them.

        Typed ``Any`` as in :meth:`Generator.get_batch`: a subclass that draws its own batches names their type."""
        import torch

        images, labels = data.sample_batch(rng, self.config.batch_size)
        return torch.from_numpy(images), None if labels is None else torch.from_numpy(labels)

    @abstractmethod
    def sample(self, settings: ImageSampling) -> np.ndarray:
        """``settings.n`` images, float32 ``(N, C, H, W)`` in ``[0, 1]``; latents from ``settings.rng()``."""

    def check_request(self, settings: ImageSampling) -> None:
        """Labels must be trained classes, and only for a conditional generator."""
        self.resolve_labels(settings.labels, settings.n)

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

        return resolve_labels(
            None if labels is None else list(labels),
            n,
            num_classes=self.num_classes,
            conditional=self.capabilities.conditional,
            generator=self.name,
            required=required,
        )


class TextGenerator(Generator[TextSampling, "Decoded", TextData]):
    """A generator of the ``text`` kind, decoded token by token through :mod:`genloom.textgen`.

    It is a :class:`genloom.textgen.TextModel`: it has a ``tokenizer``, a
    ``context_length`` and ``prepend_end_of_text``, and opens decoding sessions.
    Its data is :class:`genloom.data.TextData`.
    """

    modality: ClassVar[str] = "text"
    tokenizer: Tokenizer
    """Set by :meth:`fit_data` (learned from the corpus) or :meth:`restore` (from the saved files)."""

    @property
    def context_length(self) -> int | None:
        """Most tokens a sequence may hold (prompt + generated); None for no limit."""
        return None

    @property
    def prepend_end_of_text(self) -> bool:
        """Whether every prompt starts with ``<|endoftext|>``, as documents did in training."""
        return bool(self.facts.get("prepend_end_of_text", True))

    @abstractmethod
    def session(self) -> DecoderSession:
        """A decoding session over the torch modules (prefill, then one token a step)."""

    def sample(self, settings: TextSampling) -> Decoded:
        """Every sequence ``settings`` asks for, through the shared decoding loop."""
        from genloom.textgen import generate

        return generate(self, settings)

    def stream(self, settings: TextSampling) -> Iterator[str]:
        """Yield one sequence's new text piece by piece (one prompt); ConfigError unless ``streamable``."""
        from genloom.textgen import stream

        if not self.capabilities.streamable:
            raise ConfigError(f"'{self.name}' does not stream; use generate()")
        return stream(self, settings)


AnyGenerator = Generator[Any, Any, Any]
"""A generator of any kind, as the SDK's kind-independent layers (training, artifacts, the kit) hold it."""


@contextlib.contextmanager
def inference(generator: AnyGenerator) -> Iterator[None]:
    """Eval mode without gradients; the modules' previous modes are restored afterwards."""
    import torch

    modes = {name: module.training for name, module in generator.modules.items()}
    for module in generator.modules.values():
        module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for name, module in generator.modules.items():
            module.train(modes[name])

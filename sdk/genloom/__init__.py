"""genloom: a plugin-based SDK for generative models.

Three lines for an app::

    import genloom
    model = genloom.load("models/digits-gan")
    images = model.generate(n=16, seed=0).images

Importing genloom is cheap: torch loads only when a model is built, trained or run.
"""

from genloom import plugins  # noqa: E402
from genloom.api import load, save, train  # noqa: E402
from genloom.config import GeneratorConfig  # noqa: E402
from genloom.errors import ArtifactError, ConfigError, DataError, GenloomError, PluginError  # noqa: E402
from genloom.contracts import ExportSpec, GraphSpec  # noqa: E402
from genloom.generator import Capabilities, Generator, ImageGenerator, TextGenerator  # noqa: E402
from genloom.kinds import DataKind  # noqa: E402
from genloom.hookspecs import hookimpl  # noqa: E402
from genloom.sampling import ImageSampling, TextSampling  # noqa: E402
from genloom.version import __version__  # noqa: E402

__all__ = [
    "ArtifactError",
    "Capabilities",
    "ConfigError",
    "DataKind",
    "DataError",
    "ExportSpec",
    "Generator",
    "GeneratorConfig",
    "GenloomError",
    "GraphSpec",
    "ImageGenerator",
    "ImageSampling",
    "TextGenerator",
    "TextSampling",
    "PluginError",
    "__version__",
    "hookimpl",
    "load",
    "plugins",
    "save",
    "train",
]

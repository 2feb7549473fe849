"""genloom: a plugin-based SDK for generative models.

Three lines for an app::

    import genloom
    model = genloom.load("models/digits-gan")
    images = model.generate(n=16, seed=0).images

Importing genloom is cheap: torch loads only when a model is built, trained or run.
"""

from genloom import plugins
from genloom.api import load, save, train
from genloom.config import GeneratorConfig
from genloom.contracts import Exporter, ExportSpec, GraphSpec, RuntimeDriver
from genloom.data import Dataset, DataSource
from genloom.errors import ArtifactError, ConfigError, DataError, GenloomError, PluginError
from genloom.generator import AnyGenerator, Capabilities, Generator, ImageGenerator, TextGenerator
from genloom.hookspecs import hookimpl
from genloom.kinds import DataKind
from genloom.model import LoadedModel
from genloom.results import ImageResult, Provenance, TextResult
from genloom.sampling import ImageSampling, TextSampling
from genloom.version import __version__

__all__ = [
    "AnyGenerator",
    "ArtifactError",
    "Capabilities",
    "ConfigError",
    "DataKind",
    "DataError",
    "DataSource",
    "Dataset",
    "ExportSpec",
    "Exporter",
    "Generator",
    "GeneratorConfig",
    "GenloomError",
    "GraphSpec",
    "ImageGenerator",
    "ImageResult",
    "ImageSampling",
    "LoadedModel",
    "Provenance",
    "RuntimeDriver",
    "TextGenerator",
    "TextResult",
    "TextSampling",
    "PluginError",
    "__version__",
    "hookimpl",
    "load",
    "plugins",
    "save",
    "train",
]

"""genloom's version, read from the installed distribution: a leaf module, so every layer may ask it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("genloom")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

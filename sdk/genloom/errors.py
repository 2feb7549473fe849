"""The errors genloom raises for things a user can fix.

Every user-facing error is a :class:`GenloomError`. Its message is one sentence that
says what is wrong and how to fix it; the CLI prints it on one line and exits 2.
Anything else that escapes is a bug in genloom or in a plugin.
"""


class GenloomError(Exception):
    """Base class of every error a user can fix by changing their input."""

    from_rank_0: bool = False
    """Set on the other ranks of a torchrun run when the error is rank 0's, which reports it (once)."""


class ConfigError(GenloomError):
    """A generator config or a sampling setting is invalid."""


class DataError(GenloomError):
    """A data source is unknown, unreadable or empty."""


class ArtifactError(GenloomError):
    """A model directory is missing files, corrupted, or from an unsupported format."""


class PluginError(GenloomError):
    """A plugin failed to load, or two plugins disagree (same name registered twice)."""


class NotAvailableError(GenloomError):
    """A feature that exists in the CLI but is not built yet."""


class ExportError(GenloomError):
    """A graph cannot be exported; ``details`` holds the exporters' full output (``genloom export --verbose``)."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class TrainingDiverged(GenloomError):
    """Training produced a non-finite loss or non-finite weights; the last good checkpoint is kept."""

"""Errors the lab raises for bad user input. The CLI prints them as one line, without a traceback."""

__all__ = ["CheckpointError", "Interrupted", "LabError", "SpecError"]


class LabError(Exception):
    """Base class for errors caused by user input (spec, paths, flags) rather than by a bug."""


class SpecError(LabError):
    """An invalid spec: the message names the offending file, dotted key or value."""


class CheckpointError(LabError):
    """A missing or unreadable checkpoint file: the message names the file."""


class Interrupted(Exception):
    """A run stopped by SIGINT or SIGTERM after saving its state; ``train@`` continues it."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    def __reduce__(self) -> tuple:  # travels back from a session process
        return (Interrupted, (self.signum, str(self)))


class SessionFailed(LabError):
    """A session ended by an exception from its env or agent: the message names the error, where the traceback
    and the saved state are, and how to continue."""

"""Errors the lab raises for bad user input. The CLI prints them as one line, without a traceback."""

__all__ = ["CheckpointError", "LabError", "SpecError"]


class LabError(Exception):
    """Base class for errors caused by user input (spec, paths, flags) rather than by a bug."""


class SpecError(LabError):
    """An invalid spec: the message names the offending file, dotted key or value."""


class CheckpointError(LabError):
    """A missing or unreadable checkpoint file: the message names the file."""

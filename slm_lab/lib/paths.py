"""Output paths: the ``data/{name}_{ts}/`` layout of the contract, computed from the spec's meta keys."""

import os
from pathlib import Path
from typing import Any, Literal

__all__ = ["SUBDIRS", "Unit", "data_dir", "predir", "prename", "prepath"]

Unit = Literal["experiment", "trial", "session"]
SUBDIRS = ("info", "graph", "log", "model")


def data_dir() -> Path:
    """Root of all run outputs: ``$SLM_DATA_DIR`` if set, else ``./data`` under the cwd (D32)."""
    return Path(os.environ.get("SLM_DATA_DIR") or Path.cwd() / "data")


def predir(name: str, experiment_ts: str) -> str:
    return str(data_dir() / f"{name}_{experiment_ts}")


def prename(spec: dict[str, Any], unit: Unit) -> str:
    """``{name}`` for the run/experiment, ``{name}_t{t}`` for a trial, ``{name}_t{t}_s{s}`` for a session."""
    name, meta = spec["name"], spec["meta"]
    if unit == "experiment":
        return name
    if unit == "trial":
        return f"{name}_t{meta['trial']}"
    return f"{name}_t{meta['trial']}_s{meta['session']}"


def prepath(spec: dict[str, Any], unit: Unit, sub: str | None = None) -> str:
    """``{predir}/{prename}``, or ``{predir}/{sub}/{prename}`` with sub one of info, graph, log, model."""
    if sub is not None and sub not in SUBDIRS:
        raise ValueError(f"sub must be one of {SUBDIRS}, got {sub!r}")
    base = spec["meta"]["predir"]
    name = prename(spec, unit)
    return f"{base}/{sub}/{name}" if sub else f"{base}/{name}"

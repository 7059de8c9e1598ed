"""Output paths: the lab's ``data/{name}_{ts}/`` layout, computed from the spec's meta keys."""

import os
import re
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "SUBDIRS",
    "TS_PATTERN",
    "Unit",
    "data_dir",
    "latest_predir",
    "predir",
    "prename",
    "prepath",
    "resolve_predir",
]

Unit = Literal["experiment", "trial", "session"]
SUBDIRS = ("info", "graph", "log", "model")
TS_PATTERN = r"\d{4}_\d{2}_\d{2}_\d{6}"  # experiment_ts, %Y_%m_%d_%H%M%S


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


def latest_predir(name: str, root: Path | None = None) -> Path | None:
    """The newest run folder ``{name}_{ts}`` under ``root`` (default: ``data_dir()``), by timestamp. The name must
    match exactly, so ``ppo_cartpole`` never picks a ``ppo_cartpole_v2_{ts}`` folder (D10)."""
    root = root if root is not None else data_dir()
    pattern = re.compile(rf"^{re.escape(name)}_({TS_PATTERN})$")
    found = (
        [(m.group(1), p) for p in root.iterdir() if p.is_dir() and (m := pattern.match(p.name))]
        if root.is_dir()
        else []
    )
    return max(found)[1] if found else None


def resolve_predir(target: str, name: str | None = None) -> Path:
    """The run folder named by a ``mode@target``: ``latest`` (newest ``{name}_{ts}``), a path, or a folder name
    under ``data_dir()``. Raises ``FileNotFoundError`` with a message naming what was looked for."""
    if target == "latest":
        if not name:
            raise FileNotFoundError("@latest needs the spec name to find the newest run folder")
        found = latest_predir(name)
        if found is None:
            raise FileNotFoundError(f"no run folder {name}_<timestamp> under {data_dir()}")
        return found
    path = Path(target).expanduser()
    for candidate in (path, data_dir() / target):
        if candidate.is_dir():
            return candidate.resolve()
    raise FileNotFoundError(f"run folder not found: {target} (looked in {Path.cwd()} and in {data_dir()})")

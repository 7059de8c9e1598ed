"""The spec pipeline: read a spec file, substitute ``-s`` variables, validate, and manage the run's output paths.

This module adds the runtime meta keys, names the run and ticks its output folders. The other steps live in their own
modules, whose public API this module re-exports, so both import paths work: reading spec files in
``slm_lab.spec.spec_file`` (``resolve_spec_path``, ``load_spec_file``, ``substitute_vars``), the mode overrides in
``slm_lab.spec.modes`` (``override_spec``, ``MODES``), validation in ``slm_lab.spec.validation`` (``validate_spec``,
``get_spec_models``, ``SpecModels``).

Public API (importable from this module)
- ``get_spec(spec_file=None, spec_name=None, sets=None) -> dict``: load one spec. Adds the runtime
  meta keys and ``name``; fills the meta defaults (``distributed`` false (D4), ``log_frequency``, ``eval_frequency``,
  ``rigorous_eval``, ``max_trial``); renames key aliases; casts integral floats in int fields (``1e6`` -> 1000000);
  validates. Creates nothing on disk.
- ``complete_spec(spec, spec_file=None, warn=True) -> dict``: validate and normalise a spec that already has its
  runtime keys (used for each sampled spec of a search).
- ``override_spec(spec, mode) -> dict``: a copy with the mode's overrides. ``mode@arg`` is accepted.
- ``tick(spec, unit) -> dict``: advance ``meta[unit]``, set the prepaths, create the output folders.
- ``save_spec(spec, unit) -> str``: write ``{name}_spec.json`` (experiment/run) or ``{name}_t{t}_spec.json``.
- ``resolve_spec_path(spec_file) -> Path``, ``load_spec_file(spec_file, sets=None) -> dict`` (every spec in a
  file), ``substitute_vars(text, sets) -> str``, ``env_short_name(env_id) -> str``, ``run_name(spec_name, sets) -> str``
  (the name ``get_spec`` gives the run), ``git_sha() -> str``.

Re-exported from ``slm_lab.spec.validation`` (documented there)
- ``validate_spec(spec, spec_file=None, check_env=True) -> None``: raise ``SpecError`` listing every problem.
- ``get_spec_models(spec, spec_file=None) -> SpecModels``: the typed sections ``(algorithm, memory, nets, env,
  meta)``.
"""

import functools
import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from slm_lab import ROOT_DIR
from slm_lab.errors import LabError, SpecError
from slm_lab.lib import io_util, paths
from slm_lab.spec.modes import MODES, override_spec
from slm_lab.spec.normalize import _cast_model
from slm_lab.spec.spec_file import (
    _placeholders,
    _split_set,
    load_spec_file,
    resolve_spec_path,
    substitute_vars,
)
from slm_lab.spec.validation import SpecModels, _validated, get_spec_models, validate_spec

__all__ = [
    "DEFAULT_SPEC_FILE",
    "DEFAULT_SPEC_NAME",
    "MAX_NAME_LENGTH",
    "MODES",
    "UNITS",
    "SpecModels",
    "check_name",
    "claim_predir",
    "complete_spec",
    "env_short_name",
    "get_spec",
    "get_spec_models",
    "git_sha",
    "load_spec_file",
    "override_spec",
    "resolve_spec_path",
    "run_name",
    "save_spec",
    "substitute_vars",
    "tick",
    "validate_spec",
]

DEFAULT_SPEC_FILE = "slm_lab/spec/benchmark/ppo/ppo_cartpole.json"
DEFAULT_SPEC_NAME = "ppo_cartpole"
UNITS = ("experiment", "trial", "session")
Unit = Literal["experiment", "trial", "session"]

_PREPATH_KEYS = ("prepath", "info_prepath", "graph_prepath", "log_prepath", "model_prepath")

# A spec name names the run's folder and files: a file-name stem, kept short enough that every file name under the
# folder ({name}_t{t}_s{s}_session_metrics_scalar_train.json, ...) stays under the usual 255-byte limit.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_NAME_LENGTH = 128


def env_short_name(env_id: str) -> str:
    """``ALE/Breakout-v5`` -> ``breakout``: the last ``/`` segment, cut at the first ``-``, lowercased."""
    return env_id.rsplit("/", 1)[-1].split("-", 1)[0].lower()


# --------------------------------------------------------------------------------------------------------------
# runtime keys


def _timestamp() -> str:
    return datetime.now().strftime("%Y_%m_%d_%H%M%S")


def _draw_seed() -> int:
    return int.from_bytes(os.urandom(4), "little") % 2**31


@functools.cache
def git_sha() -> str:
    """The HEAD commit of the repository the package lives in, or ``unknown``."""
    repo = ROOT_DIR.parent
    if not (repo / ".git").exists():
        return "unknown"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else "unknown"


def _cuda_offset() -> int:
    value = os.environ.get("CUDA_OFFSET") or "0"
    try:
        return int(value)
    except ValueError:
        raise SpecError(f"CUDA_OFFSET must be an integer, got {value!r}") from None


def _add_runtime_meta(spec: dict[str, Any]) -> None:
    meta = spec.get("meta")
    if not isinstance(meta, dict):
        return  # validation reports it
    ts = _timestamp()
    meta.update(
        experiment=-1,
        trial=-1,
        session=-1,
        cuda_offset=_cuda_offset(),
        resume=False,
        experiment_ts=ts,
        git_sha=git_sha(),
        predir=paths.predir(spec["name"], ts),
    )
    if meta.get("random_seed") is None:
        meta["random_seed"] = _draw_seed()
    for key in _PREPATH_KEYS:
        meta[key] = None


# --------------------------------------------------------------------------------------------------------------
# the pipeline


def run_name(spec_name: str, sets: list[str] | None = None) -> str:
    """The run's name, which names its data folder: the spec name, plus ``_{env short}`` when ``-s env=``
    is given."""
    env_ids = [value for key, value in map(_split_set, sets or []) if key == "env"]
    return f"{spec_name}_{env_short_name(env_ids[-1])}" if env_ids else spec_name


def check_name(name: str, what: str = "spec name") -> str:
    """``name`` if it is a safe file-name stem (letters, digits, ``_``, ``.``, ``-``, starting with a letter or
    digit, at most ``MAX_NAME_LENGTH`` characters), else a SpecError. The run's folder and files are named after it,
    so nothing else could stay inside the data dir (``../x``, ``/abs``, ``a/b``) or keep log lines whole."""
    if len(name) > MAX_NAME_LENGTH:
        raise SpecError(f"{what} {name[:40]!r}...: {len(name)} characters; at most {MAX_NAME_LENGTH}")
    if not NAME_PATTERN.fullmatch(name):
        raise SpecError(
            f"{what} {name!r}: not a safe file name; use letters, digits, '_', '.' and '-', starting with a letter"
            " or digit"
        )
    return name


def get_spec(
    spec_file: str | None = None, spec_name: str | None = None, sets: list[str] | None = None
) -> dict:
    """Load, complete and validate one spec. ``sets`` are ``KEY=VALUE`` items for ``${KEY}``."""
    spec_file = str(spec_file or DEFAULT_SPEC_FILE)
    spec_name = check_name(spec_name or DEFAULT_SPEC_NAME)
    specs = load_spec_file(spec_file, sets)
    if spec_name not in specs:
        names = [str(k) for k in specs if not str(k).startswith("_")]
        raise SpecError(f"{spec_file}: no spec named {spec_name!r}; available: {', '.join(names) or 'none'}")
    spec = specs[spec_name]
    if not isinstance(spec, dict):
        raise SpecError(f"{spec_file} {spec_name}: expected a dict, got {type(spec).__name__}")
    leftover = _placeholders(spec, "")
    if leftover:
        lines = [f"{path}: unresolved ${{{var}}}; pass -s {var}=VALUE" for path, var in leftover]
        raise SpecError(f"invalid spec ({spec_file} {spec_name}):\n  " + "\n  ".join(lines))
    spec["name"] = check_name(run_name(spec_name, sets), "run name (spec name and -s env)")
    _add_runtime_meta(spec)
    return complete_spec(spec, spec_file)


def complete_spec(spec: dict[str, Any], spec_file: str | None = None, warn: bool = True) -> dict[str, Any]:
    """A validated, normalised copy of a spec that already has its runtime keys: aliases renamed, meta defaults
    filled, integral floats cast in int fields. Used by ``get_spec`` and for each sampled spec of a search."""
    normal, check = _validated(spec, spec_file, check_env=True, warn=warn)
    for raw_section, parsed, origin in check.casts:
        _cast_model(raw_section, parsed, origin)  # raw sections belong to the normalised copy
    return normal


# --------------------------------------------------------------------------------------------------------------
# ticking, saving


def tick(spec: dict[str, Any], unit: Unit) -> dict[str, Any]:
    """Advance ``meta[unit]`` and point the prepaths at that unit; create the output folders. Mutates ``spec``.

    Lower units reset to -1; higher units still at -1 become 0. Ticking ``experiment`` takes a fresh
    ``experiment_ts`` (unless ``meta.resume``) and with it a fresh ``predir``.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    meta = spec["meta"]
    level = UNITS.index(unit)
    for higher in UNITS[:level]:
        if meta.get(higher, -1) < 0:
            meta[higher] = 0
    meta[unit] = (meta.get(unit) if meta.get(unit) is not None else -1) + 1
    for lower in UNITS[level + 1 :]:
        meta[lower] = -1
    if unit == "experiment" and not meta.get("resume"):
        meta["experiment_ts"] = _timestamp()
        meta["predir"] = paths.predir(spec["name"], meta["experiment_ts"])
        claim_predir(spec)
    elif not meta.get("predir"):
        meta["experiment_ts"] = meta.get("experiment_ts") or _timestamp()
        meta["predir"] = paths.predir(spec["name"], meta["experiment_ts"])
    meta["prepath"] = paths.prepath(spec, unit)
    for sub in paths.SUBDIRS:
        meta[f"{sub}_prepath"] = paths.prepath(spec, unit, sub)
        Path(meta["predir"], sub).mkdir(parents=True, exist_ok=True)
    return spec


def claim_predir(spec: dict[str, Any], attempts: int = 120) -> str:
    """Create the run's folder ``meta.predir``, which no other run may have: if a run of the same name started in
    the same second already holds it, wait for the next second and take its timestamp. Returns the folder; an
    unusable data dir is a one-line LabError."""
    meta = spec["meta"]
    for _ in range(attempts):
        predir = Path(meta["predir"])
        try:
            predir.parent.mkdir(parents=True, exist_ok=True)
            predir.mkdir()
            return str(predir)
        except FileExistsError:
            if not predir.is_dir():
                raise LabError(f"cannot create the run folder {predir}: a file is in the way") from None
            time.sleep(1.0 - datetime.now().microsecond / 1e6 + 0.01)
            meta["experiment_ts"] = _timestamp()
            meta["predir"] = paths.predir(spec["name"], meta["experiment_ts"])
        except OSError as exc:
            raise LabError(
                f"cannot create the run folder {predir} (data dir {paths.data_dir()}): {exc.strerror or exc}"
            ) from None
    raise LabError(f"no free run folder for {spec['name']} after {attempts} attempts")


def save_spec(spec: dict[str, Any], unit: Literal["experiment", "trial"] = "trial") -> str:
    """Write the spec as JSON: ``{predir}/{name}_spec.json`` for ``experiment`` (the run/experiment spec) or
    ``{predir}/{name}_t{t}_spec.json`` for ``trial``. Returns the path. Session specs are never written."""
    if unit not in ("experiment", "trial"):
        raise ValueError(f"save_spec unit must be 'experiment' or 'trial', got {unit!r}")
    path = f"{paths.prepath(spec, unit)}_spec.json"
    io_util.write_json(path, spec)
    return path

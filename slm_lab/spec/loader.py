"""The spec pipeline: read a spec file, substitute ``-s`` variables, validate, and manage the run's output paths.

Validation lives in ``slm_lab.spec.validation``; this module re-exports its public API (``validate_spec``,
``get_spec_models``, ``SpecModels``), so both import paths work.

Public API of this module
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

import copy
import functools
import json
import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from loguru import logger

from slm_lab import ROOT_DIR, SPEC_DIR
from slm_lab.errors import LabError, SpecError
from slm_lab.lib import io_util, paths
from slm_lab.spec.schema import ALGORITHM_SPECS, AlgorithmSpec
from slm_lab.spec.validation import (
    SpecModels,
    _canonical_number,
    _cast_model,
    _validated,
    get_spec_models,
    validate_spec,
)

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
MODES = ("dev", "train", "search", "enjoy", "eval", "test")
Unit = Literal["experiment", "trial", "session"]

_PACKAGE_PREFIX = "slm_lab/spec/"
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_PREPATH_KEYS = ("prepath", "info_prepath", "graph_prepath", "log_prepath", "model_prepath")


# Bounds on reading a spec file. Real specs are a few kilobytes with a handful of YAML aliases at most, so these only
# ever stop a hostile or broken file, and stop it before it grows in memory.
MAX_SPEC_FILE_BYTES = 4 * 2**20
MAX_YAML_ALIASES = 1_000
MAX_SPEC_VALUES = 200_000  # mappings, lists and scalars in the file once its aliases are expanded
# A spec name names the run's folder and files: a file-name stem, kept short enough that every file name under the
# folder ({name}_t{t}_s{s}_session_metrics_scalar_train.json, ...) stays under the usual 255-byte limit.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_NAME_LENGTH = 128


class _TooLarge(Exception):
    """A spec file over one of the reading bounds; the loader turns it into a SpecError naming the file."""


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int | None = None) -> None:
        super().__init__(key)
        self.key, self.line = key, line


class _SpecYamlLoader(yaml.SafeLoader):
    """Safe YAML loader that also reads dot-less scientific numbers (``3e-4``, ``1e7``) as floats (D38), refuses a
    key given twice in one mapping, and stops at ``MAX_YAML_ALIASES`` aliases or a merge (``<<``) that expands past
    ``MAX_SPEC_VALUES`` entries."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _TooLarge(f"more than {MAX_YAML_ALIASES} YAML aliases")
        return super().compose_node(parent, index)

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # keys merged in with << may be overridden, as YAML allows
            if key_node.value in seen:
                raise _DuplicateKey(key_node.value, key_node.start_mark.line + 1)
            seen.add(key_node.value)
        return node

    def flatten_mapping(self, node: Any) -> None:
        super().flatten_mapping(node)
        if len(node.value) > MAX_SPEC_VALUES:
            raise _TooLarge(f"a YAML merge (<<) expanding to more than {MAX_SPEC_VALUES:,} entries")


_SpecYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


# --------------------------------------------------------------------------------------------------------------
# reading


def resolve_spec_path(spec_file: str | Path) -> Path:
    """Find a spec file (D32): an absolute path; else relative to the cwd; else relative to the package spec
    directory, where a leading ``slm_lab/spec/`` is optional."""
    path = Path(spec_file).expanduser()
    if path.is_absolute():
        if path.is_file():
            return path
        raise SpecError(f"spec file not found: {spec_file}")
    if path.is_file():
        return path.resolve()
    rel = path.as_posix()
    if rel.startswith(_PACKAGE_PREFIX):
        rel = rel[len(_PACKAGE_PREFIX) :]
    package_path = SPEC_DIR / rel
    if package_path.is_file():
        return package_path
    raise SpecError(f"spec file not found: {spec_file} (looked in {Path.cwd()} and in {SPEC_DIR})")


def _split_set(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise SpecError(f"-s {item!r}: expected KEY=VALUE")
    key, value = item.split("=", 1)
    if not key:
        raise SpecError(f"-s {item!r}: the key before '=' is empty")
    return key, value


def substitute_vars(text: str, sets: list[str] | None) -> str:
    """Replace ``${KEY}`` for each ``KEY=VALUE`` item.

    The item is split at its first ``=``. A numeric VALUE becomes a canonical number that also replaces a quoted
    ``"${KEY}"`` together with its quotes, so the parser sees a number; any other VALUE replaces ``${KEY}`` as text.
    """
    for item in sets or []:
        key, value = _split_set(item)
        placeholder = "${" + key + "}"
        if placeholder not in text:
            logger.warning(f"-s {key}: {placeholder} does not appear in the spec file")
            continue
        number = _canonical_number(value)
        if number is not None:
            for quote in ('"', "'"):
                text = text.replace(f"{quote}{placeholder}{quote}", number)
        text = text.replace(placeholder, value if number is None else number)
    return text


def env_short_name(env_id: str) -> str:
    """``ALE/Breakout-v5`` -> ``breakout``: the last ``/`` segment, cut at the first ``-``, lowercased."""
    return env_id.rsplit("/", 1)[-1].split("-", 1)[0].lower()


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that refuses a key given twice (``json`` would keep the last one silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _parse(text: str, path: Path, spec_file: str, substituted: bool) -> Any:
    hint = " (after -s substitution)" if substituted else ""
    is_json = path.suffix.lower() == ".json"
    try:
        if is_json:
            return _unshare(json.loads(text, object_pairs_hook=_json_object))
        return _unshare(yaml.load(text, Loader=_SpecYamlLoader))  # a SafeLoader subclass
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"{spec_file}: invalid JSON{hint} at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{spec_file}: invalid YAML{hint}: {exc}") from None
    except _DuplicateKey as exc:
        where = f" (line {exc.line})" if exc.line else ""
        raise SpecError(f"{spec_file}: key {exc.key!r} is given twice in one mapping{where}") from None
    except _TooLarge as exc:
        raise SpecError(f"{spec_file}: refused, {exc}") from None
    except RecursionError:
        raise SpecError(f"{spec_file}: refused, nested too deeply") from None


def _unshare(node: Any, budget: list[int] | None = None) -> Any:
    """A fresh tree of dicts and lists, so YAML aliases never make two spec keys share one object. Counts what it
    builds and stops past ``MAX_SPEC_VALUES``, so a file whose aliases expand exponentially fails fast."""
    budget = budget if budget is not None else [MAX_SPEC_VALUES]
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge(f"more than {MAX_SPEC_VALUES:,} values once its YAML aliases are expanded")
    if isinstance(node, dict):
        return {k: _unshare(v, budget) for k, v in node.items()}
    if isinstance(node, list):
        return [_unshare(v, budget) for v in node]
    return node


def _read_text(path: Path, spec_file: str) -> str:
    """The file's text, read with a size bound; unreadable, oversized or non-UTF-8 files are one-line errors."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SPEC_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"{spec_file}: cannot read the spec file: {exc.strerror or exc}") from None
    if len(raw) > MAX_SPEC_FILE_BYTES:
        raise SpecError(f"{spec_file}: refused, a spec file holds at most {MAX_SPEC_FILE_BYTES:,} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{spec_file}: not UTF-8 text (invalid byte at offset {exc.start})") from None


def load_spec_file(spec_file: str | Path, sets: list[str] | None = None) -> dict[str, Any]:
    """Read a spec file (JSON or YAML) after ``${var}`` substitution: the mapping ``{spec_name: spec}``."""
    path = resolve_spec_path(spec_file)
    if path.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise SpecError(f"{spec_file}: a spec file must end in .json, .yaml or .yml")
    text = substitute_vars(_read_text(path, str(spec_file)), sets)
    data = _parse(text, path, str(spec_file), bool(sets))
    if not isinstance(data, dict):
        raise SpecError(f"{spec_file}: expected a mapping of spec names to specs, got {type(data).__name__}")
    return data


def _placeholders(node: Any, path: str) -> list[tuple[str, str]]:
    """(dotted path, variable) for every ``${var}`` left in a parsed spec."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            found += [(sub, var) for var in _PLACEHOLDER.findall(str(key))]
            found += _placeholders(value, sub)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _placeholders(value, f"{path}[{i}]")
    elif isinstance(node, str):
        found += [(path, var) for var in _PLACEHOLDER.findall(node)]
    return found


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
# modes, ticking, saving


def override_spec(spec: dict[str, Any], mode: str) -> dict[str, Any]:
    """A deep copy of ``spec`` with the overrides of ``mode`` (``dev``, ``train``, ``search``, ``enjoy``, ``eval``,
    ``test``; ``mode@arg`` is read as ``mode``)."""
    base = mode.split("@", 1)[0]
    if base not in MODES:
        raise SpecError(
            f"unknown mode {mode!r}; valid modes: {', '.join(MODES)} (plus train@ / enjoy@ / eval@)"
        )
    spec = copy.deepcopy(spec)
    meta = spec["meta"]
    if base == "dev":
        meta.update(max_session=1, max_trial=2)
    elif base in ("enjoy", "eval"):
        meta["max_session"] = 1
    elif base == "test":
        _test_overrides(spec)
    return spec


def _test_overrides(spec: dict[str, Any]) -> None:
    """The tiny-run overrides of the ``test`` mode, used by the test-suite."""
    agent, env, meta = spec["agent"], spec["env"], spec["meta"]
    algorithm = agent["algorithm"]
    freq = 1 if agent["memory"].get("name") == "OnPolicyReplay" else 8
    name = algorithm.get("name")
    algo_cls = ALGORITHM_SPECS.get(name, AlgorithmSpec) if isinstance(name, str) else AlgorithmSpec
    values = {
        "training_frequency": freq,
        "time_horizon": freq,
        "training_start_step": 1,
        "training_iter": 1,
        "training_batch_iter": 1,
    }
    for key, value in values.items():
        if key in algo_cls.model_fields or key in algorithm:
            algorithm[key] = value
    env["max_frame"] = 40
    if env.get("num_envs", 1) > 1:
        env["num_envs"] = 2
    env["max_t"] = 12
    meta.update(log_frequency=10, eval_frequency=10, max_session=1, max_trial=2)


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

"""The spec pipeline: read a spec file, substitute ``-s`` variables, validate, and manage the run's output paths.

Public API
- ``get_spec(spec_file=None, spec_name=None, sets=None) -> dict``: load one spec (§2.1 pipeline). Adds the runtime
  meta keys and ``name``; fills the meta defaults (``distributed`` false (D4), ``log_frequency``, ``eval_frequency``,
  ``rigorous_eval``, ``max_trial``); renames key aliases; casts integral floats in int fields (``1e6`` -> 1000000);
  validates. Creates nothing on disk.
- ``validate_spec(spec, spec_file=None, check_env=True) -> None``: raise ``SpecError`` listing every problem as
  ``<dotted.key>: <problem>``; warn once per unknown key. Does not modify ``spec``.
- ``get_spec_models(spec, spec_file=None) -> SpecModels``: the typed sections ``(algorithm, memory, nets, env,
  meta)``. ``nets`` maps net names to models: for the actor-critic family ``{"net": actor, "critic_net": critic}``
  (each prefix-routed, see ``schema.route_net_spec``; only ``"net"``, actor-routed, when ``shared``), otherwise
  ``{"net": ...}`` plus ``"critic_net"`` when ``agent.critic_net`` is given.
- ``override_spec(spec, mode) -> dict``: a copy with the mode's overrides (§1.3, §2.10). ``mode@arg`` is accepted.
- ``tick(spec, unit) -> dict``: advance ``meta[unit]``, set the prepaths, create the output folders.
- ``save_spec(spec, unit) -> str``: write ``{name}_spec.json`` (experiment/run) or ``{name}_t{t}_spec.json``.
- ``resolve_spec_path(spec_file) -> Path``, ``load_spec_file(spec_file, sets=None) -> dict`` (every spec in a
  file), ``substitute_vars(text, sets) -> str``, ``env_short_name(env_id) -> str``, ``git_sha() -> str``.
"""

import copy
import difflib
import functools
import json
import math
import os
import re
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from loguru import logger
from pydantic import BaseModel, ValidationError

from slm_lab import ROOT_DIR, SPEC_DIR
from slm_lab.errors import SpecError
from slm_lab.lib import io_util, paths
from slm_lab.spec.schema import (
    AGENT_KEYS,
    ALGORITHM_KEY_ALIASES,
    ALGORITHM_SPECS,
    MEMORY_SPECS,
    NET_SPECS,
    TOP_LEVEL_KEYS,
    AgentSpec,
    AlgorithmSpec,
    EnvSpec,
    LabSpec,
    MemorySpec,
    MetaSpec,
    NetSpec,
    SpecModel,
    route_net_spec_with_origins,
    unrouted_key,
)

__all__ = [
    "DEFAULT_SPEC_FILE",
    "DEFAULT_SPEC_NAME",
    "MODES",
    "UNITS",
    "SpecModels",
    "env_short_name",
    "get_spec",
    "get_spec_models",
    "git_sha",
    "load_spec_file",
    "override_spec",
    "resolve_spec_path",
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
_META_DEFAULTS = ("distributed", "log_frequency", "eval_frequency", "rigorous_eval", "max_trial")


class SpecModels(NamedTuple):
    """Typed views of a spec's sections."""

    algorithm: AlgorithmSpec
    memory: MemorySpec
    nets: dict[str, NetSpec]
    env: EnvSpec
    meta: MetaSpec


class _SpecYamlLoader(yaml.SafeLoader):
    """Safe YAML loader that also reads dot-less scientific numbers (``3e-4``, ``1e7``) as floats (D38)."""


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


def _canonical_number(value: str) -> str | None:
    """``3e6`` -> ``3000000``, ``0.5`` -> ``0.5``; None when the value is not a finite number."""
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return str(int(number)) if number.is_integer() else str(number)


def substitute_vars(text: str, sets: list[str] | None) -> str:
    """Replace ``${KEY}`` for each ``KEY=VALUE`` item (§2.9).

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


def _parse(text: str, path: Path, spec_file: str, substituted: bool) -> Any:
    hint = " (after -s substitution)" if substituted else ""
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(
                f"{spec_file}: invalid JSON{hint} at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
    try:
        return yaml.load(text, Loader=_SpecYamlLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpecError(f"{spec_file}: invalid YAML{hint}: {exc}") from None


def _unshare(node: Any) -> Any:
    """A fresh tree of dicts and lists, so YAML aliases never make two spec keys share one object."""
    if isinstance(node, dict):
        return {k: _unshare(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unshare(v) for v in node]
    return node


def load_spec_file(spec_file: str | Path, sets: list[str] | None = None) -> dict[str, Any]:
    """Read a spec file (JSON or YAML) after ``${var}`` substitution: the mapping ``{spec_name: spec}``."""
    path = resolve_spec_path(spec_file)
    if path.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise SpecError(f"{spec_file}: a spec file must end in .json, .yaml or .yml")
    text = substitute_vars(path.read_text(), sets)
    data = _parse(text, path, str(spec_file), bool(sets))
    if not isinstance(data, dict):
        raise SpecError(f"{spec_file}: expected a mapping of spec names to specs, got {type(data).__name__}")
    return _unshare(data)


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


def _normalize(spec: dict[str, Any]) -> list[str]:
    """Rename algorithm key aliases (D9) and fill the meta defaults, in place. Returns alias-conflict errors."""
    errors = []
    agent = spec.get("agent")
    algorithm = agent.get("algorithm") if isinstance(agent, dict) else None
    if isinstance(algorithm, dict):
        for alias, canonical in ALGORITHM_KEY_ALIASES.items():
            if alias not in algorithm:
                continue
            value = algorithm.pop(alias)
            if canonical in algorithm and algorithm[canonical] != value:
                errors.append(
                    f"agent.algorithm.{alias}: alias of {canonical}, but both are given with different values "
                    f"({value!r} vs {algorithm[canonical]!r}); keep only {canonical}"
                )
            algorithm[canonical] = algorithm.get(canonical, value)
    meta = spec.get("meta")
    if isinstance(meta, dict):
        if meta.get("distributed") is None:
            meta["distributed"] = False  # D4: a missing key means off
        for key in _META_DEFAULTS:
            if key not in meta:
                meta[key] = MetaSpec.model_fields[key].default
    return errors


# --------------------------------------------------------------------------------------------------------------
# validation


def _expected(err: Any) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind.startswith("int_"):
        not_numeric = isinstance(err["input"], str) and _canonical_number(err["input"]) is None
        return "a number" if not_numeric else "an integer"
    if kind.startswith("float_"):
        return "a number"
    if kind.startswith("bool_"):
        return "true or false"
    if kind.startswith("string_"):
        return "a string"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "a dict"
    if kind in ("list_type", "tuple_type", "too_short", "too_long"):
        return "a list" if kind.endswith("_type") else f"a list ({err['msg'].lower()})"
    if kind == "literal_error":
        return f"one of {ctx.get('expected', '?')}"
    return err["msg"][:1].lower() + err["msg"][1:]


def _describe(errs: list[Any]) -> str:
    if any(e["type"] == "missing" for e in errs):
        return "field required"
    if len(errs) == 1 and errs[0]["type"] == "value_error":
        return str(errs[0]["ctx"]["error"]) if "error" in (errs[0].get("ctx") or {}) else errs[0]["msg"]
    expected = " or ".join(dict.fromkeys(_expected(e) for e in errs))
    return f"expected {expected}, got {errs[0]['input']!r}"


def _loc_path(
    prefix: str, loc: tuple[Any, ...], raw: Any, is_missing: bool, origin: dict[str, str] | None
) -> str:
    """Dotted key for a pydantic error location, skipping union-member tags that are not spec keys."""
    path, node = prefix, raw
    for i, item in enumerate(loc):
        if isinstance(item, int) and isinstance(node, list) and 0 <= item < len(node):
            path, node = f"{path}[{item}]", node[item]
            continue
        if isinstance(node, dict) and (item in node or (is_missing and i == len(loc) - 1)):
            key = origin.get(item, item) if (origin and i == 0) else item
            path = f"{path}.{key}" if path else str(key)
            node = node.get(item)
    return path


def _format_errors(exc: ValidationError, prefix: str, raw: Any, origin: dict[str, str] | None) -> list[str]:
    grouped: dict[str, list[Any]] = {}
    for err in exc.errors(include_url=False):
        path = _loc_path(prefix, err["loc"], raw, err["type"] == "missing", origin)
        grouped.setdefault(path, []).append(err)
    return [f"{path}: {_describe(errs)}" for path, errs in grouped.items()]


class _Check:
    """The result of checking one spec: models (None where invalid), error lines, unknown dotted keys."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.unknown: list[str] = []
        self.algorithm: AlgorithmSpec | None = None
        self.memory: MemorySpec | None = None
        self.nets: dict[str, NetSpec | None] = {}
        self.env: EnvSpec | None = None
        self.meta: MetaSpec | None = None
        # (raw dict, parsed model, routed key -> raw key) for writing integer casts back into the spec
        self.casts: list[tuple[dict[str, Any], BaseModel, dict[str, str] | None]] = []

    def model(
        self,
        cls: type[SpecModel],
        raw: dict[str, Any],
        prefix: str,
        origin: dict[str, str] | None = None,
        cast_into: dict[str, Any] | None = None,
    ) -> Any:
        """Validate ``raw`` as ``cls``; ``origin`` maps routed keys back to the spec dict ``cast_into``."""
        try:
            parsed = cls.model_validate(raw)
        except ValidationError as exc:
            self.errors += _format_errors(exc, prefix, raw, origin)
            return None
        self.casts.append((raw if cast_into is None else cast_into, parsed, origin))
        return parsed


def _nested_model(annotation: Any) -> type[SpecModel] | None:
    """The strict spec model inside a field annotation (``VarSchedulerSpec | None`` -> VarSchedulerSpec)."""
    candidates = getattr(annotation, "__args__", None) or (annotation,)
    for cand in candidates:
        if (
            isinstance(cand, type)
            and issubclass(cand, SpecModel)
            and cand.model_config.get("extra") != "allow"
        ):
            return cand
    return None


def _unknown_keys(raw: dict[str, Any], cls: type[SpecModel], prefix: str, routed: bool = False) -> list[str]:
    unknown = []
    for key, value in raw.items():
        field = cls.model_fields.get(unrouted_key(key) if routed else key)
        if field is None:
            if cls.model_config.get("extra") != "allow":
                unknown.append(f"{prefix}.{key}")
            continue
        nested = _nested_model(field.annotation)
        if nested is not None and isinstance(value, dict):
            unknown += _unknown_keys(value, nested, f"{prefix}.{key}")
    return unknown


def _lookup(
    raw: dict[str, Any], key: str, table: dict[str, Any], prefix: str, kind: str, check: _Check
) -> Any:
    name = raw.get(key)
    if name is None:
        check.errors.append(f"{prefix}.{key}: field required")
    elif not isinstance(name, str):
        check.errors.append(f"{prefix}.{key}: expected a string, got {name!r}")
    elif name not in table:
        check.errors.append(
            f"{prefix}.{key}: unknown {kind} {name!r}; valid names: {', '.join(sorted(table))}"
        )
    else:
        return table[name]
    return None


def _check_nets(agent: dict[str, Any], algo_cls: type[AlgorithmSpec] | None, check: _Check) -> None:
    net = agent.get("net")
    if isinstance(net, dict):
        net_cls = _lookup(net, "type", NET_SPECS, "agent.net", "net type", check)
        routes = algo_cls is not None and algo_cls.ROUTES_NET_KEYS
        if net_cls is not None and routes:
            assert algo_cls is not None
            check.unknown += _unknown_keys(net, net_cls, "agent.net", routed=True)
            for key in algo_cls.REQUIRED_NET_KEYS:
                if key not in net:
                    check.errors.append(
                        f"agent.net.{key}: field required ({agent['algorithm']['name']} needs it)"
                    )
            actor_raw, actor_origin = route_net_spec_with_origins(net, "actor")
            critic_raw, critic_origin = route_net_spec_with_origins(net, "critic")
            check.nets["net"] = check.model(net_cls, actor_raw, "agent.net", actor_origin, cast_into=net)
            critic = check.model(net_cls, critic_raw, "agent.net", critic_origin, cast_into=net)
            if net.get("shared") is not True:
                check.nets["critic_net"] = critic
        elif net_cls is not None:
            check.unknown += _unknown_keys(net, net_cls, "agent.net")
            check.nets["net"] = check.model(net_cls, net, "agent.net")
    critic_net = agent.get("critic_net")
    if isinstance(critic_net, dict):
        net_cls = _lookup(critic_net, "type", NET_SPECS, "agent.critic_net", "net type", check)
        if net_cls is not None:
            check.unknown += _unknown_keys(critic_net, net_cls, "agent.critic_net")
            check.nets["critic_net"] = check.model(net_cls, critic_net, "agent.critic_net")


def _check_agent(agent: dict[str, Any], check: _Check) -> None:
    check.model(AgentSpec, agent, "agent")
    check.unknown += [f"agent.{k}" for k in agent if k not in AGENT_KEYS]
    algorithm, memory = agent.get("algorithm"), agent.get("memory")
    algo_cls = None
    if isinstance(algorithm, dict):
        algo_cls = _lookup(algorithm, "name", ALGORITHM_SPECS, "agent.algorithm", "algorithm", check)
        if algo_cls is not None:
            check.unknown += _unknown_keys(algorithm, algo_cls, "agent.algorithm")
            check.algorithm = check.model(algo_cls, algorithm, "agent.algorithm")
    if isinstance(memory, dict):
        memory_cls = _lookup(memory, "name", MEMORY_SPECS, "agent.memory", "memory", check)
        if memory_cls is not None:
            check.unknown += _unknown_keys(memory, memory_cls, "agent.memory")
            check.memory = check.model(memory_cls, memory, "agent.memory")
        allowed = algo_cls.MEMORY_NAMES if algo_cls is not None else None
        if allowed is not None and isinstance(memory.get("name"), str) and memory["name"] not in allowed:
            check.errors.append(
                f"agent.memory.name: {agent['algorithm']['name']} requires memory {' or '.join(allowed)}, "
                f"got {memory['name']!r}"
            )
    _check_nets(agent, algo_cls, check)


def _check_env_id(env_id: str) -> str | None:
    """An error line when ``env_id`` is not a registered gymnasium id; entry points and Playground pass."""
    if ":" in env_id or env_id.startswith("playground/"):
        return None
    import gymnasium as gym

    if env_id.startswith("ALE/"):
        try:
            import ale_py
        except ImportError:
            return None  # cannot check without ale-py; making the env reports it
        gym.register_envs(ale_py)
    registry = gym.envs.registry
    if env_id in registry:
        return None
    close = difflib.get_close_matches(env_id, list(registry), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"env.name: unknown gymnasium env id {env_id!r}{hint}"


def _check(spec: Any, check_env: bool) -> _Check:
    check = _Check()
    if not isinstance(spec, dict):
        check.errors.append(f"spec: expected a dict, got {type(spec).__name__}")
        return check
    for key in ("agent", "env"):
        if isinstance(spec.get(key), list):
            check.errors.append(
                f"{key}: a list is the v4 spec format; v5 specs use one flat dict "
                f"(e.g. {key}: {{...}} holding the list's single entry)"
            )
    if check.errors:
        return check
    check.model(LabSpec, spec, "")
    check.unknown += [str(k) for k in spec if k not in TOP_LEVEL_KEYS]
    if isinstance(spec.get("agent"), dict):
        _check_agent(spec["agent"], check)
    if isinstance(spec.get("env"), dict):
        check.env = check.model(EnvSpec, spec["env"], "env")
        env_id = spec["env"].get("name")
        if check_env and isinstance(env_id, str):
            env_error = _check_env_id(env_id)
            if env_error:
                check.errors.append(env_error)
    if isinstance(spec.get("meta"), dict):
        check.unknown += _unknown_keys(spec["meta"], MetaSpec, "meta")
        check.meta = check.model(MetaSpec, spec["meta"], "meta")
    check.errors = list(dict.fromkeys(check.errors))
    return check


def _raise_errors(spec: Any, spec_file: str | None, errors: list[str]) -> None:
    if not errors:
        return
    name = spec.get("name") if isinstance(spec, dict) else None
    where = " ".join(str(p) for p in (spec_file, name) if p) or "spec"
    raise SpecError(f"invalid spec ({where}):\n  " + "\n  ".join(errors))


def _warn(spec: dict[str, Any], spec_file: str | None, check: _Check) -> None:
    where = f" in {spec_file}" if spec_file else ""
    for key in dict.fromkeys(check.unknown):
        logger.warning(f"unknown spec key {key}{where} is ignored")
    meta = spec.get("meta")
    if isinstance(meta, dict) and "num_gpus" in meta:
        logger.warning(f"meta.num_gpus{where} is ignored (the device comes from agent.net.gpu)")


def _validated(
    spec: dict[str, Any], spec_file: str | None, check_env: bool, warn: bool
) -> tuple[dict[str, Any], _Check]:
    """Normalise a copy of ``spec``, check it, warn, raise on errors; return the copy and the check."""
    spec = copy.deepcopy(spec)
    errors = _normalize(spec) if isinstance(spec, dict) else []
    check = _check(spec, check_env)
    if warn and isinstance(spec, dict):
        _warn(spec, spec_file, check)
    _raise_errors(spec, spec_file, errors + check.errors)
    return spec, check


def validate_spec(spec: dict[str, Any], spec_file: str | None = None, check_env: bool = True) -> None:
    """Check a spec (§2.10, D24): raise ``SpecError`` listing every problem as ``<dotted.key>: <problem>``.

    Unknown keys are not errors: each gets one warning. ``check_env`` also checks that ``env.name`` is a
    registered gymnasium id (this imports gymnasium). ``spec`` is not modified.
    """
    _validated(spec, spec_file, check_env, warn=True)


def get_spec_models(spec: dict[str, Any], spec_file: str | None = None) -> SpecModels:
    """The typed sections of a valid spec (see the module docstring for the ``nets`` keys)."""
    _, check = _validated(spec, spec_file, check_env=False, warn=False)
    assert check.algorithm and check.memory and check.env and check.meta
    nets = {k: v for k, v in check.nets.items() if v is not None}
    return SpecModels(check.algorithm, check.memory, nets, check.env, check.meta)


def _cast_value(raw: Any, parsed: Any) -> Any:
    if isinstance(parsed, bool):
        return raw
    if isinstance(parsed, int) and isinstance(raw, float):
        return parsed
    if isinstance(parsed, BaseModel) and isinstance(raw, dict):
        _cast_model(raw, parsed, None)
    elif isinstance(parsed, list | tuple) and isinstance(raw, list) and len(raw) == len(parsed):
        return [_cast_value(r, p) for r, p in zip(raw, parsed, strict=True)]
    return raw


def _cast_model(raw: dict[str, Any], parsed: BaseModel, origin: dict[str, str] | None) -> None:
    """Write integral floats given for int fields back as ints (``max_frame: 1e6`` -> 1000000)."""
    for field in type(parsed).model_fields:
        key = origin.get(field, field) if origin else field
        if key in raw:
            raw[key] = _cast_value(raw[key], getattr(parsed, field))


# --------------------------------------------------------------------------------------------------------------
# the pipeline


def get_spec(
    spec_file: str | None = None, spec_name: str | None = None, sets: list[str] | None = None
) -> dict:
    """Load, complete and validate one spec (§2.1). ``sets`` are ``KEY=VALUE`` items for ``${KEY}``."""
    spec_file = str(spec_file or DEFAULT_SPEC_FILE)
    spec_name = spec_name or DEFAULT_SPEC_NAME
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
    env_ids = [value for key, value in map(_split_set, sets or []) if key == "env"]
    spec["name"] = f"{spec_name}_{env_short_name(env_ids[-1])}" if env_ids else spec_name
    _add_runtime_meta(spec)
    normal, check = _validated(spec, spec_file, check_env=True, warn=True)
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
    """The tiny-run overrides of §2.10, used by the test-suite."""
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
    elif not meta.get("predir"):
        meta["experiment_ts"] = meta.get("experiment_ts") or _timestamp()
        meta["predir"] = paths.predir(spec["name"], meta["experiment_ts"])
    meta["prepath"] = paths.prepath(spec, unit)
    for sub in paths.SUBDIRS:
        meta[f"{sub}_prepath"] = paths.prepath(spec, unit, sub)
        Path(meta["predir"], sub).mkdir(parents=True, exist_ok=True)
    return spec


def save_spec(spec: dict[str, Any], unit: Literal["experiment", "trial"] = "trial") -> str:
    """Write the spec as JSON: ``{predir}/{name}_spec.json`` for ``experiment`` (the run/experiment spec) or
    ``{predir}/{name}_t{t}_spec.json`` for ``trial``. Returns the path. Session specs are never written."""
    if unit not in ("experiment", "trial"):
        raise ValueError(f"save_spec unit must be 'experiment' or 'trial', got {unit!r}")
    path = f"{paths.prepath(spec, unit)}_spec.json"
    io_util.write_json(path, spec)
    return path

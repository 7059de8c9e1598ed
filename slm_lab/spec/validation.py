"""Spec validation: check a spec against the typed schema and report every problem as one readable line.

Public API (re-exported by ``slm_lab.spec.loader``)
- ``validate_spec(spec, spec_file=None, check_env=True) -> None``: raise ``SpecError`` listing every problem as
  ``<dotted.key>: <problem>``; warn once per unknown key. Does not modify ``spec``.
- ``get_spec_models(spec, spec_file=None) -> SpecModels``: the typed sections ``(algorithm, memory, nets, env,
  meta)``. ``nets`` maps net names to models: for the actor-critic family ``{"net": actor, "critic_net": critic}``
  (each prefix-routed, see ``schema.route_net_spec``; only ``"net"``, actor-routed, when ``shared``), otherwise
  ``{"net": ...}`` plus ``"critic_net"`` when ``agent.critic_net`` is given.

The loader also uses ``_validated`` (normalise a copy, check, warn, raise), ``_cast_model`` (integral floats
back to ints) and ``_canonical_number``. Never imports the loader; imports gymnasium only to check an env id.
"""

import copy
import difflib
import math
import types
from typing import Annotated, Any, NamedTuple, Union, get_args, get_origin

from loguru import logger
from pydantic import BaseModel, ValidationError

from slm_lab.errors import SpecError
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
from slm_lab.spec.search_space import apply_config, parse_search, probe_config, search_errors

__all__ = ["SpecModels", "get_spec_models", "unknown_keys", "unknown_searched_keys", "validate_spec"]

_META_DEFAULTS = ("distributed", "log_frequency", "eval_frequency", "rigorous_eval", "max_trial")


class SpecModels(NamedTuple):
    """Typed views of a spec's sections."""

    algorithm: AlgorithmSpec
    memory: MemorySpec
    nets: dict[str, NetSpec]
    env: EnvSpec
    meta: MetaSpec


# --------------------------------------------------------------------------------------------------------------
# normalising


def _canonical_number(value: str) -> str | None:
    """``3e6`` -> ``3000000``, ``0.5`` -> ``0.5``; None when the value is not a finite number."""
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return str(int(number)) if number.is_integer() else str(number)


def _none_is_a_value(annotation: Any) -> bool:
    """Whether a field of this type takes None as one of its values (``lam: Fraction | None``: no GAE)."""
    if annotation is type(None) or annotation is Any:
        return True
    origin = get_origin(annotation)
    if origin is Annotated:
        return _none_is_a_value(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return any(_none_is_a_value(arg) for arg in get_args(annotation))
    return False


def _drop_nulls(node: Any, model: type[BaseModel] | None = None) -> None:
    """Remove the keys whose value is null from ``node`` and the dicts under it, in place: an explicit null means
    "not set", so the key takes its default (or is reported missing), also a key the algorithm does not read. A null
    stays where the section's ``model`` has a field that takes None as a value (``lam: null`` chooses n-step
    returns), and inside lists (a null in ``out_layer_activation`` is a tail without activation)."""
    if isinstance(node, dict):
        fields = model.model_fields if model is not None else {}
        for key in [k for k, v in node.items() if v is None]:
            field = fields.get(key)
            if field is None or not _none_is_a_value(field.annotation):
                del node[key]
        for key, value in node.items():
            field = fields.get(key)
            if field is None:
                _drop_nulls(value)
            elif (sub_model := _model_in(field.annotation)) is not None:
                _drop_nulls(value, sub_model)
            # any other field holds free-form data (a TorchArc ``arc``, where ``ReLU: null`` has no kwargs): as given
    elif isinstance(node, list):
        for item in node:
            _drop_nulls(item)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The spec model a field holds (``VarSchedulerSpec | None`` -> VarSchedulerSpec), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Annotated, Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _section_model(section: Any, key: str, table: dict[str, type[BaseModel]]) -> type[BaseModel] | None:
    name = section.get(key) if isinstance(section, dict) else None
    return table.get(name) if isinstance(name, str) else None


def _drop_spec_nulls(spec: dict[str, Any]) -> None:
    """``_drop_nulls`` over the agent, env and meta sections, each with its model."""
    agent = spec.get("agent")
    if isinstance(agent, dict):
        models = {
            "algorithm": _section_model(agent.get("algorithm"), "name", ALGORITHM_SPECS),
            "memory": _section_model(agent.get("memory"), "name", MEMORY_SPECS),
            "net": _section_model(agent.get("net"), "type", NET_SPECS),
            "critic_net": _section_model(agent.get("critic_net"), "type", NET_SPECS),
        }
        for key in [k for k, v in agent.items() if v is None]:
            del agent[key]
        for key, value in agent.items():
            _drop_nulls(value, models.get(key))
    _drop_nulls(spec.get("env"), EnvSpec)
    _drop_nulls(spec.get("meta"), MetaSpec)


def _normalize(spec: dict[str, Any]) -> list[str]:
    """Drop null keys (an explicit null means "not set", for any key, also one the algorithm does not read), rename
    algorithm key aliases (D9) and fill the meta defaults, in place. Returns alias-conflict errors."""
    errors = []
    _drop_spec_nulls(spec)
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
    bounds = {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most")}
    bounds |= {"greater_than": ("gt", "more than"), "less_than": ("lt", "less than")}
    if kind in bounds:
        key, words = bounds[kind]
        return f"{words} {ctx.get(key)}"
    if kind == "finite_number":
        return "a finite number"
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
    if algo_cls is not None and not algo_cls.USES_NET:
        return  # the net section is not read (the Random baseline's is typically empty)
    net = agent.get("net")
    if isinstance(net, dict):
        net_cls = _lookup(net, "type", NET_SPECS, "agent.net", "net type", check)
        routes = algo_cls is not None and algo_cls.ROUTES_NET_KEYS
        if net_cls is not None and routes:
            assert algo_cls is not None
            check.unknown += _unknown_keys(net, net_cls, "agent.net", routed=True)
            for key in algo_cls.REQUIRED_NET_KEYS:
                if key == "shared" and net.get("type") == "TorchArcNet":
                    continue  # TorchArcNet defaults shared to false
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
        for key in algo_cls.FORBIDDEN_NET_KEYS if algo_cls is not None else ():
            if key in net:
                name = agent["algorithm"]["name"]
                check.errors.append(
                    f"agent.net.{key}: {name} has no target net, so it takes no {key}; use DQN for a target net"
                )
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
    """An error line when ``env_id`` is neither a registered gymnasium id nor an importable ``module:Class`` entry
    point (Playground ids pass: they are checked when the env is made)."""
    if env_id.startswith("playground/"):
        return None
    if ":" in env_id:
        from slm_lab.env.registration import entry_point_error

        return entry_point_error(env_id)
    import gymnasium as gym

    from slm_lab.env.registration import register_ale_if_installed

    registry = gym.envs.registry
    # ale-py registers the ALE/ ids and the legacy ones without the prefix (Pong-v0, PongNoFrameskip-v4)
    if env_id.startswith("ALE/") or env_id not in registry:
        installed = register_ale_if_installed()
        if not installed and env_id.startswith("ALE/"):
            return None  # cannot check without ale-py; making the env reports it
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
    search_problems = search_errors(spec)
    check.errors += search_problems or unknown_searched_keys(spec, check.unknown)
    check.errors = list(dict.fromkeys(check.errors))
    return check


def unknown_searched_keys(spec: dict[str, Any], known_unknown: list[str] | None = None) -> list[str]:
    """An error for each searched key that no spec model knows (a typo would search nothing): the spec with the
    search's first point written in, missing parents created, has unknown keys the spec itself has not
    (``known_unknown``, computed when not given)."""
    if not isinstance(spec.get("search"), dict):
        return []
    if known_unknown is None:
        known_unknown = unknown_keys(spec)
    params, _ = parse_search(spec["search"])
    try:
        probe = apply_config(spec, probe_config(params))
    except SpecError:
        return []  # search_errors reported the path
    _normalize(probe)
    new = set(_check(probe, check_env=False).unknown) - set(known_unknown)
    return [
        f"search.{p.key}: {p.path} is not a spec key; searching it would change nothing"
        for p in params
        if p.path in new or any(p.path.startswith(f"{key}.") for key in new)
    ]


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
    """Check a spec (D24): raise ``SpecError`` listing every problem as ``<dotted.key>: <problem>``.

    Unknown keys are not errors: each gets one warning. ``check_env`` also checks that ``env.name`` is a
    registered gymnasium id (this imports gymnasium). ``spec`` is not modified.
    """
    _validated(spec, spec_file, check_env, warn=True)


def unknown_keys(spec: dict[str, Any]) -> list[str]:
    """The dotted keys of ``spec`` that no spec model knows (each is warned about and ignored)."""
    spec = copy.deepcopy(spec)
    _normalize(spec)
    return list(dict.fromkeys(_check(spec, check_env=False).unknown))


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

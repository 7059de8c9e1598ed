"""The per-section checks of a spec: each section parsed by its model, errors as ``<dotted.key>: <problem>`` lines,
unknown keys collected.

``_Check`` gathers the result of checking one spec; ``_check_agent`` fills it for the ``agent`` section (algorithm,
memory and nets, with their cross-section rules), ``_unknown_keys`` lists the keys a model does not know, and
``_format_errors`` turns a pydantic ``ValidationError`` into readable lines. The spec-wide check that calls these is
``slm_lab.spec.validation``.
"""

from typing import Any

from pydantic import BaseModel, ValidationError

from slm_lab.spec.normalize import _canonical_number
from slm_lab.spec.schema import (
    AGENT_KEYS,
    ALGORITHM_SPECS,
    MEMORY_SPECS,
    NET_SPECS,
    AgentSpec,
    AlgorithmSpec,
    EnvSpec,
    MemorySpec,
    MetaSpec,
    NetSpec,
    SpecModel,
    route_net_spec_with_origins,
    unrouted_key,
)


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

"""Spec validation: check a spec against the typed schema and report every problem as one readable line.

Public API (re-exported by ``slm_lab.spec.loader``)
- ``validate_spec(spec, spec_file=None, check_env=True) -> None``: raise ``SpecError`` listing every problem as
  ``<dotted.key>: <problem>``; warn once per unknown key. Does not modify ``spec``.
- ``get_spec_models(spec, spec_file=None) -> SpecModels``: the typed sections ``(algorithm, memory, nets, env,
  meta)``. ``nets`` maps net names to models: for the actor-critic family ``{"net": actor, "critic_net": critic}``
  (each prefix-routed, see ``schema.route_net_spec``; only ``"net"``, actor-routed, when ``shared``), otherwise
  ``{"net": ...}`` plus ``"critic_net"`` when ``agent.critic_net`` is given.

This module holds the spec-wide checks: ``_check`` (top-level keys, each section, the env id, the search block) and
``_validated`` (normalise a copy, check, warn, raise), which the loader also uses. Normalising (null keys, aliases,
meta defaults, int casts) is in ``slm_lab.spec.normalize``; the per-section checks and the error lines are in
``slm_lab.spec.section_checks``. Never imports the loader; imports gymnasium only to check an env id.
"""

import copy
import difflib
from typing import Any, NamedTuple

from loguru import logger

from slm_lab.errors import SpecError
from slm_lab.spec.normalize import _normalize
from slm_lab.spec.schema import TOP_LEVEL_KEYS, AlgorithmSpec, EnvSpec, LabSpec, MemorySpec, MetaSpec, NetSpec
from slm_lab.spec.search_space import apply_config, parse_search, probe_config, search_errors
from slm_lab.spec.section_checks import _Check, _check_agent, _unknown_keys

__all__ = ["SpecModels", "get_spec_models", "unknown_keys", "unknown_searched_keys", "validate_spec"]


class SpecModels(NamedTuple):
    """Typed views of a spec's sections."""

    algorithm: AlgorithmSpec
    memory: MemorySpec
    nets: dict[str, NetSpec]
    env: EnvSpec
    meta: MetaSpec


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

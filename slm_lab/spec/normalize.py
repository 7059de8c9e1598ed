"""Normalising a spec before it is checked, and writing the checked values back.

``_normalize`` drops null keys (an explicit null means "not set"), renames algorithm key aliases (D9) and fills the
meta defaults, in place. ``_cast_model`` writes integral floats given for int fields back as ints once a section has
been parsed. ``_canonical_number`` gives the canonical text of a number (also used for ``-s`` substitution).
"""

import math
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from slm_lab.spec.schema import (
    ALGORITHM_KEY_ALIASES,
    ALGORITHM_SPECS,
    MEMORY_SPECS,
    NET_SPECS,
    EnvSpec,
    MetaSpec,
)

_META_DEFAULTS = ("distributed", "log_frequency", "eval_frequency", "rigorous_eval", "max_trial")


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

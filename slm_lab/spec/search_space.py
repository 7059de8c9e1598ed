"""The spec's ``search`` block: its parameters, the Ray Tune param space, and sampled values written
back into a spec.

A search block is nested (``{"agent": {"algorithm": {"gamma__uniform": [0.95, 0.999]}}}``), flat with dotted keys
(``{"agent.net.optim_spec.lr__loguniform": [1e-4, 1e-3]}``) or a mix of both. Every leaf key is
``<dotted.path>__<sampler>`` and its value is a list: ``choice`` takes the whole list as its one argument, every other
sampler takes the items as positional arguments.

Parsing and checking need no Ray, so specs are checked at load time; only ``param_space`` imports ``ray.tune``.
"""

import copy
import json
import math
from dataclasses import dataclass
from typing import Any

from slm_lab.errors import SpecError
from slm_lab.spec.schema import ALGORITHM_KEY_ALIASES

__all__ = [
    "ASHA_KEYS",
    "SAMPLERS",
    "SearchParam",
    "apply_config",
    "asha_kwargs",
    "decode_config",
    "param_space",
    "parse_search",
    "probe_config",
    "probe_configs",
    "search_errors",
]

# sampler -> (min, max) number of positional arguments; choice takes the whole list as one argument
SAMPLERS: dict[str, tuple[int, int]] = {
    "choice": (1, 1),
    "uniform": (2, 2),
    "quniform": (3, 3),
    "loguniform": (2, 3),
    "qloguniform": (3, 4),
    "randn": (2, 2),
    "qrandn": (3, 3),
    "randint": (2, 2),
    "qrandint": (3, 3),
    "lograndint": (2, 3),
    "qlograndint": (3, 4),
}
_SIGNATURES = {
    "uniform": "[lo, hi]",
    "quniform": "[lo, hi, q]",
    "loguniform": "[lo, hi] or [lo, hi, base]",
    "qloguniform": "[lo, hi, q] or [lo, hi, q, base]",
    "randn": "[mean, sd]",
    "qrandn": "[mean, sd, q]",
    "randint": "[lo, hi] (hi exclusive)",
    "qrandint": "[lo, hi, q]",
    "lograndint": "[lo, hi] or [lo, hi, base]",
    "qlograndint": "[lo, hi, q] or [lo, hi, q, base]",
}
# every keyword argument of Ray Tune's AsyncHyperBandScheduler (a test checks them against its signature); the lab
# gives the first four (asha_kwargs), which meta.search_scheduler may override like the rest
ASHA_KEYS = (
    "time_attr",
    "metric",
    "mode",
    "max_t",
    "grace_period",
    "reduction_factor",
    "brackets",
    "stop_last_trials",
)
# what each trial reports to the scheduler: its frame and its total_reward_ma at every checkpoint; Ray adds the rest
ASHA_TIME_ATTRS = ("frame", "training_iteration", "time_total_s")
ASHA_METRICS = ("total_reward_ma",)
# meta keys a search cannot vary: the runtime keys the lab sets, and the keys that configure the search itself
_UNSEARCHABLE_META = (
    "experiment", "trial", "session", "cuda_offset", "resume", "experiment_ts", "git_sha", "predir", "prepath",
    "info_prepath", "graph_prepath", "log_prepath", "model_prepath",
    "max_trial", "search_resources", "search_scheduler", "search_max_failures",
)  # fmt: skip


def asha_kwargs(scheduler: dict[str, Any] | None, max_frame: int) -> dict[str, Any]:
    """AsyncHyperBandScheduler's keyword arguments: the lab's (time in frames, total_reward_ma maximised, up to
    ``env.max_frame``) with ``meta.search_scheduler`` over them."""
    return {
        "time_attr": "frame",
        "metric": ASHA_METRICS[0],
        "mode": "max",
        "max_t": max_frame,
        **(scheduler or {}),
    }


def _asha_error(key: str, value: Any) -> str | None:
    where = f"meta.search_scheduler.{key}"
    if key not in ASHA_KEYS:
        return f"{where}: unknown ASHA option; use {', '.join(ASHA_KEYS)}"
    if key == "time_attr" and value not in ASHA_TIME_ATTRS:
        return f"{where}: a trial reports time as {', '.join(ASHA_TIME_ATTRS)}; got {value!r}"
    if key == "metric" and value not in ASHA_METRICS:
        return f"{where}: a trial reports {', '.join(ASHA_METRICS)} to the scheduler; got {value!r}"
    if key == "mode" and value not in ("max", "min"):
        return f"{where}: expected 'max' or 'min', got {value!r}"
    if key == "stop_last_trials" and not isinstance(value, bool):
        return f"{where}: expected true or false, got {value!r}"
    if key in ("max_t", "grace_period", "reduction_factor", "brackets") and not (
        _number(value) and value > 0
    ):
        return f"{where}: expected a number > 0, got {value!r}"
    return None


@dataclass(frozen=True)
class SearchParam:
    """One searched value: write ``sampler(*args)`` at the dotted ``path``; for ``choice``, ``args`` are the
    choices and the value is ``choice(list(args))``."""

    path: str
    sampler: str
    args: tuple[Any, ...]

    @property
    def key(self) -> str:
        """The search-block key this came from, as written in the flat form."""
        return f"{self.path}__{self.sampler}"


def _flatten(block: dict[str, Any], prefix: str, out: dict[str, Any], errors: list[str]) -> None:
    for key, value in block.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if "__" not in str(key) and isinstance(value, dict):
            _flatten(value, full, out, errors)
        elif full in out:
            errors.append(f"search.{full}: given twice (nested and dotted)")
        else:
            out[full] = value


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _check_args(key: str, sampler: str, args: list[Any]) -> str | None:
    """The problem with a sampler's arguments, or None."""
    if sampler == "choice":
        return None if args else f"search.{key}: choice needs a non-empty list of values"
    lo_n, hi_n = SAMPLERS[sampler]
    if not lo_n <= len(args) <= hi_n or not all(_number(a) for a in args):
        return f"search.{key}: {sampler} takes a list of numbers {_SIGNATURES[sampler]}, got {args!r}"
    if sampler.endswith(("randn",)):
        if args[1] <= 0:
            return f"search.{key}: the standard deviation must be > 0, got {args[1]!r}"
    elif args[0] >= args[1]:
        return f"search.{key}: the lower bound must be below the upper bound, got {args[0]!r} >= {args[1]!r}"
    if "log" in sampler and args[0] <= 0:
        return f"search.{key}: {sampler} needs a lower bound > 0, got {args[0]!r}"
    if sampler.startswith("q") and args[2] <= 0:
        return f"search.{key}: the step q must be > 0, got {args[2]!r}"
    bounds = args[:3] if sampler.startswith("q") else args[:2]
    if "int" in sampler and not all(float(a).is_integer() for a in bounds):
        return f"search.{key}: {sampler} takes integers, got {args!r}"
    return None


def parse_search(block: Any) -> tuple[list[SearchParam], list[str]]:
    """The parameters of a search block and the error lines (each naming its ``search.<key>``)."""
    if not isinstance(block, dict):
        return [], [
            f"search: expected a dict of '<dotted.path>__<sampler>': [args], got {type(block).__name__}"
        ]
    flat: dict[str, Any] = {}
    errors: list[str] = []
    _flatten(block, "", flat, errors)
    params = []
    for key, value in flat.items():
        path, sep, sampler = key.rpartition("__")
        if not sep or not path:
            errors.append(
                f"search.{key}: a search key must be '<dotted.path>__<sampler>', "
                f"with sampler one of {', '.join(SAMPLERS)}"
            )
            continue
        if sampler == "grid_search":
            errors.append(f"search.{key}: grid_search is not supported (Optuna samples); use {path}__choice")
            continue
        if sampler == "normal":
            errors.append(f"search.{key}: there is no 'normal' sampler; use {path}__randn: [mean, sd]")
            continue
        if sampler not in SAMPLERS:
            errors.append(f"search.{key}: unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
            continue
        if not isinstance(value, list):
            errors.append(f"search.{key}: the arguments must be a list, got {value!r}")
            continue
        problem = _check_args(key, sampler, value)
        if problem:
            errors.append(problem)
            continue
        params.append(SearchParam(path, sampler, tuple(value)))
    paths = [p.path for p in params]
    errors += [
        f"search: {path} is searched more than once"
        for path in sorted({p for p in paths if paths.count(p) > 1})
    ]
    return params, errors


def _parent(spec: dict[str, Any], path: str, create: bool = False) -> tuple[Any, str | int]:
    """The container holding the last segment of ``path`` and that segment; KeyError names the part that cannot be
    reached. With ``create``, missing dicts below the top section are made on the way: a search may set
    ``agent.net.lr_scheduler_spec.gamma`` in a spec without a scheduler, and the sampled spec is validated as any."""
    node: Any = spec
    parts = path.split(".")
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, dict):
            child = node.get(part)
            if child is None and create and i > 0:
                child = node[part] = {}
            if isinstance(child, dict | list):
                node = child
                continue
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        raise KeyError(".".join(parts[: i + 1]))
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise KeyError(path)
        return node, int(last)
    if not isinstance(node, dict):
        raise KeyError(".".join(parts[:-1]))
    return node, last


def search_errors(spec: dict[str, Any]) -> list[str]:
    """Load-time checks of ``search`` and ``meta.search_scheduler``: samplers, arguments, and that every searched
    path lands in an existing section of the spec (a typo would otherwise search nothing)."""
    errors: list[str] = []
    if spec.get("search") is not None:
        params, errors = parse_search(spec["search"])
        for param in params:
            section, _, rest = param.path.partition(".")
            if section not in ("agent", "env", "meta"):
                errors.append(f"search.{param.key}: only agent.*, env.* and meta.* keys can be searched")
                continue
            if section == "meta" and rest.split(".", 1)[0] in _UNSEARCHABLE_META:
                errors.append(
                    f"search.{param.key}: meta.{rest.split('.', 1)[0]} is set by the lab or configures the search "
                    "itself; it cannot be searched"
                )
                continue
            try:
                _parent(copy.deepcopy(spec), param.path, create=True)
            except KeyError as e:
                errors.append(f"search.{param.key}: {e.args[0]} is not in the spec")
    meta = spec.get("meta")
    scheduler = meta.get("search_scheduler") if isinstance(meta, dict) else None
    if isinstance(scheduler, dict):
        errors += [e for key, value in scheduler.items() if (e := _asha_error(key, value))]
    return errors


def _encoded(param: SearchParam) -> bool:
    """Whether a ``choice`` has values Optuna cannot store (lists, dicts); those travel as JSON strings."""
    return param.sampler == "choice" and not all(
        v is None or isinstance(v, bool | int | float | str) for v in param.args
    )


def param_space(params: list[SearchParam]) -> dict[str, Any]:
    """The Ray Tune param space ``{dotted.path: sampler domain}`` (imports ray.tune). A ``choice`` among lists or
    dicts (``hid_layers__choice: [[64], [64, 64]]``) samples their JSON texts; ``decode_config`` turns them back."""
    from ray import tune

    space = {}
    for p in params:
        fn = getattr(tune, p.sampler)
        try:
            if p.sampler == "choice":
                values = [json.dumps(v) for v in p.args] if _encoded(p) else list(p.args)
                space[p.path] = fn(values)
            else:
                space[p.path] = fn(*p.args)
        except (TypeError, ValueError) as e:
            raise SpecError(f"search.{p.key}: {e}") from None
    return space


def decode_config(params: list[SearchParam], config: dict[str, Any]) -> dict[str, Any]:
    """A sampled ``{dotted.path: value}`` with JSON-encoded choices decoded and numpy scalars made plain."""
    encoded = {p.path for p in params if _encoded(p)}
    out = {}
    for path, value in config.items():
        if path in encoded and isinstance(value, str):
            value = json.loads(value)
        out[path] = value.item() if hasattr(value, "item") else value
    return out


def probe_config(params: list[SearchParam]) -> dict[str, Any]:
    """One point of the space: every first choice, lower bound, and normal mean."""
    return {p.path: p.args[0] for p in params}


def _upper(param: SearchParam) -> Any:
    """The largest value a bounded numeric sampler can give (``randint``/``lograndint`` exclude ``hi``)."""
    hi = param.args[1]
    return hi - 1 if param.sampler in ("randint", "lograndint") else hi


def probe_configs(params: list[SearchParam]) -> list[tuple[str, dict[str, Any], SearchParam | None]]:
    """The points a search checks before it starts, each as ``(label, config, varied)``: ``probe_config`` (varied
    ``None``), then, one parameter at a time (``varied``), each other ``choice`` value and each bounded sampler's
    upper bound. Every value a ``choice`` can take, and both ends of every range, are thereby tried against the
    spec; the label names what the point varies."""
    base = probe_config(params)
    probes: list[tuple[str, dict[str, Any], SearchParam | None]] = [
        ("the first choice or lower bound of every search key", base, None)
    ]
    for p in params:
        others = list(p.args[1:]) if p.sampler == "choice" else [] if "randn" in p.sampler else [_upper(p)]
        for value in others:
            probes.append((f"search.{p.key} = {json.dumps(value)}", {**base, p.path: value}, p))
    return probes


def apply_config(spec: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``spec`` with each ``{dotted.path: value}`` of ``config`` written in and ``search`` removed.
    Keys of ``config`` that are not spec paths (e.g. ``trial_index``) must be removed by the caller."""
    spec = copy.deepcopy(spec)
    for path, value in config.items():
        head, _, last = path.rpartition(".")
        if (
            head == "agent.algorithm" and last in ALGORITHM_KEY_ALIASES
        ):  # the loaded spec has the canonical key
            path = f"{head}.{ALGORITHM_KEY_ALIASES[last]}"
        try:
            node, last = _parent(spec, path, create=True)
        except KeyError as e:
            raise SpecError(f"search: {e.args[0]} is not in the spec (from {path})") from None
        node[last] = value.item() if hasattr(value, "item") else value
    spec.pop("search", None)
    return spec

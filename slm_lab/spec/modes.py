"""The run modes and the spec overrides each one applies (``dev``, ``train``, ``search``, ``enjoy``, ``eval``,
``test``)."""

import copy
from typing import Any

from slm_lab.errors import SpecError
from slm_lab.spec.schema import ALGORITHM_SPECS, AlgorithmSpec

__all__ = ["MODES", "override_spec"]

MODES = ("dev", "train", "search", "enjoy", "eval", "test")


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

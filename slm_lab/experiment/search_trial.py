"""The trial side of a search: one lab ``Trial`` run inside a Ray worker, and what it reports back (D37, B2).

``_trainable`` is the function Ray Tune runs for each sampled point: it makes the worker look like a lab process
started by the driver, builds the trial's spec (``trial_spec``), runs the trial and reports its result through
``tune.report`` (under a scheduler, also every checkpoint's session mean). ``METRIC``, ``TRIAL_INDEX`` and ``NODE``
name the keys of a report, which the driver reads back.
"""

import contextlib
import math
import os
import sys
from typing import Any

import ray
from ray import tune

from slm_lab.experiment.control import Trial
from slm_lab.lib.io_util import to_jsonable
from slm_lab.lib.logger import setup_logging
from slm_lab.lib.paths import data_dir
from slm_lab.spec.loader import complete_spec, tick
from slm_lab.spec.search_space import apply_config, decode_config, parse_search

__all__ = ["METRIC", "NODE", "TRIAL_INDEX", "trial_spec"]

METRIC = "total_reward_ma"
TRIAL_INDEX = "trial_index"
NODE = "node_id"  # the Ray node a trial ran on, whose disk holds its files
# flags and settings a trial process needs from the driver; the workers of an attached cluster do not inherit the
# driver's environment, so they travel with the trainable
_LAB_ENV_VARS = (
    "LOG_LEVEL",
    "OPTIMIZE_PERF",
    "CUDA_OFFSET",
    "LOG_EXTRA",
    "lab_mode",
    "PY_ENV",
    "SLM_MAX_PARALLEL",
    "PYTHONPATH",
)


def trial_spec(spec: dict[str, Any], values: dict[str, Any], index: int) -> dict[str, Any]:
    """The spec of trial ``index``: the sampled ``{dotted.path: value}`` written in, validated, and ticked to that
    trial (its folders created). A sampled value the spec does not accept is a ``SpecError``."""
    out = complete_spec(apply_config(spec, values), warn=False)
    out["meta"]["trial"] = index - 1
    return tick(out, "trial")


def _lab_env(cpus: float) -> dict[str, Any]:
    """What a trial's worker needs of the driver's process; ``cpus`` is the trial's CPU share."""
    env = {k: os.environ[k] for k in _LAB_ENV_VARS if k in os.environ}
    env["SLM_DATA_DIR"] = str(data_dir().resolve())
    env["SLM_CPUS"] = str(max(1, int(cpus)))
    paths = [os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"env": env, "cwd": os.getcwd(), "sys_path": paths}


def _enter_worker(lab_env: dict[str, Any]) -> None:
    """Make a Ray worker process look like a lab process started by the driver: flags, data dir, import path."""
    os.environ.update(lab_env["env"])
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)  # the lab assigns GPUs itself
    for path in reversed(lab_env["sys_path"]):
        if os.path.isdir(path) and path not in sys.path:
            sys.path.insert(0, path)  # custom envs (``module:Class``) import as on the driver
    with contextlib.suppress(OSError):
        os.chdir(lab_env["cwd"])
    setup_logging()


def _result(
    index: int, node: str, frame: int, ma: float, trial_metrics: dict[str, Any] | None
) -> dict[str, Any]:
    """What a trial reports to Ray: the scheduler's time and metric (NaN reported as 0), the trial index,
    the node it runs on, and the trial's metrics and return curves, so the driver needs no file from that node."""
    out: dict[str, Any] = {
        "frame": int(frame),
        METRIC: 0.0 if math.isnan(ma) else float(ma),
        TRIAL_INDEX: index,
        NODE: node,
    }
    if trial_metrics is not None:
        local = trial_metrics["local"]
        out["trial"] = to_jsonable(
            {
                "scalar": trial_metrics["scalar"],
                "frames": local["frames"],
                "mean_returns": local["mean_returns"],
            }
        )
    return out


def _trainable(
    config: dict[str, Any], spec: dict[str, Any], lab_env: dict[str, Any], scheduled: bool
) -> None:
    """Run one trial of the search in this Ray worker and report its result (and, under a scheduler, every
    checkpoint's session mean)."""
    _enter_worker(lab_env)
    config = dict(config)
    index = int(config.pop(TRIAL_INDEX))
    params, _ = parse_search(spec["search"])
    tspec = trial_spec(spec, decode_config(params, config), index)

    max_frame = int(tspec["env"]["max_frame"])
    node = ray.get_runtime_context().get_node_id()

    def report(frame: int, ma: float, trial_metrics: dict[str, Any] | None) -> None:
        # not the last checkpoint: ASHA stops a trial that reaches max_t, which would cut its end-of-trial
        # analysis short; the final report below stands for it
        if frame < max_frame:
            tune.report(_result(index, node, frame, ma, trial_metrics))

    trial = Trial(tspec, "train", reporter=report if scheduled else None)
    scalar = trial.run()
    tune.report({**_result(index, node, max_frame, float(scalar[METRIC]), trial.metrics), "final": True})

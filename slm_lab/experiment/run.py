"""Run entry (contract §3.1): load the spec, apply the mode, check it builds, tick, save, run the Trial."""

import contextlib
from typing import Any

import torch
from loguru import logger

from slm_lab.agent import build_agent
from slm_lab.env import make_env
from slm_lab.errors import SpecError
from slm_lab.experiment.control import Trial
from slm_lab.lib.logger import add_file_sink, remove_sink
from slm_lab.spec.loader import save_spec, tick

__all__ = ["preflight", "run_trial"]


def preflight(spec: dict[str, Any], mode: str) -> None:
    """Build the env and the agent once on CPU, so that errors only a build can find (an action_pdtype the env's
    action space does not allow, an unknown optimizer, loss or activation, bad env kwargs) are reported before
    anything is written under data/. Also refuses spec features this version does not run."""
    meta = spec["meta"]
    if meta.get("distributed"):
        raise SpecError(
            f"meta.distributed: {meta['distributed']!r} is not supported in this version; use false"
        )
    if meta.get("rigorous_eval"):
        logger.warning(
            "meta.rigorous_eval: a separate evaluation env is not in this version; training returns are used"
        )
    env = make_env(spec)
    try:
        build_agent(spec, env, mode, torch.device("cpu"))
    finally:
        env.close()


def run_trial(spec: dict[str, Any], spec_file: str, spec_name: str, mode: str) -> dict[str, Any]:
    """Run one Trial of a loaded spec (``get_spec`` + ``override_spec``) in ``mode`` (dev or train); returns the
    trial scalars. ``spec_file``/``spec_name`` are only for the start line."""
    with contextlib.suppress(RuntimeError):  # already set
        torch.multiprocessing.set_start_method("spawn")
    preflight(spec, mode)
    tick(spec, "trial")
    save_spec(spec, "experiment")
    meta = spec["meta"]
    sink = add_file_sink(f"{meta['predir']}/log/{spec['name']}.log")
    try:
        logger.info(
            f"SLM-Lab: Running {spec_file} {spec_name} {mode} with {meta['max_session']} sessions"
            f" | output: {meta['prepath']}"
        )
        scalar = Trial(spec, mode).run()
        logger.info(f"Output: {meta['predir']}")
        return scalar
    finally:
        remove_sink(sink)

"""Run entry (contract §3.1): load the spec, apply the mode, check it builds, tick, save, run the Trial."""

import contextlib
from typing import Any

import pandas as pd
import torch
from loguru import logger

from slm_lab.agent import build_agent
from slm_lab.env import make_env
from slm_lab.errors import LabError, SpecError
from slm_lab.experiment.control import Trial
from slm_lab.lib.logger import add_file_sink, remove_sink
from slm_lab.lib.paths import resolve_predir
from slm_lab.spec.loader import complete_spec, save_spec, tick
from slm_lab.spec.search_space import apply_config, parse_search, probe_configs
from slm_lab.spec.validation import unknown_keys

__all__ = ["preflight", "preflight_search", "restore_experiment", "run_experiment", "run_trial"]


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


def preflight_search(spec: dict[str, Any], spec_file: str, spec_name: str) -> None:
    """Search-mode checks before anything is written: a ``search`` block and ``meta.max_trial`` are given, every
    searched key is one the spec knows (a typo would search nothing), and the spec stays valid at every choice and
    at both ends of every range (``probe_configs``): each such point validates, and the points that differ by a
    ``choice`` also build their env and agent once."""
    where = f"{spec_file} {spec_name}"
    if not spec.get("search"):
        raise SpecError(
            f"{where}: search mode needs a 'search' block (e.g. agent.algorithm.gamma__uniform: [0.9, 0.999])"
        )
    if spec["meta"].get("max_trial") is None:
        raise SpecError(f"{where}: meta.max_trial: search mode needs the number of trials to sample")
    params, _ = parse_search(spec["search"])  # its errors were reported at load
    for label, config, varied in probe_configs(params):
        probe = apply_config(spec, config)
        if varied is None:
            unknown = sorted(set(unknown_keys(probe)) - set(unknown_keys(spec)))
            if unknown:
                raise SpecError(
                    f"{where}: search: {', '.join(unknown)} is not a spec key; searching it would change nothing"
                )
        try:
            sampled = complete_spec(probe, spec_file, warn=False)
            if varied is None or varied.sampler == "choice":
                preflight(sampled, "train")
        except SpecError as e:
            raise SpecError(f"{where}: with {label}, the spec is invalid: {e}") from None
        except Exception as e:  # a build error of a sampled value (bad env kwargs, shapes)
            raise SpecError(
                f"{where}: with {label}, the agent or env does not build: {type(e).__name__}: {e}"
            ) from None


def _search_imports(ray_address: str | None) -> Any:
    """The search module, imported after the Ray auth mode is settled (Ray reads it once, at import)."""
    with contextlib.suppress(RuntimeError):  # already set
        torch.multiprocessing.set_start_method("spawn")
    from slm_lab.experiment.ray_cluster import prepare_attach

    prepare_attach(ray_address)
    from slm_lab.experiment import search

    return search


def run_experiment(
    spec: dict[str, Any], spec_file: str, spec_name: str, ray_address: str | None = None, keep: int = 3
) -> pd.DataFrame:
    """Run a search (§3.5) of a loaded spec. Returns the experiment df."""
    preflight_search(spec, spec_file, spec_name)
    search = _search_imports(ray_address)
    tick(spec, "experiment")
    experiment = search.Experiment(spec, ray_address=ray_address, keep=keep)
    return _run_experiment(experiment, f"{spec_file} {spec_name} search")


def _run_experiment(experiment: Any, what: str, note: str = "") -> pd.DataFrame:
    meta = experiment.spec["meta"]
    logger.info(
        f"SLM-Lab: Running {what} with {meta['max_session']} sessions | output: {meta['prepath']}{note}"
    )
    df = experiment.run()
    logger.info(f"Output: {meta['predir']}")
    return df


def restore_experiment(target: str, name: str, ray_address: str | None = None, keep: int = 3) -> pd.DataFrame:
    """Continue an interrupted search (``search@latest`` or ``search@FOLDER``) from the experiment spec and the
    Tune state saved in its folder: finished trials keep their results, the others run. ``name`` (the run name)
    finds the newest folder for ``latest``. Returns the experiment df."""
    try:
        predir = resolve_predir(target, name)
    except FileNotFoundError as e:
        raise LabError(f"search@{target}: {e}") from None
    search = _search_imports(ray_address)
    spec = search.load_experiment_spec(predir)
    experiment = search.Experiment(spec, ray_address=ray_address, keep=keep, restore=True)
    note = f" (restoring the search in {spec['meta']['predir']})"
    return _run_experiment(experiment, f"{spec['name']} search@{target}", note)

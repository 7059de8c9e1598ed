"""Run entry: load the spec, apply the mode, check it builds, tick, save, run the Trial."""

import contextlib
import copy
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from loguru import logger

from slm_lab.agent import build_agent
from slm_lab.env import make_env
from slm_lab.errors import CheckpointError, Interrupted, LabError, SpecError
from slm_lab.experiment.control import Session, Trial
from slm_lab.lib import paths
from slm_lab.lib.io_util import load_torch_file, read_json
from slm_lab.lib.logger import add_file_sink, remove_sink
from slm_lab.lib.paths import resolve_predir
from slm_lab.spec.bounds import check_env_copies, check_memory_and_nets
from slm_lab.spec.loader import claim_predir, complete_spec, save_spec, tick
from slm_lab.spec.search_space import apply_config, parse_search, probe_configs
from slm_lab.spec.validation import unknown_searched_keys

__all__ = [
    "enjoy_session",
    "preflight",
    "preflight_search",
    "restore_experiment",
    "resume_trial",
    "run_enjoy",
    "run_experiment",
    "run_trial",
]


def preflight(spec: dict[str, Any], mode: str) -> None:
    """Build the env and the agent once on CPU, so that errors only a build can find (an action_pdtype the env's
    action space does not allow, an unknown optimizer, loss or activation, bad env kwargs) are reported before
    anything is written under data/; env copies, memories and nets that cannot fit in memory are refused before
    they are allocated. Also refuses spec features this version does not run."""
    meta = spec["meta"]
    if meta.get("distributed"):
        raise SpecError(
            f"meta.distributed: {meta['distributed']!r} is not supported in this version; use false"
        )
    check_env_copies(spec["env"])
    env = make_env(spec)
    try:
        space = env.observation_space
        check_memory_and_nets(spec, space.shape or (), getattr(space.dtype, "itemsize", 8) or 8)
        build_agent(spec, env, mode, torch.device("cpu"))
    finally:
        env.close()


def run_trial(spec: dict[str, Any], spec_file: str, spec_name: str, mode: str) -> dict[str, Any]:
    """Run one Trial of a loaded spec (``get_spec`` + ``override_spec``) in ``mode`` (dev or train); returns the
    trial scalars. ``spec_file``/``spec_name`` are only for the start line."""
    with contextlib.suppress(RuntimeError):  # already set
        torch.multiprocessing.set_start_method("spawn")
    preflight(spec, mode)
    claim_predir(spec)
    tick(spec, "trial")
    save_spec(spec, "experiment")
    meta = spec["meta"]
    sink = add_file_sink(f"{meta['predir']}/log/{spec['name']}.log")
    try:
        logger.info(
            f"SLM-Lab: Running {spec_file} {spec_name} {mode} with {meta['max_session']} sessions"
            f" | output: {meta['prepath']}"
        )
        return _run_trial(spec, mode)
    finally:
        remove_sink(sink)


def _run_trial(spec: dict[str, Any], mode: str) -> dict[str, Any]:
    meta = spec["meta"]
    try:
        scalar = Trial(spec, mode).run()
    except (Interrupted, KeyboardInterrupt):
        logger.warning(
            f"Interrupted. The state is saved at the last step; continue with: "
            f"slm-lab run train@{meta['predir']}"
        )
        raise
    logger.info(f"Output: {meta['predir']}")
    return scalar


def _rebase(spec: dict[str, Any], predir: Path, unit: paths.Unit) -> None:
    """Point the spec's prepaths at ``predir`` (the folder may have moved since it was written)."""
    meta = spec["meta"]
    meta["predir"] = str(predir)
    meta["prepath"] = paths.prepath(spec, unit)
    for sub in paths.SUBDIRS:
        meta[f"{sub}_prepath"] = paths.prepath(spec, unit, sub)
        (predir / sub).mkdir(parents=True, exist_ok=True)


def _folder_name(predir: Path) -> str:
    """The run name of a ``{name}_{ts}`` folder."""
    m = re.match(rf"^(.+)_({paths.TS_PATTERN})$", predir.name)
    if m is None:
        raise LabError(f"{predir} is not a run folder: its name is not {{spec name}}_{{YYYY_MM_DD_HHMMSS}}")
    return m.group(1)


def _read_spec_file(path: Path) -> dict[str, Any]:
    try:
        spec = read_json(path)
    except FileNotFoundError:
        raise LabError(f"spec file not found: {path}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise LabError(f"cannot read the saved spec {path}: {e}") from None
    if not isinstance(spec, dict) or not {"agent", "env", "meta", "name"} <= set(spec):
        raise LabError(f"{path} is not a saved lab spec (it needs agent, env, meta and name)")
    return spec


def _saved_mode(spec: dict[str, Any]) -> str:
    """The mode the interrupted run was in (dev or train), read from its first session's state; train if no
    session saved one yet."""
    for s in range(int(spec["meta"]["max_session"])):
        path = Path(f"{spec['meta']['predir']}/model/{spec['name']}_t{spec['meta']['trial']}_s{s}_state.pt")
        if path.exists():
            mode = load_torch_file(path, map_location="cpu").get("mode")
            return mode if mode in ("dev", "train") else "train"
    return "train"


def resume_trial(target: str, name: str) -> dict[str, Any]:
    """``train@latest`` / ``train@FOLDER``: continue the trial of a train or dev run in its own folder, each
    session from its saved state (→D10). ``name`` (the run name) finds the newest folder for ``latest``.
    Returns the trial scalars."""
    with contextlib.suppress(RuntimeError):  # already set
        torch.multiprocessing.set_start_method("spawn")
    try:
        predir = resolve_predir(target, name)
    except FileNotFoundError as e:
        raise LabError(f"train@{target}: {e}") from None
    spec_path = predir / f"{_folder_name(predir)}_spec.json"
    if not spec_path.exists():
        raise LabError(f"train@{target}: {spec_path} not found; is {predir} a run folder?")
    spec = _read_spec_file(spec_path)
    meta = spec["meta"]
    if int(meta.get("trial", -1)) < 0:
        raise LabError(f"train@{target}: {predir} is a search; continue it with search@{target}")
    meta["resume"] = True
    _rebase(spec, predir, "trial")
    mode = _saved_mode(spec)
    model = Path(meta["model_prepath"]).parent
    saved = sorted(model.glob(f"{spec['name']}_t{meta['trial']}_s*_state.pt*"))
    sink = add_file_sink(f"{meta['predir']}/log/{spec['name']}.log")
    try:
        logger.info(
            f"SLM-Lab: Resuming {spec['name']} train@{target} ({mode}) with {meta['max_session']} sessions"
            f" | output: {meta['prepath']}"
        )
        if not saved:
            logger.warning(f"No session of {predir} saved its state yet; the sessions start from frame 0")
        return _run_trial(spec, mode)
    finally:
        remove_sink(sink)


def best_session(spec: dict[str, Any], predir: Path) -> int:
    """The session of the trial with the highest ``total_reward_ma`` in its scalar train metrics; 0 if none
    has metrics."""
    prename = f"{spec['name']}_t{spec['meta']['trial']}"
    pattern = re.compile(rf"^{re.escape(prename)}_s(\d+)_session_metrics_scalar_train\.json$")
    best, best_ma = 0, -float("inf")
    for path in sorted((predir / "info").glob(f"{prename}_s*_session_metrics_scalar_train.json")):
        m = pattern.match(path.name)
        if m is None:
            continue
        try:
            ma = float(read_json(path).get("total_reward_ma", float("nan")))
        except (OSError, ValueError, AttributeError):
            continue
        if ma > best_ma:  # NaN never wins
            best, best_ma = int(m.group(1)), ma
    return best


def run_enjoy(spec_file: str, mode: str = "enjoy") -> dict[str, Any]:
    """``enjoy@SPEC`` / ``eval@SPEC``: replay the ckpt-best of the trial's best session, with the evaluation
    policy and the saved normaliser statistics frozen, until max_frame or Ctrl-C (→D11). Everything is written
    under ``{predir}/enjoy/``; the run's own files are only read. Returns the session metrics."""
    with contextlib.suppress(RuntimeError):
        torch.multiprocessing.set_start_method("spawn")
    session = enjoy_session(spec_file, mode)
    meta = session.spec["meta"]
    logger.info(
        f"SLM-Lab: {mode} of {session.spec['name']} trial {meta['trial']} session {session.index} (ckpt-best) "
        f"for {session.max_frame} frames | output: {meta['predir']}"
    )
    return session.run()  # Ctrl-C ends the replay early, with its files written


def enjoy_session(spec_file: str, mode: str = "enjoy") -> Session:
    """The Session of an ``enjoy@SPEC`` replay, built under ``{predir}/enjoy/`` with the ckpt-best nets and
    normaliser statistics (frozen) of the trial's best session loaded."""
    path = Path(spec_file).expanduser()
    if not path.is_file():
        raise LabError(f"{mode}@{spec_file}: spec file not found")
    source = _read_spec_file(path)
    predir = path.resolve().parent
    meta = source["meta"]
    if int(meta.get("trial", -1)) < 0:
        raise LabError(
            f"{mode}@{spec_file}: this is a search's spec; pass a trial's spec, {{name}}_t{{trial}}_spec.json"
        )
    _rebase(source, predir, "trial")
    s = best_session(source, predir)
    model_prepath = f"{predir}/model/{source['name']}_t{meta['trial']}_s{s}"
    spec = copy.deepcopy(source)
    spec["meta"].update(max_session=1, session=s, resume=False)
    _rebase(spec, predir / "enjoy", "session")
    session = Session(spec, mode)
    try:
        session.agent.load(model_prepath, "ckpt-best", load_optim=False)
        best_state = load_torch_file(f"{model_prepath}_ckpt-best_state.pt", map_location="cpu")
        try:
            # only the normaliser statistics: the replay keeps its own clock and returns
            env_state = {**best_state["env"], "clock": session.env.clock.state_dict(), "returns": []}
            session.env.load_state_dict(env_state)
            session.agent.load_replay_state(best_state["agent"]["algorithm"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(
                f"{model_prepath}_ckpt-best_state.pt does not fit this spec: {type(e).__name__}: {e}"
            ) from None
        session.env.freeze_normalizers()
    except BaseException:
        session.close_envs()
        remove_sink(session.log_sink)
        raise
    return session


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
    unknown = unknown_searched_keys(
        spec
    )  # also checked at load; a spec built in code may not have been loaded
    if unknown:
        raise SpecError(f"{where}: " + "; ".join(unknown))
    for label, config, varied in probe_configs(params):
        probe = apply_config(spec, config)
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
    """Run a search of a loaded spec. Returns the experiment df."""
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

"""Experiment: a hyperparameter search over trials with Ray Tune, Optuna and ASHA (D37, B1, B2).

The driver turns the spec's ``search`` block into a Ray Tune param space, samples ``meta.max_trial`` points with
Optuna (seeded by ``meta.random_seed``), and runs each point as one lab ``Trial`` inside a Ray worker with the
``meta.search_resources`` of a trial. With ``meta.search_scheduler``, ASHA stops poor trials early: the sessions of
a trial then run at once and ASHA sees the mean of their ``total_reward_ma`` at each checkpoint (B2).

Everything a trial's result needs travels back through Ray (``tune.report``): its trial index, its metrics and its
return curves. The driver never reads another node's files, so a search runs the same on one machine or on a
cluster attached with ``--ray-address`` (B1). Each trial's index is part of its sampled config, given in creation
order by ``IndexedSearcher``, and results are paired with trials by that index (D37).

This module imports Ray at the top; the CLI imports it only in search mode.
"""

import contextlib
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from loguru import logger
from ray import tune
from ray.tune import Callback
from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from slm_lab.errors import LabError, SpecError
from slm_lab.experiment import analysis
from slm_lab.experiment.control import Trial
from slm_lab.experiment.ray_cluster import RayConnection, connect, disconnect
from slm_lab.lib.io_util import read_json, to_jsonable
from slm_lab.lib.logger import add_file_sink, remove_sink, setup_logging
from slm_lab.lib.paths import data_dir
from slm_lab.spec.loader import complete_spec, save_spec, tick
from slm_lab.spec.search_space import (
    SearchParam,
    apply_config,
    asha_kwargs,
    decode_config,
    param_space,
    parse_search,
)

__all__ = [
    "METRIC",
    "TRIAL_INDEX",
    "Experiment",
    "IndexedSearcher",
    "SearchResults",
    "load_experiment_spec",
    "prune_models",
    "remove_trial_models",
    "trial_spec",
]

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


# ---------------------------------------------------------------------------------------------------------------
# the searcher: Optuna, plus the trial index


class IndexedSearcher(Searcher):
    """Wraps a searcher and adds ``trial_index`` (0, 1, 2, ... in creation order) to every config it suggests, so
    that each trial knows its own index and its result carries it (D37). The count is saved with the searcher's
    state, so a restored search goes on numbering where it stopped."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher
        self.count = 0
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def suggest(self, trial_id: str) -> dict | None:
        config = self.searcher.suggest(trial_id)
        if config is None or config == Searcher.FINISHED:
            return config
        config = {**config, TRIAL_INDEX: self.count}
        self.count += 1
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    # Tune saves a wrapper's own state with get_state and the wrapped searcher's with its save/restore
    def get_state(self) -> dict[str, Any]:
        return {"count": self.count}

    def set_state(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)


# ---------------------------------------------------------------------------------------------------------------
# the trainable: one lab Trial in a Ray worker


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


# ---------------------------------------------------------------------------------------------------------------
# the driver


class _TrialLog(Callback):
    """Log lines on the driver as trials finish, stop early, fail and are retried, and the set of trials that are
    done for good (finished, stopped by the scheduler, or failed after their retries), counting those a restored
    search had already done. After an interrupt Tune marks the trials it stopped as terminated in memory, so the
    statuses of the result grid cannot tell an interrupted search from a finished one; this set can."""

    def __init__(self, max_failures: int) -> None:
        self.max_failures = max_failures
        self.done: set[str] = set()
        self.started = False

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if not self.started:  # trials a restored search finished before it was interrupted
            self.started = True
            self.done.update(t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR"))

    @staticmethod
    def _index(trial: Any) -> Any:
        return (trial.config or {}).get(TRIAL_INDEX, "?")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done.add(trial.trial_id)
        result = trial.last_result or {}
        ma = result.get(METRIC, math.nan)
        if result.get("final"):
            logger.info(f"Search: trial {self._index(trial)} done, {METRIC} {ma:.4g}")
        else:
            logger.info(
                f"Search: trial {self._index(trial)} stopped early by the scheduler at frame "
                f"{result.get('frame')}, {METRIC} {ma:.4g}"
            )

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        logger.warning(
            f"Search: trial {self._index(trial)} failed (attempt {trial.run_metadata.num_failures} of "
            f"{self.max_failures + 1}); retrying. Error file: {trial.error_file}"
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done.add(trial.trial_id)
        logger.error(
            f"Search: trial {self._index(trial)} failed after {trial.run_metadata.num_failures} attempt(s); "
            f"the search goes on. Error file: {trial.error_file}"
        )


def _saved_progress(tuner: tune.Tuner) -> "_TrialLog | None":
    """The progress callback of a restored search: Tune unpickles the run config, callbacks included, from the
    saved state, so the instance that sees this run's trials is the restored one."""
    local = getattr(tuner, "_local_tuner", None)
    run_config = local.get_run_config() if local is not None else None
    found = [c for c in (run_config.callbacks or []) if isinstance(c, _TrialLog)] if run_config else []
    return found[0] if found else None


def _first_line(error: BaseException | None) -> str:
    text = str(error or "").strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else type(error).__name__


def _ranked(df: pd.DataFrame) -> pd.DataFrame:
    """The experiment df best first by ``total_reward_ma`` (NaN last, ties in trial order)."""
    return df.sort_values(METRIC, ascending=False, na_position="last", kind="stable")


def remove_trial_models(predir: str, name: str, trials: list[int]) -> list[str]:
    """Delete ``{predir}/model/{name}_t{i}_*.pt`` of each trial ``i`` on this machine; returns the deleted paths."""
    model_dir = Path(predir) / "model"
    removed = []
    for trial in trials:
        for path in sorted(model_dir.glob(f"{name}_t{int(trial)}_*.pt")):
            path.unlink(missing_ok=True)
            removed.append(str(path))
    return removed


def prune_models(
    spec: dict[str, Any],
    df: pd.DataFrame,
    keep: int,
    nodes: dict[int, str] | None = None,
    here: str | None = None,
) -> dict[str | None, list[str]]:
    """Delete the model files of every trial outside the top ``keep`` by ``total_reward_ma`` (NaN last); ``keep <
    0`` keeps everything. A trial that ran on another node of the Ray cluster (``nodes``: trial index -> Ray node
    id; ``here``: this process's node) has its files on that node's disk: a task on that node deletes them. Then
    they are deleted here too (a shared disk, or a node that is gone). Returns the deleted paths by node (``None``:
    here)."""
    removed: dict[str | None, list[str]] = {None: []}
    if keep < 0 or df.empty:
        return removed
    doomed = [int(t) for t in _ranked(df)["trial"].tolist()[keep:]]
    predir, name = str(spec["meta"]["predir"]), spec["name"]
    elsewhere: dict[str, list[int]] = {}
    for trial in doomed:
        node = (nodes or {}).get(trial)
        if node and node != here:
            elsewhere.setdefault(node, []).append(trial)
    for node, trials in elsewhere.items():
        task = ray.remote(num_cpus=0)(remove_trial_models).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
        )
        try:
            removed[node] = ray.get(task.remote(predir, name, trials), timeout=120)
        except Exception as e:  # a node that left the cluster keeps its files
            logger.warning(
                f"Search: --keep: could not remove the model files of trials {trials} on node {node}: {e}"
            )
    removed[None] = remove_trial_models(predir, name, doomed)
    return removed


@dataclass
class SearchResults:
    """What came back from the trials of a search, each keyed by trial index: ``data`` is the
    ``trial_data_dict`` (``{trial: {**config, **trial_scalar}}``), ``curves`` the return curves
    (``(frames, mean_returns per session)``), ``failed`` the last line of each failed trial's error, ``nodes`` the
    Ray node that ran each trial."""

    data: dict[int, dict[str, Any]] = field(default_factory=dict)
    curves: dict[int, tuple[list, list]] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    nodes: dict[int, str] = field(default_factory=dict)


class Experiment:
    """A search: ``max_trial`` sampled trials on Ray, then the experiment analysis and the ``--keep`` pruning.

    ``spec`` is ticked to the experiment. With ``restore``, the Tune state under ``{predir}/ray_tune`` is resumed:
    finished trials keep their results, unfinished ones run again, and the remaining samples are drawn."""

    def __init__(
        self, spec: dict[str, Any], ray_address: str | None = None, keep: int = 3, restore: bool = False
    ) -> None:
        self.spec = spec
        self.ray_address = ray_address
        self.keep = keep
        self.restore = restore
        meta = spec["meta"]
        self.params: list[SearchParam] = parse_search(spec.get("search") or {})[0]
        self.scheduled = bool(meta.get("search_scheduler"))
        self.storage = Path(meta["predir"]) / "ray_tune"
        self.progress: _TrialLog | None = None  # set with the tuner
        self.log_sink = add_file_sink(f"{meta['log_prepath']}.log")
        if not restore:
            save_spec(spec, "experiment")

    # set-up --------------------------------------------------------------------------------------------------
    def resources(self) -> dict[str, float]:
        meta = self.spec["meta"]
        res = dict(meta.get("search_resources") or {"cpu": 1, "gpu": 0})
        res["cpu"], res["gpu"] = float(res.get("cpu", 1)), float(res.get("gpu", 0))
        if res["gpu"] and not ray.cluster_resources().get("GPU"):
            logger.info("Search: the Ray cluster has no GPU; meta.search_resources.gpu set to 0")
            res["gpu"] = 0.0
        if self.scheduled and meta["max_session"] > 1 and res["cpu"] < meta["max_session"]:
            logger.warning(
                f"Search: with a scheduler the {meta['max_session']} sessions of a trial run at once, but "
                f"meta.search_resources.cpu is {res['cpu']:g}; set it to {meta['max_session']} to avoid "
                "oversubscribing the CPUs"
            )
        return res

    def trainable(self, resources: dict[str, float]) -> Any:
        lab_env = _lab_env(resources["cpu"])
        runnable = tune.with_parameters(_trainable, spec=self.spec, lab_env=lab_env, scheduled=self.scheduled)
        return tune.with_resources(runnable, resources)

    def tuner(self) -> tune.Tuner:
        meta, name = self.spec["meta"], self.spec["name"]
        resources = self.resources()
        # Tune starts one trial at a time when a searcher suggests them; let it start as many as fit the cluster
        fit = max(1, int(ray.cluster_resources().get("CPU", 1) // max(resources["cpu"], 1e-3)))
        os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(fit))
        if self.restore:
            path = self.storage / name  # checked by load_experiment_spec
            tuner = tune.Tuner.restore(str(path), self.trainable(resources), resume_unfinished=True)
            self.progress = _saved_progress(tuner)
            return tuner
        if self.scheduled:
            logger.info(
                f"Search: ASHA on frame/{METRIC}; "
                + (
                    f"the {meta['max_session']} sessions of each trial run at once and ASHA sees their mean (B2)"
                    if meta["max_session"] > 1
                    else "1 session per trial"
                )
            )
        scheduler = (
            AsyncHyperBandScheduler(
                **asha_kwargs(meta["search_scheduler"], int(self.spec["env"]["max_frame"]))
            )
            if self.scheduled
            else None
        )
        searcher = IndexedSearcher(OptunaSearch(metric=METRIC, mode="max", seed=int(meta["random_seed"])))
        max_failures = int(meta.get("search_max_failures", 1))
        self.progress = _TrialLog(max_failures)
        return tune.Tuner(
            self.trainable(resources),
            param_space=param_space(self.params),
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=int(meta["max_trial"]),
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(self.storage.resolve()),
                failure_config=tune.FailureConfig(max_failures=max_failures),
                callbacks=[self.progress],
                verbose=0,
            ),
        )

    # results -------------------------------------------------------------------------------------------------
    def collect(self, grid: Any) -> "SearchResults":
        """What the trials reported, keyed by the trial index each trial itself reported (D37)."""
        out = SearchResults()
        for result in grid:
            config = dict(result.config or {})
            metrics = result.metrics or {}
            index = metrics.get(TRIAL_INDEX, config.get(TRIAL_INDEX))
            config.pop(TRIAL_INDEX, None)
            if index is None:
                continue
            index = int(index)
            trial = metrics.get("trial") or {}
            scalar = trial.get("scalar") or {}
            if not scalar and result.error is None and METRIC in metrics:
                # stopped by the scheduler before the trial had metrics: its last reported session mean
                scalar = {"frame": float(metrics["frame"]), METRIC: float(metrics[METRIC])}
            out.data[index] = {**decode_config(self.params, config), **scalar}
            if trial.get("frames"):
                out.curves[index] = (trial["frames"], trial["mean_returns"])
            if metrics.get(NODE):
                out.nodes[index] = metrics[NODE]
            if result.error is not None:
                out.failed[index] = _first_line(result.error)
        out.data = dict(sorted(out.data.items()))
        return out

    def run(self) -> pd.DataFrame:
        """Run the search on Ray (a local cluster, or the one at ``ray_address``), then analyse it."""
        conn: RayConnection | None = None
        try:
            try:
                conn = connect(self.ray_address)
                import optuna

                optuna.logging.set_verbosity(optuna.logging.WARNING)
                grid = self.tuner().fit()
                results = self.collect(grid)
                # trials not yet created when a search is interrupted are missing from the grid altogether
                done = len(self.progress.done) if self.progress else grid.num_terminated + grid.num_errors
                return self.analyze(results, unfinished=int(self.spec["meta"]["max_trial"]) - done)
            finally:
                disconnect(conn)
        finally:
            remove_sink(self.log_sink)

    def analyze(self, results: "SearchResults", unfinished: int) -> pd.DataFrame:
        """Write the experiment analysis, prune the model files of all but the best ``--keep`` trials (on the nodes
        that hold them; the cluster is still attached), and log the outcome."""
        meta = self.spec["meta"]
        data, curves, failed = results.data, results.curves, results.failed
        for index, error in failed.items():
            logger.error(f"Search: trial {index} failed: {error}")
        df = analysis.analyze_experiment(self.spec, data, plot=True, curves=curves)
        ranked = _ranked(df)
        if len(ranked) and not math.isnan(ranked.iloc[0][METRIC]):
            best = ranked.iloc[0]
            values = {
                k: to_jsonable(best[k]) for k in best.index if k not in analysis.METRICS_COLS and k != "trial"
            }
            logger.info(f"Search: best trial {int(best['trial'])}, {METRIC} {best[METRIC]:.4g}, {values}")
        if unfinished:
            logger.warning(
                f"Search interrupted: {unfinished} of {meta['max_trial']} trial(s) unfinished; models were not "
                f"pruned. Continue it with: slm-lab run <spec file> <spec name> search@{meta['predir']}"
            )
            return df
        here = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        removed = prune_models(self.spec, df, self.keep, results.nodes, here)
        count = sum(len(paths) for paths in removed.values())
        if count:
            logger.info(
                f"Search: --keep {self.keep}: removed the model files of the other trials ({count} files)"
            )
        logger.info(f"Experiment done: {len(data)} trials, {len(failed)} failed")
        return df


def load_experiment_spec(predir: Path) -> dict[str, Any]:
    """The saved experiment spec ``{predir}/{name}_spec.json`` of a search folder (the file whose name is its spec's
    ``name``; trial specs are ``{name}_t{t}_spec.json``), pointed at ``predir``, which may have moved since."""
    found = []
    for path in sorted(predir.glob("*_spec.json")):
        try:
            spec = read_json(path)
        except (OSError, ValueError) as e:
            raise LabError(f"search@{predir}: cannot read {path.name}: {e}") from None
        if isinstance(spec, dict) and spec.get("name") == path.name.removesuffix("_spec.json"):
            found.append((path, spec))
    if len(found) != 1:
        raise LabError(
            f"search@{predir}: expected one experiment spec {{name}}_spec.json there, found {len(found)}"
        )
    path, spec = found[0]
    if "search" not in spec or not isinstance(spec.get("meta"), dict):
        raise SpecError(f"{path}: not the spec of a search (no search block)")
    state = predir / "ray_tune" / spec["name"]
    if not tune.Tuner.can_restore(str(state)):
        raise LabError(f"search@{predir}: no saved search state in {state}")
    meta = spec["meta"]
    meta.update(resume=True, predir=str(predir))  # tick keeps the folder and its timestamp
    meta["experiment"] = max(0, int(meta.get("experiment", 0)) - 1)
    tick(spec, "experiment")
    meta["resume"] = False  # the unfinished trials start afresh; only the search itself resumes
    return spec

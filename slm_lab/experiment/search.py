"""Experiment: a hyperparameter search over trials with Ray Tune, Optuna and ASHA (D37, B1, B2).

The driver turns the spec's ``search`` block into a Ray Tune param space, samples ``meta.max_trial`` points with
Optuna (seeded by ``meta.random_seed``), and runs each point as one lab ``Trial`` inside a Ray worker with the
``meta.search_resources`` of a trial. With ``meta.search_scheduler``, ASHA stops poor trials early: the sessions of
a trial then run at once and ASHA sees the mean of their ``total_reward_ma`` at each checkpoint (B2).

Everything a trial's result needs travels back through Ray (``tune.report``): its trial index, its metrics and its
return curves. The driver never reads another node's files, so a search runs the same on one machine or on a
cluster attached with ``--ray-address`` (B1). Each trial's index is part of its sampled config, given in creation
order by ``IndexedSearcher``, and results are paired with trials by that index (D37).

This module holds the driver: the searcher that numbers the trials, the Ray Tune tuner with its Optuna searcher and
ASHA scheduler, and the collection and analysis of the results. What runs in each Ray worker is in
``slm_lab.experiment.search_trial``; the results record and the ``--keep`` pruning are in
``slm_lab.experiment.search_results``; this module re-exports their public names.

This module imports Ray at the top; the CLI imports it only in search mode.
"""

import math
import os
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

from slm_lab.errors import LabError, SpecError
from slm_lab.experiment import analysis
from slm_lab.experiment.ray_cluster import RayConnection, connect, disconnect
from slm_lab.experiment.search_results import (
    SearchResults,
    _first_line,
    _ranked,
    prune_models,
    remove_trial_models,
)
from slm_lab.experiment.search_trial import METRIC, NODE, TRIAL_INDEX, _lab_env, _trainable, trial_spec
from slm_lab.lib.io_util import read_json, to_jsonable
from slm_lab.lib.logger import add_file_sink, remove_sink
from slm_lab.spec.loader import save_spec, tick
from slm_lab.spec.search_space import SearchParam, asha_kwargs, decode_config, param_space, parse_search

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

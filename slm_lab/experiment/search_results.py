"""The results of a search once its trials are done: the record of what came back, the ranking of trials by
``total_reward_ma``, and the ``--keep`` pruning of the model files of all but the best trials, on the Ray node that
holds them."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from loguru import logger
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from slm_lab.experiment.search_trial import METRIC

__all__ = ["SearchResults", "prune_models", "remove_trial_models"]


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

"""Graphs that compare runs: the experiment scatter grid and the multi-trial overlay that a search
writes, and the graphs of ``slm-lab plot``: MA curves of several runs, performance profiles and probabilities of
improvement (B3). Inputs are plain dataframes and series, so each graph is built and tested without a run folder.
Every function writes a PNG and its HTML through ``viz.render_chart`` and returns the paths written.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from slm_lab.lib import stats, viz
from slm_lab.lib.chart import Band, Chart, ColorScale, FloatSeq, Intervals, Line, Panel, Points, Series

__all__ = [
    "ALGORITHM_COLORS",
    "ALGORITHM_ORDER",
    "RunCurves",
    "algorithm_label",
    "label_color",
    "plot_experiment",
    "plot_multi_trial",
    "plot_performance_profiles",
    "plot_probability_of_improvement",
    "sort_labels",
]

# fixed legend order and one colour per algorithm, so every comparison graph reads the same way
ALGORITHM_ORDER = ("REINFORCE", "SARSA", "DQN", "DDQN+PER", "A2C", "PPO", "SAC", "CrossQ")
ALGORITHM_COLORS = {
    "REINFORCE": "#8c564b",
    "SARSA": "#e377c2",
    "DQN": "#17becf",
    "DDQN+PER": "#9467bd",
    "A2C": "#2ca02c",
    "PPO": "#1f77b4",
    "SAC": "#ff7f0e",
    "CrossQ": "#d62728",
}
OTHER_COLORS = ("#393b79", "#bcbd22", "#7f7f7f", "#637939", "#843c39", "#7b4173", "#3182bd", "#e6550d")
_RENAMES = {"VanillaDQN": "DQN", "ActorCritic": "A2C", "SoftActorCritic": "SAC", "Reinforce": "REINFORCE"}
EXPERIMENT_CMAP = "YlGnBu"
NAN_COLOR = "#cccccc"


def algorithm_label(algorithm_name: str, memory_name: str = "") -> str:
    """The legend name of an algorithm class: ``DoubleDQN`` is "DDQN+PER" with a prioritized memory, else
    "DDQN"; ``VanillaDQN``→DQN, ``ActorCritic``→A2C, ``SoftActorCritic``→SAC, ``Reinforce``→REINFORCE; others keep
    their names."""
    if algorithm_name == "DoubleDQN":
        return "DDQN+PER" if "Prioritized" in memory_name else "DDQN"
    return _RENAMES.get(algorithm_name, algorithm_name)


def sort_labels(labels: Sequence[str]) -> list[str]:
    """Unique labels, the known algorithms in ``ALGORITHM_ORDER`` first, then the others in first-seen order."""
    unique = list(dict.fromkeys(labels))
    known = [a for a in ALGORITHM_ORDER if a in unique]
    return known + [x for x in unique if x not in ALGORITHM_ORDER]


def label_color(label: str, others: Sequence[str] = ()) -> str:
    """The fixed colour of a known algorithm; other labels take ``OTHER_COLORS`` by their index in ``others``."""
    if label in ALGORITHM_COLORS:
        return ALGORITHM_COLORS[label]
    index = list(others).index(label) if label in others else 0
    return OTHER_COLORS[index % len(OTHER_COLORS)]


@dataclass(frozen=True)
class RunCurves:
    """One trial's returns: a label, session 0's frames, one return series per session, a colour."""

    label: str
    frames: FloatSeq
    returns_list: Sequence[FloatSeq]
    color: str | None = None


def _run_series(run: RunCurves, ma: bool, color: str) -> list[Series]:
    n = min(min(len(r) for r in run.returns_list), len(run.frames))
    raw = [np.asarray(r, dtype=np.float64)[:n] for r in run.returns_list]
    group = [viz.moving_average(r) for r in raw] if ma else raw
    mean, std = viz.mean_std(group)
    return viz.envelope_series(run.label, np.asarray(run.frames, dtype=np.float64)[:n], mean, std, color)


def plot_multi_trial(
    prefix: str,
    runs: Sequence[RunCurves],
    title: str,
    legend: bool = True,
    kinds: Sequence[str] = ("mean_returns", "mean_returns_ma"),
) -> list[str]:
    """Overlay several trials' mean returns (each with its ±1 std envelope across sessions) into
    ``{prefix}_multi_trial_graph_{kind}_vs_frames.png`` for each kind, ``mean_returns`` (raw) and/or
    ``mean_returns_ma``. Runs without a colour take ``viz.COLORS`` in turn."""
    runs = [r for r in runs if r.returns_list]
    if not runs:
        return []
    written: list[str] = []
    for kind in kinds:
        series: list[Series] = []
        for i, run in enumerate(runs):
            series += _run_series(run, kind.endswith("_ma"), run.color or viz.COLORS[i % len(viz.COLORS)])
        panel = Panel(series, x_title="frames", y_title=kind)
        chart = Chart(title=title, panels=[panel], legend=legend)
        written += viz.render_chart(chart, f"{prefix}_multi_trial_graph_{kind}_vs_frames.png")
    return written


def plot_multi_trial_extra(
    prefix: str, trials: Sequence[tuple[str, Mapping[str, Any]]], title: str, legend: bool = True
) -> list[str]:
    """The ``--log-extra`` multi-trial graphs: each trial's strengths, sample and training efficiencies and
    stabilities (mean ± std across its sessions), raw and MA, overlaid as
    ``{prefix}_multi_trial_graph_{name}[_ma]_vs_{frames|opt_steps}.png``. ``trials`` are (label, trial local
    metrics) pairs; a trial without a series is left out of its graph."""
    written: list[str] = []
    for name, x_name in viz.EXTRA_SESSION_SERIES:
        offset = viz.SERIES_OFFSET.get(name, 0)
        runs = [
            RunCurves(label, list(local[x_name])[offset:], local[name])
            for label, local in trials
            if local.get(name) and all(len(s) for s in local[name])
        ]
        if not runs:
            continue
        for ma in (False, True):
            series: list[Series] = []
            for i, run in enumerate(runs):
                series += _run_series(run, ma, run.color or viz.COLORS[i % len(viz.COLORS)])
            kind = f"{name}_ma" if ma else name
            chart = Chart(title=title, panels=[Panel(series, x_title=x_name, y_title=kind)], legend=legend)
            written += viz.render_chart(chart, f"{prefix}_multi_trial_graph_{kind}_vs_{x_name}.png")
    return written


def _hex_colors(values: np.ndarray, cmap: str, vmin: float, vmax: float) -> list[str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cm = colormaps[cmap]
    span = vmax - vmin if vmax > vmin else 1.0
    return [NAN_COLOR if math.isnan(v) else to_hex(cm((v - vmin) / span)) for v in values]


def _experiment_axis(col: pd.Series) -> tuple[np.ndarray, list[str] | None]:
    """A searched hyper-parameter as x values: numbers as they are, anything else (strings, lists, booleans) as
    categories at 0..k-1 with their text as tick labels."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=np.float64), None
    text = col.map(str)
    categories = sorted(text.unique())
    index = {c: i for i, c in enumerate(categories)}
    return text.map(index).to_numpy(dtype=np.float64), categories


def plot_experiment(
    path: str,
    experiment_df: pd.DataFrame,
    title: str,
    config_cols: Sequence[str],
    metrics: Sequence[str] = ("total_reward_ma",),
    color_by: str = "strength",
) -> list[str]:
    """The experiment graph: a scatter grid with one row per metric and one column per searched hyper-parameter
    (``config_cols``), each point a trial coloured by ``color_by`` (YlGnBu). Without hyper-parameter columns the x
    axis is the trial index."""
    trials = experiment_df["trial"] if "trial" in experiment_df else pd.Series(range(len(experiment_df)))
    x_cols = config_cols or ["trial"]
    shade = (
        experiment_df[color_by].to_numpy(dtype=np.float64)
        if color_by in experiment_df
        else np.full(len(trials), np.nan)
    )
    finite = shade[np.isfinite(shade)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    colors = _hex_colors(shade, EXPERIMENT_CMAP, vmin, vmax)
    texts = [f"t{t}: {color_by} {s:.4g}" for t, s in zip(trials, shade, strict=True)]
    panels = []
    for metric in metrics:
        y = (
            experiment_df[metric].to_numpy(dtype=np.float64)
            if metric in experiment_df
            else np.full(len(trials), np.nan)
        )
        for col in x_cols:
            x, ticks = _experiment_axis(trials if col == "trial" else experiment_df[col])
            points = Points("trials", x, y, colors=colors, texts=texts)
            panels.append(Panel([points], x_title=str(col), y_title=metric, x_ticks=ticks))
    stops = _hex_colors(np.linspace(0.0, 1.0, 9), EXPERIMENT_CMAP, 0.0, 1.0)
    scale = ColorScale(color_by, EXPERIMENT_CMAP, vmin, vmax, stops)
    chart = Chart(title=title, panels=panels, ncols=len(x_cols), legend=False, color_scale=scale)
    return viz.render_chart(chart, path)


def plot_performance_profiles(
    path: str,
    scores: Mapping[str, Sequence[FloatSeq]],
    title: str,
    x_title: str = "score τ",
    num_taus: int = 101,
) -> list[str]:
    """Performance profiles (Agarwal et al. 2021): for each label, the fraction of its runs scoring above τ, with a
    stratified-bootstrap 95% band. ``scores[label]`` holds one array of run scores per task."""
    pooled = np.concatenate(
        [np.asarray(t, dtype=np.float64).ravel() for tasks in scores.values() for t in tasks] or [np.zeros(0)]
    )
    pooled = pooled[np.isfinite(pooled)]
    if not pooled.size:
        return []
    lo, hi = float(pooled.min()), float(pooled.max())
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    taus = np.linspace(lo - pad, hi + pad, num_taus)
    labels = list(scores)
    series: list[Series] = []
    for label in labels:
        profile, low, high = stats.performance_profile(scores[label], taus)
        color = label_color(label, labels)
        series += [Band(f"{label} 95% CI", taus, low, high, color), Line(label, taus, profile, color)]
    chart = Chart.single(title, x_title, "fraction of runs with score > τ", series)
    return viz.render_chart(chart, path)


def plot_probability_of_improvement(
    path: str, scores: Mapping[str, Sequence[FloatSeq]], title: str
) -> tuple[list[str], list[dict[str, Any]]]:
    """P(X > Y) with its stratified-bootstrap 95% interval for every ordered pair of labels (X listed before Y),
    as horizontal bars. ``scores[label]`` holds one array of run scores per task, tasks aligned across labels.
    Returns the paths written and one ``{x, y, p, low, high}`` row per pair."""
    labels = list(scores)
    rows = []
    for i, x in enumerate(labels):
        for y in labels[i + 1 :]:
            low, high = stats.probability_of_improvement_ci(scores[x], scores[y])
            rows.append(
                {
                    "x": x,
                    "y": y,
                    "p": stats.probability_of_improvement(scores[x], scores[y]),
                    "low": low,
                    "high": high,
                }
            )
    if not rows:
        return [], rows
    bars = Intervals(
        "P(X > Y)",
        [f"{r['x']} > {r['y']}" for r in rows],
        [r["low"] for r in rows],
        [r["p"] for r in rows],
        [r["high"] for r in rows],
        viz.COLORS[0],
    )
    chart = Chart.single(title, "probability of improvement P(X > Y)", "", [bars], x_range=(0.0, 1.0))
    return viz.render_chart(chart, path), rows

"""Session, trial and experiment analysis: the metrics of a run, and the files and graphs they are written to.

A session's metrics are computed from its dataframe and the env's random baseline; the trial's from its sessions'
metrics, the experiment's from its trials'. The metric math and the console summary lines are pure functions in
``slm_lab.experiment.analysis_metrics``, re-exported here. No torch here.
"""

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from loguru import logger

from slm_lab.experiment.analysis_metrics import (
    MA_WINDOW,
    METRICS_COLS,
    SESSION_LOCAL_KEYS,
    SESSION_SCALAR_KEYS,
    TRIAL_SESSION_SERIES,
    TRIAL_STATS_KEYS,
    _tolist,
    calc_consistency,
    calc_efficiency,
    calc_final_strength,
    calc_max_strength,
    calc_stability,
    calc_strength,
    calc_strengths,
    calc_total_reward_ma,
    calc_trial_metrics,
    calc_trial_stats,
    format_checkpoint_block,
    format_metric_value,
    session_metrics_line,
    trial_metrics_line,
    trial_stats_line,
)
from slm_lab.lib import random_baseline, viz, viz_multi
from slm_lab.lib.io_util import atomic_write, read_json, write_json
from slm_lab.lib.paths import prename, prepath

__all__ = [
    "MA_WINDOW",
    "METRICS_COLS",
    "SESSION_LOCAL_KEYS",
    "SESSION_SCALAR_KEYS",
    "TRIAL_SESSION_SERIES",
    "TRIAL_STATS_KEYS",
    "analyze_experiment",
    "analyze_session",
    "analyze_trial",
    "calc_consistency",
    "calc_efficiency",
    "calc_experiment_df",
    "calc_final_strength",
    "calc_max_strength",
    "calc_session_metrics",
    "calc_stability",
    "calc_strength",
    "calc_strengths",
    "calc_total_reward_ma",
    "calc_trial_metrics",
    "calc_trial_stats",
    "format_checkpoint_block",
    "format_metric_value",
    "load_session_metrics",
    "load_trial_metrics",
    "log_extra_enabled",
    "session_metrics_line",
    "trial_metrics_line",
    "trial_stats_line",
]

MIN_ROWS = 2
DF_MODES = ("train", "eval")

_warned_no_baseline: set[str] = set()


# ---------------------------------------------------------------------------------------------------------------
# session metrics


def _column(df: pd.DataFrame, col: str) -> np.ndarray:
    if col in df.columns:
        return df[col].to_numpy(dtype=np.float64)
    return np.full(len(df), np.nan)


def _get_rand_baseline(env_name: str) -> float:
    # on-demand computation runs 100 episodes: never under test
    r_rand = random_baseline.get_random_baseline(env_name, compute_missing=os.environ.get("PY_ENV") != "test")
    if r_rand is None:
        if env_name not in _warned_no_baseline:
            _warned_no_baseline.add(env_name)
            logger.warning(f"No random baseline for env {env_name}; metrics use R_rand = 0")
        return 0.0
    return r_rand


def calc_session_metrics(session_df: pd.DataFrame, env_name: str) -> dict[str, dict[str, Any]]:
    """Session metrics from a session dataframe: ``{"scalar": {7 keys}, "local": {series}}``.

    With fewer than 2 rows that have a return, the scalars are NaN and a warning is logged (D36); the local series
    are still filled.
    """
    returns = _column(session_df, "total_reward")
    frames = _column(session_df, "frame")
    opt_steps = _column(session_df, "opt_step")
    strengths = calc_strengths(returns, _get_rand_baseline(env_name))
    sample_eff, local_sample_effs = calc_efficiency(strengths, frames)
    train_eff, local_train_effs = calc_efficiency(strengths, opt_steps)
    stability, local_stas = calc_stability(strengths)
    scalar = {
        "total_reward_ma": calc_total_reward_ma(returns),
        "strength": calc_strength(strengths),
        "max_strength": calc_max_strength(strengths),
        "final_strength": calc_final_strength(strengths),
        "sample_efficiency": sample_eff,
        "training_efficiency": train_eff,
        "stability": stability,
    }
    n_usable = int(np.count_nonzero(~np.isnan(returns)))
    if n_usable < MIN_ROWS:
        logger.warning(
            f"Session metrics need at least {MIN_ROWS} checkpoints with a return, got {n_usable}; metrics are NaN"
        )
        scalar = dict.fromkeys(SESSION_SCALAR_KEYS, math.nan)
    local = {
        "mean_returns": _tolist(returns),
        "strengths": _tolist(strengths),
        "sample_efficiencies": _tolist(local_sample_effs),
        "training_efficiencies": _tolist(local_train_effs),
        "stabilities": _tolist(local_stas),
        "frames": _tolist(frames),
        "opt_steps": _tolist(opt_steps),
    }
    return {"scalar": scalar, "local": local}


def log_extra_enabled() -> bool:
    """``--log-extra`` (env var ``LOG_EXTRA``, exported by the CLI so spawned sessions see it too)."""
    return os.environ.get("LOG_EXTRA", "").lower() == "true"


# ---------------------------------------------------------------------------------------------------------------
# files


def _write_csv(path: str, df: pd.DataFrame) -> None:
    atomic_write(path, lambda f: df.to_csv(f, index=False))


def _copy_file(src: str, dst: str) -> None:
    data = Path(src).read_bytes()
    atomic_write(dst, lambda f: f.write(data), binary=True)


def _session_title(spec: Mapping[str, Any]) -> str:
    meta = spec["meta"]
    return f"session graph: {spec['name']} t{meta['trial']} s{meta['session']}"


def _trial_title(spec: Mapping[str, Any]) -> str:
    meta = spec["meta"]
    return f"trial graph: {spec['name']} t{meta['trial']} {meta['max_session']} sessions"


def analyze_session(
    spec: dict[str, Any],
    session_df: pd.DataFrame,
    df_mode: str = "train",
    plot: bool = True,
    log_extra: bool | None = None,
) -> dict[str, dict[str, Any]]:
    """Compute a session's metrics and write its files: the session df CSV, ``{scalar, local}`` metrics JSON, the
    scalar JSON and (with ``plot``) the session graphs, plus the ``--log-extra`` graphs when ``log_extra`` (default:
    the ``LOG_EXTRA`` env var). ``spec`` is at session level. Values are taken as float32, the df's dtype, so
    a retro analysis of the CSV reproduces the metrics exactly."""
    df = session_df.astype(np.float32)
    metrics = calc_session_metrics(df, spec["env"]["name"])
    info = prepath(spec, "session", "info")
    _write_csv(f"{info}_session_df_{df_mode}.csv", df)
    write_json(f"{info}_session_metrics_{df_mode}.json", metrics)
    write_json(f"{info}_session_metrics_scalar_{df_mode}.json", metrics["scalar"])
    if plot:
        graph_prepath, title = prepath(spec, "session", "graph"), _session_title(spec)
        viz.plot_session(graph_prepath, df_mode, metrics["local"], df, title)
        if log_extra_enabled() if log_extra is None else log_extra:
            viz.plot_session_extra(graph_prepath, df_mode, metrics["local"], title)
    return metrics


def analyze_trial(
    spec: dict[str, Any],
    session_metrics_list: Sequence[Mapping[str, Any]],
    plot: bool = True,
    log_extra: bool | None = None,
) -> dict[str, dict[str, Any]]:
    """Compute the trial metrics from the sessions' metrics and write ``info/{name}_t{t}_trial_metrics.json``, its
    scalar JSON, and (with ``plot``) the two trial graphs, plus the ``--log-extra`` graphs when ``log_extra``
    (default: the ``LOG_EXTRA`` env var); the scalar JSON and the two trial PNGs are also copied to the run
    folder. ``spec`` is at trial level."""
    metrics = calc_trial_metrics(session_metrics_list)
    info = prepath(spec, "trial", "info")
    top = prepath(spec, "trial")
    write_json(f"{info}_trial_metrics.json", metrics)
    write_json(f"{info}_trial_metrics_scalar.json", metrics["scalar"])
    write_json(f"{top}_trial_metrics_scalar.json", metrics["scalar"])
    if plot:
        local = metrics["local"]
        graph_prepath = prepath(spec, "trial", "graph")
        title = _trial_title(spec)
        written = viz.plot_trial(graph_prepath, local["mean_returns"], local["frames"], title)
        if log_extra_enabled() if log_extra is None else log_extra:
            viz.plot_trial_extra(graph_prepath, local, title)
        for path in written:
            if not path.endswith(".png"):
                continue
            try:
                _copy_file(path, f"{top}{path[len(graph_prepath) :]}")
            except OSError as e:
                logger.warning(f"Trial graph not copied to the run folder: {path}: {e}")
    return metrics


def load_session_metrics(spec: Mapping[str, Any], df_mode: str = "train") -> list[dict[str, Any]]:
    """This trial's session metrics files ``info/{name}_t{t}_s{s}_session_metrics_{mode}.json``, ordered by session
    index (sessions without a file are absent)."""
    trial_prename = prename(spec, "trial")
    info_dir = Path(spec["meta"]["predir"]) / "info"
    pattern = re.compile(rf"^{re.escape(trial_prename)}_s(\d+)_session_metrics_{re.escape(df_mode)}\.json$")
    found = []
    if info_dir.is_dir():
        for path in info_dir.iterdir():
            match = pattern.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
    return [read_json(path) for _, path in sorted(found)]


def load_trial_metrics(spec: Mapping[str, Any], trial: int) -> dict[str, Any] | None:
    """``info/{name}_t{trial}_trial_metrics.json`` of the run folder ``meta.predir``, or None when absent."""
    path = Path(spec["meta"]["predir"]) / "info" / f"{spec['name']}_t{trial}_trial_metrics.json"
    return read_json(path) if path.is_file() else None


# ---------------------------------------------------------------------------------------------------------------
# experiment (search): the experiment df and graphs


def calc_experiment_df(trial_data_dict: Mapping[Any, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per trial from ``{trial: {**config, **trial_scalar}}``: ``trial`` first, then the sorted
    config keys (every key that is not a trial metric), then ``METRICS_COLS``; rows sorted by ``strength``,
    descending, NaN last. Missing metrics are NaN."""
    metric_keys = {*METRICS_COLS, *TRIAL_STATS_KEYS}
    rows = []
    for trial, data in trial_data_dict.items():
        row: dict[str, Any] = {"trial": int(trial)}
        row.update({k: v for k, v in data.items() if k not in metric_keys})
        row.update({k: data.get(k, math.nan) for k in METRICS_COLS})
        rows.append(row)
    config_cols = sorted({k for row in rows for k in row if k != "trial" and k not in metric_keys})
    df = pd.DataFrame(rows, columns=["trial", *config_cols, *METRICS_COLS])
    df[METRICS_COLS] = df[METRICS_COLS].astype(np.float64)
    return df.sort_values("strength", ascending=False, na_position="last", kind="stable").reset_index(
        drop=True
    )


def _experiment_config_cols(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c != "trial" and c not in METRICS_COLS]


def analyze_experiment(
    spec: dict[str, Any],
    trial_data_dict: Mapping[Any, Mapping[str, Any]],
    plot: bool = True,
    log_extra: bool | None = None,
    curves: Mapping[int, tuple[Sequence[float], Sequence[Sequence[float]]]] | None = None,
) -> pd.DataFrame:
    """Write a search's analysis: ``info/{name}_trial_data_dict.json``, the experiment df CSV (in ``info/``
    and the run folder), and with ``plot`` the experiment graph (rows: ``total_reward_ma``, or every metric with
    ``log_extra``) and the multi-trial graphs (legend ``t{idx}``; with ``log_extra`` also their strengths,
    efficiencies and stabilities) from the trials' metric files. Graphs are also
    copied to the run folder. ``spec`` is at experiment level. ``curves`` (``{trial: (frames, mean_returns per
    session)}``, as a search receives them through Ray) replaces reading the trials' metric files. Returns the
    experiment df."""
    df = calc_experiment_df(trial_data_dict)
    name = spec["name"]
    info, top, graph = (prepath(spec, "experiment", sub) for sub in ("info", None, "graph"))
    write_json(f"{info}_trial_data_dict.json", {str(k): v for k, v in trial_data_dict.items()})
    _write_csv(f"{info}_experiment_df.csv", df)
    _write_csv(f"{top}_experiment_df.csv", df)
    if not plot:
        return df
    extra = log_extra_enabled() if log_extra is None else log_extra
    metrics = METRICS_COLS[1:] if extra else ["total_reward_ma"]
    title = f"experiment graph: {name}"
    written = viz_multi.plot_experiment(
        f"{graph}_experiment_graph.png", df, title, _experiment_config_cols(df), metrics
    )
    runs, extra_trials = [], []
    for trial in sorted(int(t) for t in trial_data_dict):
        # the return curves travel through Ray; the other series only in the trials' files, where they are here
        trial_metrics = load_trial_metrics(spec, trial) if curves is None or extra else None
        if trial_metrics is not None:
            extra_trials.append((f"t{trial}", trial_metrics["local"]))
        if curves is not None:
            if trial in curves:
                runs.append(viz_multi.RunCurves(f"t{trial}", *curves[trial]))
        elif trial_metrics is not None:
            local = trial_metrics["local"]
            runs.append(viz_multi.RunCurves(f"t{trial}", local["frames"], local["mean_returns"]))
    written += viz_multi.plot_multi_trial(graph, runs, f"multi trial graph: {name}")
    if extra:
        written += viz_multi.plot_multi_trial_extra(graph, extra_trials, f"multi trial graph: {name}")
    for path in written:
        if path.endswith(".png"):
            try:
                _copy_file(path, f"{top}{path[len(graph) :]}")
            except OSError as e:
                logger.warning(f"Experiment graph not copied to the run folder: {path}: {e}")
    return df

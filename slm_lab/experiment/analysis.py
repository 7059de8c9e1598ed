"""Session and trial metrics, the files and graphs they are written to, and the console summary lines.

The first half is pure functions of numpy series; the second half reads and writes the run folder. No torch here.

Beyond the reference (B3), each trial also reports the interquartile mean (IQM) of its sessions' final scores (each
session's ``total_reward_ma``) with a stratified-bootstrap 95% confidence interval, as extra keys after
``METRICS_COLS`` (``TRIAL_STATS_KEYS``); the ``trial_metrics:`` line keeps its exact reference shape and the IQM gets
a line of its own. The bootstrap is seeded, so a retro analysis reproduces the numbers exactly.

Conventions for the series: R_i is ``total_reward`` at checkpoint i, s_i = R_i − R_rand is the local strength, f_i the
frame and o_i the opt step. NaN returns (before the first episode, D39) are skipped by every mean and sum.
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

from slm_lab.lib import random_baseline, stats, viz, viz_multi
from slm_lab.lib.io_util import atomic_write, read_json, write_json
from slm_lab.lib.paths import prename, prepath

__all__ = [
    "MA_WINDOW",
    "METRICS_COLS",
    "SESSION_LOCAL_KEYS",
    "SESSION_SCALAR_KEYS",
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

METRICS_COLS = [
    "frame",
    "total_reward_ma",
    "strength",
    "max_strength",
    "final_strength",
    "sample_efficiency",
    "training_efficiency",
    "stability",
    "consistency",
]
SESSION_SCALAR_KEYS = METRICS_COLS[1:-1]  # the trial columns without frame and consistency
# appended to the trial scalar after METRICS_COLS: IQM of the sessions' total_reward_ma and its 95% bootstrap CI
TRIAL_STATS_KEYS = ["total_reward_ma_iqm", "total_reward_ma_iqm_ci_low", "total_reward_ma_iqm_ci_high"]
SESSION_LOCAL_KEYS = [
    "mean_returns",
    "strengths",
    "sample_efficiencies",
    "training_efficiencies",
    "stabilities",
    "frames",
    "opt_steps",
]
# the session series that the trial keeps per session (frames and opt_steps come from session 0 only)
TRIAL_SESSION_SERIES = [
    "mean_returns",
    "strengths",
    "sample_efficiencies",
    "training_efficiencies",
    "stabilities",
]
MA_WINDOW = viz.MA_WINDOW
MIN_ROWS = 2
DF_MODES = ("train", "eval")

Series = Sequence[float] | np.ndarray | pd.Series

_warned_no_baseline: set[str] = set()


# ---------------------------------------------------------------------------------------------------------------
# pure metric functions


def _arr(x: Series) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _nanmean(x: np.ndarray) -> float:
    """Mean of the non-NaN values; NaN (without a numpy warning) when there are none."""
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else math.nan


def _div(num: float | np.ndarray, den: float | np.ndarray) -> Any:
    """Division with IEEE results (±inf, NaN) instead of errors or warnings."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(num, den)


def calc_total_reward_ma(returns: Series, window: int = MA_WINDOW) -> float:
    """Mean of the last min(N, window) returns, NaN skipped."""
    r = _arr(returns)
    return _nanmean(r[-window:])


def calc_strengths(returns: Series, rand_baseline: float) -> np.ndarray:
    """Local strengths s_i = R_i − R_rand."""
    return _arr(returns) - rand_baseline


def calc_strength(strengths: Series) -> float:
    """strength = mean_i s_i (NaN skipped)."""
    return _nanmean(_arr(strengths))


def calc_max_strength(strengths: Series) -> float:
    """max_strength = max_i s_i (NaN skipped)."""
    s = _arr(strengths)
    s = s[~np.isnan(s)]
    return float(s.max()) if s.size else math.nan


def calc_final_strength(strengths: Series) -> float:
    """final_strength = s_N, the last non-NaN strength."""
    s = _arr(strengths)
    s = s[~np.isnan(s)]
    return float(s[-1]) if s.size else math.nan


def calc_efficiency(strengths: Series, steps: Series) -> tuple[float, np.ndarray]:
    """Efficiency (Σ_i s_i/x_i) / (Σ_i s_i) with x the frames (sample) or opt steps (training), the reference's
    code formula (D13). Terms s_i/x_i that are ±inf or NaN (x_i = 0, or s_i NaN) are dropped from the numerator
    only; NaN strengths are skipped in the denominator. Local series: cumsum(s/x) / cumsum(s), with the same rule.
    """
    s = _arr(strengths)
    ratio = _div(s, _arr(steps))
    ratio = np.where(np.isfinite(ratio), ratio, 0.0)
    s0 = np.where(np.isnan(s), 0.0, s)
    eff = float(_div(ratio.sum(), s0.sum())) if s.size else math.nan
    local = _div(np.cumsum(ratio), np.cumsum(s0))
    return eff, local


def calc_stability(strengths: Series) -> tuple[float, np.ndarray]:
    """Stability from the drops d_i = min(s_{i+1} − s_i, 0), i < N: 1 − |Σ d_i / Σ_{i<N} s_i|. Local series
    (length N − 1): 1 − |d_i / s_i|. Pairs involving a NaN strength are skipped in both sums."""
    s = _arr(strengths)
    if s.size < 2:
        return math.nan, np.full(0, np.nan)
    drops = np.minimum(np.diff(s), 0.0)  # NaN propagates
    prev = s[:-1]
    valid = ~np.isnan(drops)
    sta = 1.0 - abs(float(_div(drops[valid].sum(), prev[valid].sum()))) if valid.any() else math.nan
    local = 1.0 - np.abs(_div(drops, prev))
    return sta, local


def calc_consistency(strengths_list: Sequence[Series]) -> tuple[float, np.ndarray]:
    """Consistency across sessions: per checkpoint the mean μ_i and sample std σ_i (ddof 1) of the strengths, all
    series truncated to the shortest; 1 − 2 Σσ_i / Σμ_i over the checkpoints where both are defined. Local series:
    1 − 2σ_i/μ_i. NaN with fewer than 2 sessions (a sample std needs two)."""
    if not strengths_list:
        return math.nan, np.full(0, np.nan)
    n = min(len(s) for s in strengths_list)
    if len(strengths_list) < 2:
        return math.nan, np.full(n, np.nan)
    m = np.stack([_arr(s)[:n] for s in strengths_list])  # (sessions, checkpoints)
    df = pd.DataFrame(m)  # pandas skips NaN quietly and gives NaN where fewer than 2 values remain
    mu = df.mean(axis=0).to_numpy(dtype=np.float64)
    sigma = df.std(axis=0, ddof=1).to_numpy(dtype=np.float64)
    valid = np.isfinite(mu) & np.isfinite(sigma)
    con = 1.0 - 2.0 * float(_div(sigma[valid].sum(), mu[valid].sum())) if valid.any() else math.nan
    local = 1.0 - 2.0 * _div(sigma, mu)
    return con, local


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


def _tolist(x: np.ndarray) -> list[float]:
    return [float(v) for v in x]


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


def calc_trial_stats(session_scores: Series) -> dict[str, float]:
    """``TRIAL_STATS_KEYS``: the IQM of the sessions' final scores and its stratified-bootstrap 95% interval (one
    stratum, the trial's env). NaN scores (sessions too short to score, D36) are left out; all NaN without any."""
    low, high = stats.bootstrap_ci([session_scores])
    return dict(zip(TRIAL_STATS_KEYS, (stats.iqm(session_scores), low, high), strict=True))


def calc_trial_metrics(session_metrics_list: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Trial metrics from the sessions' ``{scalar, local}`` metrics, ordered by session index.

    scalar: ``METRICS_COLS`` in order, then ``TRIAL_STATS_KEYS``. ``frame`` is session 0's last frame,
    ``consistency`` is computed over all sessions' strengths, every other ``METRICS_COLS`` value is the mean (NaN
    skipped) of the session scalars; the IQM and its interval are over the sessions' ``total_reward_ma``. local: one
    list per session for each session series, plus ``consistencies``, and ``frames``/``opt_steps`` of session 0.
    """
    if not session_metrics_list:
        raise ValueError("calc_trial_metrics needs at least one session's metrics")
    locals_ = [m["local"] for m in session_metrics_list]
    consistency, local_cons = calc_consistency([loc["strengths"] for loc in locals_])
    frames0 = locals_[0]["frames"]
    scalar: dict[str, float] = {"frame": float(frames0[-1]) if len(frames0) else math.nan}
    for key in SESSION_SCALAR_KEYS:
        scalar[key] = _nanmean(_arr([m["scalar"][key] for m in session_metrics_list]))
    scalar["consistency"] = consistency
    scalar = {k: scalar[k] for k in METRICS_COLS}
    scalar.update(calc_trial_stats([m["scalar"]["total_reward_ma"] for m in session_metrics_list]))
    local: dict[str, Any] = {key: [list(loc[key]) for loc in locals_] for key in TRIAL_SESSION_SERIES}
    local["consistencies"] = _tolist(local_cons)
    local["frames"] = list(frames0)
    local["opt_steps"] = list(locals_[0]["opt_steps"])
    return {"scalar": scalar, "local": local}


# ---------------------------------------------------------------------------------------------------------------
# console summary lines


def format_metric_value(key: str, value: Any) -> str:
    """NaN -> ``nan``; ``frame`` -> ``.2e``; ``total_reward``/``total_reward_ma`` -> ``.2f``; other non-integral
    floats -> ``.4g``; integral numbers -> ``g``."""
    if value is None:
        return "nan"
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return "nan"
    if key == "frame":
        return f"{v:.2e}"
    if key in ("total_reward", "total_reward_ma"):
        return f"{v:.2f}"
    if math.isfinite(v) and v.is_integer():
        return f"{v:g}"
    return f"{v:.4g}"


def format_checkpoint_block(header: str, row: Mapping[str, Any], per_line: int = 4) -> str:
    """The checkpoint summary: ``header``, then ``key:value`` items, ``per_line`` per line, each padded to the
    longest item, two spaces between items (trailing spaces stripped)."""
    items = [f"{k}:{format_metric_value(k, v)}" for k, v in row.items()]
    width = max((len(item) for item in items), default=0)
    lines = [header]
    for i in range(0, len(items), per_line):
        lines.append("  ".join(item.ljust(width) for item in items[i : i + per_line]).rstrip())
    return "\n".join(lines)


def trial_metrics_line(scalar: Mapping[str, Any]) -> str:
    """``trial_metrics: frame:2.00e+05 | total_reward_ma:471.36 | ...`` in ``METRICS_COLS`` order."""
    parts = [f"{k}:{format_metric_value(k, scalar.get(k))}" for k in METRICS_COLS]
    return "trial_metrics: " + " | ".join(parts)


def trial_stats_line(scalar: Mapping[str, Any], num_sessions: int) -> str:
    """``trial_iqm: total_reward_ma IQM 471.36, 95% CI [460.12, 480.20] over 4 sessions (stratified bootstrap)``; a
    line of its own, so that the ``trial_metrics:`` line keeps the exact shape that tooling greps."""
    iqm, low, high = (format_metric_value("total_reward_ma", scalar.get(k)) for k in TRIAL_STATS_KEYS)
    return (
        f"trial_iqm: total_reward_ma IQM {iqm}, 95% CI [{low}, {high}] over {num_sessions} sessions"
        " (stratified bootstrap)"
    )


def session_metrics_line(index: int, scalar: Mapping[str, Any]) -> str:
    """``Session 0 metrics: total_reward_ma:… | strength:… | …`` (logged at the end of a session with
    ``--log-extra``)."""
    parts = [f"{k}:{format_metric_value(k, scalar.get(k))}" for k in SESSION_SCALAR_KEYS]
    return f"Session {index} metrics: " + " | ".join(parts)


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

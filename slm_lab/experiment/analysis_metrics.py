"""The pure functions of the analysis: the metrics of numpy series and the console summary lines of their values.

Nothing here reads or writes files or the environment; ``slm_lab.experiment.analysis`` builds a session's series
from its dataframe and the env's random baseline, and writes what these functions compute.

Beyond the reference (B3), each trial also reports the interquartile mean (IQM) of its sessions' final scores (each
session's ``total_reward_ma``) with a stratified-bootstrap 95% confidence interval, as extra keys after
``METRICS_COLS`` (``TRIAL_STATS_KEYS``); the ``trial_metrics:`` line keeps its exact reference shape and the IQM gets
a line of its own. The bootstrap is seeded, so a retro analysis reproduces the numbers exactly.

Conventions for the series: R_i is ``total_reward`` at checkpoint i, s_i = R_i − R_rand is the local strength, f_i the
frame and o_i the opt step. NaN returns (before the first episode, D39) are skipped by every mean and sum.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from slm_lab.lib import stats, viz

__all__ = [
    "MA_WINDOW",
    "METRICS_COLS",
    "SESSION_LOCAL_KEYS",
    "SESSION_SCALAR_KEYS",
    "TRIAL_SESSION_SERIES",
    "TRIAL_STATS_KEYS",
    "calc_consistency",
    "calc_efficiency",
    "calc_final_strength",
    "calc_max_strength",
    "calc_stability",
    "calc_strength",
    "calc_strengths",
    "calc_total_reward_ma",
    "calc_trial_metrics",
    "calc_trial_stats",
    "format_checkpoint_block",
    "format_metric_value",
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

Series = Sequence[float] | np.ndarray | pd.Series


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


def _tolist(x: np.ndarray) -> list[float]:
    return [float(v) for v in x]


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

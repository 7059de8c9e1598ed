"""Aggregate statistics that survive review (B3): the interquartile mean, stratified-bootstrap confidence intervals,
performance profiles and the probability of improvement, after Agarwal et al. 2021, "Deep Reinforcement Learning at
the Edge of the Statistical Precipice" (https://arxiv.org/abs/2108.13264).

Why these: a trial has few sessions (seeds), typically 4. Their plain mean is pulled around by one lucky or unlucky
seed, and a mean without an interval invites over-reading a difference between two runs. The IQM discards the
lowest and highest quarter of the scores, so it is robust to such outliers yet uses more data than the median; the
bootstrap interval says how much it could move with other seeds.

Scores come as *strata*: one 1-D array of run scores per task (environment). A bootstrap replicate resamples the runs
of each task with replacement, separately per task ("stratified"), so every replicate keeps each task's number of
runs; a statistic is then computed on the replicate. NaN scores (a session too short to score, D36) are dropped
first. Every random draw goes through ``numpy.random.default_rng(seed)`` with a fixed default seed, so a metric file
recomputed from the same scores (``slm-retro``) is identical.

Example::

    >>> iqm([1.0, 2.0, 3.0, 100.0])  # the lowest and highest quarter (1 and 100) are dropped
    2.5
"""

import math
from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "BOOTSTRAP_REPS",
    "CONFIDENCE",
    "bootstrap_ci",
    "iqm",
    "iqm_rows",
    "mean_rows",
    "performance_profile",
    "probability_of_improvement",
    "probability_of_improvement_ci",
]

BOOTSTRAP_REPS = 10_000
CONFIDENCE = 0.95
SEED = 0

Scores = Sequence[float] | np.ndarray
Strata = Sequence[Scores]
RowStatistic = Callable[[np.ndarray], np.ndarray]


def _clean(scores: Scores) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64).ravel()
    return x[~np.isnan(x)]


def _clean_strata(strata: Strata) -> list[np.ndarray]:
    """Each task's scores without NaN; tasks left with no score are dropped."""
    cleaned = [_clean(s) for s in strata]
    return [s for s in cleaned if s.size]


def iqm_rows(samples: np.ndarray) -> np.ndarray:
    """Interquartile mean of each row of a (rows, n) array: sort, drop ``n // 4`` values at each end, average.

    Dropping ``floor(n/4)`` at each end is the usual trimmed-mean convention (scipy's ``trim_mean(x, 0.25)``, which
    the paper's own tables use), so for n < 4 nothing is dropped and the IQM is the plain mean.
    """
    n = samples.shape[-1]
    k = n // 4
    ordered = np.sort(samples, axis=-1)
    return ordered[..., k : n - k].mean(axis=-1)


def mean_rows(samples: np.ndarray) -> np.ndarray:
    """Mean of each row; the plain-mean counterpart of ``iqm_rows``."""
    return samples.mean(axis=-1)


def iqm(scores: Scores) -> float:
    """Interquartile mean of the non-NaN scores (see ``iqm_rows``); NaN when there is none."""
    x = _clean(scores)
    return float(iqm_rows(x[None, :])[0]) if x.size else math.nan


def _resample(strata: list[np.ndarray], reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, total runs): per task, ``len(task)`` draws with replacement from that task only, concatenated."""
    parts = [task[rng.integers(0, task.size, size=(reps, task.size))] for task in strata]
    return np.concatenate(parts, axis=1)


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [100.0 * alpha, 100.0 * (1.0 - alpha)], axis=0)
    return float(low), float(high)


def bootstrap_ci(
    strata: Strata,
    statistic: RowStatistic = iqm_rows,
    reps: int = BOOTSTRAP_REPS,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> tuple[float, float]:
    """Percentile interval of ``statistic`` under the stratified bootstrap.

    ``strata`` is one array of run scores per task (a single trial is one task: its sessions' scores).
    ``statistic`` maps a (reps, runs) array to one value per row. Returns ``(nan, nan)`` without scores.
    """
    tasks = _clean_strata(strata)
    if not tasks:
        return math.nan, math.nan
    samples = _resample(tasks, reps, np.random.default_rng(seed))
    return _percentile_interval(statistic(samples), confidence)


def _fraction_above(samples: np.ndarray, sizes: list[int], taus: np.ndarray) -> np.ndarray:
    """Run-score distribution: per task the fraction of runs scoring above each τ, averaged over tasks.
    ``samples`` is (reps, total runs) with tasks concatenated in ``sizes`` blocks; returns (reps, len(taus))."""
    out = np.zeros((samples.shape[0], taus.size))
    start = 0
    for size in sizes:
        block = samples[:, start : start + size]
        out += (block[:, :, None] > taus[None, None, :]).mean(axis=1)
        start += size
    return out / len(sizes)


def performance_profile(
    strata: Strata,
    taus: Scores,
    reps: int = 2_000,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The performance profile F(τ) = fraction of runs with a score above τ (averaged over tasks), for each τ,
    with its stratified-bootstrap percentile band. Returns ``(profile, low, high)``, each shaped like ``taus``;
    all NaN without scores."""
    tau = np.asarray(taus, dtype=np.float64)
    tasks = _clean_strata(strata)
    if not tasks:
        nan = np.full(tau.shape, np.nan)
        return nan, nan.copy(), nan.copy()
    sizes = [t.size for t in tasks]
    point = _fraction_above(np.concatenate(tasks)[None, :], sizes, tau)[0]
    boot = _fraction_above(_resample(tasks, reps, np.random.default_rng(seed)), sizes, tau)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(boot, [100.0 * alpha, 100.0 * (1.0 - alpha)], axis=0)
    return point, low, high


def _prob_greater(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) per row for (reps, n) and (reps, m) samples: the Mann-Whitney U statistic over all n·m pairs, a tie
    counting one half."""
    diff = x[:, :, None] - y[:, None, :]
    return (diff > 0).mean(axis=(1, 2)) + 0.5 * (diff == 0).mean(axis=(1, 2))


def _paired_tasks(x_strata: Strata, y_strata: Strata) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(x_strata) != len(y_strata):
        raise ValueError(f"X has {len(x_strata)} tasks and Y has {len(y_strata)}; they must match")
    pairs = [(_clean(x), _clean(y)) for x, y in zip(x_strata, y_strata, strict=True)]
    return [(x, y) for x, y in pairs if x.size and y.size]


def probability_of_improvement(x_strata: Strata, y_strata: Strata) -> float:
    """P(X > Y): the probability that a run of X on a task scores above a run of Y on the same task, averaged over
    the tasks that both have scores (task m of X pairs with task m of Y). NaN without such a task."""
    pairs = _paired_tasks(x_strata, y_strata)
    if not pairs:
        return math.nan
    return float(np.mean([_prob_greater(x[None, :], y[None, :])[0] for x, y in pairs]))


def probability_of_improvement_ci(
    x_strata: Strata,
    y_strata: Strata,
    reps: int = 2_000,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> tuple[float, float]:
    """Stratified-bootstrap percentile interval of ``probability_of_improvement``: X's and Y's runs are resampled
    independently within each task."""
    pairs = _paired_tasks(x_strata, y_strata)
    if not pairs:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    total = np.zeros(reps)
    for x, y in pairs:
        total += _prob_greater(_resample([x], reps, rng), _resample([y], reps, rng))
    return _percentile_interval(total / len(pairs), confidence)

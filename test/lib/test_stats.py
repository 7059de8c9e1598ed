"""IQM, stratified bootstrap, performance profiles and probability of improvement against hand-computed values."""

import math

import numpy as np
import pytest

from slm_lab.lib import stats


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([5.0], 5.0),
        ([1.0, 2.0, 4.0], 7 / 3),  # n < 4: nothing trimmed
        ([1.0, 2.0, 3.0, 100.0], 2.5),  # n = 4: drop 1 and 100
        ([100.0, 3.0, 1.0, 2.0, 4.0], 3.0),  # n = 5: drop one at each end, mean of 2, 3, 4
        ([0.0, 10.0, 1.0, 2.0, 3.0, 4.0, 5.0, -50.0], 2.5),  # n = 8: drop 2 at each end, mean of 1..4
        ([np.nan, 1.0, 2.0, 3.0, 100.0], 2.5),  # NaN sessions are dropped first
    ],
)
def test_iqm_by_hand(scores, expected):
    assert stats.iqm(scores) == pytest.approx(expected)


def test_iqm_empty_is_nan():
    assert math.isnan(stats.iqm([]))
    assert math.isnan(stats.iqm([np.nan, np.nan]))


def test_iqm_rows_matches_scalar():
    rows = np.array([[1.0, 2.0, 3.0, 100.0], [4.0, 4.0, 0.0, 8.0]])
    np.testing.assert_allclose(stats.iqm_rows(rows), [2.5, 4.0])


def test_bootstrap_ci_of_the_mean_by_hand():
    """Scores [0,0,0,1,1,1]: a resample's sum is Binomial(6, 1/2), so P(mean = 0) = 1/64 < 2.5% < P(mean ≤ 1/6) =
    7/64, and symmetrically at the top: the 95% percentile interval is exactly [1/6, 5/6]."""
    low, high = stats.bootstrap_ci([[0, 0, 0, 1, 1, 1]], stats.mean_rows, reps=20_000, seed=3)
    assert low == pytest.approx(1 / 6)
    assert high == pytest.approx(5 / 6)


def test_bootstrap_is_stratified():
    """Task A's runs are always [1, 1], whatever the draw; only task B's 6 runs vary (as above), so the mean over
    the 8 runs lies in [(2 + 1)/8, (2 + 5)/8]. Pooled resampling would mix A's and B's runs and widen it."""
    low, high = stats.bootstrap_ci([[1, 1], [0, 0, 0, 1, 1, 1]], stats.mean_rows, reps=20_000, seed=5)
    assert (low, high) == (pytest.approx(3 / 8), pytest.approx(7 / 8))


def test_bootstrap_ci_seeded_and_degenerate():
    scores = [[310.0, 455.0, 470.0, 498.0, 500.0]]
    assert stats.bootstrap_ci(scores) == stats.bootstrap_ci(scores)  # fixed default seed: reproducible
    low, high = stats.bootstrap_ci(scores)
    assert 310.0 <= low <= stats.iqm(scores[0]) <= high <= 500.0
    assert stats.bootstrap_ci([[7.0, 7.0, 7.0]]) == (7.0, 7.0)
    for empty in ([[np.nan]], [[]], []):
        assert all(math.isnan(v) for v in stats.bootstrap_ci(empty))


def test_performance_profile_by_hand():
    # task 1 runs [1, 3], task 2 runs [2, 2, 4]: fraction above tau averaged over the two tasks
    profile, low, high = stats.performance_profile([[1.0, 3.0], [2.0, 2.0, 4.0]], [0.0, 1.5, 2.0, 3.5, 5.0])
    np.testing.assert_allclose(profile, [1.0, (0.5 + 1.0) / 2, (0.5 + 1 / 3) / 2, (0.0 + 1 / 3) / 2, 0.0])
    assert np.all(low <= profile + 1e-12) and np.all(profile <= high + 1e-12)
    assert low[0] == high[0] == 1.0 and low[-1] == high[-1] == 0.0


def test_probability_of_improvement_by_hand():
    assert stats.probability_of_improvement([[1.0, 2.0]], [[0.0, 3.0]]) == 0.5  # 2 of 4 pairs
    assert stats.probability_of_improvement([[1.0]], [[1.0]]) == 0.5  # a tie counts one half
    assert stats.probability_of_improvement([[2.0, 3.0]], [[1.0]]) == 1.0
    # two tasks, averaged: task 1 gives 1; task 2 gives 1/4 (of the pairs 3>4, 3>6, 5>4, 5>6 only 5>4 holds)
    assert stats.probability_of_improvement([[2.0], [3.0, 5.0]], [[1.0], [4.0, 6.0]]) == pytest.approx(
        (1.0 + 0.25) / 2
    )
    assert math.isnan(stats.probability_of_improvement([[np.nan]], [[1.0]]))
    with pytest.raises(ValueError, match="tasks"):
        stats.probability_of_improvement([[1.0]], [[1.0], [2.0]])


def test_probability_of_improvement_ci():
    low, high = stats.probability_of_improvement_ci([[2.0, 3.0]], [[1.0, 1.5]])
    assert low == high == 1.0  # every resample of X beats every resample of Y
    x, y = [[1.0, 2.0, 3.0, 4.0]], [[1.5, 2.5, 3.5, 4.5]]
    low, high = stats.probability_of_improvement_ci(x, y)
    assert stats.probability_of_improvement(x, y) == 6 / 16  # x beats y in 1+2+3 of the 16 pairs
    assert 0.0 <= low < 6 / 16 < high <= 1.0

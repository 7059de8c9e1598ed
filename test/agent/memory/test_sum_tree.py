import io

import numpy as np
import pytest
import torch

from slm_lab.agent.memory import SumTree


def check_internal_sums(tree: SumTree) -> None:
    """Every internal node equals the sum of its two children."""
    nodes = np.arange(1, tree.num_leaves)
    np.testing.assert_allclose(tree.tree[nodes], tree.tree[2 * nodes] + tree.tree[2 * nodes + 1])


@pytest.mark.parametrize("capacity", [1, 2, 5, 64, 1000])
def test_update_matches_brute_force(capacity: int) -> None:
    rng = np.random.default_rng(0)
    tree = SumTree(capacity)
    truth = np.zeros(capacity)
    largest = 1.0
    for _ in range(50):
        indices = rng.integers(
            capacity, size=8
        )  # repeats included: the last value wins, as in numpy assignment
        priorities = rng.random(8) * 3
        tree.update(indices, priorities)
        truth[indices] = priorities
        largest = max(largest, priorities.max())
        assert tree.total == pytest.approx(truth.sum(), rel=1e-12)
    np.testing.assert_array_equal(tree.leaves, truth)
    np.testing.assert_array_equal(tree.get(np.arange(capacity)), truth)
    check_internal_sums(tree)
    assert tree.max_priority == largest


def test_max_priority_is_largest_ever_set_from_one() -> None:
    tree = SumTree(4)
    assert tree.max_priority == 1.0
    tree.update(np.array([0]), np.array([0.5]))
    assert tree.max_priority == 1.0
    tree.update(np.array([1, 2]), np.array([7.0, 3.0]))
    assert tree.max_priority == 7.0
    tree.update(np.array([1]), np.array([0.1]))  # lowering it later does not lower the max
    assert tree.max_priority == 7.0


@pytest.mark.parametrize(("capacity", "start_level"), [(37, 0), (37, 10), (5000, 0), (5000, 3), (5000, 10)])
def test_find_matches_cumulative_sum_search(capacity: int, start_level: int) -> None:
    """Pure walk (start level 0), pure prefix search (level ≥ depth) and the mix agree with a brute-force search."""
    rng = np.random.default_rng(1)
    tree = SumTree(capacity)
    tree.START_LEVEL = start_level
    priorities = rng.random(capacity) + 0.01
    priorities[[3, 10, 11, 12, 13, capacity - 1]] = 0.0
    tree.update(np.arange(capacity), priorities)
    values = rng.random(5000) * tree.total
    expected = np.searchsorted(np.cumsum(priorities), values, side="right")
    np.testing.assert_array_equal(tree.find(values), expected)


@pytest.mark.parametrize("start_level", [0, 2, 10])
def test_find_never_returns_empty_slots_at_the_edges(start_level: int) -> None:
    tree = SumTree(10)  # 16 leaves, 6 of them padding
    tree.START_LEVEL = start_level
    tree.update(np.arange(6), np.array([0.3, 0.0, 0.2, 0.1, 0.7, 0.0]))
    edges = np.array([0.0, np.nextafter(tree.total, 0.0), tree.total, tree.total * (1 + 1e-12)])
    found = tree.find(edges)
    assert (tree.get(found) > 0).all()
    assert found[0] == 0 and (found[1:] == 4).all()


def test_sampling_frequencies_proportional_to_priorities() -> None:
    rng = np.random.default_rng(2)
    priorities = np.array([1.0, 2.0, 3.0, 4.0, 0.0, 10.0])
    tree = SumTree(len(priorities))
    tree.update(np.arange(len(priorities)), priorities)
    n = 200_000
    counts = np.bincount(tree.find(rng.random(n) * tree.total), minlength=len(priorities))
    assert counts[4] == 0
    nonzero = priorities > 0
    expected = n * priorities[nonzero] / priorities.sum()
    chi2 = ((counts[nonzero] - expected) ** 2 / expected).sum()
    assert chi2 < 18.5  # 99.9% quantile of chi-square with 4 degrees of freedom


def test_state_dict_round_trip_with_weights_only() -> None:
    rng = np.random.default_rng(3)
    tree = SumTree(100)
    tree.update(rng.integers(100, size=60), rng.random(60) * 5)
    buf = io.BytesIO()
    torch.save(tree.state_dict(), buf)
    buf.seek(0)
    restored = SumTree(100)
    restored.load_state_dict(torch.load(buf, weights_only=True))
    np.testing.assert_array_equal(restored.tree, tree.tree)
    assert restored.max_priority == tree.max_priority
    values = rng.random(100) * tree.total
    np.testing.assert_array_equal(restored.find(values), tree.find(values))
    with pytest.raises(ValueError, match="capacity"):
        SumTree(50).load_state_dict(tree.state_dict())

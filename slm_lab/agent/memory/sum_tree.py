"""A sum tree over priorities for proportional prioritized replay (Schaul et al. 2016, https://arxiv.org/abs/1511.05952).

Every operation is vectorised over a batch of leaves: one numpy op per tree level, never a Python loop per index, so
updating or sampling a minibatch costs O(depth) numpy calls whatever the batch size.
"""

from typing import Any

import numpy as np
import torch

__all__ = ["SumTree"]


class SumTree:
    """A complete binary tree in one flat float64 array, whose leaves are the priorities of ``capacity`` slots.

    Layout: the leaf count is padded to a power of two ``L``; node 1 is the root, node ``i`` has children ``2i`` and
    ``2i + 1``, and leaf ``j`` sits at ``L + j``. Padding leaves hold 0, so they are never found. Parents are always
    recomputed from their children (never patched with deltas), so sums carry no drift over millions of updates and
    a subtree of zero priority sums to exactly 0.

    ``max_priority`` is the largest priority ever set, starting at 1.0: Schaul et al. (Algorithm 1) give a new
    transition p_t = max_{i<t} p_i with p_1 = 1.
    """

    START_LEVEL = 10
    """``find`` jumps straight to this level (or the leaves, if shallower) with one prefix sum and binary search."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"SumTree capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        self.num_leaves = 1 << max(self.capacity - 1, 0).bit_length()  # next power of two >= capacity
        self.depth = self.num_leaves.bit_length() - 1  # levels below the root
        self.tree = np.zeros(2 * self.num_leaves, dtype=np.float64)  # index 0 unused
        self.max_priority = 1.0
        # right-shift amounts that map a leaf node to its ancestors, bottom-up: (depth, 1)
        self._shifts = np.arange(1, self.depth + 1, dtype=np.int64)[:, None]

    @property
    def total(self) -> float:
        """Sum of all priorities (the root)."""
        return float(self.tree[1])

    @property
    def leaves(self) -> np.ndarray:
        """The priorities of the ``capacity`` slots (a view; do not write to it)."""
        return self.tree[self.num_leaves : self.num_leaves + self.capacity]

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Priorities of the slots ``indices``."""
        return self.tree[np.asarray(indices, dtype=np.int64) + self.num_leaves]

    def update(self, indices: np.ndarray, priorities: np.ndarray | float) -> None:
        """Set the priorities of slots ``indices`` and refresh their ancestors: O(depth) numpy ops for the batch.

        Repeated indices are allowed; the last of their priorities is kept (numpy assignment order).
        """
        nodes = np.asarray(indices, dtype=np.int64) + self.num_leaves
        priorities = np.asarray(priorities, dtype=np.float64)
        if nodes.size == 0:
            return
        self.tree[nodes] = priorities
        self.max_priority = max(self.max_priority, float(priorities.max()))
        # each row is one level of ancestors; a row only reads the row below it, which is already up to date
        parents = nodes >> self._shifts
        lefts = parents << 1
        rights = lefts + 1
        tree = self.tree
        for parent, left, right in zip(parents, lefts, rights, strict=True):
            tree[parent] = tree[left] + tree[right]

    def find(self, values: np.ndarray) -> np.ndarray:
        """Slots whose cumulative-priority interval holds each value of ``values`` (each in [0, total)).

        The walk goes down one level per step for the whole batch: right (subtracting the left sum) when the value
        is at least the left child's sum, else left. The first ``START_LEVEL`` levels are crossed in one jump: a
        prefix sum over that level's (at most 2^START_LEVEL) nodes and a binary search place every value at once,
        which costs less than that many numpy steps. Zero-priority slots are never returned.
        """
        tree = self.tree
        values = np.array(values, dtype=np.float64)  # a copy: the walk consumes it
        level = min(self.depth, self.START_LEVEL)
        first = 1 << level  # node id of the level's leftmost node
        prefix = np.cumsum(tree[first : 2 * first])
        offsets = np.searchsorted(prefix, values, side="right")  # skips zero-sum nodes
        np.minimum(offsets, first - 1, out=offsets)  # a value rounded past the last prefix
        nodes = offsets + first
        values -= prefix[offsets] - tree[nodes]  # the sum of the nodes to the left
        for _ in range(self.depth - level):
            nodes += nodes  # the left child
            left_sum = tree[nodes]
            go_right = values >= left_sum
            values -= left_sum * go_right
            nodes += go_right
        slots = nodes - self.num_leaves
        # rounding can carry a value just past a subtree's sum, onto a zero-priority slot; map those (rare) cases to
        # the nearest nonzero slot at or before it, else the first nonzero one
        bad = tree[nodes] <= 0.0
        if bad.any():
            slots[bad] = self._nearest_nonzero(slots[bad])
        return slots

    def _nearest_nonzero(self, slots: np.ndarray) -> np.ndarray:
        nonzero = np.flatnonzero(self.leaves > 0.0)
        if nonzero.size == 0:
            raise ValueError("SumTree.find: every priority is 0")
        pos = np.searchsorted(nonzero, slots, side="right") - 1
        return nonzero[np.maximum(pos, 0)]

    def _rebuild(self) -> None:
        """Recompute every internal node from the leaves, one level at a time (O(capacity))."""
        n = self.num_leaves
        while n > 1:
            self.tree[n // 2 : n] = self.tree[n : 2 * n : 2] + self.tree[n + 1 : 2 * n : 2]
            n //= 2

    def state_dict(self) -> dict[str, Any]:
        """Leaf priorities as a tensor plus ``max_priority`` (loadable with ``torch.load(weights_only=True)``)."""
        return {"priorities": torch.from_numpy(self.leaves.copy()), "max_priority": self.max_priority}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        priorities = np.asarray(state["priorities"], dtype=np.float64)
        if priorities.shape != (self.capacity,):
            raise ValueError(f"SumTree: saved capacity {priorities.shape} does not match {self.capacity}")
        self.tree[:] = 0.0
        self.tree[self.num_leaves : self.num_leaves + self.capacity] = priorities
        self._rebuild()
        self.max_priority = float(state["max_priority"])

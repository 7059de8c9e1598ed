"""Samplers choose which stored slots make a minibatch; swapping the sampler turns Replay into prioritized replay.

Random draws come from numpy's global RNG, which the session seeds and saves with its checkpoints, so sampling is
reproducible and resumes exactly.
"""

from abc import ABC, abstractmethod
from typing import Any, Protocol

import numpy as np

from slm_lab.agent.memory.sum_tree import SumTree

__all__ = ["FrameClock", "PrioritizedSampler", "Sampler", "UniformSampler"]


class FrameClock(Protocol):
    """Anything with the session's frame count (the env clock)."""

    frame: int


class Sampler(ABC):
    """Picks storage slots for a batch and, for prioritized sampling, their importance weights and priorities."""

    updates_priorities: bool = False
    """Whether ``update`` must receive the TD errors of each sampled batch."""

    def on_add(self, slots: np.ndarray) -> None:  # noqa: B027 - an optional hook; uniform sampling needs nothing
        """Called with the slots just written by the storage."""

    @abstractmethod
    def sample(self, size: int, batch_size: int) -> np.ndarray:
        """``batch_size`` slots among the ``size`` filled ones (slots 0..size-1)."""

    def weights(self, indices: np.ndarray, size: int) -> np.ndarray | None:
        """Importance-sampling weights of ``indices``, or None when sampling needs no correction."""
        return None

    def update(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """New priorities for ``indices`` from their TD errors."""
        raise NotImplementedError(f"{type(self).__name__} has no priorities")

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - stateless by default
        pass


class UniformSampler(Sampler):
    """Slots uniformly at random, with replacement."""

    def sample(self, size: int, batch_size: int) -> np.ndarray:
        return np.random.randint(size, size=batch_size, dtype=np.int64)


class PrioritizedSampler(Sampler):
    """Proportional prioritized sampling (Schaul et al. 2016, https://arxiv.org/abs/1511.05952), with IS weights (→D31).

    1. A new transition gets the largest priority set so far (1.0 at the start), so it is likely to be replayed once.
    2. A batch draws ``batch_size`` values uniformly in [0, total) and walks the sum tree, so P(i) = p_i / Σ_k p_k.
    3. Weights w_i = (N·P(i))^−β / max_j w_j, with N the filled size and the max taken over the **batch** (as in the
       paper's Algorithm 1): the largest weight in each batch is exactly 1. Since w_i ∝ p_i^−β this is
       (min_j p_j / p_i)^β over the batch, computed that way to avoid overflow.
    4. β anneals linearly from ``beta`` to ``beta_end`` over ``max_frame`` env frames, read from the clock, so it
       resumes with the clock; ``beta: 0`` gives unit weights.
    5. After a loss, p_i = (|δ_i| + ε)^α for the sampled slots.
    """

    updates_priorities = True

    def __init__(
        self,
        *,
        capacity: int,
        alpha: float,
        epsilon: float,
        beta: float = 0.4,
        beta_end: float = 1.0,
        max_frame: int,
        clock: FrameClock,
    ) -> None:
        self.tree = SumTree(capacity)
        self.alpha, self.epsilon = float(alpha), float(epsilon)
        self.beta_start, self.beta_end = float(beta), float(beta_end)
        self.max_frame = int(max_frame)
        self.clock = clock

    @property
    def beta(self) -> float:
        """β at the clock's current frame."""
        progress = min(self.clock.frame / self.max_frame, 1.0) if self.max_frame > 0 else 1.0
        return self.beta_start + (self.beta_end - self.beta_start) * progress

    def on_add(self, slots: np.ndarray) -> None:
        self.tree.update(slots, np.full(len(slots), self.tree.max_priority))

    def sample(self, size: int, batch_size: int) -> np.ndarray:
        # slots beyond `size` were never written, so their priority is 0 and the walk cannot reach them
        return self.tree.find(np.random.random(batch_size) * self.tree.total)

    def weights(self, indices: np.ndarray, size: int) -> np.ndarray:
        priorities = np.maximum(self.tree.get(indices), np.finfo(np.float64).tiny)
        return ((priorities.min() / priorities) ** self.beta).astype(np.float32)

    def priority(self, td_errors: np.ndarray) -> np.ndarray:
        """p = (|δ| + ε)^α."""
        return (np.abs(td_errors) + self.epsilon) ** self.alpha

    def update(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        self.tree.update(indices, self.priority(np.asarray(td_errors, dtype=np.float64)))

    def state_dict(self) -> dict[str, Any]:
        """The sum tree; β needs no state of its own, it is a function of the (separately restored) clock."""
        return {"tree": self.tree.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tree.load_state_dict(state["tree"])

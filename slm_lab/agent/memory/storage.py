"""Circular transition storage: preallocated numpy arrays written one vector step at a time."""

from typing import Any

import numpy as np
import torch

from slm_lab.agent.memory.base import ReplayBatch

__all__ = ["CircularStorage"]

FIELDS = ReplayBatch._fields[:6]  # states, actions, rewards, next_states, terminateds, truncateds


class CircularStorage:
    """``max_size`` transitions (state, action, reward, next_state, terminated, truncated) in preallocated arrays.

    Each env copy's transition has its own slot, so ``seen`` counts frames. ``next_state`` is stored for every
    transition rather than rebuilt from the following slot, because consecutive slots belong to different env copies
    and the true next state at an episode end is the final observation (→D6).

    Observations keep their dtype (uint8 images stay uint8, so they cost 1 byte per pixel; the algorithm converts to
    float on the device), except that float64 is stored as float32 (→D5); ``obs_dtype`` overrides the storage dtype.
    Arrays come from ``np.empty``, so memory is only committed as slots are written.
    """

    def __init__(
        self,
        *,
        max_size: int,
        state_shape: tuple[int, ...],
        state_dtype: np.dtype | str,
        action_shape: tuple[int, ...],
        action_dtype: np.dtype | str,
        device: torch.device,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        self.max_size = int(max_size)
        self.device = torch.device(device)
        self.state_shape, self.state_dtype = tuple(state_shape), np.dtype(state_dtype)
        self.action_shape, self.action_dtype = tuple(action_shape), np.dtype(action_dtype)
        self.head = 0  # the next slot to write
        self.size = 0  # filled slots
        self.seen = 0  # transitions ever added
        n = self.max_size
        self.states = np.empty((n, *self.state_shape), dtype=self.state_dtype)
        self.actions = np.empty((n, *self.action_shape), dtype=self.action_dtype)
        self.rewards = np.empty(n, dtype=np.float32)
        self.next_states = np.empty((n, *self.state_shape), dtype=self.state_dtype)
        self.terminateds = np.empty(n, dtype=np.bool_)
        self.truncateds = np.empty(n, dtype=np.bool_)

    @property
    def fields(self) -> tuple[np.ndarray, ...]:
        """The storage arrays in ``ReplayBatch`` field order."""
        return (self.states, self.actions, self.rewards, self.next_states, self.terminateds, self.truncateds)

    def add_batch(
        self,
        state: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_state: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> np.ndarray:
        """Write the N transitions of one vector step (leading axis N) and return the slots written, oldest first.

        Writes are at most two slice assignments per field (one at the wrap-around), so there is no per-transition
        loop. If N exceeds ``max_size``, only the newest ``max_size`` transitions are kept.
        """
        values = (state, action, reward, next_state, terminated, truncated)
        n = len(reward)
        skip = max(n - self.max_size, 0)  # transitions overwritten within this very batch
        head, m = self.head, n - skip
        first = min(m, self.max_size - head)  # up to the end of the arrays
        for array, value in zip(self.fields, values, strict=True):
            value = np.asarray(value)
            array[head : head + first] = value[skip : skip + first]
            if first < m:
                array[: m - first] = value[skip + first :]
        slots = np.arange(head, head + m, dtype=np.int64)
        if first < m:
            slots %= self.max_size
        self.head = (head + m) % self.max_size
        self.seen += n
        self.size = min(self.size + m, self.max_size)
        return slots

    def newest(self, k: int) -> np.ndarray:
        """The slots of the ``k`` most recent transitions, oldest first (``k`` at most ``size``)."""
        return np.arange(self.head - k, self.head, dtype=np.int64) % self.max_size

    def get(self, indices: np.ndarray) -> ReplayBatch:
        """The transitions at ``indices`` as (B, ...) tensors on the device, one transfer per field.

        Observations keep their storage dtype (uint8 stays uint8); ``weights`` is None here.
        """
        tensors = [torch.from_numpy(array[indices]).to(self.device) for array in self.fields]
        return ReplayBatch(*tensors, weights=None, indices=indices)

    def state_dict(self) -> dict[str, Any]:
        """The filled slots as tensors plus counters, loadable with ``torch.load(weights_only=True)``.

        The tensors share memory with the live arrays (a multi-GB buffer is not copied): save the dict before the
        next ``add_batch``.
        """
        s = self.size
        tensors = {key: torch.from_numpy(array[:s]) for key, array in zip(FIELDS, self.fields, strict=True)}
        return {"head": self.head, "size": self.size, "seen": self.seen, "max_size": self.max_size, **tensors}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["max_size"]) != self.max_size:
            raise ValueError(
                f"CircularStorage: saved max_size {state['max_size']} does not match {self.max_size}"
            )
        s = int(state["size"])
        for key, array in zip(FIELDS, self.fields, strict=True):
            array[:s] = np.asarray(state[key])
        self.head, self.size, self.seen = int(state["head"]), s, int(state["seen"])

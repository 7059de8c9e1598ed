"""The action adapter: from the agent's batched action to the action the env takes.

The agent always hands ``LabEnv.step`` one action per copy, ``(N,)`` or ``(N, *action_shape)``. The env wants its
native form: a vector env a batch of the same shape in the space's dtype, a single env one unbatched action (a
Python ``int`` for a ``Discrete`` space).

Continuous actions: the agent acts in [−1, 1]. When the env's Box bounds are finite and not already [−1, 1], the
agent is shown a [−1, 1] Box of the same shape, and each action is mapped linearly to [low, high],
low + (a + 1)·(high − low)/2, then clipped to the bounds, so values outside [−1, 1] saturate. Otherwise actions are
only clipped to the env's bounds (where any bound is finite).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces

from slm_lab.errors import SpecError

__all__ = ["ActionAdapter", "action_adapter"]


class ActionAdapter(NamedTuple):
    """The action space the agent sees and the map from its batched action to the env's native action."""

    space: spaces.Space
    to_native: Callable[[np.ndarray], Any]


def action_adapter(space: spaces.Space, num_envs: int, name: str) -> ActionAdapter:
    """The adapter for an env named ``name`` with single-copy action space ``space`` and ``num_envs`` copies
    (one copy: a single env, which takes unbatched actions)."""
    batched = num_envs > 1
    batch_shape = (num_envs, *space.shape) if batched else space.shape
    if isinstance(space, spaces.Discrete):
        start = int(space.start)
        if not batched:
            return ActionAdapter(space, lambda a: int(np.asarray(a).item()) + start)
        if start == 0:
            return ActionAdapter(
                space, lambda a: np.asarray(a).reshape(num_envs).astype(np.int64, copy=False)
            )
        return ActionAdapter(space, lambda a: np.asarray(a).reshape(num_envs).astype(np.int64) + start)
    if isinstance(space, spaces.MultiDiscrete | spaces.MultiBinary):
        dtype = space.dtype
        return ActionAdapter(space, lambda a: np.asarray(a).reshape(batch_shape).astype(dtype, copy=False))
    if not isinstance(space, spaces.Box):
        raise SpecError(f"env.name {name!r}: unsupported action space {space}")
    low, high, dtype = space.low.astype(np.float64), space.high.astype(np.float64), space.dtype
    finite = bool(np.all(np.isfinite(low)) and np.all(np.isfinite(high)))
    if finite and not (np.all(low == -1.0) and np.all(high == 1.0)):
        half = (high - low) / 2.0

        def rescale(a: np.ndarray) -> np.ndarray:
            a = np.asarray(a).reshape(batch_shape)
            return np.clip(low + (a + 1.0) * half, low, high).astype(dtype)

        return ActionAdapter(spaces.Box(-1.0, 1.0, shape=space.shape, dtype=dtype), rescale)
    if np.any(np.isfinite(low)) or np.any(np.isfinite(high)):
        return ActionAdapter(
            space, lambda a: np.clip(np.asarray(a).reshape(batch_shape), low, high).astype(dtype)
        )
    return ActionAdapter(space, lambda a: np.asarray(a).reshape(batch_shape).astype(dtype, copy=False))

"""Memory interface: the agent stores each vector step, asks ``ready()``, and the algorithm ``sample()``s."""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

from slm_lab.registry import Registry
from slm_lab.spec.schema import MemorySpec

__all__ = [
    "MEMORIES",
    "Memory",
    "OnPolicyBatch",
    "ReplayBatch",
    "TransitionLayout",
    "action_layout",
    "transition_layout",
]

MEMORIES: Registry[type["Memory"]] = Registry("memory")


def action_layout(action_space: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Per-copy shape and storage dtype of actions: integer indices for discrete spaces, float32 otherwise."""
    from gymnasium import spaces

    if isinstance(action_space, spaces.Discrete):
        return (), np.dtype(np.int64)
    if isinstance(action_space, spaces.MultiDiscrete):
        return tuple(action_space.shape), np.dtype(np.int64)
    return tuple(action_space.shape), np.dtype(np.float32)


class TransitionLayout(NamedTuple):
    """Per-copy shapes and storage dtypes of the observations and actions a memory keeps."""

    state_shape: tuple[int, ...]
    state_dtype: np.dtype
    action_shape: tuple[int, ...]
    action_dtype: np.dtype


def transition_layout(env: Any, obs_dtype: str | None = None) -> TransitionLayout:
    """Observations in their native dtype (uint8 frames stay uint8), float64 stored as float32, unless ``obs_dtype``
    overrides it (D5); actions as ``action_layout``."""
    space = env.observation_space
    state_dtype = np.dtype(obs_dtype) if obs_dtype else np.dtype(space.dtype)
    if obs_dtype is None and state_dtype == np.float64:
        state_dtype = np.dtype(np.float32)
    return TransitionLayout(tuple(space.shape), state_dtype, *action_layout(env.action_space))


class ReplayBatch(NamedTuple):
    """A sampled minibatch of transitions as flat (B, ...) tensors.

    ``weights`` are the importance-sampling weights (PER; None for uniform sampling); ``indices`` are the storage
    slots, used to update priorities.
    """

    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_states: torch.Tensor
    terminateds: torch.Tensor
    truncateds: torch.Tensor
    weights: torch.Tensor | None
    indices: np.ndarray


class OnPolicyBatch(NamedTuple):
    """A rollout as tensors of shape (T, N, ...): T vector steps of N env copies."""

    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_states: torch.Tensor
    terminateds: torch.Tensor
    truncateds: torch.Tensor


class Memory(ABC):
    """Stores transitions of all env copies. ``next_state`` is always the true next state (D6)."""

    updates_priorities: bool = False
    """Whether ``update_priorities`` must be called with the TD errors of each sampled batch (PER)."""

    @classmethod
    @abstractmethod
    def from_spec(
        cls,
        memory_spec: Mapping[str, Any] | MemorySpec,
        *,
        env: Any,
        algorithm_spec: dict[str, Any],
        training_frequency: int,
        device: torch.device,
    ) -> "Memory":
        """Build from the memory spec, the env (spaces, num_envs, clock, max_frame), the algorithm spec
        (``training_start_step`` etc.) and the algorithm's training cadence."""

    def on_train(self) -> None:  # noqa: B027 - an optional hook; most memories need nothing here
        """Called by the agent after each ``train()`` that ``ready()`` allowed: resets the training trigger."""

    def update_priorities(self, indices: Any, td_errors: torch.Tensor) -> None:
        """PER only: new priorities for the sampled ``indices`` from their absolute TD errors."""
        raise NotImplementedError(f"{type(self).__name__} has no priorities")

    @abstractmethod
    def update(
        self,
        state: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_state: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        """Store one vector step (arrays with a leading num_envs axis)."""

    @abstractmethod
    def ready(self) -> bool:
        """Whether enough has been stored for the algorithm to train now."""

    @abstractmethod
    def sample(self) -> Any:
        """A training batch on the memory's device."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

"""On-policy memories: rollouts that are used once, then cleared."""

from typing import Any

import numpy as np
import torch

from slm_lab.agent.memory.base import MEMORIES, Memory, OnPolicyBatch, action_layout

__all__ = ["OnPolicyBatchReplay"]


@MEMORIES.register("OnPolicyBatchReplay")
class OnPolicyBatchReplay(Memory):
    """A fixed-length rollout of ``training_frequency`` vector steps, preallocated as (T, N, ...) arrays.

    ``ready()`` is true once T vector steps are stored; ``sample()`` returns the whole rollout as tensors in one device
    transfer and starts a fresh rollout (fresh arrays, so returned tensors never alias storage being refilled).

    Spec example::

        {"name": "OnPolicyBatchReplay"}
    """

    FIELDS = OnPolicyBatch._fields  # states, actions, rewards, next_states, terminateds, truncateds

    def __init__(
        self,
        *,
        training_frequency: int,
        num_envs: int,
        state_shape: tuple[int, ...],
        state_dtype: np.dtype,
        action_shape: tuple[int, ...],
        action_dtype: np.dtype,
        device: torch.device,
    ) -> None:
        self.size = int(training_frequency)
        self.num_envs = num_envs
        self.state_shape, self.state_dtype = tuple(state_shape), np.dtype(state_dtype)
        self.action_shape, self.action_dtype = tuple(action_shape), np.dtype(action_dtype)
        self.device = device
        self.head = 0
        self._alloc()

    @classmethod
    def from_spec(
        cls,
        memory_spec: dict[str, Any],
        *,
        env: Any,
        algorithm_spec: dict[str, Any],
        training_frequency: int,
        device: torch.device,
    ) -> "OnPolicyBatchReplay":
        state_shape, state_dtype = env.observation_space.shape, env.observation_space.dtype
        action_shape, action_dtype = action_layout(env.action_space)
        return cls(
            training_frequency=training_frequency,
            num_envs=env.num_envs,
            state_shape=state_shape,
            state_dtype=np.float32 if state_dtype == np.float64 else state_dtype,
            action_shape=action_shape,
            action_dtype=action_dtype,
            device=device,
        )

    def _alloc(self) -> None:
        T, N = self.size, self.num_envs
        self.states = np.empty((T, N, *self.state_shape), dtype=self.state_dtype)
        self.next_states = np.empty_like(self.states)
        self.actions = np.empty((T, N, *self.action_shape), dtype=self.action_dtype)
        self.rewards = np.empty((T, N), dtype=np.float32)
        self.terminateds = np.empty((T, N), dtype=np.bool_)
        self.truncateds = np.empty((T, N), dtype=np.bool_)

    def update(self, state, action, reward, next_state, terminated, truncated) -> None:  # type: ignore[override]
        i = self.head
        self.states[i] = state
        self.actions[i] = action
        self.rewards[i] = reward
        self.next_states[i] = next_state
        self.terminateds[i] = terminated
        self.truncateds[i] = truncated
        self.head = i + 1

    def ready(self) -> bool:
        return self.head >= self.size

    def sample(self) -> OnPolicyBatch:
        h = self.head
        batch = OnPolicyBatch(
            *(torch.from_numpy(getattr(self, key)[:h]).to(self.device) for key in self.FIELDS)
        )
        self.head = 0
        self._alloc()
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The partial rollout as tensors (loadable with ``torch.load(weights_only=True)``)."""
        h = self.head
        return {"head": h, **{key: torch.from_numpy(getattr(self, key)[:h].copy()) for key in self.FIELDS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._alloc()
        h = self.head = int(state["head"])
        for key in self.FIELDS:
            getattr(self, key)[:h] = np.asarray(state[key])

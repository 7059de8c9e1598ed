"""On-policy memories: rollouts that are used once, then cleared."""

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from slm_lab.agent.memory.base import MEMORIES, Memory, OnPolicyBatch, transition_layout
from slm_lab.spec.schema import MemorySpec, OnPolicyCrossEntropySpec
from slm_lab.spec.schema_base import typed_section

__all__ = ["OnPolicyBatchReplay", "OnPolicyCrossEntropy", "OnPolicyReplay"]


class _OnPolicyMemory(Memory):
    """What the on-policy memories share: the training cadence, the copy count, the per-copy layout of states and
    actions (``transition_layout``), the device, and construction from the spec."""

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
        self.training_frequency = int(training_frequency)
        self.num_envs = int(num_envs)
        self.state_shape, self.state_dtype = tuple(state_shape), np.dtype(state_dtype)
        self.action_shape, self.action_dtype = tuple(action_shape), np.dtype(action_dtype)
        self.device = device

    @classmethod
    def from_spec(
        cls,
        memory_spec: Mapping[str, Any] | MemorySpec,
        *,
        env: Any,
        algorithm_spec: dict[str, Any],
        training_frequency: int,
        device: torch.device,
    ) -> "_OnPolicyMemory":
        layout = transition_layout(env)._asdict()
        return cls(
            training_frequency=training_frequency, num_envs=env.num_envs, device=device, **layout,
            **cls.spec_kwargs(memory_spec),
        )  # fmt: skip

    @classmethod
    def spec_kwargs(cls, memory_spec: Mapping[str, Any] | MemorySpec) -> dict[str, Any]:
        """Constructor keywords read from the memory spec beyond the common ones."""
        return {}


@MEMORIES.register("OnPolicyBatchReplay")
class OnPolicyBatchReplay(_OnPolicyMemory):
    """A fixed-length rollout of ``training_frequency`` vector steps, preallocated as (T, N, ...) arrays.

    ``ready()`` is true once T vector steps are stored; ``sample()`` returns the whole rollout as tensors in one device
    transfer and starts a fresh rollout (fresh arrays, so returned tensors never alias storage being refilled).

    Spec example::

        {"name": "OnPolicyBatchReplay"}
    """

    FIELDS = OnPolicyBatch._fields  # states, actions, rewards, next_states, terminateds, truncateds

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = self.training_frequency  # vector steps per rollout
        self.head = 0
        self._alloc()

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


Episode = tuple[np.ndarray, ...]
"""One complete episode: an (L, ...) array per ``OnPolicyBatch`` field, in field order."""


@MEMORIES.register("OnPolicyReplay")
class OnPolicyReplay(_OnPolicyMemory):
    """Complete episodes, tracked per env copy (→D16), for episodic on-policy algorithms such as Reinforce.

    Vector steps are written into one growing (capacity, N, ...) buffer, exactly as they arrive, so a step costs a few
    array assignments however many copies there are. Each copy remembers the buffer row where its current episode
    began; its episode is therefore the contiguous column slice ``buffer[start:head, copy]``, which is copied out
    when the episode ends (``terminated | truncated``). Rows no copy still needs are dropped when the buffer fills,
    and it doubles only when more than half of it is still in use.

    ``ready()`` is true once ``training_frequency`` episodes have completed. ``sample()`` concatenates the completed
    episodes in completion order into a single stream of shape (L, 1, ...): with N = 1 the return and GAE recursions,
    which cut at ``terminated | truncated``, treat each episode separately. Episodes still in progress are kept.

    Spec example::

        {"name": "OnPolicyReplay"}
    """

    FIELDS = OnPolicyBatch._fields  # states, actions, rewards, next_states, terminateds, truncateds
    INITIAL_CAPACITY = 64
    """Vector steps preallocated at first; small because image observations are large and the buffer grows."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.completed: list[Episode] = []
        """Completed episodes, oldest first."""
        self.returns: list[float] = []
        """Sum of the stored rewards of each completed episode (same order as ``completed``)."""
        self._reset_buffer(self.INITIAL_CAPACITY)

    # ---------------------------------------------------------------------------------------------------------
    # storage

    def _alloc(self, capacity: int) -> tuple[np.ndarray, ...]:
        C, N = capacity, self.num_envs
        states = np.empty((C, N, *self.state_shape), dtype=self.state_dtype)
        return (
            states,
            np.empty((C, N, *self.action_shape), dtype=self.action_dtype),
            np.empty((C, N), dtype=np.float32),
            np.empty_like(states),
            np.empty((C, N), dtype=np.bool_),
            np.empty((C, N), dtype=np.bool_),
        )

    def _reset_buffer(self, capacity: int) -> None:
        """An empty buffer: every copy's (empty) episode starts at row 0."""
        self.capacity = int(capacity)
        self.buffers = self._alloc(self.capacity)
        self.head = 0
        self.starts = [0] * self.num_envs

    def _make_room(self) -> None:
        """Drop rows before the oldest in-progress episode start; double the capacity if still over half full."""
        lo = min(self.starts)
        n = self.head - lo
        if n > self.capacity // 2:
            self.capacity *= 2
            new = self._alloc(self.capacity)
            for dst, src in zip(new, self.buffers, strict=True):
                dst[:n] = src[lo : self.head]
            self.buffers = new
        elif lo > 0:
            for buf in self.buffers:
                buf[:n] = buf[lo : self.head]  # numpy copies overlapping ranges safely
        self.head = n
        self.starts = [s - lo for s in self.starts]

    def _in_progress(self, i: int) -> Episode:
        """Copy ``i``'s unfinished episode as contiguous (L, ...) arrays."""
        s = self.starts[i]
        return tuple(np.ascontiguousarray(buf[s : self.head, i]) for buf in self.buffers)

    def _complete(self, episode: Episode) -> None:
        self.completed.append(episode)
        self.returns.append(float(episode[2].sum(dtype=np.float64)))

    def update(self, state, action, reward, next_state, terminated, truncated) -> None:  # type: ignore[override]
        if self.head == self.capacity:
            self._make_room()
        h = self.head
        b_states, b_actions, b_rewards, b_next_states, b_terminateds, b_truncateds = self.buffers
        b_states[h] = state
        b_actions[h] = action
        b_rewards[h] = reward
        b_next_states[h] = next_state
        b_terminateds[h] = terminated
        b_truncateds[h] = truncated
        self.head = h + 1
        term, trunc = b_terminateds[h], b_truncateds[h]
        if np.count_nonzero(term) or np.count_nonzero(
            trunc
        ):  # cheaper than (term | trunc).any() on tiny arrays
            for i in np.flatnonzero(term | trunc).tolist():
                self._complete(self._in_progress(i))
                self.starts[i] = self.head

    def ready(self) -> bool:
        return len(self.completed) >= self.training_frequency

    # ---------------------------------------------------------------------------------------------------------
    # sampling

    def _select(self, episodes: list[Episode], returns: list[float]) -> list[Episode]:
        """Which completed episodes go into the batch; all of them here."""
        return episodes

    def sample(self) -> OnPolicyBatch:
        """The selected completed episodes as one (L, 1, ...) stream, one device transfer per field; then forgets
        the completed episodes (episodes in progress are kept)."""
        episodes = self._select(self.completed, self.returns)
        self.completed, self.returns = [], []
        if episodes:
            fields = [np.concatenate(parts) for parts in zip(*episodes, strict=True)]
        else:
            fields = [buf[:0, 0] for buf in self.buffers]
        return OnPolicyBatch(*(torch.from_numpy(x[:, None]).to(self.device) for x in fields))

    # ---------------------------------------------------------------------------------------------------------
    # checkpointing

    def state_dict(self) -> dict[str, Any]:
        """Completed and in-progress episodes as concatenated tensors plus their lengths (loadable with
        ``torch.load(weights_only=True)``)."""
        in_progress = [self._in_progress(i) for i in range(self.num_envs)]
        return {
            "completed": _pack(self.completed, self.buffers),
            "completed_lengths": torch.tensor([len(ep[0]) for ep in self.completed], dtype=torch.int64),
            "in_progress": _pack(in_progress, self.buffers),
            "in_progress_lengths": torch.tensor([len(ep[0]) for ep in in_progress], dtype=torch.int64),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.completed, self.returns = [], []
        for episode in _unpack(state["completed"], state["completed_lengths"]):
            self._complete(episode)
        in_progress = _unpack(state["in_progress"], state["in_progress_lengths"])
        if len(in_progress) != self.num_envs:
            raise ValueError(
                f"state has {len(in_progress)} in-progress episodes for {self.num_envs} env copies"
            )
        longest = max((len(ep[0]) for ep in in_progress), default=0)
        capacity = self.INITIAL_CAPACITY
        while capacity <= longest:
            capacity *= 2
        self._reset_buffer(capacity)
        # right-align each copy's episode so they all end at the common head
        self.head = longest
        for i, episode in enumerate(in_progress):
            self.starts[i] = longest - len(episode[0])
            for buf, x in zip(self.buffers, episode, strict=True):
                buf[self.starts[i] : longest, i] = x


@MEMORIES.register("OnPolicyCrossEntropy")
class OnPolicyCrossEntropy(OnPolicyReplay):
    """``OnPolicyReplay`` that trains only on its best episodes (cross-entropy method).

    ``sample()`` keeps the completed episodes whose return (sum of stored rewards) is at least the
    ``cross_entropy``·100 percentile of the completed episodes' returns, in completion order. The filter applies
    only when ``cross_entropy`` < 1; 1.0 keeps everything.

    Spec example::

        {"name": "OnPolicyCrossEntropy", "cross_entropy": 0.5}
    """

    def __init__(self, *, cross_entropy: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cross_entropy = float(cross_entropy)

    @classmethod
    def spec_kwargs(cls, memory_spec: Mapping[str, Any] | MemorySpec) -> dict[str, Any]:
        cfg = typed_section(memory_spec, OnPolicyCrossEntropySpec, "agent.memory")
        return {"cross_entropy": cfg.cross_entropy}

    def _select(self, episodes: list[Episode], returns: list[float]) -> list[Episode]:
        if self.cross_entropy >= 1.0 or not episodes:
            return episodes
        threshold = np.percentile(returns, self.cross_entropy * 100)
        return [ep for ep, ret in zip(episodes, returns, strict=True) if ret >= threshold]


def _pack(episodes: list[Episode], buffers: tuple[np.ndarray, ...]) -> dict[str, torch.Tensor]:
    """Episodes concatenated per field as tensors (empty with the right trailing shape when there are none)."""
    if episodes:
        fields = [np.concatenate(parts) for parts in zip(*episodes, strict=True)]
    else:
        fields = [buf[:0, 0].copy() for buf in buffers]
    return {key: torch.from_numpy(x) for key, x in zip(OnPolicyBatch._fields, fields, strict=True)}


def _unpack(packed: dict[str, torch.Tensor], lengths: torch.Tensor) -> list[Episode]:
    """Inverse of ``_pack``: split the concatenated fields back into episodes."""
    lengths = torch.as_tensor(lengths).cpu().numpy().astype(np.int64)
    if len(lengths) == 0:
        return []
    fields = [torch.as_tensor(packed[key]).cpu().numpy() for key in OnPolicyBatch._fields]
    bounds = np.cumsum(lengths)[:-1]
    return [
        tuple(x.copy() for x in parts) for parts in zip(*(np.split(f, bounds) for f in fields), strict=True)
    ]

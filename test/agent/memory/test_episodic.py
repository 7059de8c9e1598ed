"""Episodic on-policy memories: per-copy episode assembly (D16), true final next_state (D6), cross-entropy filter."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gymnasium import spaces

from slm_lab.agent.memory import MEMORIES, OnPolicyCrossEntropy, OnPolicyReplay

CPU = torch.device("cpu")
COPY = 1_000_000.0
"""Offset between env copies' state ids, so every stored row says which copy and step it came from."""


def fake_env(num_envs: int = 2, obs_dtype: type = np.float64, action_space: spaces.Space | None = None):
    """The parts of a LabEnv a memory reads: spaces of one copy and the number of copies."""
    return SimpleNamespace(
        num_envs=num_envs,
        observation_space=spaces.Box(0, 255, shape=(3,), dtype=obs_dtype),
        action_space=action_space if action_space is not None else spaces.Discrete(2),
    )


def make(name: str = "OnPolicyReplay", freq: int = 1, num_envs: int = 2, **memory_spec) -> OnPolicyReplay:
    return MEMORIES.get(name).from_spec(
        {"name": name, **memory_spec},
        env=fake_env(num_envs),
        algorithm_spec={},
        training_frequency=freq,
        device=CPU,
    )


def step(memory: OnPolicyReplay, t: int, ends: dict[int, str] | None = None, rewards=None, num_envs: int = 2):
    """One vector step; copy i's state is COPY·i + t. ``ends`` maps copy → "term"
    or "trunc"; a truncated copy's next_state is the (distinct) final observation COPY·i + t + 0.5."""
    ends = ends or {}
    ids = np.arange(num_envs) * COPY + t
    state = np.repeat(ids[:, None], 3, axis=1)
    next_state = state + np.where([ends.get(i) == "trunc" for i in range(num_envs)], 0.5, 1.0)[:, None]
    reward = np.asarray(rewards if rewards is not None else ids, dtype=np.float64)
    terminated = np.array([ends.get(i) == "term" for i in range(num_envs)])
    truncated = np.array([ends.get(i) == "trunc" for i in range(num_envs)])
    memory.update(state, ids.astype(np.int64) % 2, reward, next_state, terminated, truncated)


def test_registered_and_spec_layout() -> None:
    assert MEMORIES.get("OnPolicyReplay") is OnPolicyReplay
    assert MEMORIES.get("OnPolicyCrossEntropy") is OnPolicyCrossEntropy
    memory = make("OnPolicyCrossEntropy", cross_entropy=0.3)
    assert isinstance(memory, OnPolicyCrossEntropy) and memory.cross_entropy == 0.3
    assert make("OnPolicyCrossEntropy").cross_entropy == 1.0


def test_episodes_assembled_per_copy_in_completion_order() -> None:
    memory = make(freq=2)
    # copy 1 ends at t=1 (terminated), copy 0 ends at t=2 (truncated); copy 1's second episode is in progress
    step(memory, 0)
    assert not memory.ready()
    step(memory, 1, {1: "term"})
    assert not memory.ready() and len(memory.completed) == 1
    step(memory, 2, {0: "trunc"})
    assert memory.ready()
    batch = memory.sample()
    # copy 1's episode (t=0,1) first, then copy 0's (t=0,1,2); never interleaved
    assert batch.states.shape == (5, 1, 3) and batch.next_states.shape == (5, 1, 3)
    assert batch.actions.shape == (5, 1) and batch.rewards.shape == (5, 1)
    assert batch.terminateds.shape == batch.truncateds.shape == (5, 1)
    assert torch.equal(batch.states[:, 0, 0], torch.tensor([COPY, COPY + 1, 0.0, 1.0, 2.0]))
    assert batch.terminateds[:, 0].tolist() == [False, True, False, False, False]
    assert batch.truncateds[:, 0].tolist() == [False, False, False, False, True]
    # every sampled episode ends on terminated | truncated, and only there
    done = (batch.terminateds | batch.truncateds)[:, 0]
    assert done.tolist() == [False, True, False, False, True]
    assert not memory.ready() and memory.completed == []


def test_ready_counts_completed_episodes_including_simultaneous_ends() -> None:
    memory = make(freq=3)
    step(memory, 0, {0: "term", 1: "term"})
    assert not memory.ready()
    step(memory, 1, {1: "trunc"})
    assert memory.ready() and len(memory.completed) == 3
    # ties within one step are ordered by copy index
    assert memory.sample().states[:, 0, 0].tolist() == [0.0, COPY, COPY + 1]


def test_truncated_episode_keeps_true_final_next_state() -> None:
    memory = make()
    step(memory, 0)
    step(memory, 1, {0: "trunc"})
    batch = memory.sample()
    assert torch.equal(batch.next_states[-1, 0], torch.full((3,), 1.5))
    assert torch.equal(batch.next_states[0, 0], torch.full((3,), 1.0))


def test_in_progress_episodes_survive_sample() -> None:
    memory = make()
    step(memory, 0)
    step(memory, 1, {0: "term"})
    memory.sample()
    step(memory, 2)
    step(memory, 3, {1: "term"})
    # copy 1's episode spans the earlier sample
    assert memory.sample().states[:, 0, 0].tolist() == [COPY + t for t in range(4)]
    step(memory, 4, {0: "term"})
    assert memory.sample().states[:, 0, 0].tolist() == [2.0, 3.0, 4.0]


def test_long_episodes_grow_and_compact_buffer() -> None:
    memory = make(freq=1)
    capacity = memory.capacity
    # after a short first episode (so the growth must also drop rows), copy 0 runs one long episode while copy 1
    # ends every 3 steps: the buffer must grow without losing or shifting rows
    T1 = 5 * capacity
    for t in range(T1):
        ends = {0: "term"} if t in (5, T1 - 1) else {}
        if t % 3 == 2:
            ends[1] = "term"
        step(memory, t, ends)
    assert memory.capacity > capacity
    copy0 = [x for x in memory.sample().states[:, 0, 0].tolist() if x < COPY]
    assert copy0 == [float(t) for t in range(T1)]
    # then short episodes ending at different steps: rows still in use are shifted down, the capacity stays put
    capacity = memory.capacity
    T2 = 4 * capacity
    for t in range(T2):
        ends = {0: "term"} if t % 2 == 1 else {}
        if t % 3 == 2:
            ends[1] = "term"
        step(memory, t, ends)
    assert memory.capacity == capacity and len(memory.completed) == T2 // 2 + T2 // 3
    states = memory.sample().states[:, 0, 0].tolist()
    assert [x for x in states if x < COPY] == [float(t) for t in range(T2)]
    # copy 1's episode in progress at the end of the first phase (its last two steps) carries on into this one
    carried = [COPY + T1 - 2, COPY + T1 - 1]
    assert [x for x in states if x >= COPY] == carried + [COPY + t for t in range(T2 // 3 * 3)]


def test_sample_does_not_alias_storage() -> None:
    memory = make()
    step(memory, 0, {0: "term"})
    batch = memory.sample()
    for t in range(200):
        step(memory, t + 1, {0: "term"})
    assert batch.states[:, 0, 0].tolist() == [0.0]


def test_empty_sample_has_field_shapes() -> None:
    batch = make().sample()
    assert batch.states.shape == (0, 1, 3) and batch.actions.shape == (0, 1) and batch.rewards.shape == (0, 1)


@pytest.mark.parametrize(
    ("obs_dtype", "want"), [(np.float64, torch.float32), (np.float32, torch.float32), (np.uint8, torch.uint8)]
)
def test_dtypes(obs_dtype: type, want: torch.dtype) -> None:
    memory = OnPolicyReplay.from_spec(
        {}, env=fake_env(1, obs_dtype), algorithm_spec={}, training_frequency=1, device=CPU
    )
    memory.update(
        np.ones((1, 3), obs_dtype),
        np.array([1]),
        np.array([0.5]),
        np.ones((1, 3), obs_dtype),
        np.array([True]),
        np.array([False]),
    )
    batch = memory.sample()
    assert batch.states.dtype == batch.next_states.dtype == want
    assert batch.actions.dtype == torch.int64 and batch.rewards.dtype == torch.float32
    assert batch.terminateds.dtype == batch.truncateds.dtype == torch.bool


def test_continuous_actions_are_float32_with_shape() -> None:
    env = fake_env(2, action_space=spaces.Box(-1, 1, shape=(2,), dtype=np.float64))
    memory = OnPolicyReplay.from_spec({}, env=env, algorithm_spec={}, training_frequency=1, device=CPU)
    s = np.zeros((2, 3))
    memory.update(s, np.ones((2, 2)), np.zeros(2), s, np.array([True, False]), np.array([False, False]))
    batch = memory.sample()
    assert batch.actions.shape == (1, 1, 2) and batch.actions.dtype == torch.float32


def run_four_episodes(memory: OnPolicyReplay) -> None:
    """Four single-copy episodes with returns 1, 10, 3, 7 (two steps each)."""
    for ret in (1.0, 10.0, 3.0, 7.0):
        for t, end in ((0, None), (1, {0: "term"})):
            step(memory, int(ret) * 10 + t, end, rewards=[ret / 2], num_envs=1)


def test_cross_entropy_keeps_top_episodes_in_order() -> None:
    memory = make("OnPolicyCrossEntropy", freq=4, num_envs=1, cross_entropy=0.5)
    run_four_episodes(memory)
    assert memory.ready()
    batch = memory.sample()
    # median of (1, 10, 3, 7) is 5: the returns-10 and returns-7 episodes survive, in completion order
    assert batch.states.shape == (4, 1, 3)
    assert batch.rewards[:, 0].tolist() == [5.0, 5.0, 3.5, 3.5]
    assert batch.terminateds[:, 0].tolist() == [False, True, False, True]
    assert not memory.ready()


def test_cross_entropy_one_keeps_everything() -> None:
    memory = make("OnPolicyCrossEntropy", freq=4, num_envs=1, cross_entropy=1.0)
    run_four_episodes(memory)
    assert memory.sample().states.shape == (8, 1, 3)


def test_cross_entropy_zero_keeps_everything_at_or_above_minimum() -> None:
    memory = make("OnPolicyCrossEntropy", freq=4, num_envs=1, cross_entropy=0.0)
    run_four_episodes(memory)
    assert memory.sample().states.shape == (8, 1, 3)


@pytest.mark.parametrize("name", ["OnPolicyReplay", "OnPolicyCrossEntropy"])
def test_state_dict_round_trip(name: str) -> None:
    kwargs = {"cross_entropy": 0.5} if name == "OnPolicyCrossEntropy" else {}
    memory = make(name, freq=2, **kwargs)
    for t in range(70):  # enough steps to pass the initial capacity
        step(memory, t, {1: "term"} if t % 4 == 3 else None)
    step(memory, 70, {0: "trunc"})
    step(memory, 71)
    # completed episodes and both in-progress episodes (different lengths) are saved
    buffer = io.BytesIO()
    torch.save(memory.state_dict(), buffer)
    buffer.seek(0)
    restored = make(name, freq=2, **kwargs)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert len(restored.completed) == len(memory.completed) and restored.returns == memory.returns
    for m in (memory, restored):
        step(m, 72, {0: "term"})
        step(m, 73, {1: "trunc"})
    a, b = memory.sample(), restored.sample()
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and torch.equal(x, y)
    for m in (memory, restored):
        step(m, 74, {0: "term", 1: "term"})
    for x, y in zip(memory.sample(), restored.sample(), strict=True):
        assert torch.equal(x, y)


def test_state_dict_of_fresh_memory_round_trips() -> None:
    memory, restored = make(), make()
    restored.load_state_dict(memory.state_dict())
    for m in (memory, restored):
        step(m, 0, {0: "term"})
    for x, y in zip(memory.sample(), restored.sample(), strict=True):
        assert torch.equal(x, y)

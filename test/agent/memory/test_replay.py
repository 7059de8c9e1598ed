import io
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

from slm_lab.agent.memory import MEMORIES, PrioritizedReplay, Replay

CPU = torch.device("cpu")


def fake_env(
    num_envs: int = 2, obs_dtype: Any = np.float32, obs_shape: tuple[int, ...] = (4,), max_frame: int = 1000
) -> SimpleNamespace:
    """The parts of a LabEnv a memory reads: single-copy spaces, num_envs, the clock and max_frame."""
    return SimpleNamespace(
        num_envs=num_envs,
        observation_space=spaces.Box(0, 255, shape=obs_shape, dtype=obs_dtype),
        action_space=spaces.Discrete(2),
        clock=SimpleNamespace(frame=0),
        max_frame=max_frame,
    )


def make_replay(
    env: SimpleNamespace | None = None,
    *,
    name: str = "Replay",
    training_frequency: int = 1,
    algorithm_spec: dict[str, Any] | None = None,
    **memory_spec: Any,
) -> Replay:
    spec = {"name": name, "batch_size": 4, "max_size": 10, **memory_spec}
    if name == "PrioritizedReplay":
        spec = {"alpha": 0.6, "epsilon": 0.01, **spec}
    return MEMORIES.get(name).from_spec(
        spec,
        env=env or fake_env(),
        algorithm_spec=algorithm_spec or {},
        training_frequency=training_frequency,
        device=CPU,
    )


def store(memory: Replay, ids: np.ndarray, env: SimpleNamespace | None = None) -> None:
    """One vector step whose transition ``i`` has state i, next_state i + 0.5, reward i, action i % 2."""
    ids = np.asarray(ids)
    state = np.repeat(ids[:, None], 4, axis=1).astype(np.float32)
    memory.update(state, ids % 2, ids.astype(np.float32), state + 0.5, ids % 3 == 0, ids % 5 == 0)
    if env is not None:
        env.clock.frame += len(ids)


def save_load(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_registered_with_expected_types() -> None:
    assert MEMORIES.get("Replay") is Replay and MEMORIES.get("PrioritizedReplay") is PrioritizedReplay
    assert not make_replay().updates_priorities
    assert make_replay(name="PrioritizedReplay").updates_priorities


def test_wrap_around_keeps_newest_in_order_with_own_next_state() -> None:
    memory = make_replay(fake_env(num_envs=3), max_size=10)
    for step in range(5):  # 15 transitions through 10 slots
        store(memory, np.arange(3 * step, 3 * step + 3))
    storage = memory.storage
    assert (memory.seen, memory.size, storage.head) == (15, 10, 5)
    chronological = np.roll(np.arange(10), -storage.head)  # slot order, oldest first
    np.testing.assert_array_equal(storage.rewards[chronological], np.arange(5, 15))
    np.testing.assert_array_equal(storage.next_states[chronological, 0], np.arange(5, 15) + 0.5)
    np.testing.assert_array_equal(storage.states[chronological, 3], np.arange(5, 15))
    np.testing.assert_array_equal(storage.terminateds[chronological], np.arange(5, 15) % 3 == 0)
    np.testing.assert_array_equal(storage.newest(3), [2, 3, 4])
    batch = storage.get(np.arange(10))
    assert torch.equal(batch.next_states[:, 0], batch.rewards + 0.5)
    assert torch.equal(batch.states[:, 0], batch.rewards)
    assert torch.equal(batch.actions, batch.rewards.long() % 2)


def test_counters_and_batch_larger_than_buffer() -> None:
    memory = make_replay(fake_env(num_envs=4), max_size=3)
    store(memory, np.arange(2, 6))  # 4 transitions into 3 slots: the oldest is dropped
    assert (memory.seen, memory.size) == (4, 3)
    chronological = np.roll(np.arange(3), -memory.storage.head)
    np.testing.assert_array_equal(memory.storage.rewards[chronological], [3, 4, 5])
    store(memory, np.arange(6, 10))
    assert (memory.seen, memory.size) == (8, 3)
    chronological = np.roll(np.arange(3), -memory.storage.head)
    np.testing.assert_array_equal(memory.storage.rewards[chronological], [7, 8, 9])


def test_sample_shapes_and_uniform_coverage() -> None:
    np.random.seed(0)
    memory = make_replay(max_size=10, batch_size=4)
    for i in range(3):  # 6 of the 10 slots filled
        store(memory, np.array([2 * i, 2 * i + 1]))
    batch = memory.sample()
    assert batch.states.shape == (4, 4) and batch.states.dtype == torch.float32
    assert batch.actions.shape == (4,) and batch.actions.dtype == torch.int64
    assert batch.rewards.dtype == torch.float32 and batch.terminateds.dtype == torch.bool
    assert batch.weights is None and batch.indices.shape == (4,)
    counts = np.bincount(np.concatenate([memory.sample().indices for _ in range(3000)]), minlength=10)
    assert counts[6:].sum() == 0  # never the unfilled slots
    assert np.abs(counts[:6] / counts.sum() - 1 / 6).max() < 0.02


def test_ready_counts_transitions_since_last_train_independent_of_buffer_index() -> None:
    """D15: max_size 7 is not a multiple of the cadence, yet training stays every 3 vector steps after wrapping."""
    memory = make_replay(
        fake_env(num_envs=2), max_size=7, training_frequency=6, algorithm_spec={"training_start_step": 4}
    )
    trained_at = []
    for step in range(1, 25):
        store(memory, np.array([0, 1]))
        if memory.ready():
            trained_at.append(step)
            memory.on_train()
    # seen > 4 from step 3 (seen 6, with 6 stored since the start), then every 3 vector steps
    assert trained_at == [3, 6, 9, 12, 15, 18, 21, 24]


def test_ready_respects_training_start_step_and_its_default() -> None:
    default = make_replay(batch_size=4)  # training_start_step defaults to batch_size
    assert default.training_start_step == 4
    store(default, np.array([0, 1]))
    store(default, np.array([2, 3]))
    assert not default.ready()  # seen 4 is not > 4
    store(default, np.array([4, 5]))
    assert default.ready()
    default.on_train()
    assert not default.ready()
    zero = make_replay(algorithm_spec={"training_start_step": 0})
    assert not zero.ready()
    store(zero, np.array([0, 1]))
    assert zero.ready()


def test_cer_puts_every_new_transition_at_the_end_of_the_batch() -> None:
    np.random.seed(1)
    memory = make_replay(fake_env(num_envs=3), max_size=10, batch_size=5, use_cer=True)
    store(memory, np.arange(3))
    store(memory, np.arange(3, 6))
    batch = memory.sample()  # 6 new transitions, k = min(6, 5, 6) = 5
    np.testing.assert_array_equal(batch.indices[-5:], [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(batch.rewards.numpy(), [1, 2, 3, 4, 5])
    store(memory, np.arange(6, 9))
    batch = memory.sample()
    np.testing.assert_array_equal(batch.rewards[-3:].numpy(), [6, 7, 8])
    assert memory.cer_mask is not None and memory.cer_mask.tolist() == [False, False, True, True, True]
    memory.sample()  # nothing new since the previous sample
    assert memory.cer_mask is None


def test_obs_dtypes_native_float64_as_float32_and_override() -> None:
    """D5: uint8 stays uint8 (also in the sampled batch), float64 is kept as float32, obs_dtype overrides."""
    image = make_replay(fake_env(obs_dtype=np.uint8, obs_shape=(2, 3)))
    assert image.storage.states.dtype == np.uint8 and image.storage.next_states.dtype == np.uint8
    obs = np.full((2, 2, 3), 200, dtype=np.uint8)
    image.update(obs, np.zeros(2, int), np.zeros(2), obs, np.zeros(2, bool), np.zeros(2, bool))
    batch = image.sample()
    assert batch.states.dtype == torch.uint8 and int(batch.states.max()) == 200
    wide = make_replay(fake_env(obs_dtype=np.float64))
    assert wide.storage.states.dtype == np.float32
    store(wide, np.array([1, 2]))
    assert wide.sample().states.dtype == torch.float32
    half = make_replay(fake_env(obs_dtype=np.float64), obs_dtype="float16")
    assert half.storage.states.dtype == np.float16


@pytest.mark.parametrize("name", ["Replay", "PrioritizedReplay"])
def test_state_dict_round_trip_continues_identically(name: str) -> None:
    env = fake_env()
    memory = make_replay(env, name=name, max_size=8, batch_size=8, use_cer=True, training_frequency=4)
    np.random.seed(2)
    for i in range(6):
        store(memory, np.array([2 * i, 2 * i + 1]), env)
        if memory.ready():
            batch = memory.sample()
            if memory.updates_priorities:
                memory.update_priorities(batch.indices, batch.rewards * 0.3 - 1.0)
            memory.on_train()
    store(memory, np.array([20, 21]), env)  # 4 transitions stored since the last train, seen 14 > 4
    restored = make_replay(env, name=name, max_size=8, batch_size=8, use_cer=True, training_frequency=4)
    restored.load_state_dict(save_load(memory.state_dict()))
    assert (restored.seen, restored.size, restored.stored_since_train) == (14, 8, 4)
    rng_state = np.random.get_state()
    outputs = []
    for mem in (memory, restored):
        np.random.set_state(rng_state)
        trace = []
        for i in range(4):
            store(mem, np.array([30 + 2 * i, 31 + 2 * i]))
            trace.append(mem.ready())
            if mem.ready():
                batch = mem.sample()
                trace.append((batch.indices.tolist(), batch.rewards.tolist()))
                if batch.weights is not None:
                    trace.append(batch.weights.tolist())
                    mem.update_priorities(batch.indices, batch.rewards - 30.0)
                mem.on_train()
        outputs.append(trace)
    assert outputs[0] == outputs[1]
    assert outputs[0][0] is True  # the restored trigger kept its count: 4 + 2 reaches the cadence of 4


def test_per_new_transitions_get_the_current_max_priority() -> None:
    memory = make_replay(name="PrioritizedReplay", max_size=10, alpha=1.0, epsilon=0.0)
    tree = memory.sampler.tree
    store(memory, np.array([0, 1]))
    np.testing.assert_array_equal(tree.get(np.array([0, 1])), [1.0, 1.0])
    memory.update_priorities(np.array([0, 1]), torch.tensor([0.25, 3.0]))
    np.testing.assert_allclose(tree.get(np.array([0, 1])), [0.25, 3.0])
    store(memory, np.array([2, 3]))
    np.testing.assert_array_equal(tree.get(np.array([2, 3])), [3.0, 3.0])
    assert tree.total == pytest.approx(9.25)


def test_per_priority_formula() -> None:
    memory = make_replay(name="PrioritizedReplay", max_size=10, alpha=0.6, epsilon=0.01)
    for i in range(3):
        store(memory, np.array([2 * i, 2 * i + 1]))
    td_errors = torch.tensor([-2.0, 0.0, 0.5, 1.5])
    memory.update_priorities(np.array([5, 1, 2, 3]), td_errors)
    expected = (td_errors.abs().numpy().astype(np.float64) + 0.01) ** 0.6
    np.testing.assert_allclose(memory.sampler.tree.get(np.array([5, 1, 2, 3])), expected)


def test_per_skips_priority_updates_for_cer_inserted_positions() -> None:
    np.random.seed(3)
    memory = make_replay(
        name="PrioritizedReplay", max_size=10, batch_size=4, use_cer=True, alpha=1.0, epsilon=0.0
    )
    for i in range(4):
        store(memory, np.array([2 * i, 2 * i + 1]))
    memory.sample()  # consumes the CER backlog
    store(memory, np.array([8, 9]))
    batch = memory.sample()
    np.testing.assert_array_equal(batch.indices[-2:], [8, 9])
    memory.update_priorities(batch.indices, torch.full((4,), 0.5))
    tree = memory.sampler.tree
    drawn = set(batch.indices[:2].tolist())
    untouched = [slot for slot in (8, 9) if slot not in drawn]
    assert untouched, "the seed should leave a CER-only slot"
    np.testing.assert_array_equal(tree.get(np.array(untouched)), 1.0)  # CER-inserted: priority kept
    np.testing.assert_array_equal(tree.get(batch.indices[:2]), 0.5)


def test_per_is_weights_formula_bounded_and_beta_schedule() -> None:
    """D31: w_i = (N·P(i))^−β / max_j w_j over the batch, all ≤ 1; β goes from beta to beta_end at max_frame."""
    env = fake_env(max_frame=1000)
    memory = make_replay(env, name="PrioritizedReplay", max_size=10, beta=0.4, beta_end=1.0)
    sampler = memory.sampler
    for i in range(3):
        store(memory, np.array([2 * i, 2 * i + 1]))
    sampler.tree.update(np.arange(6), np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    assert sampler.beta == pytest.approx(0.4)
    env.clock.frame = 500
    assert sampler.beta == pytest.approx(0.7)
    indices = np.array([0, 2, 5, 2])
    p = np.array([1.0, 3.0, 6.0, 3.0])
    raw = (6 * p / 21.0) ** -0.7
    np.testing.assert_allclose(sampler.weights(indices, 6), raw / raw.max(), rtol=1e-6)
    env.clock.frame = 1000
    assert sampler.beta == pytest.approx(1.0)
    env.clock.frame = 5000
    assert sampler.beta == pytest.approx(1.0)
    np.random.seed(4)
    for _ in range(20):
        weights = memory.sample().weights
        assert weights is not None and weights.dtype == torch.float32
        assert (weights <= 1.0).all() and (weights > 0).all() and weights.max() == 1.0


def test_per_sampling_follows_priorities() -> None:
    np.random.seed(5)
    memory = make_replay(name="PrioritizedReplay", max_size=8, batch_size=64, alpha=1.0, epsilon=0.0)
    for i in range(3):
        store(memory, np.array([2 * i, 2 * i + 1]))
    memory.update_priorities(np.arange(6), torch.tensor([1.0, 0.0, 2.0, 0.0, 1.0, 4.0]))
    counts = np.bincount(np.concatenate([memory.sample().indices for _ in range(500)]), minlength=8)
    assert counts[[1, 3, 6, 7]].sum() == 0
    np.testing.assert_allclose(counts[[0, 2, 4, 5]] / counts.sum(), [0.125, 0.25, 0.125, 0.5], atol=0.01)

import numpy as np
import pytest
import torch

from slm_lab.agent.memory import OnPolicyBatchReplay


def make_memory(T: int = 3, N: int = 2) -> OnPolicyBatchReplay:
    return OnPolicyBatchReplay(
        training_frequency=T,
        num_envs=N,
        state_shape=(4,),
        state_dtype=np.dtype(np.float32),
        action_shape=(),
        action_dtype=np.dtype(np.int64),
        device=torch.device("cpu"),
    )


def store(memory: OnPolicyBatchReplay, i: int, N: int = 2) -> None:
    s = np.full((N, 4), i, dtype=np.float32)
    memory.update(
        s, np.full(N, i), np.full(N, i, dtype=np.float32), s + 0.5, np.zeros(N, bool), np.full(N, i == 1)
    )


def test_ready_after_time_horizon_and_batch_shapes() -> None:
    memory = make_memory()
    for i in range(3):
        assert not memory.ready()
        store(memory, i)
    assert memory.ready()
    batch = memory.sample()
    assert batch.states.shape == (3, 2, 4) and batch.actions.shape == (3, 2)
    assert batch.rewards.dtype == torch.float32 and batch.truncateds.dtype == torch.bool
    assert torch.equal(batch.rewards[:, 0], torch.tensor([0.0, 1.0, 2.0]))
    assert torch.equal(batch.next_states[2, 1], torch.full((4,), 2.5))
    assert batch.truncateds[1].all() and not batch.truncateds[0].any()
    assert not memory.ready()


def test_sampled_batch_does_not_alias_next_rollout() -> None:
    memory = make_memory()
    for i in range(3):
        store(memory, i)
    batch = memory.sample()
    for i in range(3):
        store(memory, 10 + i)
    assert torch.equal(batch.rewards[:, 0], torch.tensor([0.0, 1.0, 2.0]))


def test_state_dict_round_trip_mid_rollout() -> None:
    memory = make_memory()
    store(memory, 0)
    store(memory, 1)
    restored = make_memory()
    restored.load_state_dict(memory.state_dict())
    store(memory, 2)
    store(restored, 2)
    a, b = memory.sample(), restored.sample()
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("T", [1, 5])
def test_head_counts_vector_steps(T: int) -> None:
    memory = make_memory(T=T)
    for i in range(T):
        store(memory, i)
    assert memory.ready() and len(memory.sample().rewards) == T

"""The new net classes inside real agents: PPO with separate TorchArcNet actor and critic, DQN with a RecurrentNet."""

from pathlib import Path
from typing import Any

import numpy as np
import torch

from slm_lab.agent import build_agent
from slm_lab.agent.net import RecurrentNet, TorchArcNet
from slm_lab.env import make_env
from slm_lab.spec.loader import get_spec, override_spec, validate_spec

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ARC = {
    "modules": {
        "body": {
            "Sequential": [
                {"LazyLinear": {"out_features": 32}},
                {"LazyBatchRenorm1d": {"warmup_steps": 100}},
                {"ReLU": None},
                {"LazyWeightNormLinear": {"out_features": 32}},
                {"ReLU": None},
            ]
        }
    },
    "graph": {"input": "x", "modules": {"body": ["x"]}, "output": "body"},
}


def test_ppo_with_separate_torcharc_nets_trains(build_env_agent, rollout) -> None:
    spec = get_spec(str(FIXTURES / "ppo_cartpole_tiny.json"), "ppo_cartpole_tiny", ["max_frame=1000"])
    spec["meta"]["random_seed"] = 3
    spec["agent"]["net"] = {
        "type": "TorchArcNet",
        "arc": ARC,
        "shared": False,
        "use_same_optim": True,
        "init_fn": "orthogonal_",
        "optim_spec": {"name": "Adam", "lr": 1e-3},
    }
    env, agent = build_env_agent(spec, validate=True, seed_numpy=True)
    rollout(env, agent, 64)  # one rollout (time_horizon 64 × 2 envs) -> 2 epochs × 2 minibatches × 2 nets
    algo = agent.algorithm
    assert isinstance(algo.net, TorchArcNet) and isinstance(algo.critic_net, TorchArcNet)
    assert env.clock.opt_step == 8 and np.isfinite(agent.loss)
    renorm = algo.critic_net.body.body[1]
    assert int(renorm.num_batches_tracked) > 0  # trained in train mode on real minibatches
    env.close()


def recurrent_dqn_spec(seq_len: int) -> dict[str, Any]:
    spec = override_spec(get_spec("slm_lab/spec/benchmark/dqn/dqn_cartpole.json", "dqn_cartpole"), "test")
    spec["meta"]["random_seed"] = 0
    spec["agent"]["net"] = {
        **{k: v for k, v in spec["agent"]["net"].items() if k not in ("type", "hid_layers")},
        "type": "RecurrentNet",
        "cell_type": "LSTM",
        "fc_hid_layers": [16],
        "rnn_hidden_size": 16,
        "seq_len": seq_len,
    }
    return spec


def test_dqn_with_recurrent_net_trains_on_observation_histories(build_env_agent, rollout) -> None:
    """D16: with a RecurrentNet the env stacks each copy's last seq_len observations; the net and the replay
    memory see (seq_len, 4) histories, not a repeated observation."""
    seen: list[tuple[int, ...]] = []
    env, agent = build_env_agent(recurrent_dqn_spec(3), validate=True, seed_numpy=True)
    agent.algorithm.net.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape)))
    rollout(env, agent, 40)
    assert isinstance(agent.algorithm.net, RecurrentNet) and not agent.algorithm.flat_input
    assert env.state_dim == (3, 4) and agent.memory.storage.states.shape[1:] == (3, 4)
    assert (2, 3, 4) in seen and any(shape[1:] == (3, 4) and shape[0] > 2 for shape in seen)
    assert env.clock.opt_step > 0 and np.isfinite(agent.loss)
    env.close()


def test_observation_history_shifts_and_restarts_after_an_episode_ends() -> None:
    spec = recurrent_dqn_spec(3)
    spec["env"]["max_t"] = 5  # episodes end by truncation every 5 steps
    env = make_env(spec)
    first = env.reset(seed=0)
    assert first.shape == (2, 3, 4) and not first[:, :2].any() and first[:, 2].any()
    step = env.step(np.zeros(2, dtype=np.int64))
    np.testing.assert_array_equal(step.obs[:, 1], first[:, 2])  # shifted by one
    assert step.next_state is step.obs  # no copy ended
    for _ in range(4):
        previous = step
        step = env.step(np.zeros(2, dtype=np.int64))
    assert step.truncated.all() or step.terminated.all()
    # the stored next state is the history ending in the final observation; the next obs restarts from zeros
    np.testing.assert_array_equal(step.next_state[:, :2], previous.obs[:, 1:])
    assert not step.obs[:, :2].any() and step.obs[:, 2].any()
    assert not np.array_equal(step.obs[:, 2], step.next_state[:, 2])
    env.close()


def test_torcharc_net_needs_no_shared_key_for_actor_critic_specs() -> None:
    """`shared` is required for the actor-critic family's MLP nets, but defaults to false for TorchArcNet."""
    spec = get_spec(str(FIXTURES / "ppo_cartpole_tiny.json"), "ppo_cartpole_tiny", ["max_frame=1000"])
    spec["agent"]["net"] = {"type": "TorchArcNet", "arc": ARC, "use_same_optim": True}
    validate_spec(spec)
    env = make_env(spec)
    agent = build_agent(spec, env, "train", torch.device("cpu"))
    assert agent.algorithm.critic_net is not None  # separate actor and critic
    env.close()

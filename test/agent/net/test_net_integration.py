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


def _run(spec: dict[str, Any], vector_steps: int) -> tuple[Any, Any]:
    validate_spec(spec)
    torch.manual_seed(0)
    np.random.seed(0)
    env = make_env(spec)
    agent = build_agent(spec, env, "train", torch.device("cpu"))
    state = env.reset(seed=0)
    for _ in range(vector_steps):
        action = agent.act(state)
        step = env.step(action)
        agent.update(state, action, step)
        state = step.obs
    return env, agent


def test_ppo_with_separate_torcharc_nets_trains() -> None:
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
    env, agent = _run(spec, 64)  # one rollout (time_horizon 64 × 2 envs) -> 2 epochs × 2 minibatches × 2 nets
    algo = agent.algorithm
    assert isinstance(algo.net, TorchArcNet) and isinstance(algo.critic_net, TorchArcNet)
    assert env.clock.opt_step == 8 and np.isfinite(agent.loss)
    renorm = algo.critic_net.body.arc_modules["body"][1]
    assert int(renorm.num_batches_tracked) > 0  # trained in train mode on real minibatches
    env.close()


def test_dqn_with_recurrent_net_trains() -> None:
    spec = override_spec(get_spec("slm_lab/spec/benchmark/dqn/dqn_cartpole.json", "dqn_cartpole"), "test")
    spec["meta"]["random_seed"] = 0
    # seq_len 1: plain CartPole observations (B, 4) are one-step histories; longer histories need the env's
    # observation-stacking wrapper
    spec["agent"]["net"] = {
        **{k: v for k, v in spec["agent"]["net"].items() if k not in ("type", "hid_layers")},
        "type": "RecurrentNet",
        "cell_type": "LSTM",
        "fc_hid_layers": [16],
        "rnn_hidden_size": 16,
        "seq_len": 1,
    }
    env, agent = _run(spec, 40)
    assert isinstance(agent.algorithm.net, RecurrentNet) and not agent.algorithm.flat_input
    assert env.clock.opt_step > 0 and np.isfinite(agent.loss)
    env.close()

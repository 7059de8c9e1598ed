"""SARSA and the DQN family: the three distinct targets (D1), target-net updates, iteration counts, PER, D19."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from slm_lab.errors import SpecError
from slm_lab.lib.math_util import calc_q_targets
from slm_lab.lib.schedule import build_lr_scheduler
from slm_lab.spec.loader import get_spec, override_spec

DQN_FILE = "slm_lab/spec/benchmark/dqn/dqn_cartpole.json"


def dqn_spec(spec_name: str = "dqn_cartpole", **algorithm: Any) -> dict[str, Any]:
    spec = get_spec(DQN_FILE, spec_name)
    spec["agent"]["algorithm"].update(algorithm)
    spec["meta"]["random_seed"] = 0
    return spec


class FixedQ(nn.Module):
    """Q(s) = the first two observation features (plus 0·w so that an optimizer has a parameter)."""

    flat_input = True

    def __init__(self, offset: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2] + self.offset + 0.0 * self.w


class TableQ(nn.Module):
    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table


def test_three_dqn_targets_differ_on_a_crafted_batch(build_env_agent) -> None:
    """D1: VanillaDQN max_a Q_net; DQN max_a Q_target; DoubleDQN Q_target(argmax_a Q_net)."""
    online = TableQ(torch.tensor([[1.0, 3.0], [2.0, 0.0]]))
    target = TableQ(torch.tensor([[5.0, 4.0], [0.0, 7.0]]))
    next_states = torch.zeros(2, 4)
    xs = {}
    for name in ("VanillaDQN", "DQN", "DoubleDQN"):
        spec = dqn_spec(name=name)
        if name == "VanillaDQN":
            for key in ("update_type", "update_frequency"):
                spec["agent"]["net"].pop(key)
        env, agent = build_env_agent(spec, seed_numpy=True)
        algo = agent.algorithm
        algo.net, algo.target_net = online, target
        xs[name] = algo.calc_next_q(next_states)
        env.close()
    assert xs["VanillaDQN"].tolist() == [3.0, 2.0]
    assert xs["DQN"].tolist() == [5.0, 7.0]
    assert xs["DoubleDQN"].tolist() == [4.0, 0.0]
    y = calc_q_targets(torch.tensor([1.0, 1.0]), torch.tensor([False, True]), xs["DoubleDQN"], 0.5)
    assert y.tolist() == [3.0, 1.0]  # a terminated transition does not bootstrap


def test_target_net_starts_as_a_copy_and_follows_replace_and_polyak(build_env_agent) -> None:
    env, agent = build_env_agent(dqn_spec(), seed_numpy=True)
    algo = agent.algorithm
    for p, q in zip(algo.net.parameters(), algo.target_net.parameters(), strict=True):
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr() and not q.requires_grad
    with torch.no_grad():
        for p in algo.net.parameters():
            p.add_(1.0)
    env.clock.frame = 4  # 4 % 500 >= num_envs: no copy yet
    algo.update()
    assert not torch.equal(next(algo.net.parameters()), next(algo.target_net.parameters()))
    env.clock.frame = 1000  # 1000 % 500 < 4: copy
    algo.update()
    assert all(
        torch.equal(p, q) for p, q in zip(algo.net.parameters(), algo.target_net.parameters(), strict=True)
    )
    env.close()
    spec = dqn_spec()
    spec["agent"]["net"].update(update_type="polyak", polyak_coef=0.25)
    env, agent = build_env_agent(spec, seed_numpy=True)
    algo = agent.algorithm
    before = next(algo.target_net.parameters()).clone()
    with torch.no_grad():
        next(algo.net.parameters()).add_(4.0)
    algo.update()  # τ is the weight on the online net (D14)
    assert torch.allclose(next(algo.target_net.parameters()), before + 1.0)
    env.close()


@pytest.mark.parametrize(("name", "memory"), [("DQN", "Replay"), ("DoubleDQN", "PrioritizedReplay")])
def test_training_iterations_and_priorities(name: str, memory: str, build_env_agent, rollout) -> None:
    spec = dqn_spec("ddqn_per_cartpole" if memory == "PrioritizedReplay" else "dqn_cartpole",
                    name=name, training_iter=3, training_batch_iter=2, training_start_step=64)  # fmt: skip
    env, agent = build_env_agent(spec, seed_numpy=True)
    rollout(env, agent, 16)  # 64 transitions: nothing trains until more than training_start_step are stored
    assert env.clock.opt_step == 0
    rollout_end = env.clock.frame
    total_before = agent.memory.sampler.tree.total if memory == "PrioritizedReplay" else None
    state = env.reset()
    action = agent.act(state)
    step = env.step(action)
    agent.update(state, action, step)
    assert env.clock.frame == rollout_end + 4
    assert env.clock.opt_step == 3 * 2 and np.isfinite(agent.loss)
    if memory == "PrioritizedReplay":  # new transitions got priority 1; trained ones now (|δ| + ε)^α
        assert agent.memory.updates_priorities
        assert agent.memory.sampler.tree.total != pytest.approx(total_before + 4.0)
    env.close()


def test_vanilla_dqn_rejects_target_update_keys() -> None:
    spec = get_spec(DQN_FILE, "vanilla_dqn_cartpole")
    spec["agent"]["net"]["update_type"] = "polyak"
    from slm_lab.spec.loader import validate_spec

    with pytest.raises(SpecError, match=r"agent\.net\.update_type"):
        validate_spec(spec)


def test_value_based_rejects_continuous_actions(build_env_agent) -> None:
    spec = dqn_spec()
    spec["env"]["name"] = "Pendulum-v1"
    with pytest.raises(SpecError, match="discrete action space"):
        build_env_agent(spec, seed_numpy=True)


def test_sarsa_bootstraps_from_the_next_action_actually_taken(data_dir: Path, build_env_agent) -> None:
    """D19: Q(s′, a′) uses the action taken at the next step, including across rollouts (held-back step)."""
    spec = override_spec(get_spec("slm_lab/spec/benchmark/sarsa/sarsa_cartpole.json",
                                  "sarsa_epsilon_greedy_cartpole"), "train")  # fmt: skip
    spec["agent"]["algorithm"].update(training_frequency=2, gamma=0.5)
    spec["agent"]["net"].update(loss_spec={"name": "MSELoss"}, optim_spec={"name": "SGD", "lr": 0.0})
    env, agent = build_env_agent(spec, seed_numpy=True)
    algo = agent.algorithm
    algo.net = FixedQ()
    algo.pairs[0].net = algo.net
    algo.pairs[0].params = [algo.net.w]
    algo.optims["net"] = algo.pairs[0].optim = torch.optim.SGD([algo.net.w], lr=0.0)
    algo.lr_schedulers["net"] = build_lr_scheduler(algo.optims["net"], None, 1)
    f = np.float32
    s = [
        np.array([[1, 2, 0, 0]], f),
        np.array([[3, 4, 0, 0]], f),
        np.array([[5, 6, 0, 0]], f),
        np.array([[7, 8, 0, 0]], f),
    ]
    no = np.array([False])
    memory = agent.memory
    # rollout 1: (s0, a=1, r=1, s1), (s1, a=0, r=0, s2); s1's a′ is unknown until rollout 2
    memory.update(s[0], np.array([1]), np.array([1.0], f), s[1], no, no)
    memory.update(s[1], np.array([0]), np.array([0.0], f), s[2], no, no)
    loss1 = algo.train()
    # only (s0, a=1): Q=2, y = 1 + 0.5·Q(s1, a′=0) = 1 + 0.5·3 = 2.5 → MSE 0.25
    assert loss1 == pytest.approx(0.25)
    memory.update(s[2], np.array([1]), np.array([2.0], f), s[3], no, no)
    memory.update(s[3], np.array([0]), np.array([0.0], f), s[0], np.array([True]), no)
    loss2 = algo.train()
    # held (s1, a=0): Q=3, y = 0 + 0.5·Q(s2, a′=1) = 3 → 0;  (s2, a=1): Q=6, y = 2 + 0.5·Q(s3, a′=0) = 5.5 → 0.25
    assert loss2 == pytest.approx((0.0 + 0.25) / 2)
    env.close()

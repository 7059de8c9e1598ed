"""Reinforce and ActorCritic: net layout, advantage modes, training cadence, episodic memory per env copy."""

import numpy as np
import pytest
import torch

from slm_lab.agent.algorithm import ActorCritic
from slm_lab.agent.memory.base import OnPolicyBatch
from slm_lab.lib.math_util import calc_gaes, calc_nstep_returns, calc_returns
from slm_lab.spec.loader import get_spec

A2C_FILE = "slm_lab/spec/benchmark/a2c/a2c_gae_cartpole.json"


def test_reinforce_has_only_a_policy_net_and_trains_per_episode(build_env_agent, rollout) -> None:
    spec = get_spec("slm_lab/spec/benchmark/reinforce/reinforce_cartpole.json", "reinforce_cartpole")
    spec["agent"]["memory"] = {"name": "OnPolicyReplay"}
    spec["agent"]["algorithm"]["training_frequency"] = 1  # one complete episode per update
    env, agent = build_env_agent(spec)
    assert set(agent.algorithm.nets) == {"net"} and agent.algorithm.critic_net is None
    assert agent.algorithm.net(torch.zeros(1, 4)).shape == (1, 2)
    rollout(env, agent, 200)  # 4 copies, episodes of ~20 steps: one update per completed episode
    assert env.clock.opt_step >= env.clock.epi - 4 > 0
    assert np.isfinite(agent.loss) and "entropy_coef" in agent.algorithm.df_extras()
    env.close()


@pytest.mark.parametrize("mode", ["standardize", "percentile", "none"])
def test_normalize_advantages_scales_the_policy_gradient_weights(mode: str, build_env_agent, rollout) -> None:
    """The policy loss weights log π by the advantages standardized, divided by the EMA percentile range (at least
    1), or as they are; A2C's update folds each batch into the percentile EMAs and the resume state keeps them."""
    spec = get_spec(A2C_FILE, "a2c_gae_cartpole")
    spec["agent"]["algorithm"].update(normalize_advantages=mode, entropy_coef_spec=None)
    env, agent = build_env_agent(spec)
    algo = agent.algorithm
    logp = torch.tensor([-0.5, -1.0, -2.0, -0.1])
    advs = torch.tensor([300.0, -100.0, 1000.0, 50.0])
    algo.update_adv_normalizer(advs)
    # percentile: in the sorted [−100, 50, 300, 1000] P5 = −77.5 and P95 = 895 (linear interpolation); one EMA step
    # from 0 (decay 0.99) makes the range 0.01·(895 + 77.5) = 9.725, above the floor of 1, so it sets the scale
    weights = {
        "standardize": (advs - advs.mean()) / (advs.std() + 1e-8),
        "percentile": advs / 9.725,
        "none": advs,
    }[mode]
    loss = algo.policy_loss(logp, advs, torch.zeros(4))["policy"]
    assert float(loss) == pytest.approx(float(-(logp * weights).mean()), rel=1e-6)
    if mode == "percentile":
        before = algo.adv_normalizer.state_dict()
        rollout(env, agent, 32)  # one A2C update
        assert env.clock.opt_step == 2 and algo.adv_normalizer.state_dict() != before
        assert algo.state_dict()["normalizers"]["adv_normalizer"] == algo.adv_normalizer.state_dict()
    else:
        assert algo.adv_normalizer is None and not algo.normalizers()
    env.close()


def test_nstep_mode_trains_every_num_step_returns_steps(build_env_agent, rollout) -> None:
    spec = get_spec(A2C_FILE, "a2c_nstep_cartpole")
    algo_spec = spec["agent"]["algorithm"]
    assert ActorCritic.training_frequency(algo_spec) == algo_spec["num_step_returns"] == 16
    env, agent = build_env_agent(spec)
    rollout(env, agent, 48)
    assert env.clock.opt_step == 3 * 2  # 3 updates, separate actor and critic
    env.close()


@pytest.mark.parametrize("mode", ["gae", "nstep", "mc"])
def test_advantage_modes_match_the_estimators(mode: str, build_env_agent) -> None:
    spec = get_spec(A2C_FILE, "a2c_gae_cartpole")
    algo = spec["agent"]["algorithm"]
    algo.update(lam=0.9 if mode == "gae" else None, num_step_returns=3 if mode == "nstep" else None)
    env, agent = build_env_agent(spec)
    T, N = 5, 2
    g = torch.Generator().manual_seed(0)
    batch = OnPolicyBatch(
        states=torch.zeros(T, N, 4), actions=torch.zeros(T, N, dtype=torch.long),
        rewards=torch.rand(T, N, generator=g), next_states=torch.zeros(T, N, 4),
        terminateds=torch.tensor([[0, 0], [1, 0], [0, 0], [0, 0], [0, 0]], dtype=torch.bool),
        truncateds=torch.tensor([[0, 0], [0, 0], [0, 1], [0, 0], [0, 0]], dtype=torch.bool),
    )  # fmt: skip
    v, v_next = torch.rand(T, N, generator=g), torch.rand(T, N, generator=g)
    advs, targets = agent.algorithm.calc_advs_v_targets(batch, v, v_next)
    args = (batch.rewards, batch.terminateds, batch.truncateds)
    if mode == "gae":
        expected = calc_gaes(batch.rewards, v, v_next, batch.terminateds, batch.truncateds, 0.99, 0.9)
        assert torch.allclose(advs, expected) and torch.allclose(targets, expected + v)
    elif mode == "nstep":
        expected = calc_nstep_returns(*args, v_next, 0.99, 3)
        assert torch.allclose(targets, expected) and torch.allclose(advs, expected - v)
    else:
        expected = calc_returns(*args, 0.99, trunc_values=v_next)
        assert torch.allclose(targets, expected) and torch.allclose(advs, expected - v)
    env.close()


def test_shared_a2c_trains_one_net_with_a_value_tail(build_env_agent, rollout) -> None:
    spec = get_spec(A2C_FILE, "a2c_gae_cartpole")
    spec["agent"]["net"].update(shared=True, optim_spec={"name": "Adam", "lr": 1e-3})
    env, agent = build_env_agent(spec)
    assert set(agent.algorithm.nets) == {"net"}
    rollout(env, agent, 32)
    assert env.clock.opt_step == 1 and np.isfinite(agent.loss)
    env.close()


def test_a2c_with_episodic_memory_and_continuous_actions(build_env_agent, rollout) -> None:
    spec = get_spec("slm_lab/spec/benchmark/a2c/a2c_gae_pendulum.json", "a2c_gae_pendulum")
    spec["agent"]["memory"] = {"name": "OnPolicyReplay"}
    spec["agent"]["algorithm"]["training_frequency"] = 2  # episodes
    spec["env"].update(num_envs=2, max_t=20)
    env, agent = build_env_agent(spec)
    rollout(
        env, agent, 40
    )  # both copies finish two 20-step episodes: one update on 2 episodes, one on the rest
    assert env.clock.opt_step == 2 * 2 and np.isfinite(agent.loss)
    env.close()

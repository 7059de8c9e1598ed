"""PPO unit behaviour: value-loss forms, shared and separate nets, continuous actions, init gains, state."""

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from slm_lab.agent.algorithm import ALGORITHMS
from slm_lab.agent.memory import MEMORIES
from slm_lab.agent.net import NETS
from slm_lab.spec.loader import get_spec
from slm_lab.spec.schema import ALGORITHM_SPECS, MEMORY_SPECS, NET_SPECS

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def base_spec() -> dict[str, Any]:
    spec = get_spec(str(FIXTURES / "ppo_cartpole_tiny.json"), "ppo_cartpole_tiny", ["max_frame=1000"])
    spec["meta"]["random_seed"] = 3
    return spec


def test_registries_and_schema_tables_name_the_same_classes() -> None:
    assert set(ALGORITHMS) == set(ALGORITHM_SPECS)
    assert set(MEMORIES) == set(MEMORY_SPECS)
    assert set(NETS) == set(NET_SPECS)


@pytest.mark.parametrize("clip_vloss", [False, True])
def test_value_loss_forms(clip_vloss: bool, build_env_agent) -> None:
    spec = base_spec()
    spec["agent"]["algorithm"]["clip_vloss"] = clip_vloss
    spec["agent"]["algorithm"]["val_loss_coef"] = 2.0
    env, agent = build_env_agent(spec, validate=True)
    algo = agent.algorithm
    v, v_t, v_old = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]), torch.tensor([0.5, 0.0])
    loss = algo.calc_value_loss(v, v_t, v_old, clip_eps=0.2)
    if (
        clip_vloss
    ):  # 0.5·c·mean(max((V−Vt)², (V_old + clip(V−V_old, ±ε) − Vt)²)) = 0.5·2·mean(max(1, 0.49), 0)
        assert loss.item() == pytest.approx(0.5)
    else:  # c·MSE = 2·mean(1, 0)
        assert loss.item() == pytest.approx(1.0)
    env.close()


@pytest.mark.parametrize("value", [True, False])
def test_clip_val_loss_alias_toggles_value_clipping(tmp_path: Path, value: bool, build_env_agent) -> None:
    """D9: the reference's ``clip_val_loss`` spelling reaches the algorithm as ``clip_vloss``."""
    raw = json.loads((FIXTURES / "ppo_cartpole_tiny.json").read_text())
    raw["ppo_cartpole_tiny"]["agent"]["algorithm"]["clip_val_loss"] = value
    path = tmp_path / "alias.json"
    path.write_text(json.dumps(raw))
    spec = get_spec(str(path), "ppo_cartpole_tiny", ["max_frame=1000"])
    env, agent = build_env_agent(spec, validate=True)
    assert agent.algorithm.clip_vloss is value
    v, v_t, v_old = torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.5])
    expected = 0.5 * 0.5 * 1.0 if value else 0.5 * 1.0  # val_loss_coef 0.5
    assert agent.algorithm.calc_value_loss(v, v_t, v_old, clip_eps=0.2).item() == pytest.approx(expected)
    env.close()


def test_separate_nets_two_opt_steps_per_minibatch_and_gradient_isolation(build_env_agent, rollout) -> None:
    spec = base_spec()
    env, agent = build_env_agent(spec, validate=True)
    algo = agent.algorithm
    assert set(algo.nets) == {"net", "critic_net"} and set(algo.optims) == {"net", "critic_net"}
    rollout(env, agent, 64)  # one full rollout of time_horizon 64 vector steps × 2 envs
    # 2 epochs × 128/64 minibatches × 2 nets
    assert env.clock.opt_step == 8 and not np.isnan(agent.loss)
    # gradient isolation: the policy loss reaches only the actor, the value loss only the critic
    x = torch.randn(16, 4)
    actions = torch.randint(0, 2, (16,))
    for net in algo.nets.values():
        net.zero_grad(set_to_none=True)
    logp, _ = algo.log_prob_entropy(algo.calc_pdparam_v(x, need_v=False)[0], actions)
    logp.sum().backward()
    assert all(p.grad is not None for p in algo.net.parameters())
    assert all(p.grad is None for p in algo.critic_net.parameters())
    for net in algo.nets.values():
        net.zero_grad(set_to_none=True)
    algo.calc_v(x).sum().backward()
    assert all(p.grad is None for p in algo.net.parameters())
    assert all(p.grad is not None for p in algo.critic_net.parameters())
    env.close()


def test_shared_net_has_policy_and_value_tails_and_one_step_per_minibatch(build_env_agent, rollout) -> None:
    spec = base_spec()
    net = spec["agent"]["net"]
    net.update(shared=True, optim_spec={"name": "Adam", "lr": 1e-3})
    env, agent = build_env_agent(spec, validate=True)
    algo = agent.algorithm
    assert set(algo.nets) == {"net"}
    outs = algo.net(torch.randn(3, 4))
    assert [o.shape for o in outs] == [(3, 2), (3, 1)]
    rollout(env, agent, 64)
    assert env.clock.opt_step == 4
    env.close()


def test_actor_and_critic_init_std_set_output_layer_gains(build_env_agent) -> None:
    spec = base_spec()
    spec["agent"]["net"].update(actor_init_std=0.01, critic_init_std=1.0)
    env, agent = build_env_agent(spec, validate=True)
    w = agent.algorithm.net.tails[0].weight  # (2, 32) orthogonal rows scaled by 0.01
    assert torch.allclose(w @ w.T, 0.01**2 * torch.eye(2), atol=1e-7)
    wc = agent.algorithm.critic_net.tails[0].weight
    assert torch.allclose(wc @ wc.T, torch.eye(1), atol=1e-5)
    env.close()


@pytest.mark.parametrize("log_std_init", [None, -0.5])
def test_continuous_ppo_on_pendulum(log_std_init: float | None, build_env_agent, rollout) -> None:
    spec = base_spec()
    spec["env"]["name"] = "Pendulum-v1"
    spec["agent"]["net"]["log_std_init"] = log_std_init
    env, agent = build_env_agent(spec, validate=True)
    state = env.reset(seed=0)
    action = agent.act(state)
    assert action.shape == (2, 1) and action.dtype == np.float32
    rollout(env, agent, 64)
    assert env.clock.opt_step == 8 and np.isfinite(agent.loss)
    assert math.isfinite(agent.algorithm.df_extras()["entropy"])
    env.close()


def test_normalizers_train_and_save_state(build_env_agent, rollout) -> None:
    spec = base_spec()
    spec["agent"]["algorithm"].update(normalize_v_targets=True, normalize_advantages="percentile")
    env, agent = build_env_agent(spec, validate=True)
    rollout(env, agent, 64)
    state = agent.algorithm.state_dict()
    assert set(state["normalizers"]) == {"return_normalizer", "adv_normalizer"}
    env2, agent2 = build_env_agent(base_spec() | {"agent": spec["agent"]}, validate=True)
    trained, fresh = agent.algorithm.normalizers(), agent2.algorithm.normalizers()
    # the rollout moved both away from their start, so that the round trip below has something to carry
    assert all(fresh[name].state_dict() != trained[name].state_dict() for name in trained)
    agent2.algorithm.load_state_dict(state)
    assert all(fresh[name].state_dict() == trained[name].state_dict() for name in trained)
    env.close()
    env2.close()


def test_entropy_coef_absent_means_zero_but_entropy_is_logged(build_env_agent, rollout) -> None:
    spec = base_spec()
    del spec["agent"]["algorithm"]["entropy_coef_spec"]
    env, agent = build_env_agent(spec, validate=True)
    rollout(env, agent, 64)
    extras = agent.algorithm.df_extras()
    assert "entropy_coef" not in extras and np.isfinite(extras["entropy"])
    env.close()


@pytest.mark.parametrize(
    ("pdtype", "env_name"), [("Beta", "Pendulum-v1"), ("MultivariateNormal", "LunarLander-v3")]
)
def test_continuous_distributions_act_in_the_normalised_range(
    pdtype: str, env_name: str, build_env_agent, rollout
) -> None:
    """Beta samples x ∈ (0, 1) act as 2x − 1 and are scored back at x; MultivariateNormal for multi-dim actions."""
    spec = base_spec()
    spec["env"]["name"] = env_name
    if env_name.startswith("LunarLander"):
        spec["env"]["continuous"] = True
    spec["agent"]["algorithm"]["action_pdtype"] = pdtype
    env, agent = build_env_agent(spec, validate=True)
    algo = agent.algorithm
    state = env.reset(seed=0)
    actions = np.concatenate([agent.act(state) for _ in range(50)])
    if pdtype == "Beta":
        assert actions.min() < 0 < actions.max() and np.abs(actions).max() < 1
        x = torch.as_tensor(state, dtype=torch.float32)
        pdparam, _ = algo.calc_pdparam_v(x, need_v=False)
        a = torch.as_tensor(actions[:2])
        logp, _ = algo.log_prob_entropy(pdparam, a)
        expected = torch.distributions.Beta(
            *(torch.nn.functional.softplus(p) + 1 for p in pdparam.unbind(-1))
        )
        assert torch.allclose(logp, expected.log_prob(((a + 1) / 2).squeeze(-1)), atol=1e-5)
    rollout(env, agent, 64)
    assert np.isfinite(agent.loss)
    env.close()


def test_ppo_reports_its_declared_diagnostics_as_columns(build_env_agent, rollout) -> None:
    env, agent = build_env_agent(base_spec(), validate=True)
    algo = agent.algorithm
    before = algo.df_extras()
    assert list(before) == [*algo.var_schedulers, *algo.diagnostics]
    assert all(np.isnan(before[name]) for name in algo.diagnostics)  # no update yet
    rollout(env, agent, 64)
    extras = algo.df_extras()
    assert extras["approx_kl"] >= 0 and 0 <= extras["clip_fraction"] <= 1
    assert np.isfinite(extras["explained_variance"]) and extras["explained_variance"] <= 1
    assert np.isfinite(extras["entropy"])
    env.close()


def test_calc_loss_names_its_terms_and_measures_the_ratio(build_env_agent) -> None:
    """With π_old = π every ratio is 1: no KL and nothing clipped; with π_old making half the ratios 1.5 (ε = 0.2),
    half are clipped and approx_kl is the mean of (r − 1) − log r."""
    env, agent = build_env_agent(base_spec(), validate=True)
    algo = agent.algorithm
    states = torch.as_tensor(env.reset(seed=0), dtype=torch.float32).repeat(2, 1)  # 4 rows
    actions = torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        logp, _ = algo.log_prob_entropy(algo.calc_pdparam_v(states, need_v=False)[0], actions)
    advs, v = torch.tensor([1.0, -1.0, 0.5, 2.0]), torch.zeros(4)
    same = algo.calc_loss(states, actions, advs, v, v, logp)
    assert set(same) == {"loss", "policy", "value", "entropy", "approx_kl", "clip_fraction"}
    assert same["loss"].requires_grad and not same["policy"].requires_grad
    assert float(same["approx_kl"]) == pytest.approx(0.0, abs=1e-6) and float(same["clip_fraction"]) == 0.0
    shifted = logp - torch.tensor([0.0, 0.0, 1.0, 1.0]) * math.log(1.5)
    terms = algo.calc_loss(states, actions, advs, v, v, shifted)
    expected_kl = (0.5 - math.log(1.5)) / 2
    assert float(terms["clip_fraction"]) == 0.5
    assert float(terms["approx_kl"]) == pytest.approx(expected_kl, rel=1e-4)
    env.close()


def test_ppo_sits_two_levels_below_the_algorithm_base() -> None:
    from slm_lab.agent.algorithm import PPO, Algorithm, PolicyGradient

    assert PPO.__mro__[1:3] == (PolicyGradient, Algorithm)

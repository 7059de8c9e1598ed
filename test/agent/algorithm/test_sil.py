"""SIL and PPOSIL: returns per complete episode (D20), the self-imitation loss, spec errors and state."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from slm_lab.errors import SpecError
from slm_lab.spec.loader import get_spec

PPO_SIL = ("slm_lab/spec/benchmark/sil/ppo_sil_cartpole.json", "ppo_sil_cartpole")
SIL_PER = ("slm_lab/spec/benchmark/sil/sil_cartpole.json", "sil_per_cartpole")


def step(
    obs: np.ndarray, reward: list[float], terminated: list[bool], truncated: list[bool]
) -> SimpleNamespace:
    f = np.float32
    return SimpleNamespace(next_state=obs, reward=np.array(reward, f), terminated=np.array(terminated),
                           truncated=np.array(truncated))  # fmt: skip


def test_returns_are_computed_per_complete_episode_with_truncation_bootstrap(build_env_agent) -> None:
    """D20: copy 0 terminates after 3 steps, copy 1 is truncated after 2; returns cover each whole episode."""
    spec = get_spec(*PPO_SIL)
    spec["env"]["num_envs"] = 2
    gamma = spec["agent"]["algorithm"]["gamma"]
    env, agent = build_env_agent(spec, seed_numpy=True)
    algo = agent.algorithm
    s = lambda k: np.full((2, 4), k, dtype=np.float32)  # noqa: E731
    a = np.array([0, 1])
    algo.on_step(s(0), a, step(s(1), [1.0, 2.0], [False, False], [False, False]))
    algo.on_step(s(1), a, step(s(2), [1.0, 2.0], [False, False], [False, True]))  # copy 1 truncated at s(2)
    assert algo.sil.replay.size == 2
    algo.on_step(s(3), a, step(s(4), [1.0, 0.0], [True, False], [False, False]))  # copy 0 terminates
    assert algo.sil.replay.size == 5
    v_final = float(algo.calc_v_batched(torch.full((1, 4), 2.0)))
    stored = algo.sil.replay.storage.fields[2][:5]  # the reward column holds R
    expected = [2.0 + gamma * (2.0 + gamma * v_final), 2.0 + gamma * v_final,  # copy 1 (finished first)
                1 + gamma + gamma**2, 1 + gamma, 1.0]  # fmt: skip
    assert np.allclose(stored, expected, atol=1e-5)
    env.close()


@pytest.mark.parametrize("spec_id", [PPO_SIL, SIL_PER])
def test_sil_trains_after_its_start_step_and_saves_state(
    spec_id: tuple[str, str], build_env_agent, rollout
) -> None:
    spec = get_spec(*spec_id)
    env, agent = build_env_agent(spec, seed_numpy=True)
    algo = agent.algorithm
    rollout(env, agent, 600)
    assert algo.sil.replay.seen > algo.sil.training_start_step
    assert np.isfinite(algo.sil.train())
    saved = algo.state_dict()
    env2, agent2 = build_env_agent(spec, seed_numpy=True)
    agent2.algorithm.load_state_dict(saved)
    assert agent2.algorithm.sil.replay.size == algo.sil.replay.size
    env.close()
    env2.close()


def test_sil_loss_ignores_transitions_that_did_worse_than_expected(build_env_agent) -> None:
    spec = get_spec(*PPO_SIL)
    env, agent = build_env_agent(spec, seed_numpy=True)
    algo = agent.algorithm
    replay = algo.sil.replay
    states = np.random.rand(200, 4).astype(np.float32)
    low = np.full(200, -1e3, dtype=np.float32)  # R far below any V(s): A⁺ = 0
    no = np.zeros(200, dtype=np.bool_)
    replay.update(states, np.zeros(200, dtype=np.int64), low, states, no, no)
    before = [p.detach().clone() for p in algo.net.parameters()]
    assert algo.sil.train() == 0.0
    assert all(torch.equal(b, p) for b, p in zip(before, algo.net.parameters(), strict=True))
    env.close()


def test_missing_sil_replay_keys_are_spec_errors(build_env_agent) -> None:
    spec = get_spec(*PPO_SIL)
    del spec["agent"]["memory"]["sil_replay_name"]
    with pytest.raises(SpecError, match=r"agent\.memory\.sil_replay_name: required by PPOSIL"):
        build_env_agent(spec, seed_numpy=True)


@pytest.mark.parametrize(("given", "expected"), [(None, "batch_size"), (0, 0), (50, 50)])
def test_an_absent_training_start_step_is_one_batch_and_an_explicit_0_is_kept(
    given, expected, build_env_agent
) -> None:
    spec = get_spec(*PPO_SIL)
    spec["agent"]["algorithm"].pop("training_start_step", None)
    if given is not None:
        spec["agent"]["algorithm"]["training_start_step"] = given
    env, agent = build_env_agent(spec, seed_numpy=True)
    batch_size = spec["agent"]["memory"].get("sil_batch_size") or agent.algorithm.sil.replay.batch_size
    want = batch_size if expected == "batch_size" else expected
    assert agent.algorithm.sil.training_start_step == want
    env.close()

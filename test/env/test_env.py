import math
import pickle

import gymnasium as gym
import numpy as np
import pytest

from slm_lab.env import make_env
from slm_lab.errors import SpecError


def env_spec(name="CartPole-v1", **env_kw):
    return {
        "env": {"name": name, "max_frame": 10_000, **env_kw},
        "meta": {"log_frequency": 500},
        "agent": {"algorithm": {"gamma": 0.99}},
    }


def alternating(num_envs, t):
    """Actions that keep CartPole upright for many steps."""
    return np.full(num_envs, t % 2, dtype=np.int64)


@pytest.fixture
def venv():
    env = make_env(env_spec(num_envs=3, max_t=5))
    yield env
    env.close()


# ------------------------------------------------------------------ attributes


def test_attributes_cartpole_vector(venv):
    assert venv.is_venv and venv.num_envs == 3
    assert venv.state_dim == 4 and venv.action_dim == 2
    assert venv.is_discrete and not venv.is_multi
    assert venv.max_t == 5 and venv.max_frame == 10_000 and venv.log_frequency == 500
    assert venv.eval_frequency == 10_000
    assert venv.observation_space.shape == (4,)  # single-copy space
    assert not venv._has_transforms  # nothing configured: the step does no extra work


def test_attributes_pendulum_single():
    env = make_env(env_spec("Pendulum-v1"))
    assert not env.is_venv and env.num_envs == 1
    assert env.state_dim == 3 and env.action_dim == 1
    assert not env.is_discrete and not env.is_multi
    assert env.max_t == 200  # the registered limit
    # the agent acts in [-1, 1]; the env's [-2, 2] bounds are hidden behind the rescale
    assert np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)
    env.close()


def test_make_env_passes_the_values_of_other_sections():
    """make_env reads gamma, the RecurrentNet's seq_len and meta's frequencies, and hands them to LabEnv."""
    spec = env_spec(num_envs=2, normalize_reward=True)
    spec["agent"] = {"algorithm": {"gamma": 0.9}, "net": {"type": "RecurrentNet", "seq_len": 3}}
    spec["meta"] = {"log_frequency": 200, "eval_frequency": 400}
    env = make_env(spec)
    assert env._reward_norm.gamma == 0.9
    assert env.state_dim == (3, 4) and env.reset(seed=0).shape == (2, 3, 4)
    assert (env.log_frequency, env.eval_frequency) == (200, 400)
    env.close()


@pytest.mark.parametrize(
    ("name", "seq_len", "match"),
    [
        ("FrozenLake-v1", 2, r"agent\.net\.type: RecurrentNet needs Box"),
        ("CartPole-v1", 0, r"agent\.net\.seq_len"),
    ],
)
def test_recurrent_net_history_errors_name_the_key(name, seq_len, match):
    spec = env_spec(name)
    spec["agent"]["net"] = {"type": "RecurrentNet", "seq_len": seq_len}
    with pytest.raises(SpecError, match=match):
        make_env(spec)


# ------------------------------------------------------------------ same-step autoreset (D6)


def test_vector_truncation_gives_true_final_obs(venv):
    seed = 11
    state = venv.reset(seed=seed)
    refs = [gym.make("CartPole-v1", max_episode_steps=5) for _ in range(3)]
    ref_obs = np.stack([ref.reset(seed=seed + i)[0] for i, ref in enumerate(refs)])
    np.testing.assert_array_equal(state, ref_obs)
    for t in range(5):
        step = venv.step(alternating(3, t))
        ref_next = np.stack([ref.step(t % 2)[0] for ref in refs])
    assert step.truncated.all() and not step.terminated.any()
    np.testing.assert_array_equal(step.next_state, ref_next)  # the real final observations
    assert not np.any(np.all(step.next_state == step.obs, axis=1))  # obs is the reset obs
    reset_obs = np.stack([ref.reset()[0] for ref in refs])  # a reset without seed continues each copy's RNG
    np.testing.assert_array_equal(step.obs, reset_obs)


def test_no_transition_ends_in_a_reset_obs():
    """Lockstep against raw single envs: every (state, action) -> next_state is a real env transition."""
    num_envs, seed = 4, 3
    env = make_env(env_spec(num_envs=num_envs, max_t=7))
    refs = [gym.make("CartPole-v1", max_episode_steps=7) for _ in range(num_envs)]
    state = env.reset(seed=seed)
    for i, ref in enumerate(refs):
        ref.reset(seed=seed + i)
    rng = np.random.default_rng(0)
    num_done = 0
    for _ in range(60):
        action = rng.integers(0, 2, num_envs)
        step = env.step(action)
        for i, ref in enumerate(refs):
            next_obs, _, term, trunc, _ = ref.step(int(action[i]))
            np.testing.assert_array_equal(step.next_state[i], next_obs)
            assert (step.terminated[i], step.truncated[i]) == (term, trunc)
            if term or trunc:
                num_done += 1
                np.testing.assert_array_equal(step.obs[i], ref.reset()[0])
            else:
                np.testing.assert_array_equal(step.obs[i], next_obs)
        state = step.obs
    assert num_done >= 8 and env.clock.epi == num_done
    assert state.shape == (num_envs, 4)
    env.close()


def test_single_env_resets_itself_same_step():
    env = make_env(env_spec(max_t=5))
    ref = gym.make("CartPole-v1", max_episode_steps=5)
    env.reset(seed=5)
    ref.reset(seed=5)
    for t in range(5):
        step = env.step(np.array([t % 2]))
        ref_next = ref.step(t % 2)[0]
    assert step.obs.shape == (1, 4) and step.reward.shape == (1,)
    assert step.reward.dtype == np.float32 and step.truncated.dtype == bool
    assert step.truncated[0] and not step.terminated[0]
    np.testing.assert_array_equal(step.next_state[0], ref_next)
    np.testing.assert_array_equal(step.obs[0], ref.reset()[0])
    assert not np.array_equal(step.obs, step.next_state)
    env.close()


# ------------------------------------------------------------------ clock and returns


def test_clock_single_env():
    env = make_env(env_spec(max_t=5))
    env.reset(seed=0)
    for t in range(12):
        env.step(np.array([t % 2]))
        if t == 9:
            assert env.clock.t == 0  # the second episode just ended
    assert (env.clock.frame, env.clock.t, env.clock.epi) == (12, 2, 2)
    env.close()


def test_clock_vector_env(venv):
    venv.reset(seed=0)
    for t in range(12):
        venv.step(alternating(3, t))
    assert (venv.clock.frame, venv.clock.t, venv.clock.epi) == (36, 12, 6)


def test_total_reward_nan_then_mean_of_raw_returns():
    env = make_env(env_spec("Pendulum-v1", num_envs=2, max_t=4, reward_scale=2.0))
    env.reset(seed=0)
    assert math.isnan(env.total_reward)
    returns = np.zeros(2)
    for _ in range(4):
        step = env.step(np.array([[0.3], [-0.7]]))
        returns += step.reward / 2.0  # undo the scale to get the raw rewards
        if _ < 3:
            assert math.isnan(env.total_reward)
    assert step.truncated.all()
    assert env.total_reward == pytest.approx(returns.mean(), rel=1e-5)
    assert list(env.returns) == pytest.approx(returns.tolist(), rel=1e-5)
    env.close()


def test_returns_recorded_before_reward_scale():
    env = make_env(env_spec(max_t=5, reward_scale=2.0))
    env.reset(seed=0)
    assert math.isnan(env.total_reward)
    for t in range(5):
        step = env.step(np.array([t % 2]))
        assert step.reward[0] == 2.0
    assert env.total_reward == 5.0  # raw CartPole return, not 10
    env.close()


def test_total_reward_window_is_last_100():
    env = make_env(env_spec(num_envs=2, max_t=1))  # every step ends an episode with return 1
    env.reset(seed=0)
    for _ in range(60):
        env.step(np.zeros(2, dtype=np.int64))
    assert len(env.returns) == 100 and env.clock.epi == 120 and env.total_reward == 1.0
    env.close()


# ------------------------------------------------------------------ reward and obs transforms


@pytest.mark.parametrize(("clip", "expected"), [(0.5, 0.5), ([-0.2, 0.3], 0.3), ([2, 3], 2.0)])
def test_clip_reward_cartpole(clip, expected):
    env = make_env(env_spec(clip_reward=clip))
    env.reset(seed=0)
    step = env.step(np.array([0]))
    assert step.reward[0] == pytest.approx(expected)
    env.close()


def test_clip_reward_range_on_negative_rewards():
    env = make_env(env_spec("Pendulum-v1", num_envs=2, clip_reward=[-1.0, 0.0]))
    env.reset(seed=0)
    rewards = np.concatenate([env.step(np.ones((2, 1))).reward for _ in range(20)])
    assert rewards.min() >= -1.0 and rewards.max() <= 0.0 and np.any(rewards == -1.0)
    env.close()


def test_bad_clip_reward_is_a_spec_error():
    with pytest.raises(SpecError, match=r"env\.clip_reward"):
        make_env(env_spec(clip_reward="big"))


def test_normalize_reward_scales_and_clips_by_default():
    env = make_env(env_spec(num_envs=2, normalize_reward=True))
    env.reset(seed=0)
    rewards = [env.step(alternating(2, t)).reward for t in range(30)]
    assert not np.allclose(rewards[-1], 1.0)  # CartPole's raw reward is 1
    assert np.all(np.abs(np.concatenate(rewards)) <= 10.0)
    env.close()


def run_steps(env, n, seed=0):
    env.reset(seed=seed)
    for t in range(n):
        step = env.step(alternating(env.num_envs, t))
    return step


def test_normalize_obs_state_dict_round_trip_and_freeze():
    spec = env_spec(num_envs=2, normalize_obs=True)
    env = make_env(spec)
    step = run_steps(env, 40)
    assert step.obs.dtype == np.float32 and np.all(np.abs(step.obs) <= 10.0)
    stats = env.state_dict()
    assert stats["obs_norm"]["count"] > 80  # reset batch + 40 step batches of 2
    restored = pickle.loads(pickle.dumps(stats))
    other = make_env(spec)
    other.load_state_dict(restored)
    assert other.state_dict()["obs_norm"] == stats["obs_norm"]
    assert other.clock.frame == 80
    # frozen: stepping leaves the statistics as they are, and normalising uses them
    other.freeze_normalizers()
    step = run_steps(other, 10, seed=1)
    assert other.state_dict()["obs_norm"] == stats["obs_norm"]
    rms = other._obs_norm.rms
    raw = make_env(env_spec(num_envs=2))
    raw_step = run_steps(raw, 10, seed=1)
    np.testing.assert_allclose(
        step.next_state,
        np.clip((raw_step.next_state - rms.mean) / np.sqrt(rms.var + 1e-8), -10, 10),
        rtol=1e-5,
    )
    for e in (env, other, raw):
        e.close()


def test_eval_env_shares_frozen_training_stats():
    spec = env_spec(num_envs=2, normalize_obs=True, normalize_reward=True)
    train, evaluation = make_env(spec), make_env(spec)
    evaluation.freeze_normalizers(source=train)
    run_steps(train, 5)
    before = train.state_dict()
    run_steps(evaluation, 20, seed=9)
    after = train.state_dict()
    assert after["obs_norm"] == before["obs_norm"] and after["reward_norm"] == before["reward_norm"]
    assert evaluation.state_dict()["obs_norm"] == before["obs_norm"]
    run_steps(train, 5, seed=2)  # training keeps updating; the eval env sees the new statistics
    assert evaluation.state_dict()["obs_norm"] == train.state_dict()["obs_norm"] != before["obs_norm"]
    train.close()
    evaluation.close()


def test_state_dict_loads_with_torch_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    env = make_env(env_spec(num_envs=2, normalize_obs=True, normalize_reward=True, max_t=5))
    run_steps(env, 12)
    torch.save(env.state_dict(), tmp_path / "state.pt")
    d = torch.load(tmp_path / "state.pt", weights_only=True)
    other = make_env(env_spec(num_envs=2, normalize_obs=True, normalize_reward=True, max_t=5))
    other.load_state_dict(d)
    assert other.total_reward == env.total_reward == 5.0
    assert other.clock.epi == env.clock.epi == 4
    assert other.state_dict()["reward_norm"] == env.state_dict()["reward_norm"]
    env.close()
    other.close()


# ------------------------------------------------------------------ actions


def test_discrete_single_action_is_int():
    env = make_env(env_spec())
    native = env._to_native(np.array([1]))
    assert type(native) is int and native == 1
    env.close()


def test_discrete_vector_action_is_flat_int_array(venv):
    native = venv._to_native(np.array([[1], [0], [1]], dtype=np.float32))
    assert native.dtype == np.int64 and native.tolist() == [1, 0, 1]


def test_pendulum_action_is_rescaled_and_clipped():
    env = make_env(env_spec("Pendulum-v1"))
    native = env._to_native(np.array([[0.5]]))
    assert native.shape == (1,) and native.dtype == np.float32 and native[0] == pytest.approx(1.0)
    assert env._to_native(np.array([[3.0]]))[0] == pytest.approx(2.0)
    assert env._to_native(np.array([[-1.0]]))[0] == pytest.approx(-2.0)
    # behaviour: the agent's 0.5 acts like a torque of 1.0 on the raw env
    ref = gym.make("Pendulum-v1")
    env.reset(seed=4)
    ref.reset(seed=4)
    step = env.step(np.array([[0.5]]))
    ref_obs, ref_reward, *_ = ref.step(np.array([1.0], dtype=np.float32))
    np.testing.assert_allclose(step.next_state[0], ref_obs, rtol=1e-6)
    assert step.reward[0] == pytest.approx(ref_reward, rel=1e-5)
    env.close()


def test_pendulum_vector_action_shape():
    env = make_env(env_spec("Pendulum-v1", num_envs=2))
    native = env._to_native(np.array([1.0, -1.0]))  # (N,) is accepted for a 1-D action
    assert native.shape == (2, 1) and native[:, 0].tolist() == [2.0, -2.0]
    env.reset(seed=0)
    assert env.step(np.zeros((2, 1))).next_state.shape == (2, 3)
    env.close()


# ------------------------------------------------------------------ errors


def test_unknown_env_id():
    with pytest.raises(SpecError, match=r"env\.name 'NoSuchEnv-v0'"):
        make_env(env_spec("NoSuchEnv-v0"))


def test_bad_gym_kwarg_names_the_key():
    with pytest.raises(SpecError, match=r"env\.bogus_option"):
        make_env(env_spec(bogus_option=3))
    with pytest.raises(SpecError, match=r"env\.bogus_option"):
        make_env(env_spec(num_envs=2, bogus_option=3))


def test_gym_kwargs_are_passed_through():
    env = make_env(env_spec("LunarLander-v3", num_envs=2, continuous=True))
    assert not env.is_discrete and env.action_dim == 2
    env.close()


# ------------------------------------------------------------------ seeding (D7)


def rollout(seed, num_envs=2, steps=40):
    env = make_env(env_spec(num_envs=num_envs, max_t=15))
    states = [env.reset(seed=seed)]
    rewards = []
    for _ in range(steps):
        action = np.array([env.action_space.sample() for _ in range(num_envs)])  # seeded by reset
        step = env.step(action)
        states.append(step.next_state)
        rewards.append(step.reward)
    states.append(env.reset())  # a reset without seed continues the RNG
    env.close()
    return np.stack(states), np.stack(rewards)


def test_same_seed_same_trajectory():
    s1, r1 = rollout(123)
    s2, r2 = rollout(123)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(r1, r2)
    s3, _ = rollout(124)
    assert not np.array_equal(s1, s3)


def test_copies_get_consecutive_seeds():
    env = make_env(env_spec(num_envs=3))
    obs = env.reset(seed=20)
    np.testing.assert_array_equal(obs[1], gym.make("CartPole-v1").reset(seed=21)[0])
    again = env.reset()
    assert not np.array_equal(again, obs)
    env.close()


# ------------------------------------------------------------------ max_t (D9)


def test_max_t_below_registered_limit_truncates():
    env = make_env(env_spec(max_t=3))
    env.reset(seed=0)
    truncated = [env.step(np.array([t % 2])).truncated[0] for t in range(3)]
    assert truncated == [False, False, True] and env.max_t == 3
    env.close()


def test_max_t_above_registered_limit_is_ignored():
    env = make_env(env_spec(num_envs=2, max_t=1000))
    assert env.max_t == 500
    assert env._env.envs[0].spec.max_episode_steps == 500
    env.close()


def test_max_t_adds_a_limit_to_unlimited_env():
    env_id = "LabTestUnlimitedCartPole-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv")
    unlimited = make_env(env_spec(env_id))
    assert unlimited.max_t is None
    unlimited.close()
    env = make_env(env_spec(env_id, max_t=4))
    env.reset(seed=0)
    truncated = [env.step(np.array([t % 2])).truncated[0] for t in range(4)]
    assert truncated == [False, False, False, True]
    env.close()


# episodes in progress: snapshots for exact resume (→D10, B4)


@pytest.mark.parametrize(
    ("name", "num_envs", "extra"),
    [
        ("CartPole-v1", 1, {}),
        ("CartPole-v1", 3, {"vectorization_mode": "async"}),
        ("Pendulum-v1", 2, {"normalize_obs": True, "normalize_reward": True}),
        ("HalfCheetah-v5", 1, {}),
        ("ALE/Pong-v5", 1, {}),
    ],
)
def test_episode_state_continues_the_episodes_exactly(name, num_envs, extra):
    """A fresh env given the saved state and episodes steps exactly like the original, action-space RNG included:
    pure-Python physics, an async vector env, normalisers, MuJoCo and ALE."""
    spec = env_spec(name, num_envs=num_envs, **extra)
    env = make_env(spec)
    env.reset(seed=5)

    def actions(n):
        return [np.stack([env.action_space.sample() for _ in range(num_envs)]) for _ in range(n)]

    for action in actions(25):
        env.step(action)
    state, blob = env.state_dict(), env.episode_state()
    twin = make_env(spec)
    twin.load_state_dict(state)
    twin.load_episode_state(blob)
    assert np.array_equal(env.action_space.sample(), twin.action_space.sample())
    for action in actions(150):
        a, b = env.step(action), twin.step(action)
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(x, y)
    assert list(env.returns) == list(twin.returns) and env.clock.frame == twin.clock.frame
    env.close()
    twin.close()


def test_episode_state_of_an_env_that_cannot_be_captured_names_the_reason():
    from slm_lab.env.snapshot import SnapshotError

    env = make_env(env_spec("LunarLander-v3", num_envs=2))
    env.reset(seed=0)
    with pytest.raises(SnapshotError, match="LunarLander state does not pickle"):
        env.episode_state()
    env.close()

"""Atari, MuJoCo, Box2D and custom envs through LabEnv: shapes, dtypes, clipping (→D21), full-game returns,
time limits (→D9), normaliser state (→D34), entry points and rendering."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from slm_lab.env import make_env
from slm_lab.env.atari import GameOverTracker
from slm_lab.env.render import FrameViewer, tile_frames
from slm_lab.errors import SpecError
from slm_lab.spec.validation import _check_env_id

FIXTURES = str(Path(__file__).resolve().parents[1] / "fixtures")


def env_spec(name: str, **env_kw) -> dict:
    return {
        "env": {"name": name, "max_frame": 10_000, **env_kw},
        "meta": {"log_frequency": 500},
        "agent": {"algorithm": {"gamma": 0.99}},
    }


def run_until_rewards(env, steps: int, seed: int = 0) -> np.ndarray:
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    rewards = []
    for _ in range(steps):
        step = env.step(rng.integers(0, env.action_dim, env.num_envs))
        rewards.append(step.reward)
    return np.concatenate(rewards)


# ------------------------------------------------------------------ Atari


@pytest.mark.parametrize("num_envs", [1, 4])
def test_atari_obs_are_uint8_stacked_84x84(num_envs):
    env = make_env(env_spec("ALE/Pong-v5", num_envs=num_envs, life_loss_info=True))
    state = env.reset(seed=0)
    step = env.step(np.zeros(num_envs, dtype=np.int64))
    env.close()
    assert env.state_dim == (4, 84, 84) and env.action_dim == 6 and env.is_discrete
    for arr in (state, step.obs, step.next_state):
        assert arr.dtype == np.uint8 and arr.shape == (num_envs, 4, 84, 84)
    assert env.max_t == 27_000  # ALE v5: 108000 emulator frames at frame skip 4
    kwargs = env._env.spec.kwargs if num_envs > 1 else env._env.env.unwrapped.spec.kwargs
    assert kwargs["repeat_action_probability"] == 0.25 and kwargs["frameskip"] == 4  # ALE v5 defaults kept
    if num_envs > 1:  # the native vector env: its own clipping off (LabEnv clips), life losses reported
        assert kwargs["reward_clipping"] is False and kwargs["life_loss_info"] is True


@pytest.mark.parametrize("num_envs", [1, 2])
def test_every_atari_path_clips_rewards_unless_overridden(num_envs):
    """→D21: reward_scale 5 makes Pong's ±1 into ±5, which the default Atari clip brings back to ±1."""
    clipped = run_until_rewards(make_env(env_spec("ALE/Pong-v5", num_envs=num_envs, reward_scale=5)), 400)
    unclipped = run_until_rewards(
        make_env(env_spec("ALE/Pong-v5", num_envs=num_envs, reward_scale=5, clip_reward=10)), 400
    )
    assert np.any(clipped != 0) and np.any(unclipped != 0)
    assert set(np.abs(clipped[clipped != 0]).tolist()) == {1.0}
    assert set(np.abs(unclipped[unclipped != 0]).tolist()) == {5.0}


def test_game_over_tracker_counts_full_games_across_life_losses():
    tracker = GameOverTracker(2)
    tracker.reset(np.array([3, 0]))
    no, yes = np.array([False, False]), np.array([True, True])
    # copy 0 loses a life (terminated, game goes on); copy 1 has no lives: its termination is a game over
    assert tracker.game_over(yes, no, np.array([2, 0])).tolist() == [False, True]
    # copy 0's last life: the native vector env reports the reset game's full lives in the same step
    assert tracker.game_over(np.array([True, False]), no, np.array([3, 0])).tolist() == [True, False]
    # a single env reports 0 lives at game over
    tracker.reset(np.array([1, 1]))
    assert tracker.game_over(np.array([True, False]), no, np.array([0, 1])).tolist() == [True, False]
    # truncation always ends the game, even with lives lost
    tracker.reset(np.array([3, 3]))
    assert tracker.game_over(yes, yes, np.array([2, 2])).tolist() == [True, True]


@pytest.mark.parametrize("num_envs", [1, 2])
def test_atari_returns_are_full_games_across_life_losses(num_envs):
    """Breakout with life_loss_info: each lost life terminates, but total_reward records whole games only."""
    env = make_env(
        env_spec("ALE/Breakout-v5", num_envs=num_envs, life_loss_info=True, repeat_action_probability=0)
    )
    env.reset(seed=1)
    rng = np.random.default_rng(1)
    raw = np.zeros(num_envs)
    terminations = 0
    while not env.returns:
        step = env.step(rng.integers(0, env.action_dim, num_envs))
        terminations += int(step.terminated.sum())
        raw += step.reward  # Breakout's random-play rewards are 1 and stay unclipped
        assert env.clock.frame < 20_000
    env.close()
    assert terminations >= 5  # 5 lives: at least 4 life-loss terminations and the game over
    assert len(env.returns) == 1 and env.returns[0] in raw.tolist()


@pytest.mark.parametrize("name", ["VideoPinball-v0", "PongNoFrameskip-v4"])
@pytest.mark.parametrize("num_envs", [1, 2])
def test_atari_ids_without_the_ale_prefix_run_preprocessed(name: str, num_envs: int):
    assert _check_env_id(name) is None
    env = make_env(env_spec(name, num_envs=num_envs, max_t=20))
    state = env.reset(seed=0)
    assert env.is_atari and state.dtype == np.uint8 and state.shape == (num_envs, 4, 84, 84)
    truncated_at = None
    for t in range(1, 30):
        step = env.step(np.zeros(num_envs, dtype=np.int64))
        assert step.obs.shape == (num_envs, 4, 84, 84)
        if step.truncated.any():
            truncated_at = t
            break
    copy = env._env.envs[0] if num_envs > 1 else env._env.env
    preprocessing = copy
    while type(preprocessing).__name__ != "AtariPreprocessing":
        preprocessing = preprocessing.env
    # NoFrameskip ids repeat nothing themselves: the preprocessing repeats each action 4 times; v0 ids skip 2–4
    assert preprocessing.frame_skip == (4 if "NoFrameskip" in name else 1)
    env.close()
    assert truncated_at == 20


@pytest.mark.parametrize("num_envs", [1, 2])
def test_max_t_truncates_atari_episodes(num_envs):
    env = make_env(env_spec("ALE/Pong-v5", num_envs=num_envs, max_t=30))
    env.reset(seed=0)
    truncated_at = None
    for t in range(1, 40):
        step = env.step(np.zeros(num_envs, dtype=np.int64))
        if step.truncated.any():
            truncated_at = t
            break
    env.close()
    assert env.max_t == 30 and truncated_at == 30


# ------------------------------------------------------------------ MuJoCo and Box2D


def test_halfcheetah_runs_with_normalisers_and_rescaled_actions():
    env = make_env(
        env_spec("HalfCheetah-v5", num_envs=2, normalize_obs=True, normalize_reward=True, max_t=50)
    )
    state = env.reset(seed=0)
    assert env.state_dim == 17 and env.action_dim == 6 and not env.is_discrete and env.max_t == 50
    truncations = 0
    for _ in range(100):
        step = env.step(np.ones((2, 6), dtype=np.float32))
        truncations += int(step.truncated.sum())
        assert np.all(np.abs(step.obs) <= 10.0) and np.all(np.abs(step.reward) <= 10.0)
    env.close()
    assert state.dtype == np.float32 and truncations == 4 and len(env.returns) == 4


@pytest.mark.parametrize(
    ("name", "kwargs", "low", "high"),
    [("LunarLander-v3", {"continuous": True}, -1.0, 1.0), ("BipedalWalker-v3", {}, -1.0, 1.0)],
)
def test_box2d_continuous_envs_run(name, kwargs, low, high):
    env = make_env(env_spec(name, num_envs=2, **kwargs))
    env.reset(seed=0)
    for _ in range(50):
        step = env.step(np.full((2, *env.action_space.shape), 0.5, dtype=np.float32))
    env.close()
    assert step.obs.shape == (2, env.state_dim)
    assert float(env.action_space.low.min()) == low and float(env.action_space.high.max()) == high


def test_reward_normaliser_state_round_trips_and_freezes():
    """→D34: statistics saved in state_dict load into a new env; frozen statistics stop changing."""
    spec = env_spec("Pendulum-v1", num_envs=2, normalize_obs=True, normalize_reward=True)
    env = make_env(spec)
    env.reset(seed=0)
    for _ in range(30):
        env.step(np.zeros((2, 1), dtype=np.float32))
    state = env.state_dict()
    fresh = make_env(spec)
    fresh.load_state_dict(state)
    assert fresh.state_dict()["reward_norm"] == state["reward_norm"]
    assert fresh.state_dict()["obs_norm"] == state["obs_norm"]
    fresh.freeze_normalizers()
    fresh.reset(seed=1)
    for _ in range(10):
        fresh.step(np.ones((2, 1), dtype=np.float32))
    assert fresh.state_dict()["reward_norm"] == state["reward_norm"]
    assert fresh.state_dict()["obs_norm"] == state["obs_norm"]
    env.close()
    fresh.close()


# ------------------------------------------------------------------ custom envs by entry point


@pytest.fixture
def fixtures_on_path(monkeypatch):
    monkeypatch.syspath_prepend(FIXTURES)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([FIXTURES, os.environ.get("PYTHONPATH", "")]))
    yield
    sys.modules.pop("custom_env", None)


def test_custom_env_by_entry_point(fixtures_on_path):
    env = make_env(env_spec("custom_env:Corridor", num_envs=2, length=3))
    env.reset(seed=0)
    for _ in range(3):
        step = env.step(np.ones(2, dtype=np.int64))
    env.close()
    assert step.terminated.all() and env.returns[-1] == pytest.approx(0.98)


def test_bad_entry_points_give_clear_errors(fixtures_on_path):
    assert "cannot import module 'no_such_module_xyz'" in _check_env_id("no_such_module_xyz:Env")
    assert "has no attribute 'Nope'" in _check_env_id("custom_env:Nope")
    assert "is a module, not a gymnasium.Env subclass" in _check_env_id("custom_env:np")
    assert "is a builtin_function_or_method, not a gymnasium.Env" in _check_env_id("os:system")
    assert "not a gymnasium.Env subclass" in _check_env_id("custom_env:Path")
    assert _check_env_id("custom_env:Corridor") is None
    with pytest.raises(SpecError, match=r"env\.name 'custom_env:Nope'"):
        make_env(env_spec("custom_env:Nope"))


def test_custom_env_trial_runs_in_spawned_sessions(fixtures_on_path, data_dir):
    from slm_lab.experiment.control import Trial
    from slm_lab.spec.loader import get_spec, override_spec, tick

    spec = get_spec("benchmark/ppo/ppo_cartpole.json", "ppo_cartpole")
    spec["env"].update({"name": "custom_env:Corridor", "num_envs": 2, "max_frame": 600, "length": 4})
    spec["meta"].update({"max_session": 2, "log_frequency": 200, "random_seed": 0})
    spec = override_spec(spec, "train")
    tick(spec, "trial")
    metrics = Trial(spec, "train").run()
    # only the Corridor gives returns in (0, 1]: the spawned sessions built the custom env
    assert 0.0 < metrics["total_reward_ma"] <= 1.0 and metrics["frame"] == 600


# ------------------------------------------------------------------ rendering


def test_tile_frames_makes_a_grid():
    frames = [np.full((2, 3, 3), i, dtype=np.uint8) for i in range(5)]
    grid = tile_frames(frames)
    assert grid.shape == (4, 9, 3)  # 3 columns, 2 rows of 2x3 frames
    assert grid[0, 3, 0] == 1 and grid[2, 0, 0] == 3 and grid[3, 8, 0] == 0  # the empty cell is black


@pytest.mark.parametrize("num_envs", [1, 3])
def test_render_draws_frames_or_warns_without_a_display(num_envs, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # a headless display: drawing must work
    env = make_env(env_spec("CartPole-v1", num_envs=num_envs), render=True)
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.zeros(num_envs, dtype=np.int64))
    assert env._viewer.enabled and env._viewer.frames_shown == 3
    env.close()


def test_render_failure_disables_the_viewer_with_a_warning():
    class Broken:
        def render(self):
            raise RuntimeError("no OpenGL context")

    viewer = FrameViewer("test")
    viewer.show(Broken())
    viewer.show(Broken())
    assert not viewer.enabled and viewer.frames_shown == 0


# ------------------------------------------------------------------ each family runs its benchmark spec


def benchmark_spec(spec_file: str, spec_name: str, sets: list[str], env_kw: dict, algo_kw: dict) -> dict:
    """A shipped benchmark spec in train mode, shortened by ``env_kw`` and ``algo_kw``: one CPU session, seed 0."""
    from slm_lab.spec.loader import get_spec, override_spec

    spec = override_spec(get_spec(spec_file, spec_name, sets), "train")
    spec["env"].update(env_kw)
    spec["agent"]["algorithm"].update(algo_kw)
    spec["agent"]["net"]["gpu"] = False
    spec["meta"].update({"max_session": 1, "log_frequency": 500, "random_seed": 0})
    return spec


def test_ppo_mujoco_spec_trains_on_halfcheetah(data_dir, start_session):
    spec = benchmark_spec(
        "benchmark/ppo/ppo_mujoco.json",
        "ppo_mujoco",
        ["env=HalfCheetah-v5", "max_frame=2000"],
        {"num_envs": 2, "max_t": 100},
        {"time_horizon": 250, "minibatch_size": 250, "training_epoch": 1},
    )
    session = start_session(spec, "train")
    session.run()
    assert session.env.clock.frame == 2000 and session.env.clock.opt_step > 0
    assert len(session.env.returns) == 20  # 2 copies × 1000 frames / max_t 100
    assert "obs_norm" in session.env.state_dict() and "reward_norm" in session.env.state_dict()


def test_ppo_atari_spec_trains_on_pong_with_uint8_storage(data_dir, start_session):
    spec = benchmark_spec(
        "benchmark/ppo/ppo_atari.json",
        "ppo_atari",
        ["env=ALE/Pong-v5"],
        {"num_envs": 4, "max_frame": 2400},
        {"time_horizon": 150, "minibatch_size": 300, "training_epoch": 1},
    )
    session = start_session(spec, "train")
    session.run()
    # 4 rollouts of 150 × 4 frames, each 1 epoch of 2 minibatches on a shared net
    assert session.env.clock.frame == 2400 and session.env.clock.opt_step == 8
    stored = [v for v in vars(session.agent.memory).values() if isinstance(v, np.ndarray) and v.ndim >= 3]
    assert stored and all(v.dtype == np.uint8 for v in stored)


def test_ppo_lunar_spec_trains_on_lunarlander(data_dir, start_session):
    spec = benchmark_spec(
        "benchmark/ppo/ppo_lunar.json",
        "ppo_lunar",
        [],
        {"num_envs": 4, "max_frame": 2000},
        {"time_horizon": 125},
    )
    session = start_session(spec, "train")
    session.run()
    assert session.env.clock.frame == 2000 and session.env.clock.opt_step > 0
    assert len(session.env.returns) > 0 and all(np.isfinite(session.env.returns))

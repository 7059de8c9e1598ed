"""Atari (ALE v5 through ale-py) construction and full-game return bookkeeping (→D21).

Two paths give the same observations, uint8 ``(4, 84, 84)``:
- vector (``num_envs > 1``): ale-py's native ``AtariVectorEnv`` (84×84 grayscale, 4-frame stack, frame skip 4,
  no-op and fire resets, max-pooled frames) with its internal reward clipping off, because ``LabEnv`` clips every
  Atari path itself; ALE v5's sticky actions (0.25) come from the registered kwargs.
- single env (and vector envs while rendering, which the native env cannot do): ``gym.make`` (ALE v5 already skips
  4 frames) -> ``AtariPreprocessing`` with ``frame_skip=1`` and unscaled obs -> a 4-frame stack, zero-padded.

With ``life_loss_info: true`` a lost life is reported as ``terminated`` so that value targets stop there, but the
game goes on: the native vector env does it itself, and a single env's ``SingleEnvVector`` (``single.py``) does it
from the ``lives`` count. Episode returns must still be full games: for a vector env, ``GameOverTracker`` tells a
life-loss termination from a real game over; a single env's ``SingleEnvVector`` resets only at a game over.
"""

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, TimeLimit

from slm_lab.env.snapshot import EpisodeSnapshot

__all__ = ["FRAME_SKIP", "GameOverTracker", "make_atari_env", "make_atari_vec", "register_ale"]

FRAME_SKIP = 4  # ALE v5 default
STACK = 4
SCREEN = 84


def register_ale() -> None:
    """Register the ``ALE/`` ids with gymnasium and silence ALE's console output."""
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    gym.register_envs(ale_py)


def native_vector(name: str) -> bool:
    """Whether ale-py has a native vector env for ``name``: the ``ALE/…-v5`` ids do; the legacy ids it also registers
    (``Pong-v0``, ``PongNoFrameskip-v4``, ...) do not, and run as a vector of preprocessed copies."""
    return gym.spec(name).vector_entry_point is not None


def _preprocess(env: gym.Env) -> gym.Env:
    # ALE v5 (and the legacy v0/v4 ids) repeat each action themselves (4, or 2–4 frames at random), so the wrapper
    # skips no more; the NoFrameskip ids repeat nothing, so the wrapper repeats each action FRAME_SKIP times, max-pooling
    # the last two frames. scale_obs=False keeps uint8 (scaled on the device).
    frame_skip = FRAME_SKIP if getattr(env.unwrapped, "_frameskip", None) == 1 else 1
    env = AtariPreprocessing(env, noop_max=30, frame_skip=frame_skip, screen_size=SCREEN, scale_obs=False)
    return FrameStackObservation(env, STACK, padding_type="zero")


def make_atari_env(name: str, kwargs: dict[str, Any], render_mode: str | None = None) -> gym.Env:
    """A single preprocessed Atari env. ``life_loss_info`` is handled by ``SingleEnvVector`` (it must not reset the
    game)."""
    kwargs = {k: v for k, v in kwargs.items() if k != "life_loss_info"}
    # the time limit goes outside the preprocessing, so the reset's no-op steps do not count towards it
    max_episode_steps = kwargs.pop("max_episode_steps", None)
    env = _preprocess(gym.make(name, render_mode=render_mode, **kwargs))
    return env if max_episode_steps is None else TimeLimit(env, int(max_episode_steps))


def make_atari_vec(name: str, num_envs: int, kwargs: dict[str, Any], render_mode: str | None = None) -> Any:
    """The native ALE vector env, or a sync vector env of preprocessed copies when rendering or for a legacy id."""
    if render_mode is not None or not native_vector(name):
        return gym.vector.SyncVectorEnv(
            [lambda: EpisodeSnapshot(make_atari_env(name, kwargs, render_mode)) for _ in range(num_envs)],
            autoreset_mode=AutoresetMode.SAME_STEP,
        )
    return gym.make_vec(
        name,
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        autoreset_mode=AutoresetMode.SAME_STEP,
        reward_clipping=False,  # LabEnv clips every Atari path (→D21)
        **kwargs,
    )


class GameOverTracker:
    """Tells which ended episodes are whole games, from the ``lives`` counts in ``info``.

    A life-loss termination leaves the game running with one life fewer (and at least one left). A game over either
    reaches 0 lives or, in the native vector env, shows the reset game's full lives in the same step. Truncation
    always ends the game. Games without lives (Pong reports 0 throughout) end only at a real game over.
    """

    def __init__(self, num_envs: int) -> None:
        self.lives = np.zeros(num_envs, dtype=np.int64)

    def reset(self, lives: np.ndarray | None) -> None:
        if lives is not None:
            self.lives[:] = lives

    def game_over(self, done: np.ndarray, truncated: np.ndarray, lives: np.ndarray | None) -> np.ndarray:
        """A bool mask of copies whose game ended at this step; updates the stored lives."""
        if lives is None:
            return done
        lives = np.asarray(lives, dtype=np.int64)
        life_lost_only = (lives < self.lives) & (lives > 0) & ~truncated
        self.lives[:] = lives
        return done & ~life_lost_only

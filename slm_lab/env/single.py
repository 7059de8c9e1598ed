"""One gymnasium env presented as a vector env of one copy, so that ``LabEnv`` steps every env the same way.

``SingleEnvVector`` returns what gymnasium's vector envs return with same-step autoreset (→D6): arrays with a
leading axis of length 1, and where the episode ends the reset observation as ``obs``, with the final observation
in ``info["final_obs"]`` and the reset copies marked in ``info["_final_obs"]``. ``call``, ``get_attr`` and
``set_attr`` reach the env as they reach each copy of a vector env (the episode snapshots of ``snapshot.py`` use
them).

For an Atari env it also keeps the ``lives`` count, as ``LabEnv`` needs for full-game returns (→D21): with
``life_loss_info`` a lost life is reported as ``terminated`` but the game goes on, so the env is not reset and the
step is not marked in ``_final_obs`` (no episode ended).
"""

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["SingleEnvVector"]


class SingleEnvVector:
    """A gymnasium env behind the vector interface ``LabEnv`` steps: ``reset``, ``step``, the single-copy and
    the env's own spaces, ``call`` / ``get_attr`` / ``set_attr``, ``render`` and ``close``.

    ``info`` holds only the keys ``LabEnv`` reads: ``_final_obs`` on every step and ``final_obs`` where the episode
    ended. ``lives`` is the Atari lives count as a ``(1,)`` array (None for other envs).
    """

    num_envs = 1

    def __init__(self, env: gym.Env, track_lives: bool = False, life_loss_info: bool = False) -> None:
        self.env = env
        self.lives = np.zeros(1, dtype=np.int64) if track_lives else None
        self.life_loss_info = life_loss_info

    @property
    def single_observation_space(self) -> gym.Space:
        return self.env.observation_space

    @property
    def single_action_space(self) -> gym.Space:
        return self.env.action_space

    @property
    def action_space(self) -> gym.Space:
        """The env's own action space: the one a seeded reset seeds, as with a plain gymnasium env."""
        return self.env.action_space

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(seed=seed)
        self._read_lives(info)
        return np.asarray(obs)[None], info

    def step(self, action: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step with one native action; reset the env in the same step where its episode ended."""
        obs, reward, term, trunc, info = self.env.step(action)
        life_lost = False
        if self.lives is not None and "lives" in info:
            life_lost = self.life_loss_info and bool(info["lives"] < self.lives[0]) and not (term or trunc)
            self.lives[:] = info["lives"]
        terminated, truncated = np.array([term or life_lost]), np.array([trunc])
        rewards = np.array([reward], dtype=np.float64)
        obs = np.array(obs)[None]
        if not (term or trunc):  # running, or a lost life: the game goes on
            return obs, rewards, terminated, truncated, {"_final_obs": np.zeros(1, dtype=bool)}
        reset_obs, reset_info = self.env.reset()
        self._read_lives(reset_info)
        info = {"final_obs": obs, "_final_obs": np.ones(1, dtype=bool)}
        return np.array(reset_obs)[None], rewards, terminated, truncated, info

    def _read_lives(self, info: dict) -> None:
        if self.lives is not None and "lives" in info:
            self.lives[:] = info["lives"]

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any]:
        return (getattr(self.env, name)(*args, **kwargs),)

    def get_attr(self, name: str) -> tuple[Any]:
        return (getattr(self.env, name),)

    def set_attr(self, name: str, values: Sequence[Any]) -> None:
        (value,) = values
        setattr(self.env, name, value)

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()

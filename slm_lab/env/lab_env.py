"""``LabEnv``: one stepping path for every env, single or vector, with the lab's bookkeeping and transforms.

``LabEnv`` steps a gymnasium env behind the vector interface (``factory.build_env`` makes it: a vector env, or a
``SingleEnvVector`` around a single env), so every step of every env goes through the same code:

1. the agent's batched action is mapped to the env's native action (``actions.py``);
2. the env steps, resetting the copies whose episode ended in the same step (→D6);
3. the true next state is assembled: the final observation where a copy was reset, ``obs`` elsewhere;
4. raw episode returns are accumulated per copy; completed ones (full games for Atari, →D21) go in a deque of 100
   that ``total_reward`` reads, and the clock ticks;
5. the transforms run, batched: ``reward_scale`` (→D9) -> ``normalize_obs`` -> ``clip_obs`` -> ``normalize_reward``
   -> ``clip_reward`` (with none configured, the step does no extra work);
6. with an observation history (→D16), each observation becomes the stack of the copy's last observations.

Its state is saved in two parts: ``state_dict`` (clock, returns, normaliser statistics) and ``episode_state`` (the
episodes in progress, →D10).
"""

import math
import pickle
from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from gymnasium import spaces

from slm_lab.env.actions import action_adapter
from slm_lab.env.atari import GameOverTracker
from slm_lab.env.clock import Clock
from slm_lab.env.render import FrameViewer
from slm_lab.env.snapshot import SnapshotError
from slm_lab.env.wrappers import ObsHistory, ObsNormalizer, RewardNormalizer, parse_clip_reward
from slm_lab.errors import SpecError
from slm_lab.spec.schema import DEFAULT_CLIP

if TYPE_CHECKING:
    from slm_lab.env.factory import BuiltEnv

__all__ = ["LabEnv", "Step"]

RETURN_WINDOW = 100  # completed episode returns kept for total_reward


class Step(NamedTuple):
    """One batched env step. Treat the arrays as read-only: ``next_state`` is ``obs`` itself when no copy ended."""

    obs: np.ndarray  # (N, *obs_shape): observation to act on next (the reset obs where an episode ended)
    next_state: np.ndarray  # (N, *obs_shape): the true next state (the final obs where an episode ended)
    reward: np.ndarray  # (N,) float32, after reward_scale / normalize_reward / clip_reward
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool


def _space_dim(space: spaces.Space) -> int | tuple[int, ...] | list[int]:
    """The size a net is built for: a count of discrete values, a vector length or a shape."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.MultiDiscrete):
        return space.nvec.tolist()
    if isinstance(space, spaces.MultiBinary):
        return int(space.n) if isinstance(space.n, int | np.integer) else list(space.n)
    if isinstance(space, spaces.Box):
        return int(space.shape[0]) if len(space.shape) == 1 else tuple(space.shape)
    raise SpecError(f"env: unsupported space {space}")


class LabEnv:
    """An env of ``num_envs`` copies (one: a single env) presented with batched arrays and same-step autoreset.

    Built by ``make_env`` from the ``env`` spec section, the gymnasium env ``build_env`` made from it, and the
    values it depends on from other sections, given explicitly: ``gamma`` (the discount of ``normalize_reward``),
    ``obs_history`` (how many observations to stack per copy, or None), ``log_frequency`` and
    ``eval_frequency`` (in frames, read by the session).

    Attributes: ``name``, ``num_envs``, ``is_venv``, ``is_atari``, ``max_frame``, ``max_t`` (the effective episode
    step limit, None if unlimited), ``log_frequency``, ``eval_frequency``, single-copy ``observation_space`` and
    ``action_space`` (the agent's, see ``actions.py``), ``state_dim``, ``action_dim``, ``is_discrete``
    (Discrete, MultiDiscrete or MultiBinary actions), ``is_multi`` (MultiDiscrete or MultiBinary actions),
    ``clock``, ``returns`` (the last ≤100 completed raw episode returns, oldest first), ``episode_counts``
    (completed episodes per copy) and ``nonfinite`` (counts of NaN or infinite rewards and observations).
    """

    def __init__(
        self,
        env_spec: dict,
        built: "BuiltEnv",
        *,
        gamma: float,
        obs_history: int | None,
        log_frequency: int,
        eval_frequency: int,
    ) -> None:
        self.name = built.name
        self.num_envs = built.num_envs
        self.is_venv = self.num_envs > 1
        self.is_atari = built.is_atari
        self.max_frame = int(env_spec["max_frame"])
        self.max_t = built.max_t
        self.log_frequency = log_frequency
        self.eval_frequency = eval_frequency
        self._env = built.env
        self._sync_buffer = built.sync_buffer
        self._snapshot_copies = built.snapshot_copies
        self._viewer = FrameViewer(self.name) if built.rendering else None
        # Atari lives, for full-game returns: a vector env's tracked here, a single env's by its SingleEnvVector
        self._games = GameOverTracker(self.num_envs) if self.is_atari and self.is_venv else None

        self.observation_space = self._env.single_observation_space
        self.action_space, self._to_native = action_adapter(
            self._env.single_action_space, self.num_envs, self.name
        )
        self.state_dim = _space_dim(self.observation_space)
        self.action_dim = _space_dim(self.action_space)
        self.is_discrete = isinstance(
            self.action_space, spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary
        )
        self.is_multi = isinstance(self.action_space, spaces.MultiDiscrete | spaces.MultiBinary)

        self.clock = Clock(self.max_frame, self.num_envs, self.is_venv)
        self.returns: deque[float] = deque(maxlen=RETURN_WINDOW)
        self._episode_returns = np.zeros(self.num_envs, dtype=np.float64)  # raw, per copy, current episode
        self.episode_counts = np.zeros(self.num_envs, dtype=np.int64)  # completed episodes (games), per copy
        # NaN or infinite values the env returned, counted (a session that learned nothing from them says so)
        self.nonfinite = {"reward": 0, "obs": 0}
        self._setup_transforms(env_spec, gamma)
        self._history = None if obs_history is None else self._setup_history(obs_history)

    def _setup_transforms(self, env_spec: dict, gamma: float) -> None:
        reward_scale = env_spec.get("reward_scale")
        self.reward_scale = 1.0 if reward_scale is None else float(reward_scale)
        normalize_obs = bool(env_spec.get("normalize_obs"))
        normalize_reward = bool(env_spec.get("normalize_reward"))
        clip_obs = env_spec.get("clip_obs")
        if clip_obs is None and normalize_obs:
            clip_obs = DEFAULT_CLIP
        clip_reward = env_spec.get("clip_reward")
        if clip_reward is None and self.is_atari:
            clip_reward = [-1.0, 1.0]  # →D21: every Atari path clips unless clip_reward overrides it
        if clip_reward is None and normalize_reward:
            clip_reward = DEFAULT_CLIP
        self._clip_obs = None if clip_obs is None else abs(float(clip_obs))
        self._clip_reward = parse_clip_reward(clip_reward)
        obs_shape = self.observation_space.shape or ()
        self._obs_norm = ObsNormalizer(obs_shape, self._clip_obs) if normalize_obs else None
        self._reward_norm = RewardNormalizer(self.num_envs, gamma) if normalize_reward else None
        self._has_transforms = (
            self.reward_scale != 1.0
            or self._obs_norm is not None
            or self._clip_obs is not None
            or self._reward_norm is not None
            or self._clip_reward is not None
        )
        # a vector env's sync buffer is overwritten on the next step: copy it unless a transform makes a new array
        self._copy_obs = self._sync_buffer and self._obs_norm is None and self._clip_obs is None

    def _setup_history(self, seq_len: int) -> ObsHistory:
        """→D16: each observation becomes the stack of the copy's last ``seq_len`` observations (Box observations
        only), so a recurrent net sees a real history; ``observation_space`` and ``state_dim`` describe the stack."""
        space = self.observation_space
        low = np.repeat(space.low[None], seq_len, axis=0)
        high = np.repeat(space.high[None], seq_len, axis=0)
        self.observation_space = spaces.Box(np.minimum(low, 0), np.maximum(high, 0), dtype=space.dtype)
        self.state_dim = tuple(self.observation_space.shape)
        return ObsHistory(self.num_envs, seq_len, tuple(space.shape), space.dtype)

    # ------------------------------------------------------------------ stepping

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every copy; returns ``(N, *obs_shape)``. With a seed, copy i gets ``seed + i`` and the action
        space(s) are seeded with ``seed``; without one, the env RNGs continue."""
        obs, info = self._env.reset(seed=seed)
        if self._games is not None:
            lives = info.get("lives")
            self._games.reset(None if lives is None else np.asarray(lives).reshape(self.num_envs))
        if seed is not None:
            self.action_space.seed(seed)
            self._env.action_space.seed(seed)
        obs = np.array(obs)
        self._episode_returns[:] = 0.0
        if self._reward_norm is not None:
            self._reward_norm.reset()
        if not self.is_venv:
            self.clock.t = 0
        obs = self._transform_obs(obs, update=True) if self._has_transforms else obs
        return self._history.reset(obs) if self._history is not None else obs

    def step(self, action: np.ndarray) -> Step:
        """Step every copy with a batched action (``(N,)`` or ``(N, A)``), tick the clock, and return a ``Step``."""
        obs, reward, terminated, truncated, info = self._env.step(self._to_native(action))
        if self._copy_obs:
            obs = obs.copy()
        self._episode_returns += reward
        done = terminated | truncated
        # the copies whose obs is a reset observation, as gymnasium marks them; the native ALE vector env gives no
        # mask, and there every done copy counts as reset, a lost life included
        reset = info.get("_final_obs", done)
        if reset.any():
            idx = np.flatnonzero(reset)
            next_state = obs.copy()
            final_obs = info["final_obs"]
            for i in idx:  # only the copies that were reset
                next_state[i] = final_obs[i]
            if self._games is not None:  # Atari vector env: full-game returns, across life losses
                idx = np.flatnonzero(self._games.game_over(reset, truncated, info.get("lives")))
            self.returns.extend(self._episode_returns[idx].tolist())
            self._episode_returns[idx] = 0.0
            self.episode_counts[idx] += 1
            self.clock.tick_step(len(idx), done)
        else:
            next_state = obs
            self.clock.tick_step(0, done)
        if self._viewer is not None:
            self._viewer.show(self._env)
        self._count_nonfinite(reward, next_state)
        if self._has_transforms:
            result = self._transform(obs, next_state, reward, terminated, truncated, done)
        else:
            result = Step(obs, next_state, reward.astype(np.float32), terminated, truncated)
        if self._history is None:
            return result
        stacked_obs, stacked_next = self._history.step(result.obs, result.next_state, reset)
        return result._replace(obs=stacked_obs, next_state=stacked_next)

    def _transform_obs(self, obs: np.ndarray, update: bool) -> np.ndarray:
        if self._obs_norm is not None:
            if update:
                self._obs_norm.update(obs)
            return self._obs_norm.normalize(obs)  # clips to ±clip_obs itself
        if self._clip_obs is not None:
            return np.clip(obs, -self._clip_obs, self._clip_obs)
        return obs

    def _transform(
        self,
        obs: np.ndarray,
        next_state: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        done: np.ndarray,
    ) -> Step:
        if self.reward_scale != 1.0:
            reward = reward * self.reward_scale
        same = next_state is obs
        obs = self._transform_obs(obs, update=True)
        next_state = obs if same else self._transform_obs(next_state, update=False)
        if self._reward_norm is not None:
            reward = self._reward_norm(reward, done)
        if self._clip_reward is not None:
            reward = np.clip(reward, *self._clip_reward)
        return Step(obs, next_state, reward.astype(np.float32), terminated, truncated)

    def _count_nonfinite(self, reward: np.ndarray, obs: np.ndarray) -> None:
        # one reduction per array in the common case; the element count only when something is not finite
        if not np.isfinite(reward.sum()):
            self.nonfinite["reward"] += int(np.count_nonzero(~np.isfinite(reward)))
        if obs.dtype.kind == "f" and not np.isfinite(obs.sum()):
            self.nonfinite["obs"] += int(np.count_nonzero(~np.isfinite(obs)))

    # ------------------------------------------------------------------ reporting

    @property
    def total_reward(self) -> float:
        """Raw return: single env, the last completed episode; vector, the mean of the last ≤100. NaN before any."""
        if not self.returns:
            return math.nan
        if not self.is_venv:
            return self.returns[-1]
        return sum(self.returns) / len(self.returns)

    def freeze_normalizers(self, source: "LabEnv | None" = None) -> None:
        """Stop updating the normaliser statistics (→D34). With ``source`` (the training env), use its statistics
        objects, so this env always normalises with the current training statistics without changing them."""
        for mine, theirs in (
            (self._obs_norm, source._obs_norm if source else None),
            (self._reward_norm, source._reward_norm if source else None),
        ):
            if mine is None:
                continue
            if theirs is not None:
                mine.rms = theirs.rms
            mine.frozen = True

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """Clock, completed raw returns and normaliser statistics (plain Python values)."""
        d: dict[str, Any] = {"clock": self.clock.state_dict(), "returns": list(self.returns)}
        if self._obs_norm is not None:
            d["obs_norm"] = self._obs_norm.state_dict()
        if self._reward_norm is not None:
            d["reward_norm"] = self._reward_norm.state_dict()
        return d

    def load_state_dict(self, d: dict) -> None:
        """Restore what ``state_dict`` saved (the episodes in progress have ``load_episode_state``)."""
        self.clock.load_state_dict(d["clock"])
        self.returns = deque((float(x) for x in d["returns"]), maxlen=RETURN_WINDOW)
        if self._obs_norm is not None and "obs_norm" in d:
            self._obs_norm.load_state_dict(d["obs_norm"])
        if self._reward_norm is not None and "reward_norm" in d:
            self._reward_norm.load_state_dict(d["reward_norm"])

    def episode_state(self) -> bytes:
        """The state of the episodes in progress, as bytes: every copy's env state (see ``snapshot.py``), the
        running raw returns, the reward normaliser's discounted returns, the observation history, the Atari lives
        and the action-space RNGs. Raises ``SnapshotError`` when the env cannot be captured."""
        if not self._snapshot_copies:
            raise SnapshotError("the native ALE vector env has no state capture")
        copies = list(self._env.call("lab_snapshot"))
        if any(blob is None for blob in copies):
            raise SnapshotError(next(e for e in self._env.get_attr("lab_snapshot_error") if e))
        lives = self._atari_lives()
        return pickle.dumps(
            {
                "copies": copies,
                "episode_returns": self._episode_returns,
                "reward_norm_returns": None if self._reward_norm is None else self._reward_norm.returns,
                "history": None if self._history is None else self._history.buffer,
                "lives": lives,
                "action_rngs": [getattr(space, "_np_random", None) for space in self._action_spaces()],
            },
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    def load_episode_state(self, blob: bytes) -> None:
        """Continue the episodes saved by ``episode_state`` (in an env built from the same spec)."""
        d = pickle.loads(blob)
        copies = d["copies"]
        if len(copies) != self.num_envs:
            raise SnapshotError(
                f"the saved episode state has {len(copies)} env copies, this env {self.num_envs}"
            )
        self._env.set_attr("lab_pending", copies)
        self._env.call("lab_restore")
        self._episode_returns[:] = d["episode_returns"]
        if self._reward_norm is not None:
            self._reward_norm.returns[:] = d["reward_norm_returns"]
        if self._history is not None:
            self._history.buffer[:] = d["history"]
        lives = self._atari_lives()
        if lives is not None:
            lives[:] = d["lives"]
        for space, rng in zip(self._action_spaces(), d["action_rngs"], strict=True):
            if rng is not None:
                space._np_random = rng

    def _atari_lives(self) -> np.ndarray | None:
        """The per-copy Atari lives the full-game returns are counted with (None for other envs)."""
        if self._games is not None:
            return self._games.lives
        return None if self.is_venv else self._env.lives

    def _action_spaces(self) -> list[spaces.Space]:
        """The distinct action spaces whose RNG a seeded reset sets (agent-facing, native, vector-batched)."""
        found: list[spaces.Space] = []
        for space in (self.action_space, self._env.action_space, self._env.single_action_space):
            if all(space is not s for s in found):
                found.append(space)
        return found

    def close(self) -> None:
        if self._viewer is not None:
            self._viewer.close()
        self._env.close()

    def __repr__(self) -> str:
        return f"LabEnv({self.name!r}, num_envs={self.num_envs}, {self.clock})"

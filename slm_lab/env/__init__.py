"""The lab's environment: every gymnasium env, single or vector, behind one batched interface.

``make_env(spec)`` builds a ``LabEnv``. Everything it returns has a leading ``num_envs`` axis, so agents and
memories never branch on single vs vector envs.

Autoreset is same-step (→D6): ``LabEnv.step`` returns both the true next state of each copy (``next_state``, the
final observation where an episode ended) and the observation to act on next (``obs``, the reset observation
there). A transition from a final observation to a reset observation is never produced. Single envs are reset by
``LabEnv`` itself in the same way, so the session never calls ``reset`` after the first one.

Per step, in order: the env steps; raw episode returns are accumulated per copy (completed ones go in a deque of
100, which ``total_reward`` reads); then the lab transforms run, batched: ``reward_scale`` (→D9) ->
``normalize_obs`` -> ``clip_obs`` -> ``normalize_reward`` (γ = the algorithm's ``gamma``) -> ``clip_reward``. With
none configured, the step does no extra work.

Vector envs use ``sync`` vectorisation for classic_control and box2d, otherwise ``sync`` below 8 copies and
``async`` from 8; an ``env.vectorization_mode`` key (``sync``/``async``) overrides the choice.

``env.name`` is a registered gymnasium id or a custom env's entry point ``package.module:Class``, imported in the
process that makes the env (``registration.py``). Atari ids get the preprocessing of ``atari.py``, a reward clip to
[−1, 1] on every path (→D21) and full-game returns across life losses. ``--render`` builds the env in
``rgb_array`` mode and shows each step's frame(s) in one window (``render.py``).

Example spec section::

    "env": {"name": "CartPole-v1", "num_envs": 4, "max_frame": 200000, "normalize_obs": true}
"""

import math
import pickle
import re
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from loguru import logger

from slm_lab.env.atari import FRAME_SKIP, GameOverTracker, make_atari_env, make_atari_vec, native_vector
from slm_lab.env.clock import Clock
from slm_lab.env.registration import entry_point_str, find_gym_spec
from slm_lab.env.render import FrameViewer, render_requested
from slm_lab.env.snapshot import EpisodeSnapshot, SnapshotError, restore_env, snapshot_env
from slm_lab.env.wrappers import ObsHistory, ObsNormalizer, RewardNormalizer, parse_clip_reward
from slm_lab.errors import SpecError

__all__ = ["Clock", "LabEnv", "Step", "make_env"]

# env keys the lab reads itself; every other key is passed to gym.make / gym.make_vec
LAB_KEYS = frozenset(
    {
        "name",
        "num_envs",
        "max_frame",
        "max_t",
        "normalize_obs",
        "normalize_reward",
        "clip_obs",
        "clip_reward",
        "reward_scale",
        "device",
        "vectorization_mode",
    }
)
RETURN_WINDOW = 100  # completed episode returns kept for total_reward
DEFAULT_CLIP = 10.0  # clip_obs / clip_reward default when normalising
ASYNC_MIN_ENVS = 8  # other families use async vectorisation from this many copies


class Step(NamedTuple):
    """One batched env step. Treat the arrays as read-only: ``next_state`` is ``obs`` itself when no copy ended."""

    obs: np.ndarray  # (N, *obs_shape): observation to act on next (the reset obs where an episode ended)
    next_state: np.ndarray  # (N, *obs_shape): the true next state (the final obs where an episode ended)
    reward: np.ndarray  # (N,) float32, after reward_scale / normalize_reward / clip_reward
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool


def _vectorization_mode(gym_spec: gym.envs.registration.EnvSpec, num_envs: int) -> str:
    """classic_control and box2d step in microseconds, so subprocesses would cost more than they save."""
    entry = entry_point_str(gym_spec)
    if "classic_control" in entry or "box2d" in entry:
        return "sync"
    return "sync" if num_envs < ASYNC_MIN_ENVS else "async"


def _wrap_make_error(name: str, kwargs: dict, e: Exception) -> SpecError:
    """Turn gymnasium's construction errors into a SpecError naming the offending key where the message tells it."""
    match = re.search(r"unexpected keyword argument '(\w+)'", str(e))
    if match and match.group(1) in kwargs:
        key = match.group(1)
        return SpecError(f"env.{key}: not accepted by {name!r} ({type(e).__name__}: {e})")
    return SpecError(f"env: failed to make {name!r} with {kwargs}: {type(e).__name__}: {e}")


def _space_dim(space: spaces.Space) -> int | tuple[int, ...] | list[int]:
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
    """A gymnasium env (``num_envs == 1``) or vector env presented with batched arrays and same-step autoreset.

    Attributes: ``name``, ``num_envs``, ``is_venv``, ``max_frame``, ``max_t`` (the effective episode step limit,
    None if unlimited), ``log_frequency``, ``eval_frequency``, single-copy ``observation_space`` and
    ``action_space``, ``state_dim``, ``action_dim``, ``is_discrete`` (Discrete, MultiDiscrete or MultiBinary
    actions), ``is_multi`` (MultiDiscrete or MultiBinary actions), ``clock``, ``returns`` (the last ≤100 completed
    raw episode returns, oldest first).

    Continuous actions: the agent acts in [−1, 1]. When the env's Box bounds are finite and not already [−1, 1],
    ``action_space`` is reported as a [−1, 1] Box of the same shape, and ``step`` maps each action linearly to
    [low, high] (low + (a + 1)·(high − low)/2) and clips it to the bounds, so values outside [−1, 1] saturate.
    Otherwise actions are only clipped to the env's bounds.
    """

    def __init__(self, spec: dict, render: bool = False) -> None:
        env_spec = spec["env"]
        meta = spec.get("meta") or {}
        gamma = (spec.get("agent") or {}).get("algorithm", {}).get("gamma", 0.99)
        for key in ("name", "max_frame"):
            if env_spec.get(key) is None:
                raise SpecError(f"env.{key}: required")
        self.name: str = env_spec["name"]
        self.num_envs = int(env_spec.get("num_envs") or 1)
        if self.num_envs < 1:
            raise SpecError(f"env.num_envs: must be at least 1, got {self.num_envs}")
        self.is_venv = self.num_envs > 1
        self.max_frame = int(env_spec["max_frame"])
        self.log_frequency = int(meta.get("log_frequency") or 10000)
        self.eval_frequency = int(meta.get("eval_frequency") or 10000)

        gym_spec = find_gym_spec(self.name)
        entry = entry_point_str(gym_spec)
        self.is_atari = "ale_py" in entry
        if "mujoco" in entry:
            _silence_mujoco()
        kwargs = {k: v for k, v in env_spec.items() if k not in LAB_KEYS}
        # Atari: with life_loss_info a lost life is a termination that does not end the game (see atari.py)
        self.life_loss_info = self.is_atari and bool(kwargs.get("life_loss_info"))
        self._games = GameOverTracker(self.num_envs) if self.is_atari else None
        self.max_t = self._apply_time_limit(
            env_spec.get("max_t"),
            gym_spec,
            kwargs,
            self.is_atari and self.is_venv and native_vector(self.name),
        )
        self._viewer = FrameViewer(self.name) if render else None
        # True for a sync vector env, which returns its internal obs buffer (set by _make_gym_env)
        self._sync_buffer = False
        # True when each copy of a vector env is wrapped in EpisodeSnapshot (set by _make_gym_env)
        self._snapshot_copies = False
        self._env = self._make_gym_env(env_spec, gym_spec, kwargs)
        if self.is_venv:
            self.observation_space = self._env.single_observation_space
            native_action_space = self._env.single_action_space
        else:
            self.observation_space = self._env.observation_space
            native_action_space = self._env.action_space
        self.action_space = self._setup_actions(native_action_space)
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
        self._history = self._setup_history(spec)

    def _setup_history(self, spec: dict) -> ObsHistory | None:
        """→D16: with a ``RecurrentNet``, each observation becomes the stack of the copy's last ``seq_len``
        observations, so the net sees a real history; ``observation_space`` and ``state_dim`` describe the stack."""
        net = (spec.get("agent") or {}).get("net") or {}
        if net.get("type") != "RecurrentNet":
            return None
        space = self.observation_space
        if not isinstance(space, spaces.Box):
            raise SpecError(f"agent.net.type: RecurrentNet needs Box observations, {self.name} has {space}")
        seq_len = int(net.get("seq_len") or 0)
        if seq_len < 1:
            raise SpecError(f"agent.net.seq_len: RecurrentNet needs seq_len >= 1, got {net.get('seq_len')!r}")
        low = np.repeat(space.low[None], seq_len, axis=0)
        high = np.repeat(space.high[None], seq_len, axis=0)
        self.observation_space = spaces.Box(np.minimum(low, 0), np.maximum(high, 0), dtype=space.dtype)
        self.state_dim = tuple(self.observation_space.shape)
        return ObsHistory(self.num_envs, seq_len, tuple(space.shape), space.dtype)

    # ------------------------------------------------------------------ construction

    @staticmethod
    def _apply_time_limit(
        max_t: Any, gym_spec: gym.envs.registration.EnvSpec, kwargs: dict, ale_vector: bool = False
    ) -> int | None:
        """→D9: ``max_t`` becomes the episode step limit only when below the env's own; returns the limit in force.

        ALE envs limit episodes in emulator frames (``max_num_frames_per_episode``, 108000 = 27000 steps in v5),
        and the native vector env accepts only that key, so there the limit is converted to frames."""
        own = kwargs.get("max_episode_steps", gym_spec.max_episode_steps)
        frames = kwargs.get("max_num_frames_per_episode", gym_spec.kwargs.get("max_num_frames_per_episode"))
        skip = kwargs.get("frameskip", gym_spec.kwargs.get("frameskip", FRAME_SKIP))
        if own is None and frames and isinstance(skip, int):
            own = int(frames) // skip
        own = own if own is not None and own > 0 else None
        if max_t is not None and (own is None or int(max_t) < own):
            if ale_vector:
                kwargs["max_num_frames_per_episode"] = int(max_t) * int(skip)
            else:
                kwargs["max_episode_steps"] = int(max_t)
            return int(max_t)
        return own

    def _make_gym_env(self, env_spec: dict, gym_spec: gym.envs.registration.EnvSpec, kwargs: dict) -> Any:
        render_mode = "rgb_array" if self._viewer is not None else None
        if render_mode is not None:
            kwargs = {**kwargs, "render_mode": render_mode}
        try:
            if self.is_atari:
                kwargs.pop("render_mode", None)
                if self.is_venv:
                    # the native ALE vector env has no copies to snapshot; the vector of preprocessed copies has
                    self._snapshot_copies = render_mode is not None or not native_vector(self.name)
                    return make_atari_vec(self.name, self.num_envs, kwargs, render_mode)
                return make_atari_env(self.name, kwargs, render_mode)
            if not self.is_venv:
                return gym.make(gym_spec, **kwargs)
            mode = env_spec.get("vectorization_mode") or _vectorization_mode(gym_spec, self.num_envs)
            if mode not in ("sync", "async"):
                raise SpecError(f"env.vectorization_mode: expected 'sync' or 'async', got {mode!r}")
            vector_kwargs: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}
            if mode == "sync":
                vector_kwargs["copy"] = False  # the step copies only what it returns
            self._sync_buffer = mode == "sync"
            self._snapshot_copies = True
            return gym.make_vec(
                gym_spec,
                num_envs=self.num_envs,
                vectorization_mode=mode,
                vector_kwargs=vector_kwargs,
                wrappers=[EpisodeSnapshot],
                **kwargs,
            )
        except gym.error.Error as e:
            raise _wrap_make_error(self.name, kwargs, e) from e
        except (TypeError, ValueError) as e:
            if not kwargs:
                raise
            raise _wrap_make_error(self.name, kwargs, e) from e

    def _setup_actions(self, space: spaces.Space) -> spaces.Space:
        """Build ``self._to_native`` (batched agent action -> the env's native action) and return the action space
        the agent sees."""
        n = self.num_envs
        batch_shape = (n, *space.shape) if self.is_venv else space.shape
        if isinstance(space, spaces.Discrete):
            start = int(space.start)
            if self.is_venv:
                self._to_native: Callable[[np.ndarray], Any] = (
                    (lambda a: np.asarray(a).reshape(n).astype(np.int64, copy=False))
                    if start == 0
                    else (lambda a: np.asarray(a).reshape(n).astype(np.int64) + start)
                )
            else:
                self._to_native = lambda a: int(np.asarray(a).item()) + start
            return space
        if isinstance(space, spaces.MultiDiscrete | spaces.MultiBinary):
            dtype = space.dtype
            self._to_native = lambda a: np.asarray(a).reshape(batch_shape).astype(dtype, copy=False)
            return space
        if not isinstance(space, spaces.Box):
            raise SpecError(f"env.name {self.name!r}: unsupported action space {space}")
        low, high, dtype = space.low.astype(np.float64), space.high.astype(np.float64), space.dtype
        finite = bool(np.all(np.isfinite(low)) and np.all(np.isfinite(high)))
        if finite and not (np.all(low == -1.0) and np.all(high == 1.0)):
            half = (high - low) / 2.0

            def rescale(a: np.ndarray) -> np.ndarray:
                a = np.asarray(a).reshape(batch_shape)
                return np.clip(low + (a + 1.0) * half, low, high).astype(dtype)

            self._to_native = rescale
            agent_space = spaces.Box(-1.0, 1.0, shape=space.shape, dtype=dtype)
            return agent_space
        if np.any(np.isfinite(low)) or np.any(np.isfinite(high)):
            self._to_native = lambda a: np.clip(np.asarray(a).reshape(batch_shape), low, high).astype(dtype)
        else:
            self._to_native = lambda a: np.asarray(a).reshape(batch_shape).astype(dtype, copy=False)
        return space

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
        obs = np.array(obs) if self.is_venv else np.array(obs)[None]
        self._episode_returns[:] = 0.0
        if self._reward_norm is not None:
            self._reward_norm.reset()
        if not self.is_venv:
            self.clock.t = 0
        obs = self._transform_obs(obs, update=True) if self._has_transforms else obs
        return self._history.reset(obs) if self._history is not None else obs

    def step(self, action: np.ndarray) -> Step:
        """Step every copy with a batched action (``(N,)`` or ``(N, A)``), tick the clock, and return a ``Step``."""
        native = self._to_native(action)
        if self.is_venv:
            obs, reward, terminated, truncated, info = self._env.step(native)
            if self._copy_obs:
                obs = obs.copy()
            self._episode_returns += reward
            done = terminated | truncated
            if done.any():
                idx = np.flatnonzero(done)
                next_state = obs.copy()
                final_obs = info["final_obs"]
                for i in idx:  # only the copies that ended
                    next_state[i] = final_obs[i]
                if self._games is not None:  # Atari: full-game returns, across life losses
                    idx = np.flatnonzero(self._games.game_over(done, truncated, info.get("lives")))
                self.returns.extend(self._episode_returns[idx].tolist())
                self._episode_returns[idx] = 0.0
                self.episode_counts[idx] += 1
                self.clock.tick_step(len(idx), done)
            else:
                next_state = obs
                self.clock.tick_step(0, done)
        else:
            obs, r, term, trunc, info = self._env.step(native)
            self._episode_returns[0] += r
            reward = np.array([r], dtype=np.float64)
            life_lost = False
            if self._games is not None and "lives" in info:
                lives = np.array([info["lives"]])
                life_lost = (
                    self.life_loss_info and bool(lives[0] < self._games.lives[0]) and not (term or trunc)
                )
                self._games.reset(lives)
            terminated, truncated = np.array([term or life_lost]), np.array([trunc])
            done = terminated | truncated
            if life_lost:  # the game goes on: a termination for value targets, not an episode for returns
                obs = next_state = np.array(obs)[None]
                self.clock.tick_step(0, done)
            elif term or trunc:
                next_state = np.array(obs)[None]
                self.returns.append(float(self._episode_returns[0]))
                self._episode_returns[0] = 0.0
                self.episode_counts[0] += 1
                obs, reset_info = self._env.reset()
                obs = np.array(obs)[None]
                if self._games is not None and "lives" in reset_info:
                    self._games.reset(np.array([reset_info["lives"]]))
                self.clock.tick_step(1, done)
            else:
                obs = next_state = np.array(obs)[None]
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
        reset_mask = done if result.next_state is not result.obs else np.zeros_like(done)
        stacked_obs, stacked_next = self._history.step(result.obs, result.next_state, reset_mask)
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

    # ------------------------------------------------------------------ reporting and state

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

    def _count_nonfinite(self, reward: np.ndarray, obs: np.ndarray) -> None:
        # one reduction per array in the common case; the element count only when something is not finite
        if not np.isfinite(reward.sum()):
            self.nonfinite["reward"] += int(np.count_nonzero(~np.isfinite(reward)))
        if obs.dtype.kind == "f" and not np.isfinite(obs.sum()):
            self.nonfinite["obs"] += int(np.count_nonzero(~np.isfinite(obs)))

    def state_dict(self) -> dict:
        """Clock, completed raw returns and normaliser statistics (plain Python values)."""
        d: dict[str, Any] = {"clock": self.clock.state_dict(), "returns": list(self.returns)}
        if self._obs_norm is not None:
            d["obs_norm"] = self._obs_norm.state_dict()
        if self._reward_norm is not None:
            d["reward_norm"] = self._reward_norm.state_dict()
        return d

    def episode_state(self) -> bytes:
        """The state of the episodes in progress, as bytes: every copy's env state (see ``snapshot.py``), the
        running raw returns, the reward normaliser's discounted returns, the observation history, the Atari lives
        and the action-space RNGs. Raises ``SnapshotError`` when the env cannot be captured."""
        if not self.is_venv:
            copies = [snapshot_env(self._env)]
        elif self._snapshot_copies:
            copies = list(self._env.call("lab_snapshot"))
            if any(blob is None for blob in copies):
                raise SnapshotError(next(e for e in self._env.get_attr("lab_snapshot_error") if e))
        else:
            raise SnapshotError("the native ALE vector env has no state capture")
        return pickle.dumps(
            {
                "copies": copies,
                "episode_returns": self._episode_returns,
                "reward_norm_returns": None if self._reward_norm is None else self._reward_norm.returns,
                "history": None if self._history is None else self._history.buffer,
                "lives": None if self._games is None else self._games.lives,
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
        if not self.is_venv:
            restore_env(self._env, copies[0])
        else:
            self._env.set_attr("lab_pending", copies)
            self._env.call("lab_restore")
        self._episode_returns[:] = d["episode_returns"]
        if self._reward_norm is not None:
            self._reward_norm.returns[:] = d["reward_norm_returns"]
        if self._history is not None:
            self._history.buffer[:] = d["history"]
        if self._games is not None:
            self._games.lives[:] = d["lives"]
        for space, rng in zip(self._action_spaces(), d["action_rngs"], strict=True):
            if rng is not None:
                space._np_random = rng

    def _action_spaces(self) -> list[spaces.Space]:
        """The distinct action spaces whose RNG a seeded reset sets (agent-facing, native, vector-batched)."""
        found: list[spaces.Space] = []
        for space in (
            self.action_space,
            self._env.action_space,
            getattr(self._env, "single_action_space", None),
        ):
            if space is not None and all(space is not s for s in found):
                found.append(space)
        return found

    def load_state_dict(self, d: dict) -> None:
        """Restore what ``state_dict`` saved (the episodes in progress have ``load_episode_state``)."""
        self.clock.load_state_dict(d["clock"])
        self.returns = deque((float(x) for x in d["returns"]), maxlen=RETURN_WINDOW)
        if self._obs_norm is not None and "obs_norm" in d:
            self._obs_norm.load_state_dict(d["obs_norm"])
        if self._reward_norm is not None and "reward_norm" in d:
            self._reward_norm.load_state_dict(d["reward_norm"])

    def close(self) -> None:
        if self._viewer is not None:
            self._viewer.close()
        self._env.close()

    def __repr__(self) -> str:
        return f"LabEnv({self.name!r}, num_envs={self.num_envs}, {self.clock})"


def _silence_mujoco() -> None:
    """MuJoCo writes compiler deprecation warnings of the gymnasium models to MUJOCO_LOG.TXT in the working folder;
    send them to the debug log instead."""
    import mujoco

    mujoco.set_mju_user_warning(lambda message: logger.debug(f"MuJoCo: {message}"))


def make_env(spec: dict, render: bool | None = None) -> LabEnv:
    """Build the session's env from ``spec["env"]`` (``meta`` for frequencies, the algorithm's ``gamma`` for
    reward normalisation). ``render`` defaults to the ``--render`` flag of ``slm-lab run``."""
    return LabEnv(spec, render=render_requested() if render is None else render)

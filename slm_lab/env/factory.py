"""Building the session's env: the gymnasium env(s) from ``spec["env"]``, then the ``LabEnv`` around them.

``make_env(spec)`` is the one place that reads the other spec sections a ``LabEnv`` depends on and passes their
values in explicitly: ``meta.log_frequency`` and ``meta.eval_frequency``, the algorithm's ``gamma`` (reward
normalisation) and a ``RecurrentNet``'s ``seq_len`` (observation history, →D16).

``build_env(env_spec)`` makes the gymnasium env, always behind the vector interface: a vector env for
``num_envs > 1``, a ``SingleEnvVector`` around one env otherwise. Every key of ``env`` that the lab does not read
itself (``LAB_KEYS``) is passed to ``gym.make`` / ``gym.make_vec``; a construction error becomes a ``SpecError``
naming the key where gymnasium's message tells it.

- Vectorisation: ``sync`` for classic_control and box2d (they step in microseconds, so subprocesses would cost more
  than they save), otherwise ``sync`` below 8 copies and ``async`` from 8; ``env.vectorization_mode``
  (``sync``/``async``) overrides the choice. Gymnasium vector envs use same-step autoreset (→D6).
- Time limit (→D9): ``max_t`` becomes the episode step limit only when below the env's own.
- Atari ids take the paths of ``atari.py``: ale-py's native vector env, or preprocessed single envs.
- Episode snapshots (→D10): every copy a gymnasium env holds is wrapped in ``EpisodeSnapshot``.
"""

import re
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import AutoresetMode
from loguru import logger

from slm_lab.env.atari import FRAME_SKIP, make_atari_env, make_atari_vec, native_vector
from slm_lab.env.lab_env import LabEnv
from slm_lab.env.registration import entry_point_str, find_gym_spec
from slm_lab.env.render import render_requested
from slm_lab.env.single import SingleEnvVector
from slm_lab.env.snapshot import EpisodeSnapshot
from slm_lab.errors import SpecError
from slm_lab.spec.schema import MetaSpec

__all__ = ["LAB_KEYS", "BuiltEnv", "build_env", "make_env"]

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
ASYNC_MIN_ENVS = 8  # other families use async vectorisation from this many copies


@dataclass(frozen=True)
class BuiltEnv:
    """A gymnasium env behind the vector interface, with what ``LabEnv`` must know of how it was built."""

    env: Any  # a gymnasium vector env, or a SingleEnvVector when num_envs == 1
    name: str
    num_envs: int
    is_atari: bool
    max_t: int | None  # the episode step limit in force; None if unlimited
    rendering: bool  # built in rgb_array mode for --render
    sync_buffer: bool  # a sync vector env, whose step returns its internal obs buffer
    snapshot_copies: bool  # every copy is wrapped in EpisodeSnapshot (not so in the native ALE vector env)


def make_env(spec: dict, render: bool | None = None) -> LabEnv:
    """Build the session's env from ``spec["env"]``, with ``meta``'s frequencies, the algorithm's ``gamma`` and a
    ``RecurrentNet``'s ``seq_len``. ``render`` defaults to the ``--render`` flag of ``slm-lab run``."""
    env_spec = spec["env"]
    meta = spec.get("meta") or {}
    agent = spec.get("agent") or {}
    gamma = agent.get("algorithm", {}).get("gamma", 0.99)
    built = build_env(env_spec, render_requested() if render is None else render)
    obs_history = _recurrent_seq_len(agent.get("net") or {}, built)
    return LabEnv(
        env_spec,
        built,
        gamma=gamma,
        obs_history=obs_history,
        log_frequency=int(meta.get("log_frequency") or MetaSpec.model_fields["log_frequency"].default),
        eval_frequency=int(meta.get("eval_frequency") or MetaSpec.model_fields["eval_frequency"].default),
    )


def _recurrent_seq_len(net: dict, built: BuiltEnv) -> int | None:
    """→D16: a ``RecurrentNet`` sees the last ``seq_len`` observations of each copy; None for any other net."""
    if net.get("type") != "RecurrentNet":
        return None
    space = built.env.single_observation_space
    error = None
    if not isinstance(space, spaces.Box):
        error = f"agent.net.type: RecurrentNet needs Box observations, {built.name} has {space}"
    elif int(net.get("seq_len") or 0) < 1:
        error = f"agent.net.seq_len: RecurrentNet needs seq_len >= 1, got {net.get('seq_len')!r}"
    if error is not None:
        built.env.close()
        raise SpecError(error)
    return int(net["seq_len"])


def build_env(env_spec: dict, render: bool = False) -> BuiltEnv:
    """Make the gymnasium env(s) an ``env`` spec section describes; ``render`` builds them in rgb_array mode."""
    for key in ("name", "max_frame"):
        if env_spec.get(key) is None:
            raise SpecError(f"env.{key}: required")
    name: str = env_spec["name"]
    num_envs = int(env_spec.get("num_envs") or 1)
    if num_envs < 1:
        raise SpecError(f"env.num_envs: must be at least 1, got {num_envs}")
    gym_spec = find_gym_spec(name)
    entry = entry_point_str(gym_spec)
    is_atari = "ale_py" in entry
    if "mujoco" in entry:
        _silence_mujoco()
    kwargs = {k: v for k, v in env_spec.items() if k not in LAB_KEYS}
    native_ale = is_atari and num_envs > 1 and native_vector(name)
    max_t = _apply_time_limit(env_spec.get("max_t"), gym_spec, kwargs, native_ale)
    render_mode = "rgb_array" if render else None
    if render_mode is not None and not is_atari:  # the Atari makers take it as an argument
        kwargs["render_mode"] = render_mode
    mode = None
    try:
        if is_atari:
            if num_envs > 1:
                env = make_atari_vec(name, num_envs, kwargs, render_mode)
            else:
                # with life_loss_info a lost life is a termination that does not end the game (see atari.py)
                env = SingleEnvVector(
                    EpisodeSnapshot(make_atari_env(name, kwargs, render_mode)),
                    track_lives=True,
                    life_loss_info=bool(kwargs.get("life_loss_info")),
                )
        elif num_envs == 1:
            env = SingleEnvVector(EpisodeSnapshot(gym.make(gym_spec, **kwargs)))
        else:
            mode = env_spec.get("vectorization_mode") or _vectorization_mode(gym_spec, num_envs)
            env = _make_vec(gym_spec, num_envs, mode, kwargs)
    except gym.error.Error as e:
        raise _wrap_make_error(name, kwargs, e) from e
    except (TypeError, ValueError) as e:
        if not kwargs:
            raise
        raise _wrap_make_error(name, kwargs, e) from e
    return BuiltEnv(
        env=env,
        name=name,
        num_envs=num_envs,
        is_atari=is_atari,
        max_t=max_t,
        rendering=render,
        sync_buffer=mode == "sync",
        # the native ALE vector env has no copies to snapshot; the vector of preprocessed copies has
        snapshot_copies=not native_ale or render,
    )


def _make_vec(gym_spec: EnvSpec, num_envs: int, mode: str, kwargs: dict) -> Any:
    """A gymnasium vector env with same-step autoreset, each copy wrapped in ``EpisodeSnapshot``."""
    if mode not in ("sync", "async"):
        raise SpecError(f"env.vectorization_mode: expected 'sync' or 'async', got {mode!r}")
    vector_kwargs: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}
    if mode == "sync":
        vector_kwargs["copy"] = False  # LabEnv's step copies only what it returns
    return gym.make_vec(
        gym_spec,
        num_envs=num_envs,
        vectorization_mode=mode,
        vector_kwargs=vector_kwargs,
        wrappers=[EpisodeSnapshot],
        **kwargs,
    )


def _apply_time_limit(max_t: Any, gym_spec: EnvSpec, kwargs: dict, ale_vector: bool = False) -> int | None:
    """→D9: ``max_t`` becomes the episode step limit only when below the env's own; returns the limit in force.

    The limit goes into ``kwargs`` as ``max_episode_steps``. ALE envs limit episodes in emulator frames
    (``max_num_frames_per_episode``, 108000 = 27000 steps in v5), and the native vector env accepts only that key,
    so there the limit is converted to frames."""
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


def _vectorization_mode(gym_spec: EnvSpec, num_envs: int) -> str:
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


def _silence_mujoco() -> None:
    """MuJoCo writes compiler deprecation warnings of the gymnasium models to MUJOCO_LOG.TXT in the working folder;
    send them to the debug log instead."""
    import mujoco

    mujoco.set_mju_user_warning(lambda message: logger.debug(f"MuJoCo: {message}"))

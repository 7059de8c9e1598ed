"""Snapshots of episodes in progress, so that a resumed session continues them exactly (→D10, B4).

A gymnasium env is a chain of wrappers around a base env. A snapshot holds, for each wrapper, its attributes (the
step counter of ``TimeLimit``, the frame buffers of the Atari preprocessing, ...) and for the base env its
attributes too: physics state and RNG for pure-Python envs (classic control, toy text, custom envs); the MuJoCo
``MjData`` for MuJoCo envs; the emulator state with its RNG for ALE envs. Restoring writes them back into an env
built from the same spec.

Envs whose state does not pickle (Box2D's world, the native ALE vector env, anything holding a live renderer or
window) cannot be snapshot: ``snapshot_env`` raises ``SnapshotError`` naming the reason, and a resumed session
starts new episodes in them instead.

Every copy of an env the lab builds with gymnasium (a single env, or each copy of a sync or async vector env) is
wrapped in ``EpisodeSnapshot``, so the copies are reached with ``call`` / ``set_attr`` wherever they run, in this
process or in the worker processes of an async env.
"""

import pickle
from typing import Any

import gymnasium as gym

__all__ = ["EpisodeSnapshot", "SnapshotError", "restore_env", "snapshot_env"]


class SnapshotError(Exception):
    """The env's state cannot be captured; the message says what could not be saved."""


def _base_parts(env: gym.Env) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain attributes, special state) of a base env: the objects that do not pickle faithfully are replaced
    by their own state capture."""
    attrs = dict(vars(env))
    special: dict[str, Any] = {}
    if "ale" in attrs:  # ALE: the emulator, with its RNG, through its own state capture
        special["ale"] = attrs.pop("ale").cloneState(include_rng=True)
    if "data" in attrs and "model" in attrs and type(attrs["data"]).__module__.startswith("mujoco"):
        special["mjdata"] = attrs.pop("data")
        attrs.pop("model")
        attrs.pop("mujoco_renderer", None)  # rebuilt from the same model; holds no episode state
    return attrs, special


def snapshot_env(env: gym.Env) -> bytes:
    """The state of one env (its wrapper chain and base env) as bytes. Raises ``SnapshotError``."""
    layers: list[dict[str, Any]] = []
    layer = env
    while isinstance(layer, gym.Wrapper):
        layers.append({k: v for k, v in vars(layer).items() if k != "env"})
        layer = layer.env
    base = layer
    try:
        attrs, special = _base_parts(base)
        return pickle.dumps(
            (type(base).__qualname__, layers, attrs, special), protocol=pickle.HIGHEST_PROTOCOL
        )
    except Exception as e:  # any pickling failure: an attribute that is a live C object, a window, a lock
        raise SnapshotError(
            f"{type(base).__name__} state does not pickle ({type(e).__name__}: {e})"
        ) from None


def restore_env(env: gym.Env, blob: bytes) -> None:
    """Write a ``snapshot_env`` state back into an env built the same way."""
    name, layers, attrs, special = pickle.loads(blob)
    chain: list[gym.Wrapper] = []
    layer = env
    while isinstance(layer, gym.Wrapper):
        chain.append(layer)
        layer = layer.env
    if type(layer).__qualname__ != name or len(chain) != len(layers):
        raise SnapshotError(
            f"the saved episode state is of {name} with {len(layers)} wrapper(s), this env is "
            f"{type(layer).__qualname__} with {len(chain)}"
        )
    for wrapper, saved in zip(chain, layers, strict=True):
        _assign(wrapper, saved)
    _assign(layer, attrs)
    if "ale" in special:
        layer.ale.restoreState(special["ale"])
    if "mjdata" in special:
        import mujoco

        mujoco.mj_copyData(layer.data, layer.model, special["mjdata"])


def _assign(obj: Any, saved: dict[str, Any]) -> None:
    """Set the saved attributes on ``obj``. Spaces keep their identity (the lab and the wrappers hold references
    to them) and only take the saved RNG."""
    current = vars(obj)
    for key, value in saved.items():
        old = current.get(key)
        if isinstance(old, gym.spaces.Space) and isinstance(value, gym.spaces.Space):
            old._np_random = value._np_random
        else:
            current[key] = value


class EpisodeSnapshot(gym.Wrapper):
    """The outermost wrapper of each copy of a gymnasium vector env: ``lab_snapshot()`` returns the copy's state
    (None when it cannot be captured, with the reason in ``lab_snapshot_error``); after ``set_attr("lab_pending",
    blobs)``, ``lab_restore()`` restores each copy from its own blob."""

    lab_pending: bytes | None = None
    lab_snapshot_error: str | None = None

    def lab_snapshot(self) -> bytes | None:
        try:
            return snapshot_env(self.env)
        except SnapshotError as e:
            self.lab_snapshot_error = str(e)
            return None

    def lab_restore(self) -> None:
        if self.lab_pending is None:
            raise SnapshotError("no episode state was given to restore")
        blob, self.lab_pending = self.lab_pending, None
        restore_env(self.env, blob)

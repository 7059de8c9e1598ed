"""Resolving ``env.name`` to a gymnasium ``EnvSpec``: registered ids, ``ALE/`` ids and custom entry points.

A custom env is named by its entry point, ``package.module:Class``, where ``Class`` is a ``gymnasium.Env`` subclass
(a factory function is refused: nothing a spec names is called before it is known to be an env). Sessions run in spawned processes, which do not
inherit anything registered in the parent, so the entry point is resolved by importing the module inside each
process (``make_env`` calls ``find_gym_spec``), never by registering it once in the parent. The module must be
importable there: installed, or on ``PYTHONPATH``.

gymnasium's own ``module:EnvId`` form (import a module that registers ``EnvId``) also works: if the part after the
colon is not an attribute of the module, the name is looked up in the registry after the import.
"""

import importlib
import inspect

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from slm_lab.errors import SpecError

__all__ = ["entry_point_error", "entry_point_str", "find_gym_spec", "register_ale_if_installed"]


def entry_point_str(gym_spec: EnvSpec) -> str:
    ep = gym_spec.entry_point
    return ep if isinstance(ep, str) else f"{getattr(ep, '__module__', '')}:{getattr(ep, '__qualname__', '')}"


def entry_point_error(name: str) -> str | None:
    """An error line naming ``env.name`` when ``name`` (``module:Class``) cannot be imported; None if it can."""
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        return f"env.name {name!r}: an entry point must look like 'package.module:Class'"
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        return (
            f"env.name {name!r}: cannot import module {module_name!r} ({type(e).__name__}: {e}); "
            "install it or add its folder to PYTHONPATH"
        )
    target = getattr(module, attr, None)
    if target is None:
        if name in gym.envs.registry:  # gymnasium's "module:EnvId" form: the import registered the id
            return None
        return f"env.name {name!r}: module {module_name!r} has no attribute {attr!r} (nor registers that id)"
    if not (inspect.isclass(target) and issubclass(target, gym.Env)):
        # only a class is accepted, never a function: nothing named in a spec is called before it is known to be
        # an env (``os:system`` with a ``command`` key would otherwise run the command)
        kind = "a class but not" if inspect.isclass(target) else f"a {type(target).__name__}, not"
        return f"env.name {name!r}: {attr!r} is {kind} a gymnasium.Env subclass"
    return None


def _register_ale(name: str) -> None:
    if not register_ale_if_installed():
        raise SpecError(f"env.name {name!r}: Atari envs need the package 'ale-py'")


def find_gym_spec(name: str) -> EnvSpec:
    """The gymnasium spec for ``name``; a SpecError naming ``env.name`` if it cannot be resolved."""
    if name.startswith("playground/"):
        raise SpecError(f"env.name {name!r}: MuJoCo Playground envs are not supported in this installation")
    if name.startswith("ALE/"):
        _register_ale(name)
    if ":" in name:
        error = entry_point_error(name)
        if error:
            raise SpecError(error)
        if name in gym.envs.registry:
            return gym.spec(name)
        module_name, _, attr = name.partition(":")
        target = getattr(importlib.import_module(module_name), attr)
        return EnvSpec(id=name, entry_point=target)
    if name not in gym.envs.registry:
        register_ale_if_installed()  # an Atari id without the ALE/ prefix (Pong-v0, PongNoFrameskip-v4)
    try:
        return gym.spec(name)
    except (gym.error.Error, ModuleNotFoundError, ImportError) as e:
        raise SpecError(f"env.name {name!r}: not a registered gymnasium env ({e})") from None


def register_ale_if_installed() -> bool:
    """Register ale-py's ids (the ``ALE/`` ones and the legacy ``Pong-v0``-style ones) when ale-py is installed;
    returns whether it is."""
    try:
        from slm_lab.env.atari import register_ale

        register_ale()
    except ImportError:
        return False
    return True

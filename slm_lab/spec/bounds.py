"""Size-like spec keys checked against the memory the machine has, before anything is allocated.

The schema only knows that ``num_envs``, buffer sizes and layer widths are at least 1; whether a value fits depends on
the machine (accelerator vector envs legitimately run thousands of copies), so the bound is memory, estimated from
what each key makes:
- ``env.num_envs``: every copy costs at least ``BYTES_PER_ENV_COPY`` (a classic-control env object and its
  bookkeeping; image envs cost more, so this is a floor, not an estimate of the largest);
- a memory's storage: ``max_size`` (replay) or the rollout (``time_horizon`` or ``training_frequency`` vector steps
  of ``num_envs`` copies) of transitions, each two observations of the env's shape and dtype;
- a net: 4-byte parameters, each with a gradient and two optimizer moments, for the layer widths, recurrent cells
  and conv kernels given.
A run whose estimate exceeds the memory available now is refused with one line naming the key.
"""

import itertools
import math
import os
from collections.abc import Sequence
from typing import Any

from slm_lab.errors import SpecError

__all__ = ["available_memory", "check_env_copies", "check_memory_and_nets"]

BYTES_PER_ENV_COPY = 256 * 2**10
BYTES_PER_PARAM = 4 * 4  # float32 value, gradient and two Adam moments


def available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), else the physical memory, else None (unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def _refuse(key: str, value: Any, need: float, what: str, available: int) -> None:
    if need > available:
        raise SpecError(
            f"{key}: {value!r} needs about {_gib(need)} ({what}); this machine has {_gib(available)} available"
        )


def check_env_copies(env_spec: dict[str, Any], available: int | None = None) -> None:
    """Refuse ``env.num_envs`` copies that cannot all fit in memory (before any is made)."""
    available = available_memory() if available is None else available
    n = env_spec.get("num_envs") or 1
    if available is not None and isinstance(n, int):
        _refuse("env.num_envs", n, n * BYTES_PER_ENV_COPY, "at least 256 KiB per env copy", available)


def _mlp_params(in_dim: int, widths: Sequence[int], out_dim: int) -> int:
    dims = [in_dim, *widths, out_dim]
    return sum((a + 1) * b for a, b in itertools.pairwise(dims))


def check_memory_and_nets(
    spec: dict[str, Any], obs_shape: Sequence[int], obs_itemsize: int, available: int | None = None
) -> None:
    """Refuse a memory or a net that cannot fit, from the env's observation shape and dtype size (after the env is
    made, before the agent is built)."""
    available = available_memory() if available is None else available
    if available is None:
        return
    agent, env = spec["agent"], spec["env"]
    obs_bytes = max(1, math.prod(obs_shape)) * obs_itemsize
    transition = 2 * obs_bytes + 64  # state and next state, plus action, reward and flags
    memory, algorithm = agent.get("memory") or {}, agent.get("algorithm") or {}
    num_envs = env.get("num_envs") or 1
    for key in ("max_size", "sil_max_size"):
        size = memory.get(key)
        if isinstance(size, int):
            _refuse(
                f"agent.memory.{key}", size, size * transition, "transitions of two observations", available
            )
    steps = algorithm.get("time_horizon") or algorithm.get("training_frequency")
    if isinstance(steps, int) and isinstance(num_envs, int):
        _refuse(
            "agent.algorithm." + ("time_horizon" if "time_horizon" in algorithm else "training_frequency"),
            steps, steps * num_envs * transition, f"a rollout of {num_envs} env copies", available,
        )  # fmt: skip
    in_dim = max(1, math.prod(obs_shape))
    for net_key in ("net", "critic_net"):
        net = agent.get(net_key) or {}
        for layers_key in ("hid_layers", "fc_hid_layers"):
            widths = net.get(layers_key)
            if isinstance(widths, list) and widths and all(isinstance(w, int) for w in widths):
                need = 4 * _mlp_params(in_dim, widths, max(widths)) * BYTES_PER_PARAM  # up to 4 nets (SAC)
                _refuse(
                    f"agent.{net_key}.{layers_key}", widths, need, "parameters of up to 4 nets", available
                )
        _check_rnn(net, net_key, (net.get("fc_hid_layers") or [in_dim])[-1], available)
        _check_conv(net, net_key, obs_shape, available)


def _check_rnn(net: dict[str, Any], net_key: str, in_dim: Any, available: int) -> None:
    """A recurrent net's cells, sized as LSTM cells (4 gates), the largest kind."""
    hidden, layers = net.get("rnn_hidden_size"), net.get("rnn_num_layers") or 1
    if not (isinstance(hidden, int) and isinstance(layers, int) and isinstance(in_dim, int)):
        return
    first = 4 * hidden * (in_dim + hidden + 2)  # the first layer alone: too big names the width
    params = first + (layers - 1) * 4 * hidden * (2 * hidden + 2)  # with the others: too big names the depth
    what = "parameters of up to 4 nets"
    _refuse(f"agent.{net_key}.rnn_hidden_size", hidden, 4 * first * BYTES_PER_PARAM, what, available)
    _refuse(f"agent.{net_key}.rnn_num_layers", layers, 4 * params * BYTES_PER_PARAM, what, available)


def _check_conv(net: dict[str, Any], net_key: str, obs_shape: Sequence[int], available: int) -> None:
    """A conv net's kernels: [out_channels, kernel, ...] per layer, from the observation's channels."""
    layers = net.get("conv_hid_layers")
    if not isinstance(layers, list):
        return
    channels, params = (obs_shape[0] if len(obs_shape) == 3 else 1), 0
    for layer in layers:
        if not (isinstance(layer, list) and layer and isinstance(layer[0], int)):
            return
        kernel = layer[1] if len(layer) > 1 else 1
        area = math.prod(kernel) if isinstance(kernel, list) else kernel * kernel
        if not isinstance(area, int):
            return
        params += (channels * area + 1) * layer[0]
        channels = layer[0]
    _refuse(
        f"agent.{net_key}.conv_hid_layers", layers, 4 * params * BYTES_PER_PARAM, "conv kernels", available
    )

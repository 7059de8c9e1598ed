"""Seeding and RNG state capture, for reproducible sessions (D7) and exact resume (D10).

Every session derives its seed from ``meta.random_seed`` and its trial/session indices, so sessions of a trial get
distinct but reproducible streams. The RNG states are captured as plain Python objects and tensors, so a
``torch.save``'d checkpoint loads with ``torch.load(..., weights_only=True)``.
"""

import random
from typing import Any

import numpy as np
import torch

from slm_lab.errors import SpecError

__all__ = ["get_rng_state", "session_seed", "set_global_seed", "set_rng_state"]

TRIAL_SEED_STRIDE = 100_000
SESSION_SEED_STRIDE = 1_000


def session_seed(spec: dict[str, Any]) -> int:
    """meta.random_seed + 100000·trial + 1000·session (indices below 0, i.e. not yet ticked, count as 0)."""
    meta = spec["meta"]
    base = meta.get("random_seed")
    if isinstance(base, bool) or not isinstance(base, int | float) or base != int(base):
        raise SpecError(f"meta.random_seed must be an integer, got {base!r}")
    trial, session = (
        max(int(meta.get(k) if meta.get(k) is not None else -1), 0) for k in ("trial", "session")
    )
    return int(base) + TRIAL_SEED_STRIDE * trial + SESSION_SEED_STRIDE * session


def set_global_seed(seed: int) -> None:
    """Seed python ``random``, numpy's global generator and torch (CPU and every CUDA device).

    numpy accepts seeds below 2**32 only, so it gets ``seed % 2**32``.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds the CPU generator and every CUDA device's


def get_rng_state() -> dict[str, Any]:
    """The python, numpy-global, torch-CPU (and CUDA, when available) RNG states, as tensors and builtins."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`get_rng_state`; the CUDA part is skipped when CUDA is absent."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npd = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npd["bit_generator"],
            "state": {"key": npd["key"].numpy().astype(np.uint32), "pos": int(npd["pos"])},
            "has_gauss": int(npd["has_gauss"]),
            "gauss": float(npd["gauss"]),
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

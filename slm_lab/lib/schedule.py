"""Schedules: ``VarScheduler`` for algorithm variables (ε, τ, entropy coefficient, clip ε) and LR schedulers.

Both count in env **frames** as the spec writes them. A VarScheduler is a pure function of the frame, so resuming
only needs the frame; an LR scheduler counts ``train()`` calls (it is stepped once per call), so its
frame horizon is converted to scheduler steps with ``frames_per_step = training_frequency × num_envs``.
"""

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from slm_lab.errors import SpecError
from slm_lab.registry import Registry

__all__ = [
    "LR_SCHEDULER_NAMES",
    "VAR_SCHEDULES",
    "LinearToMin",
    "LinearToZero",
    "VarScheduler",
    "build_lr_scheduler",
    "linear_decay",
    "no_decay",
    "periodic_decay",
    "rate_decay",
]

# ---------------------------------------------------------------------------------------------------------------
# VarScheduler
# ---------------------------------------------------------------------------------------------------------------

ScheduleFn = Callable[[float, float, int, int, int], float]
VAR_SCHEDULES: Registry[ScheduleFn] = Registry("VarScheduler function")


@VAR_SCHEDULES.register("no_decay")
def no_decay(start_val: float, end_val: float, start_step: int, end_step: int, step: int) -> float:
    """Constant ``start_val``."""
    return start_val


@VAR_SCHEDULES.register("linear_decay")
def linear_decay(start_val: float, end_val: float, start_step: int, end_step: int, step: int) -> float:
    """Straight line from start_val at start_step to end_val at end_step, in either direction; held at the ends.

    Unlike the reference (which clamped with max(·, end_val)), an increasing schedule ramps instead of jumping (D2).
    """
    if step < start_step:
        return start_val
    if step >= end_step:
        return end_val
    return start_val + (end_val - start_val) * (step - start_step) / (end_step - start_step)


@VAR_SCHEDULES.register("rate_decay")
def rate_decay(start_val: float, end_val: float, start_step: int, end_step: int, step: int) -> float:
    """Exponential decay by 0.9 every 1/20 of the schedule, floored at end_val; exactly end_val from end_step."""
    if step < start_step:
        return start_val
    if step >= end_step:
        return end_val
    rate_steps = (end_step - start_step) / 20.0
    return max(start_val * 0.9 ** ((step - start_step) / rate_steps), end_val)


@VAR_SCHEDULES.register("periodic_decay")
def periodic_decay(start_val: float, end_val: float, start_step: int, end_step: int, step: int) -> float:
    """A cosine wave (period 2π in u) under a linearly shrinking envelope, decaying from start_val to end_val.

    u = (step − s)/((e − s)/60); value = max(b + ½(a − b)(1 + cos u)(1 − u/60), b). This is the intended form: the
    reference multiplied by end_val, so it never reached it (D2).
    """
    if step < start_step:
        return start_val
    if step >= end_step:
        return end_val
    u = (step - start_step) / ((end_step - start_step) / 60.0)
    wave = 0.5 * (start_val - end_val) * (1.0 + math.cos(u)) * (1.0 - u / 60.0)
    return max(end_val + wave, end_val)


class VarScheduler:
    """A scheduled scalar, e.g. ``{name: linear_decay, start_val: 1.0, end_val: 0.0, start_step: 0, end_step: 1e4}``.

    Steps are env frames. Before ``start_step`` the value is ``start_val``; ``end_val: 0`` really
    means 0, and only an absent/null ``end_val`` defaults to ``start_val`` (D2). A null spec means the variable is
    unused: the value is a constant NaN. In eval mode (``set_eval(True)``, enjoy/eval runs) it is ``end_val``,
    so e.g. ε-greedy acts with its final ε (D11).

    Args:
        spec: the schedule dict, or None.
        key: dotted spec key, named in error messages.
    """

    def __init__(self, spec: dict[str, Any] | None, key: str = "schedule") -> None:
        self.key = key
        self.eval_mode = False
        self.name: str = (spec or {}).get("name", "no_decay")
        self._fn: ScheduleFn = VAR_SCHEDULES.get(
            self.name, f"{key}.name"
        )  # unknown names list the valid ones
        if not spec:
            self.start_val = self.end_val = math.nan
            self.start_step = self.end_step = 0
        else:
            self.start_val = self._number(spec, "start_val", required=True)
            end_val = spec.get("end_val")
            self.end_val = self.start_val if end_val is None else self._number(spec, "end_val")
            self.start_step = int(self._number(spec, "start_step", default=0))
            if self.name == "no_decay":
                self.end_step = int(self._number(spec, "end_step", default=self.start_step))
            else:
                self.end_step = int(self._number(spec, "end_step", required=True))
        self._constant = self.name == "no_decay"
        self.frame = 0
        self.val = self.start_val

    def _number(
        self, spec: dict[str, Any], field: str, default: float = 0.0, required: bool = False
    ) -> float:
        value = spec.get(field)
        if value is None:
            if required:
                raise SpecError(f"{self.key}.{field} is required for a {self.name} schedule")
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"{self.key}.{field} must be a number, got {value!r}")
        return float(value)

    def set_eval(self, eval_mode: bool = True) -> None:
        """In eval mode every schedule returns its end value."""
        self.eval_mode = eval_mode
        self.val = (
            self.end_val
            if eval_mode
            else self._fn(self.start_val, self.end_val, self.start_step, self.end_step, self.frame)
        )

    def update(self, frame: int) -> float:
        """Set and return the value at env frame ``frame``."""
        self.frame = frame
        if self.eval_mode:
            self.val = self.end_val
        elif not self._constant:
            self.val = self._fn(self.start_val, self.end_val, self.start_step, self.end_step, frame)
        return self.val

    def state_dict(self) -> dict[str, float]:
        return {"frame": self.frame, "val": self.val}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.frame = int(state["frame"])
        self.val = float(state["val"])

    def __repr__(self) -> str:
        return (
            f"VarScheduler({self.name}, start_val={self.start_val}, end_val={self.end_val}, "
            f"start_step={self.start_step}, end_step={self.end_step}, val={self.val})"
        )


# ---------------------------------------------------------------------------------------------------------------
# LR schedulers
# ---------------------------------------------------------------------------------------------------------------


class _LinearFactorLR(LRScheduler):
    """lr_k = base_lr · max(min_factor, 1 − k(1 − min_factor)/n), k = scheduler steps taken so far.

    All state is plain numbers (no lambdas), so ``state_dict``/``load_state_dict`` round-trip exactly.
    """

    def __init__(
        self, optimizer: Optimizer, total_steps: int, min_factor: float = 0.0, last_epoch: int = -1
    ) -> None:
        assert total_steps >= 1, f"total_steps must be at least 1, got {total_steps}"
        assert 0.0 <= min_factor <= 1.0, f"min_factor must be in [0, 1], got {min_factor}"
        self.total_steps = total_steps
        self.min_factor = min_factor
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        return max(self.min_factor, 1.0 - step * (1.0 - self.min_factor) / self.total_steps)

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)
        return [base_lr * f for base_lr in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()


class LinearToZero(_LinearFactorLR):
    """Linear LR decay to 0 over ``total_steps`` scheduler steps: factor max(0, 1 − k/n)."""

    def __init__(self, optimizer: Optimizer, total_steps: int, last_epoch: int = -1) -> None:
        super().__init__(optimizer, total_steps, 0.0, last_epoch)


class LinearToMin(_LinearFactorLR):
    """Linear LR decay to ``min_factor`` × the initial LR over ``total_steps``: factor max(m, 1 − k(1 − m)/n) (D25)."""


def _constant_factor(step: int) -> float:
    """Module-level (not a lambda) so the constant scheduler pickles."""
    return 1.0


def _torch_scheduler_names() -> dict[str, type[LRScheduler]]:
    """torch schedulers that a JSON spec can configure: those needing callables, other schedulers or a metric
    at each step (LambdaLR, MultiplicativeLR, SequentialLR, ChainedScheduler, ReduceLROnPlateau) are left out."""
    excluded = {
        "LRScheduler",
        "_LRScheduler",
        "LambdaLR",
        "MultiplicativeLR",
        "SequentialLR",
        "ChainedScheduler",
    }
    found = {}
    for name, obj in vars(torch.optim.lr_scheduler).items():
        if name in excluded or name.startswith("_") or not inspect.isclass(obj):
            continue
        if issubclass(obj, LRScheduler) and "metrics" not in inspect.signature(obj.step).parameters:
            found[name] = obj
    return found


_TORCH_SCHEDULERS = _torch_scheduler_names()
LR_SCHEDULER_NAMES: list[str] = ["LinearToMin", "LinearToZero", *sorted(_TORCH_SCHEDULERS)]


def build_lr_scheduler(
    optimizer: Optimizer,
    spec: dict[str, Any] | None,
    frames_per_step: int,
    key: str = "agent.net.lr_scheduler_spec",
) -> LRScheduler:
    """Build the LR scheduler for ``optimizer`` from an ``lr_scheduler_spec``; step it once per ``train()`` call.

    - None (or {}): constant LR.
    - ``{name: LinearToZero, frame: F}``: factor max(0, 1 − k/n);
      ``{name: LinearToMin, frame: F, min_factor: m}``: factor max(m, 1 − k(1 − m)/n);
      with k = scheduler steps and n = max(1, F // frames_per_step).
    - Any other name: ``torch.optim.lr_scheduler.<name>(optimizer, **rest_of_spec)``, e.g.
      ``{name: StepLR, step_size: 100, gamma: 0.5}``.

    ``frames_per_step`` is the number of env frames per ``train()`` call (``training_frequency × num_envs``).
    Errors name ``key``.
    """
    if not spec:
        return LambdaLR(optimizer, _constant_factor)
    spec = dict(spec)
    name = spec.pop("name", None)
    if name in ("LinearToZero", "LinearToMin"):
        frame = spec.get("frame")
        if isinstance(frame, bool) or not isinstance(frame, int | float) or frame <= 0:
            raise SpecError(f"{key}.frame must be a positive number of frames for {name}, got {frame!r}")
        total_steps = max(1, int(frame) // max(1, int(frames_per_step)))
        if name == "LinearToZero":
            return LinearToZero(optimizer, total_steps)
        min_factor = spec.get("min_factor", 0.0)
        if (
            isinstance(min_factor, bool)
            or not isinstance(min_factor, int | float)
            or not 0.0 <= min_factor <= 1.0
        ):
            raise SpecError(f"{key}.min_factor must be a number in [0, 1], got {min_factor!r}")
        return LinearToMin(optimizer, total_steps, float(min_factor))
    cls = _TORCH_SCHEDULERS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise SpecError(
            f"{key}.name: unknown LR scheduler {name!r}; valid names: {', '.join(LR_SCHEDULER_NAMES)}"
        )
    try:
        return cls(optimizer, **spec)
    except (TypeError, ValueError) as e:
        raise SpecError(f"{key}: cannot build {name} with {spec}: {e}") from None

"""Clock: the session's counters in the lab's units.

- ``frame``: env transitions summed over copies; one vector step adds ``num_envs``.
- ``t``: single env, steps in the current episode (back to 0 when an episode ends); vector env, vector steps since
  the start of the session.
- ``epi``: completed episodes over all copies (→D27).
- ``opt_step``: optimizer updates, ticked by the algorithm.
- ``wall_t``: seconds since the session start; a restored clock continues from its saved value (→D10).
"""

import time
from collections.abc import Callable

__all__ = ["Clock"]

UNITS = ("frame", "t", "epi", "opt_step", "wall_t", "batch_size")


class Clock:
    """Counts frames, steps, episodes and optimizer steps. ``batch_size`` is informational, set by the algorithm."""

    def __init__(self, max_frame: int, num_envs: int = 1, is_venv: bool = False) -> None:
        self.max_frame = int(max_frame)
        self.num_envs = int(num_envs)
        self.is_venv = bool(is_venv)
        self.frame = 0
        self.t = 0
        self.epi = 0
        self.opt_step = 0
        self.batch_size = 1
        self._wall_offset = 0.0  # seconds accumulated before the last (re)start of the timer
        self._start = time.perf_counter()
        # called after every optimizer step when set (the session's thread tuner times training through it)
        self.on_opt_step: Callable[[], None] | None = None

    def tick_step(self, num_done: int, done_mask: object = None) -> None:
        """One vector step: ``frame += num_envs``; ``t`` as the module docstring defines; ``epi += num_done``.

        ``done_mask`` (the per-copy done flags) is accepted for callers that have it; only ``num_done`` is read.
        """
        self.frame += self.num_envs
        self.epi += num_done
        if self.is_venv or not num_done:
            self.t += 1
        else:
            self.t = 0

    def tick_opt_step(self, n: int = 1) -> None:
        self.opt_step += n
        if self.on_opt_step is not None:
            self.on_opt_step()

    @property
    def wall_t(self) -> float:
        """Seconds since the session start, including the time restored from a checkpoint."""
        return self._wall_offset + (time.perf_counter() - self._start)

    def reset_timer(self) -> None:
        """Restart the wall clock from now, keeping the seconds accumulated so far."""
        self._wall_offset = self.wall_t
        self._start = time.perf_counter()

    def get(self, unit: str = "frame") -> int | float:
        if unit not in UNITS:
            raise ValueError(f"unknown clock unit {unit!r}; expected one of {UNITS}")
        return getattr(self, unit)

    def state_dict(self) -> dict:
        return {
            "frame": self.frame,
            "t": self.t,
            "epi": self.epi,
            "opt_step": self.opt_step,
            "batch_size": self.batch_size,
            "wall_t": self.wall_t,
        }

    def load_state_dict(self, d: dict) -> None:
        self.frame = int(d["frame"])
        self.t = int(d["t"])
        self.epi = int(d["epi"])
        self.opt_step = int(d["opt_step"])
        self.batch_size = int(d.get("batch_size", self.batch_size))
        self._wall_offset = float(d["wall_t"])
        self._start = time.perf_counter()

    def __repr__(self) -> str:
        return (
            f"Clock(frame={self.frame}, t={self.t}, epi={self.epi}, opt_step={self.opt_step}, "
            f"wall_t={self.wall_t:.1f})"
        )

"""The progress of a session while it trains (B6): frames, fps, ETA and the current moving average.

On a terminal it is one live line, redrawn in place at most ``LIVE_INTERVAL`` times a second; elsewhere (a log file,
CI, a pipe) it is a plain log line at most every ``LOG_INTERVAL`` seconds, so captured output stays readable.

The live line is written as ``\\r<clear><text>\\r``: it leaves the cursor at the start of the line, so the next log
line, from this process or from another session process on the same terminal, simply overwrites it, and the line is
redrawn below on the next update. No logging hook is needed for that, which matters because sessions run in
separate processes. The text is cut to the terminal width so that it never wraps.

The loop calls ``update(frame)`` once per vector step; that costs one clock read until the interval has passed.
"""

import math
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

from loguru import logger

__all__ = ["LIVE_INTERVAL", "LOG_INTERVAL", "Progress", "format_duration"]

LIVE_INTERVAL = 0.25  # seconds between redraws of the live line
LOG_INTERVAL = 60.0  # seconds between plain progress log lines


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``M:SS`` under an hour); ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """Reports a session's progress towards ``max_frame``.

    ``ma`` returns the current ``total_reward_ma`` (read only when a line is drawn). ``live`` defaults to whether
    ``stream`` is a terminal. ``start_frame`` is the frame the session starts from (non-zero on resume), so that
    fps and ETA count only this run's frames.
    """

    def __init__(
        self,
        max_frame: int,
        label: str,
        ma: Callable[[], float],
        *,
        stream: TextIO | None = None,
        live: bool | None = None,
        start_frame: int = 0,
        live_interval: float = LIVE_INTERVAL,
        log_interval: float = LOG_INTERVAL,
    ) -> None:
        self.max_frame = int(max_frame)
        self.label = label
        self.ma = ma
        self.stream = stream if stream is not None else sys.stdout
        self.live = self._isatty(self.stream) if live is None else live
        self.interval = live_interval if self.live else log_interval
        self.start_frame = int(start_frame)
        self.start_time = time.monotonic()
        self._next = self.start_time + self.interval
        self._drawn = False

    @staticmethod
    def _isatty(stream: TextIO) -> bool:
        try:
            return stream.isatty()
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            return False

    def update(self, frame: int) -> None:
        """Called every vector step; draws (or logs) only when the interval has passed."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        self.emit(frame, now)

    def text(self, frame: int, now: float) -> str:
        """``frame 12,000/200,000 6% | 1,234 fps | ETA 2:31 | MA 123.45``, prefixed by the label."""
        elapsed = max(now - self.start_time, 1e-9)
        done = frame - self.start_frame
        fps = done / elapsed
        eta = (self.max_frame - frame) / fps if fps > 0 else math.inf
        pct = 100.0 * frame / self.max_frame if self.max_frame else 100.0
        ma = self.ma()
        ma_text = "n/a" if math.isnan(ma) else f"{ma:.2f}"
        return (
            f"{self.label} frame {frame:,}/{self.max_frame:,} {pct:.0f}% | {fps:,.0f} fps"
            f" | ETA {format_duration(eta)} | MA {ma_text}"
        )

    def emit(self, frame: int, now: float | None = None) -> None:
        text = self.text(frame, time.monotonic() if now is None else now)
        if self.live:
            width = shutil.get_terminal_size((100, 24)).columns - 1
            self.stream.write(f"\r\x1b[K{text[:width]}\r")
            self.stream.flush()
            self._drawn = True
        else:
            logger.info(f"Progress: {text}")

    def close(self) -> None:
        """Clear the live line, so that the terminal is left clean for the lines that follow."""
        if self.live and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

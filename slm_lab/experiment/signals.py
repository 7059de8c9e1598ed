"""Signals and the parent watch of sessions and trials.

A session that gets SIGINT or SIGTERM finishes its current step, saves its state and stops (``Session.stop_on_signals``,
→D10). A trial waiting on its session processes turns SIGTERM into ``Interrupted`` (as Ctrl-C raises
KeyboardInterrupt), so that it stops them in order. A spawned session stops at its next checkpoint once its trial
process is gone, so that a killed trial (e.g. stopped by a search scheduler) leaves no orphan sessions running.
"""

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from slm_lab.errors import Interrupted

__all__ = ["parent_gone", "raise_interrupted", "signal_handler"]


@contextlib.contextmanager
def signal_handler(handler: Callable[[int, Any], None], *signals: signal.Signals) -> Iterator[None]:
    """``handler`` for ``signals`` inside the block, the previous handlers after it. Only the main thread may set
    handlers, so in any other thread (a search trial's) the process keeps its own handling."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def raise_interrupted(signum: int, frame: Any) -> None:
    """The handler of a trial waiting on its session processes: SIGTERM raises ``Interrupted``."""
    raise Interrupted(signum, "the trial was stopped by SIGTERM")


def parent_gone(parent_pid: int | None) -> bool:
    """Whether this process was started by ``parent_pid`` (None: by nobody watched) and that parent has exited."""
    return parent_pid is not None and os.getppid() != parent_pid

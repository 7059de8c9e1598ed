"""The progress line (B6): live and rate-limited on a terminal, plain log lines elsewhere."""

import io
import math
import os

import pytest
from loguru import logger

from slm_lab.experiment import progress as progress_module
from slm_lab.experiment.progress import Progress, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


@pytest.fixture
def logs():
    messages: list[str] = []
    sink_id = logger.add(lambda m: messages.append(m.record["message"]), level="INFO")
    yield messages
    logger.remove(sink_id)


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "0:00"), (59.6, "1:00"), (151, "2:31"), (3600 * 2 + 61, "2:01:01"), (math.inf, "?")],
)
def test_format_duration(seconds, expected):
    assert format_duration(seconds) == expected


def test_live_line_is_redrawn_in_place_at_most_every_interval(clock, logs):
    stream = TTY()
    ma = [math.nan]
    p = Progress(200_000, "[t0 s0]", lambda: ma[0], stream=stream)
    assert p.live  # a terminal
    p.update(1000)  # before the first interval: nothing
    assert stream.getvalue() == ""
    clock.now += 10.0
    ma[0] = 123.456
    p.update(12_000)
    line = "[t0 s0] frame 12,000/200,000 6% | 1,200 fps | ETA 2:37 | MA 123.46"
    assert stream.getvalue() == f"\r\x1b[K{line}\r"  # the cursor goes back to column 0 for the next log line
    clock.now += 0.1  # within LIVE_INTERVAL: no redraw
    p.update(12_100)
    assert stream.getvalue().count("frame") == 1
    p.close()
    assert stream.getvalue().endswith("\r\x1b[K") and not logs


def test_plain_log_lines_when_not_a_terminal(clock, logs):
    stream = io.StringIO()
    p = Progress(1000, "[t0 s0]", lambda: math.nan, stream=stream, start_frame=200)
    assert not p.live
    clock.now += 30.0
    p.update(500)  # before LOG_INTERVAL: nothing
    clock.now += 30.0
    p.update(800)
    assert logs == [
        "Progress: [t0 s0] frame 800/1,000 80% | 10 fps | ETA 0:20 | MA n/a"
    ]  # 600 frames in 60 s
    p.close()
    assert stream.getvalue() == ""


def test_live_line_fits_the_terminal(clock, monkeypatch):
    monkeypatch.setattr(
        progress_module.shutil, "get_terminal_size", lambda fallback: os.terminal_size((30, 24))
    )
    stream = TTY()
    p = Progress(10, "[t0 s0]", lambda: 1.0, stream=stream)
    clock.now += 1.0
    p.emit(5)
    # cut to the terminal width minus one (29 characters), so that it never wraps
    assert stream.getvalue() == "\r\x1b[K[t0 s0] frame 5/10 50% | 5 fp\r"

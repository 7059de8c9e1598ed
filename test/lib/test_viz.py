"""Headless graph rendering: PNGs without a display, skipped under PY_ENV=test, failures only warn (D33)."""

import numpy as np
import pandas as pd
import pytest
from loguru import logger

from slm_lab.lib import viz

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def logs():
    messages: list[str] = []
    sink_id = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    yield messages
    logger.remove(sink_id)


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("PY_ENV", raising=False)


def test_line_graph_png(tmp_path):
    path = tmp_path / "sub" / "line.png"
    x = np.arange(1, 51) * 100.0
    ok = viz.render_line_graph(
        path, x, {"a": np.sin(x), "b": [np.nan] * 50}, title="t", x_title="x", y_title="y"
    )
    assert ok
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_envelope_graph_png(tmp_path):
    path = tmp_path / "env.png"
    x = np.arange(10.0)
    ok = viz.render_envelope_graph(
        path, x, x, np.full(10, np.nan), label="m", title="t", x_title="x", y_title="y"
    )
    assert ok and path.read_bytes()[:8] == PNG_MAGIC


def test_skipped_under_test_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("PY_ENV", "test")
    path = tmp_path / "line.png"
    assert not viz.render_line_graph(path, [1, 2], {"a": [1, 2]}, title="t", x_title="x", y_title="y")
    assert not path.exists()


def test_failure_only_warns(tmp_path, monkeypatch, logs):
    def broken(*args, **kwargs):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(viz, "_new_figure", broken)
    path = tmp_path / "line.png"
    assert not viz.render_line_graph(path, [1, 2], {"a": [1, 2]}, title="t", x_title="x", y_title="y")
    assert not viz.render_envelope_graph(
        path, [1, 2], [1, 2], [0, 0], label="m", title="t", x_title="x", y_title="y"
    )
    assert not path.exists()
    assert len(logs) == 2 and all("renderer exploded" in m for m in logs)
    # a whole session plot with a broken renderer writes nothing and raises nothing
    local = {"frames": [1.0, 2.0], "mean_returns": [1.0, 2.0]}
    assert (
        viz.plot_session(str(tmp_path / "s"), "train", local, pd.DataFrame({"frame": [1.0, 2.0]}), "t") == []
    )


def test_plot_session_and_trial_names(tmp_path):
    local = {"frames": [1.0, 2.0, 3.0], "mean_returns": [np.nan, 1.0, 2.0]}
    df = pd.DataFrame({"frame": [1.0, 2.0, 3.0], "loss": [np.nan, 1.0, 0.5], "entropy": [np.nan] * 3})
    written = viz.plot_session(str(tmp_path / "x_t0_s0"), "eval", local, df, "session graph: x t0 s0")
    assert sorted(p.rsplit("/", 1)[1] for p in written) == [
        "x_t0_s0_session_graph_eval_loss_vs_frame.png",
        "x_t0_s0_session_graph_eval_mean_returns_ma_vs_frames.png",
        "x_t0_s0_session_graph_eval_mean_returns_vs_frames.png",
    ]
    written = viz.plot_trial(str(tmp_path / "x_t0"), [[1.0, 2.0, 3.0], [2.0, 3.0]], [1.0, 2.0, 3.0], "trial")
    assert sorted(p.rsplit("/", 1)[1] for p in written) == [
        "x_t0_trial_graph_mean_returns_ma_vs_frames.png",
        "x_t0_trial_graph_mean_returns_vs_frames.png",
    ]


def test_moving_average_skips_nan():
    ma = viz.moving_average([np.nan, 2.0, 4.0, np.nan, 6.0], window=2)
    np.testing.assert_array_equal(ma, [np.nan, 2.0, 3.0, 4.0, 6.0])

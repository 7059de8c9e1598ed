"""Graphs: every PNG decodes and every HTML page is a plotly figure of the data drawn, loading plotly.js from its own
folder; rendering is headless, skipped under PY_ENV=test, and a failure only warns (D33)."""

import numpy as np
import pandas as pd
import pytest
from loguru import logger

from slm_lab.lib import plotly_graph, viz
from slm_lab.lib.chart import Band, Chart, Intervals, Line, Points


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


def names(paths: list[str]) -> list[str]:
    return sorted(p.rsplit("/", 1)[1] for p in paths)


def test_line_graph_png_and_html(tmp_path, check_graph):
    path = tmp_path / "sub" / "line.png"
    x = np.arange(1, 51) * 100.0
    ok = viz.render_line_graph(
        path, x, {"a": np.sin(x), "b": [np.nan] * 50}, title="t", x_title="x", y_title="y"
    )
    assert ok
    assert check_graph(path)["size"] == (1280, 800)  # 6.4 x 4 in at scale 2
    series = check_graph(path.with_suffix(".html"))["data"]
    assert [s["name"] for s in series] == ["a", "b"]
    assert series[0]["x"][:2] == [100.0, 200.0]
    assert series[0]["y"][0] == pytest.approx(np.sin(100.0), rel=1e-6)
    assert series[1]["y"] == [None] * 50  # NaN is a gap


def test_envelope_graph_png_and_html(tmp_path, check_graph):
    path = tmp_path / "env.png"
    x = np.arange(10.0)
    ok = viz.render_envelope_graph(
        path, x, x, np.full(10, 2.0), label="m", title="t", x_title="x", y_title="y"
    )
    assert ok
    check_graph(path)
    low, high, line = check_graph(tmp_path / "env.html")["data"]
    assert low["y"][3] == 1.0 and high["y"][3] == 5.0 and high["fill"] == "tonexty"
    assert line["mode"] == "lines" and line["name"] == "m"


def test_html_escapes_labels_and_title(tmp_path, check_graph):
    chart = Chart.single(
        "a </script> & <b>", "x", "y", [Line("</script><script>alert(1)</script>", [1, 2], [3, 4])]
    )
    path = tmp_path / "evil.png"
    viz.render_chart(chart, path)
    text = path.with_suffix(".html").read_text()
    assert "<title>a &lt;/script&gt; &amp; &lt;b&gt;</title>" in text
    assert "<script>alert(1)" not in text
    assert check_graph(path.with_suffix(".html"))["data"][0]["name"].startswith("</script>")


def test_every_series_type_renders(tmp_path, check_graph):
    chart = Chart.single(
        "all",
        "x",
        "y",
        [
            Line("line", [0, 1, 2], [1, np.nan, 3]),
            Band("band", [0, 1, 2], [0, 0, 0], [1, 2, np.inf]),
            Points("pts", [0, 1], [2, 2], colors=["#000000", "#ffffff"], texts=["p0", "p1"]),
        ],
    )
    assert len(viz.render_chart(chart, tmp_path / "all.png")) == 2
    check_graph(tmp_path / "all.png")
    line, low, high, points = check_graph(tmp_path / "all.html")["data"]
    assert line["y"] == [1.0, None, 3.0] and low["y"] == [0.0, 0.0, 0.0]
    assert high["y"] == [1.0, 2.0, None]  # inf is a gap too
    assert points["marker"]["color"] == ["#000000", "#ffffff"] and points["text"] == ["p0", "p1"]
    bars = Chart.single(
        "bars", "p", "", [Intervals("P", ["a > b", "a > c"], [0.1, 0.5], [0.3, 0.7], [0.6, 0.9])]
    )
    viz.render_chart(bars, tmp_path / "bars.png")
    check_graph(tmp_path / "bars.png")
    assert check_graph(tmp_path / "bars.html")["data"][0]["y"] == ["a > b", "a > c"]


def test_skipped_under_test_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("PY_ENV", "test")
    path = tmp_path / "line.png"
    assert not viz.render_line_graph(path, [1, 2], {"a": [1, 2]}, title="t", x_title="x", y_title="y")
    assert not list(tmp_path.iterdir())


def test_failure_only_warns(tmp_path, monkeypatch, logs):
    def broken(*args, **kwargs):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(viz, "_write_png", broken)
    monkeypatch.setattr(plotly_graph, "write_html", broken)
    path = tmp_path / "line.png"
    assert not viz.render_line_graph(path, [1, 2], {"a": [1, 2]}, title="t", x_title="x", y_title="y")
    assert not viz.render_envelope_graph(
        path, [1, 2], [1, 2], [0, 0], label="m", title="t", x_title="x", y_title="y"
    )
    assert not list(tmp_path.iterdir())
    assert len(logs) == 4 and all("renderer exploded" in m for m in logs)  # one per file: 2 PNG + 2 HTML
    # a whole session plot with a broken renderer writes nothing and raises nothing
    local = {"frames": [1.0, 2.0], "mean_returns": [1.0, 2.0]}
    assert (
        viz.plot_session(str(tmp_path / "s"), "train", local, pd.DataFrame({"frame": [1.0, 2.0]}), "t") == []
    )


def test_png_failure_keeps_html(tmp_path, monkeypatch, logs):
    monkeypatch.setattr(viz, "_write_png", lambda *a: 1 / 0)
    written = viz.render_chart(Chart.single("t", "x", "y", [Line("a", [1, 2], [1, 2])]), tmp_path / "g.png")
    assert names(written) == ["g.html"] and len(logs) == 1 and "ZeroDivisionError" in logs[0]


def test_plot_session_and_trial_names(tmp_path, check_graph):
    local = {"frames": [1.0, 2.0, 3.0], "mean_returns": [np.nan, 1.0, 2.0]}
    df = pd.DataFrame({"frame": [1.0, 2.0, 3.0], "loss": [np.nan, 1.0, 0.5], "entropy": [np.nan] * 3})
    written = viz.plot_session(str(tmp_path / "x_t0_s0"), "eval", local, df, "session graph: x t0 s0")
    stems = [
        "x_t0_s0_session_graph_eval_loss_vs_frame",
        "x_t0_s0_session_graph_eval_mean_returns_ma_vs_frames",
        "x_t0_s0_session_graph_eval_mean_returns_vs_frames",
    ]
    assert names(written) == sorted(f"{s}.{ext}" for s in stems for ext in ("html", "png"))
    for path in written:
        check_graph(path)
    written = viz.plot_trial(str(tmp_path / "x_t0"), [[1.0, 2.0, 3.0], [2.0, 3.0]], [1.0, 2.0, 3.0], "trial")
    stems = ["x_t0_trial_graph_mean_returns_ma_vs_frames", "x_t0_trial_graph_mean_returns_vs_frames"]
    assert names(written) == sorted(f"{s}.{ext}" for s in stems for ext in ("html", "png"))
    low, _, line = check_graph(tmp_path / "x_t0_trial_graph_mean_returns_vs_frames.html")["data"]
    assert line["x"] == [1.0, 2.0] and line["y"] == [1.5, 2.5]  # truncated to the shortest session
    assert low["y"][0] == pytest.approx(1.5 - np.sqrt(0.5))


def test_log_extra_graph_names_and_alignment(tmp_path, check_graph):
    local = {
        "frames": [10.0, 20.0, 30.0],
        "opt_steps": [0.0, 5.0, 9.0],
        "strengths": [1.0, 3.0, 2.0],
        "sample_efficiencies": [0.1, 0.1, 0.1],
        "training_efficiencies": [np.nan, 0.2, 0.3],
        "stabilities": [1.0, 2 / 3],
    }
    written = viz.plot_session_extra(str(tmp_path / "x_t0_s0"), "train", local, "s")
    expected = [
        f"x_t0_s0_session_graph_train_{name}{ma}_vs_{x}.{ext}"
        for name, x in viz.EXTRA_SESSION_SERIES
        for ma in ("", "_ma")
        for ext in ("png", "html")
    ]
    assert names(written) == sorted(expected)
    stab = check_graph(tmp_path / "x_t0_s0_session_graph_train_stabilities_vs_frames.html")["data"][0]
    assert stab["x"] == [20.0, 30.0]  # a stability belongs to the later checkpoint of its pair
    trial_local = {
        **{name: [local[name], local[name]] for name, _ in viz.EXTRA_SESSION_SERIES},
        "frames": local["frames"],
        "opt_steps": local["opt_steps"],
        "consistencies": [np.nan, 0.5, 0.75],
    }
    written = viz.plot_trial_extra(str(tmp_path / "x_t0"), trial_local, "t")
    assert len(written) == 2 * 2 * 5  # 5 series, raw and MA, PNG and HTML
    for path in written:
        check_graph(path)
    cons = check_graph(tmp_path / "x_t0_trial_graph_consistencies_ma_vs_frames.html")["data"][0]
    assert cons["y"] == [None, 0.5, 0.625]


def test_moving_average_skips_nan():
    ma = viz.moving_average([np.nan, 2.0, 4.0, np.nan, 6.0], window=2)
    np.testing.assert_array_equal(ma, [np.nan, 2.0, 3.0, 4.0, 6.0])

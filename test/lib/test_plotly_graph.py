"""HTML graphs with plotly: a Chart maps onto a plotly figure (subplots, traces, palette colours, legend groups), the
page loads plotly.js from the plotly.min.js beside it, written once per folder, and a failed write leaves no file."""

import numpy as np
import pytest
from loguru import logger

from slm_lab.lib import io_util, plotly_graph, viz
from slm_lab.lib.chart import Band, Chart, ColorScale, Intervals, Line, Panel, Points

PALETTE = ("#111111", "#222222", "#333333")


@pytest.fixture
def logs():
    messages: list[str] = []
    sink_id = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    yield messages
    logger.remove(sink_id)


def two_panels(legend: bool = True) -> Chart:
    left = Panel(
        [Line("a", [0, 1], [1, 2]), Line("b", [0, 1], [2, 3])], x_title="x0", y_title="y0", title="left"
    )
    right = Panel([Line("a", [0, 1], [3, 4]), Band("c", [0, 1], [0, 1], [2, 3])], x_title="x1", y_title="y1")
    return Chart("grid", [left, right], ncols=2, legend=legend)


def test_two_panels_give_two_subplots_with_palette_colours():
    fig = plotly_graph.chart_to_figure(two_panels(), PALETTE)
    layout = fig.layout
    assert layout.xaxis2 is not None and "xaxis3" not in fig.to_dict()["layout"]
    assert [t.xaxis for t in fig.data] == ["x", "x", "x2", "x2", "x2"]  # 2 lines | 1 line + a band's 2 traces
    assert [t.name for t in fig.data] == ["a", "b", "a", "c", "c"]
    # colours by place in the panel: the band is the right panel's second series
    assert [fig.data[i].line.color for i in range(3)] == [PALETTE[0], PALETTE[1], PALETTE[0]]
    assert fig.data[4].fillcolor == "rgba(34,34,34,0.15)"
    assert (layout.xaxis.title.text, layout.yaxis2.title.text) == ("x0", "y1")
    assert layout.title.text == "grid" and [a.text for a in layout.annotations] == ["left"]
    # one legend entry per label, toggling its series in every panel
    assert [t.showlegend for t in fig.data] == [True, True, False, False, True]
    assert [t.legendgroup for t in fig.data] == ["a", "b", "a", "c", "c"]
    assert layout.hovermode == "x unified"


def test_legend_off_hides_every_entry():
    fig = plotly_graph.chart_to_figure(two_panels(legend=False), PALETTE)
    assert fig.layout.showlegend is False and not any(t.showlegend for t in fig.data)


def test_band_is_a_filled_pair_low_then_high():
    band = Band("m ± std", [0, 1, 2], [0, 1, np.nan], [2, 3, 4], color="#ff0000")
    low, high = plotly_graph.chart_to_figure(Chart.single("t", "x", "y", [band]), PALETTE).data
    np.testing.assert_array_equal(low.y, [0, 1, np.nan])
    np.testing.assert_array_equal(high.y, [2, 3, 4])
    assert low.fill is None and high.fill == "tonexty"  # high fills down to the trace before it
    assert high.fillcolor == "rgba(255,0,0,0.15)" and low.line.width == 0 == high.line.width
    assert low.showlegend is False and high.showlegend is True


def test_points_intervals_ticks_range_and_colour_scale():
    points = Points("trials", [0, 1], [5, 6], colors=["#000000", "#ffffff"], texts=["t0", "t1"])
    bars = Intervals("P", ["a > b", "a > c"], [0.1, 0.5], [0.3, 0.7], [0.6, 0.9])
    chart = Chart(
        "mixed",
        [
            Panel([points], x_title="lr", y_title="r", x_ticks=["1e-3", "1e-4"]),
            Panel([bars], x_title="p", y_title="", x_range=(0.0, 1.0)),
        ],
        ncols=2,
        color_scale=ColorScale("strength", "YlGnBu", 1.0, 9.0, ("#ffffd9", "#081d58")),
    )
    fig = plotly_graph.chart_to_figure(chart, PALETTE)
    pts, ivl, scale = fig.data
    assert list(pts.marker.color) == ["#000000", "#ffffff"] and list(pts.text) == ["t0", "t1"]
    assert list(fig.layout.xaxis.ticktext) == ["1e-3", "1e-4"] and list(fig.layout.xaxis.range) == [-0.5, 1.5]
    assert list(ivl.y) == ["a > b", "a > c"] and list(ivl.text) == ["0.3 [0.1, 0.6]", "0.7 [0.5, 0.9]"]
    np.testing.assert_allclose(ivl.x, [0.3, 0.7])
    np.testing.assert_allclose(ivl.error_x.arrayminus, [0.2, 0.2])
    np.testing.assert_allclose(ivl.error_x.array, [0.3, 0.2])
    assert fig.layout.yaxis2.autorange == "reversed" and list(fig.layout.xaxis2.range) == [0.0, 1.0]
    assert scale.marker.showscale and (scale.marker.cmin, scale.marker.cmax) == (1.0, 9.0)
    assert scale.marker.colorbar.title.text == "strength" and scale.showlegend is False
    assert fig.layout.hovermode == "closest"


def test_page_loads_plotly_js_from_its_folder_and_is_deterministic():
    chart = Chart.single(
        "a </script> & <b>", "x", "y", [Line("</script><script>alert(1)</script>", [1, 2], [3, 4])]
    )
    page = plotly_graph.chart_to_html(chart, PALETTE)
    assert '<script charset="utf-8" src="plotly.min.js"></script>' in page
    assert "https://cdn" not in page and "<script src=" not in page
    assert len(page) < 10_000  # the bundle is not inlined
    assert "<title>a &lt;/script&gt; &amp; &lt;b&gt;</title>" in page and "<script>alert(1)" not in page
    assert page == plotly_graph.chart_to_html(chart, PALETTE)  # no random div id


def test_two_graphs_in_one_folder_write_the_script_once(tmp_path, monkeypatch):
    written = []

    def counting_write(path, write, binary=False):
        written.append(path.name)
        io_util.atomic_write(path, write, binary)

    monkeypatch.setattr(plotly_graph, "atomic_write", counting_write)
    chart = Chart.single("t", "x", "y", [Line("a", [1, 2], [3, 4])])
    plotly_graph.write_html(chart, tmp_path / "g" / "one.html", PALETTE)
    bundle = tmp_path / "g" / plotly_graph.PLOTLY_JS
    first = bundle.stat()
    plotly_graph.write_html(chart, tmp_path / "g" / "two.html", PALETTE)
    assert written == [plotly_graph.PLOTLY_JS, "one.html", "two.html"]
    assert (bundle.stat().st_ino, bundle.stat().st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    from plotly.offline import get_plotlyjs

    assert bundle.read_text(encoding="utf-8") == get_plotlyjs()
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == [
        "one.html",
        plotly_graph.PLOTLY_JS,
        "two.html",
    ]


def test_a_failed_page_write_leaves_no_file(tmp_path, monkeypatch, logs):
    monkeypatch.delenv("PY_ENV", raising=False)

    def disk_full_on_pages(path, write, binary=False):
        if path.suffix != ".html":
            return io_util.atomic_write(path, write, binary)

        def half(f):
            f.write(b"<!DOCTYPE html>")
            raise OSError("disk full")

        return io_util.atomic_write(path, half, binary)

    monkeypatch.setattr(plotly_graph, "atomic_write", disk_full_on_pages)
    written = viz.render_chart(Chart.single("t", "x", "y", [Line("a", [1, 2], [1, 2])]), tmp_path / "g.png")
    assert [p.rsplit("/", 1)[1] for p in written] == ["g.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "g.png",
        plotly_graph.PLOTLY_JS,
    ]  # no .html, no .tmp
    assert len(logs) == 1 and "g.html" in logs[0] and "disk full" in logs[0]

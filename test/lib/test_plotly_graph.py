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
    layout, data = fig["layout"], fig["data"]
    assert "xaxis2" in layout and "xaxis3" not in layout
    assert [t["xaxis"] for t in data] == ["x", "x", "x2", "x2", "x2"]  # 2 lines | 1 line + a band's 2 traces
    assert [t["yaxis"] for t in data] == ["y", "y", "y2", "y2", "y2"]
    assert [t["name"] for t in data] == ["a", "b", "a", "c", "c"]
    # side by side, as plotly's subplots: the left axis ends where the gap before the right one starts
    assert layout["xaxis"]["domain"] == [0.0, 0.45] and layout["xaxis2"]["domain"] == [0.55, 1.0]
    assert layout["yaxis"]["domain"] == layout["yaxis2"]["domain"] == [0.0, 1.0]
    assert (layout["xaxis2"]["anchor"], layout["yaxis2"]["anchor"]) == ("y2", "x2")
    # colours by place in the panel: the band is the right panel's second series
    assert [data[i]["line"]["color"] for i in range(3)] == [PALETTE[0], PALETTE[1], PALETTE[0]]
    assert data[4]["fillcolor"] == "rgba(34,34,34,0.15)"
    assert (layout["xaxis"]["title"]["text"], layout["yaxis2"]["title"]["text"]) == ("x0", "y1")
    assert layout["title"]["text"] == "grid" and [a["text"] for a in layout["annotations"]] == ["left"]
    assert layout["annotations"][0]["x"] == pytest.approx(0.225)  # centred over the left panel
    # one legend entry per label, toggling its series in every panel
    assert [t["showlegend"] for t in data] == [True, True, False, False, True]
    assert [t["legendgroup"] for t in data] == ["a", "b", "a", "c", "c"]
    assert layout["hovermode"] == "x unified"


def test_a_grid_of_four_is_two_rows_top_down():
    panels = [Panel([Line(str(i), [0, 1], [0, 1])], x_title="x", y_title="y") for i in range(4)]
    layout = plotly_graph.chart_to_figure(Chart("g", panels, ncols=2), PALETTE)["layout"]
    assert layout["yaxis"]["domain"] == layout["yaxis2"]["domain"] == [0.575, 1.0]
    assert layout["yaxis3"]["domain"] == layout["yaxis4"]["domain"] == [0.0, 0.425]
    assert layout["height"] == 2 * plotly_graph.PANEL_HEIGHT + 120


def test_legend_off_hides_every_entry():
    fig = plotly_graph.chart_to_figure(two_panels(legend=False), PALETTE)
    assert fig["layout"]["showlegend"] is False and not any(t["showlegend"] for t in fig["data"])


def test_band_is_a_filled_pair_low_then_high():
    band = Band("m ± std", [0, 1, 2], [0, 1, np.nan], [2, 3, 4], color="#ff0000")
    low, high = plotly_graph.chart_to_figure(Chart.single("t", "x", "y", [band]), PALETTE)["data"]
    np.testing.assert_array_equal(low["y"], [0, 1, np.nan])
    np.testing.assert_array_equal(high["y"], [2, 3, 4])
    assert "fill" not in low and high["fill"] == "tonexty"  # high fills down to the trace before it
    assert high["fillcolor"] == "rgba(255,0,0,0.15)" and low["line"]["width"] == 0 == high["line"]["width"]
    assert low["showlegend"] is False and high["showlegend"] is True


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
    layout = fig["layout"]
    pts, ivl, scale = fig["data"]
    assert pts["marker"]["color"] == ["#000000", "#ffffff"] and pts["text"] == ["t0", "t1"]
    assert layout["xaxis"]["ticktext"] == ["1e-3", "1e-4"] and layout["xaxis"]["range"] == [-0.5, 1.5]
    assert ivl["y"] == ["a > b", "a > c"] and ivl["text"] == ["0.3 [0.1, 0.6]", "0.7 [0.5, 0.9]"]
    np.testing.assert_allclose(ivl["x"], [0.3, 0.7])
    np.testing.assert_allclose(ivl["error_x"]["arrayminus"], [0.2, 0.2])
    np.testing.assert_allclose(ivl["error_x"]["array"], [0.3, 0.2])
    assert layout["yaxis2"]["autorange"] == "reversed" and layout["xaxis2"]["range"] == [0.0, 1.0]
    assert scale["marker"]["showscale"] and (scale["marker"]["cmin"], scale["marker"]["cmax"]) == (1.0, 9.0)
    assert scale["marker"]["colorbar"]["title"]["text"] == "strength" and scale["showlegend"] is False
    assert layout["hovermode"] == "closest"


def test_the_page_holds_the_figure_as_json_with_gaps_as_null(check_graph, tmp_path):
    band = Band("m", [0, 1, 2], [0, np.nan, 1], [np.inf, 3, 4])
    plotly_graph.write_html(Chart.single("t", "x", "y", [band]), tmp_path / "p.html", PALETTE)
    figure = check_graph(tmp_path / "p.html")
    assert figure["data"][0]["y"] == [0, None, 1] and figure["data"][1]["y"] == [None, 3, 4]
    assert figure["layout"]["title"]["text"] == "t"


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
    copies = []
    copy = plotly_graph.shutil.copyfile
    monkeypatch.setattr(
        plotly_graph.shutil, "copyfile", lambda src, dst: copies.append(dst) or copy(src, dst)
    )
    chart = Chart.single("t", "x", "y", [Line("a", [1, 2], [3, 4])])
    plotly_graph.write_html(chart, tmp_path / "g" / "one.html", PALETTE)
    bundle = tmp_path / "g" / plotly_graph.PLOTLY_JS
    first = bundle.stat()
    plotly_graph.write_html(chart, tmp_path / "g" / "two.html", PALETTE)
    assert len(copies) == 1
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

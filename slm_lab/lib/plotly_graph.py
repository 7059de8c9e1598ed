"""Interactive HTML graphs (B6) drawn by plotly.js: one HTML file per graph that opens offline in any browser.

``chart_to_figure`` maps a ``Chart`` onto a plotly ``Figure``: a grid of subplots, one per panel; a ``Line`` is a
line trace, a ``Band`` a pair of traces (low, then high filled down to it), ``Points`` a marker trace and
``Intervals`` markers at ``mid`` with asymmetric error bars out to ``low`` and ``high``. A series label is one legend
entry however many panels hold it, so clicking it hides or shows that series everywhere. Plotly gives the rest:
hover values, drag to zoom, double click to reset.

``write_html`` writes the page with the figure's data; the plotly.js bundle (about 5 MB) is not inlined but written
once per folder as ``plotly.min.js`` beside the pages, which load it by that relative name, as plotly's own
``include_plotlyjs="directory"`` does. Nothing is fetched at view time, so a graph folder can be copied anywhere and
still open. Plotly is imported on first use, as matplotlib is in ``viz``, so importing the lab stays fast.
"""

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from slm_lab.lib.chart import Band, Chart, ColorScale, FloatSeq, Intervals, Line, Panel, Points, Series
from slm_lab.lib.io_util import atomic_write

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["PLOTLY_JS", "chart_to_figure", "chart_to_html", "write_html"]

PLOTLY_JS = "plotly.min.js"  # the name plotly's "directory" mode loads the bundle by, relative to the page
DIV_ID = "graph"  # a fixed id (plotly's default is a random one), so that the same chart gives the same file
CONFIG = {"displaylogo": False}
BAND_OPACITY = 0.15  # as the PNG's envelope (viz.ENVELOPE_ALPHA)
INTERVAL_OPACITY = 0.45  # as the PNG's interval bars
SINGLE_HEIGHT = 480
PANEL_HEIGHT = 300

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
</head>
<body>
{div}
<noscript>This graph is drawn by JavaScript; the PNG file of the same name shows it without.</noscript>
</body>
</html>
"""


def _values(values: FloatSeq) -> np.ndarray:
    """A float64 array with every non-finite value as NaN, which plotly.js draws as a gap."""
    a = np.asarray(values, dtype=np.float64).ravel()
    return np.where(np.isfinite(a), a, np.nan)


def _rgba(color: str, alpha: float) -> str:
    """``color`` (any colour the PNG accepts) at opacity ``alpha``, as a CSS rgba()."""
    from matplotlib.colors import to_rgb

    r, g, b = (round(255 * c) for c in to_rgb(color))
    return f"rgba({r},{g},{b},{alpha})"


def _traces(s: Series, color: str, show_legend: bool) -> list[dict[str, Any]]:
    """The plotly traces of one series, all in the legend group of its label."""
    common = {"type": "scatter", "name": s.label, "legendgroup": s.label, "showlegend": show_legend}
    if isinstance(s, Line):
        line = {"color": color, "width": 1.5}
        return [{**common, "x": _values(s.x), "y": _values(s.y), "mode": "lines", "line": line}]
    if isinstance(s, Band):
        x, edge = _values(s.x), {"color": color, "width": 0}
        low = {**common, "x": x, "y": _values(s.low), "mode": "lines", "line": edge, "showlegend": False}
        high = {
            **common,
            "x": x,
            "y": _values(s.high),
            "mode": "lines",
            "line": edge,
            "fill": "tonexty",
            "fillcolor": _rgba(color, BAND_OPACITY),
        }
        return [low, high]
    if isinstance(s, Points):
        marker = {
            "color": list(s.colors) if s.colors is not None else color,
            "size": 8,
            "line": {"color": "#555555", "width": 0.5},
        }
        trace = {**common, "x": _values(s.x), "y": _values(s.y), "mode": "markers", "marker": marker}
        if s.texts is not None:
            trace["text"] = [str(t) for t in s.texts]
        return [trace]
    if isinstance(s, Intervals):
        low, mid, high = _values(s.low), _values(s.mid), _values(s.high)
        bars = {
            "type": "data",
            "symmetric": False,
            "array": high - mid,
            "arrayminus": mid - low,
            "color": _rgba(color, INTERVAL_OPACITY),
            "thickness": 8,
            "width": 0,
        }
        interval = {
            **common,
            "x": mid,
            "y": [str(c) for c in s.categories],
            "mode": "markers",
            "marker": {"color": color, "size": 8},
            "error_x": bars,
            "text": [f"{m:.4g} [{lo:.4g}, {hi:.4g}]" for lo, m, hi in zip(low, mid, high, strict=True)],
            "hoverinfo": "y+text",
        }
        return [interval]
    raise TypeError(f"unknown series type {type(s).__name__}")


def _style_axes(fig: "go.Figure", panel: Panel, row: int, col: int) -> None:
    fig.update_xaxes(title_text=panel.x_title, row=row, col=col)
    fig.update_yaxes(title_text=panel.y_title, row=row, col=col)
    if panel.x_ticks is not None:
        n = len(panel.x_ticks)
        ticks = [str(t) for t in panel.x_ticks]
        fig.update_xaxes(tickvals=list(range(n)), ticktext=ticks, range=[-0.5, n - 0.5], row=row, col=col)
    if panel.x_range is not None:
        fig.update_xaxes(range=[float(panel.x_range[0]), float(panel.x_range[1])], row=row, col=col)
    categories = [s.categories for s in panel.series if isinstance(s, Intervals)]
    if categories:  # categories run top down, as in the PNG
        order = [str(c) for c in categories[0]]
        fig.update_yaxes(type="category", categoryarray=order, autorange="reversed", row=row, col=col)


def _color_bar(cs: ColorScale) -> dict[str, Any]:
    """An empty trace that only shows ``cs`` as a colour bar."""
    stops = list(cs.stops)
    scale = [[i / max(1, len(stops) - 1), c] for i, c in enumerate(stops)]
    marker = {
        "color": [cs.vmin],
        "colorscale": scale,
        "cmin": cs.vmin,
        "cmax": cs.vmax,
        "showscale": True,
        "colorbar": {"title": {"text": cs.label}},
    }
    return {
        "type": "scatter",
        "x": [None],
        "y": [None],
        "mode": "markers",
        "marker": marker,
        "showlegend": False,
    }


def chart_to_figure(chart: Chart, palette: Sequence[str]) -> "go.Figure":
    """The plotly figure of ``chart``: panels ``chart.ncols`` to a row; a series without a colour takes
    ``palette[i]`` by its place ``i`` in its panel, as in the PNG."""
    from plotly.subplots import make_subplots

    ncols = max(1, int(chart.ncols))
    nrows = -(-len(chart.panels) // ncols)
    titles = [p.title for p in chart.panels]
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=titles if any(titles) else None)
    seen: set[str] = set()
    for i, panel in enumerate(chart.panels):
        row, col = i // ncols + 1, i % ncols + 1
        for j, s in enumerate(panel.series):
            color = s.color or palette[j % len(palette)]
            for trace in _traces(s, color, show_legend=chart.legend and s.label not in seen):
                fig.add_trace(trace, row=row, col=col)
            seen.add(s.label)
        _style_axes(fig, panel, row, col)
    if chart.color_scale is not None:
        fig.add_trace(_color_bar(chart.color_scale), row=1, col=1)
    # a scatter reads best point by point; curves read best as all values at one x
    pointwise = any(isinstance(s, Points | Intervals) for p in chart.panels for s in p.series)
    fig.update_layout(
        template="none",
        title={"text": chart.title},
        showlegend=chart.legend,
        hovermode="closest" if pointwise else "x unified",
        height=SINGLE_HEIGHT if len(chart.panels) == 1 else PANEL_HEIGHT * nrows + 120,
    )
    return fig


def chart_to_html(chart: Chart, palette: Sequence[str]) -> str:
    """The complete HTML page of ``chart``; it loads plotly.js from ``PLOTLY_JS`` in its own folder."""
    import plotly.io as pio

    div = pio.to_html(
        chart_to_figure(chart, palette),
        config=CONFIG,
        include_plotlyjs="directory",
        full_html=False,
        div_id=DIV_ID,
    )
    return _PAGE.format(title=html.escape(chart.title), div=div)


def _ship_plotly_js(folder: Path) -> None:
    """Write the plotly.js bundle into ``folder`` unless it is there. Atomic, so that a page never loads a
    half-written bundle; writers racing on one folder each write a whole copy and the last one stays."""
    bundle = folder / PLOTLY_JS
    if bundle.is_file():
        return
    from plotly.offline import get_plotlyjs

    data = get_plotlyjs().encode("utf-8")
    atomic_write(bundle, lambda f: f.write(data), binary=True)


def write_html(chart: Chart, path: str | Path, palette: Sequence[str]) -> None:
    """Write ``chart`` as an HTML page (atomically) and the plotly.js bundle beside it if the folder lacks it.
    The page is built first, so a chart that fails to convert writes nothing."""
    path = Path(path)
    data = chart_to_html(chart, palette).encode("utf-8")
    _ship_plotly_js(path.parent)
    atomic_write(path, lambda f: f.write(data), binary=True)

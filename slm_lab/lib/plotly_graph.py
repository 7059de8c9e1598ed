"""Interactive HTML graphs (B6) drawn by plotly.js: one HTML file per graph that opens offline in any browser.

``chart_to_figure`` maps a ``Chart`` onto a plotly figure, the ``{"data": traces, "layout": ...}`` JSON that
plotly.js draws: a grid of subplots, one per panel; a ``Line`` is a
line trace, a ``Band`` a pair of traces (low, then high filled down to it), ``Points`` a marker trace and
``Intervals`` markers at ``mid`` with asymmetric error bars out to ``low`` and ``high``. A series label is one legend
entry however many panels hold it, so clicking it hides or shows that series everywhere. Plotly gives the rest:
hover values, drag to zoom, double click to reset.

``write_html`` writes the page with the figure's data; the plotly.js bundle (about 5 MB) is not inlined but written
once per folder as ``plotly.min.js`` beside the pages, which load it by that relative name, as plotly's own
``include_plotlyjs="directory"`` does. Nothing is fetched at view time, so a graph folder can be copied anywhere and
still open.

The figure is written as plotly.js's JSON directly; the plotly Python package only supplies the bundle file. Its
``graph_objects`` would validate every property on the way, which costs about 0.3 s to import and 10 ms a figure,
paid again in every session process; the lab's own traces and layout are few and fixed, and the tests check them.
"""

import html
import importlib.util
import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slm_lab.lib.chart import Band, Chart, ColorScale, FloatSeq, Intervals, Line, Panel, Points, Series
from slm_lab.lib.io_util import atomic_write

__all__ = ["PLOTLY_JS", "chart_to_figure", "chart_to_html", "write_html"]

PLOTLY_JS = "plotly.min.js"  # the name plotly's "directory" mode loads the bundle by, relative to the page
DIV_ID = "graph"  # a fixed id (plotly's default is a random one), so that the same chart gives the same file
CONFIG = {"displaylogo": False}
BAND_OPACITY = 0.15  # as the PNG's envelope (viz.ENVELOPE_ALPHA)
INTERVAL_OPACITY = 0.45  # as the PNG's interval bars
SINGLE_HEIGHT = 480
PANEL_HEIGHT = 300
# plotly's make_subplots spacing between subplots, as fractions of the figure
H_SPACING, V_SPACING = 0.2, 0.3

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
</head>
<body>
<div id="{div_id}" class="plotly-graph-div" style="height:{height}px; width:100%;"></div>
<script charset="utf-8" src="{plotly_js}"></script>
<script>Plotly.newPlot("{div_id}", {data}, {layout}, {config})</script>
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


def _axes_style(panel: Panel) -> tuple[dict[str, Any], dict[str, Any]]:
    """The x and y axis properties of a panel: titles, categorical ticks, a fixed range, category order."""
    x: dict[str, Any] = {"title": {"text": panel.x_title}}
    y: dict[str, Any] = {"title": {"text": panel.y_title}}
    if panel.x_ticks is not None:
        n = len(panel.x_ticks)
        x.update(tickvals=list(range(n)), ticktext=[str(t) for t in panel.x_ticks], range=[-0.5, n - 0.5])
    if panel.x_range is not None:
        x["range"] = [float(panel.x_range[0]), float(panel.x_range[1])]
    categories = [s.categories for s in panel.series if isinstance(s, Intervals)]
    if categories:  # categories run top down, as in the PNG
        y.update(type="category", categoryarray=[str(c) for c in categories[0]], autorange="reversed")
    return x, y


def _grid(nrows: int, ncols: int) -> list[tuple[list[float], list[float]]]:
    """The (x, y) paper domains of each cell of a grid, row by row from the top, spaced as plotly's subplots."""
    h = H_SPACING / ncols if ncols > 1 else 0.0
    v = V_SPACING / nrows if nrows > 1 else 0.0
    width, height = (1 - h * (ncols - 1)) / ncols, (1 - v * (nrows - 1)) / nrows
    cells = []
    for row in range(nrows):
        top = 1 - row * (height + v)
        for col in range(ncols):
            left = col * (width + h)
            cells.append(([round(left, 9), round(left + width, 9)], [round(top - height, 9), round(top, 9)]))
    return cells


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


def chart_to_figure(chart: Chart, palette: Sequence[str]) -> dict[str, Any]:
    """The plotly figure of ``chart``, ``{"data": [...], "layout": {...}}``: panels ``chart.ncols`` to a row; a
    series without a colour takes ``palette[i]`` by its place ``i`` in its panel, as in the PNG."""
    ncols = max(1, int(chart.ncols))
    nrows = -(-len(chart.panels) // ncols)
    data: list[dict[str, Any]] = []
    layout: dict[str, Any] = {}
    annotations = []
    seen: set[str] = set()
    for i, (panel, (x_domain, y_domain)) in enumerate(zip(chart.panels, _grid(nrows, ncols), strict=False)):
        suffix = (
            "" if i == 0 else str(i + 1)
        )  # plotly's axis names: xaxis, xaxis2, ...; traces refer to x, x2
        for j, s in enumerate(panel.series):
            color = s.color or palette[j % len(palette)]
            for trace in _traces(s, color, show_legend=chart.legend and s.label not in seen):
                data.append({**trace, "xaxis": f"x{suffix}", "yaxis": f"y{suffix}"})
            seen.add(s.label)
        x_axis, y_axis = _axes_style(panel)
        layout[f"xaxis{suffix}"] = {**x_axis, "anchor": f"y{suffix}", "domain": x_domain}
        layout[f"yaxis{suffix}"] = {**y_axis, "anchor": f"x{suffix}", "domain": y_domain}
        if panel.title:
            annotations.append({
                "text": panel.title, "x": sum(x_domain) / 2, "y": y_domain[1], "xref": "paper",
                "yref": "paper", "xanchor": "center", "yanchor": "bottom", "showarrow": False,
                "font": {"size": 16},
            })  # fmt: skip
    if chart.color_scale is not None:
        data.append(_color_bar(chart.color_scale))
    # a scatter reads best point by point; curves read best as all values at one x
    pointwise = any(isinstance(s, Points | Intervals) for p in chart.panels for s in p.series)
    layout.update(
        title={"text": chart.title},
        showlegend=chart.legend,
        hovermode="closest" if pointwise else "x unified",
        height=SINGLE_HEIGHT if len(chart.panels) == 1 else PANEL_HEIGHT * nrows + 120,
    )
    if annotations:
        layout["annotations"] = annotations
    return {"data": data, "layout": layout}


def _plain(value: Any) -> Any:
    """``value`` with arrays as lists and every non-finite float as None (JSON's null, a gap for plotly.js)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element: ``<``, ``>`` and ``&`` as unicode escapes, so no label can
    close the element or open another."""
    text = json.dumps(_plain(value), allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def chart_to_html(chart: Chart, palette: Sequence[str]) -> str:
    """The complete HTML page of ``chart``; it loads plotly.js from ``PLOTLY_JS`` in its own folder."""
    figure = chart_to_figure(chart, palette)
    return _PAGE.format(
        title=html.escape(chart.title),
        div_id=DIV_ID,
        height=figure["layout"]["height"],
        plotly_js=PLOTLY_JS,
        data=_script_json(figure["data"]),
        layout=_script_json(figure["layout"]),
        config=_script_json(CONFIG),
    )


def _plotly_js_source() -> Path:
    """The plotly.js bundle the plotly package ships (found without importing the package)."""
    found = importlib.util.find_spec("plotly")
    assert found is not None and found.submodule_search_locations, "the plotly package is not installed"
    return Path(next(iter(found.submodule_search_locations))) / "package_data" / PLOTLY_JS


def _ship_plotly_js(folder: Path) -> None:
    """Copy the plotly.js bundle into ``folder`` unless it is there. Atomic (a copy beside it, then a rename), so
    that a page never loads a half-written bundle; writers racing on one folder each write a whole copy and the last
    one stays."""
    bundle = folder / PLOTLY_JS
    if bundle.is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{PLOTLY_JS}.{os.getpid()}.tmp"
    try:
        shutil.copyfile(_plotly_js_source(), tmp)
        os.replace(tmp, bundle)
    finally:
        tmp.unlink(missing_ok=True)


def write_html(chart: Chart, path: str | Path, palette: Sequence[str]) -> None:
    """Write ``chart`` as an HTML page (atomically) and the plotly.js bundle beside it if the folder lacks it.
    The page is built first, so a chart that fails to convert writes nothing."""
    path = Path(path)
    data = chart_to_html(chart, palette).encode("utf-8")
    _ship_plotly_js(path.parent)
    atomic_write(path, lambda f: f.write(data), binary=True)

"""Headless graphs of the session and trial metrics, each as a PNG and as an interactive HTML file.

A graph is first described as a ``Chart`` (``slm_lab.lib.chart``); ``render_chart`` then writes ``{stem}.png`` with
matplotlib and ``{stem}.html`` with ``plotly_graph`` (plotly.js, loaded from the ``plotly.min.js`` that
``plotly_graph`` writes once per folder). PNG rendering uses matplotlib's ``Figure`` with the Agg canvas
directly, never the pyplot state machine, so it works in any process (spawned sessions, Ray workers) and without a
display (D33). A rendering failure logs one warning and writes nothing for that file; it never aborts a run. Every
graph is skipped when ``PY_ENV=test``.

Graph sets: ``plot_session`` (returns raw and MA, loss, explore_var, entropy), ``plot_trial`` (mean ± std envelope
across sessions, raw and MA) and, with ``--log-extra``, ``plot_session_extra``/``plot_trial_extra`` (strengths,
efficiencies, stabilities, consistencies, each raw and MA). Graphs that compare runs are in ``viz_multi``.
"""

import dataclasses
import io
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from loguru import logger

from slm_lab.lib import plotly_graph
from slm_lab.lib.chart import Band, Chart, FloatSeq, Intervals, Line, Panel, Points, Series
from slm_lab.lib.io_util import atomic_write

__all__ = [
    "COLORS",
    "EXTRA_SESSION_SERIES",
    "MA_WINDOW",
    "SESSION_EXTRA_COLS",
    "envelope_series",
    "graphs_enabled",
    "mean_std",
    "moving_average",
    "plot_session",
    "plot_session_extra",
    "plot_trial",
    "plot_trial_extra",
    "render_chart",
    "render_envelope_graph",
    "render_line_graph",
]

MA_WINDOW = 100
SESSION_EXTRA_COLS = ("loss", "explore_var", "entropy")
# --log-extra series of the session local metrics and the time axis each is drawn against
EXTRA_SESSION_SERIES = (
    ("strengths", "frames"),
    ("sample_efficiencies", "frames"),
    ("training_efficiencies", "opt_steps"),
    ("stabilities", "frames"),
)
# a local stability needs two checkpoints, so stabilities[i] belongs to the later one, frames[i + 1]
SERIES_OFFSET = {"stabilities": 1}
# 2x scale: a 6.4 x 4 inch figure at 200 dpi gives a 1280 x 800 PNG
FIG_SIZE = (6.4, 4.0)
PANEL_SIZE = (3.3, 2.6)
DPI = 200
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
ENVELOPE_ALPHA = 0.15
# fast zlib level: graphs are re-rendered at checkpoints, so render time matters more than a few kB
PNG_KWARGS: dict[str, Any] = {"compress_level": 1}


def graphs_enabled() -> bool:
    """Graphs are skipped under ``PY_ENV=test``."""
    return os.environ.get("PY_ENV") != "test"


def moving_average(values: FloatSeq, window: int = MA_WINDOW) -> np.ndarray:
    """Rolling mean with ``min_periods=1``; NaN values are skipped (a window of only NaN stays NaN)."""
    return pd.Series(np.asarray(values, dtype=np.float64)).rolling(window, min_periods=1).mean().to_numpy()


def _f64(values: FloatSeq) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------------
# PNG rendering of a Chart


def _style_axes(ax: Any, panel: Panel, fontsize: float) -> None:
    if panel.title:
        ax.set_title(panel.title, fontsize=fontsize)
    ax.set_xlabel(panel.x_title, fontsize=fontsize - 1)
    ax.set_ylabel(panel.y_title, fontsize=fontsize - 1)
    ax.tick_params(labelsize=fontsize - 2)
    ax.grid(True, color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#888888")


def _draw_series(ax: Any, s: Series, color: str) -> None:
    c = s.color or color
    if isinstance(s, Line):
        ax.plot(_f64(s.x), _f64(s.y), color=c, linewidth=1.2, label=s.label)
    elif isinstance(s, Band):
        low, high = _f64(s.low), _f64(s.high)
        ax.fill_between(_f64(s.x), low, high, color=c, alpha=ENVELOPE_ALPHA, linewidth=0, label=s.label)
    elif isinstance(s, Points):
        colors = list(s.colors) if s.colors is not None else c
        ax.scatter(_f64(s.x), _f64(s.y), c=colors, s=16, edgecolors="#555555", linewidths=0.3, label=s.label)
    elif isinstance(s, Intervals):
        ys = np.arange(len(s.categories), dtype=np.float64)
        ax.hlines(ys, _f64(s.low), _f64(s.high), color=c, linewidth=6, alpha=0.45, label=s.label)
        ax.plot(_f64(s.mid), ys, "o", color=c, markersize=4)
        ax.set_yticks(ys, [str(cat) for cat in s.categories])
        ax.set_ylim(len(s.categories) - 0.5, -0.5)
    else:
        raise TypeError(f"unknown series type {type(s).__name__}")


def _draw_panel(ax: Any, panel: Panel, fontsize: float) -> None:
    _style_axes(ax, panel, fontsize)
    for i, s in enumerate(panel.series):
        _draw_series(ax, s, COLORS[i % len(COLORS)])
    if panel.x_ticks is not None:
        ax.set_xticks(np.arange(len(panel.x_ticks)), [str(t) for t in panel.x_ticks], rotation=30, ha="right")
        ax.set_xlim(-0.5, len(panel.x_ticks) - 0.5)
    if panel.x_range is not None:
        ax.set_xlim(*panel.x_range)


def _single_figure(chart: Chart) -> Any:
    """One panel, title above, legend below the axes (the layout of every lab graph)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIG_SIZE, dpi=DPI, facecolor="white")
    ax = fig.add_axes((0.1, 0.25, 0.86, 0.65), facecolor="white")
    panel = chart.panels[0]
    _draw_panel(ax, dataclasses.replace(panel, title=chart.title), fontsize=10)
    if isinstance(next(iter(panel.series), None), Intervals):  # category labels need room on the left
        ax.set_position((0.3, 0.25, 0.66, 0.65))
    if chart.legend and panel.series:
        ax.legend(
            loc="upper center",
            bbox_to_anchor=(0.5, -0.18),
            ncol=max(1, min(len(panel.series), 4)),
            frameon=False,
            fontsize=8,
        )
    return fig


def _grid_figure(chart: Chart) -> Any:
    """Several panels in a grid, a figure title, an optional colour bar."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    ncols = max(1, chart.ncols)
    nrows = -(-len(chart.panels) // ncols)
    size = (PANEL_SIZE[0] * ncols + 0.8, PANEL_SIZE[1] * nrows + 0.6)
    fig = Figure(figsize=size, dpi=DPI, facecolor="white", layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < len(chart.panels):
            _draw_panel(ax, chart.panels[i], fontsize=8)
        else:
            ax.set_visible(False)
    fig.suptitle(chart.title, fontsize=10)
    if chart.color_scale is not None:
        cs = chart.color_scale
        mappable = ScalarMappable(Normalize(cs.vmin, cs.vmax), colormaps[cs.cmap])
        fig.colorbar(mappable, ax=axes.ravel().tolist(), label=cs.label, shrink=0.8)
    return fig


def _write_png(chart: Chart, path: str | Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _single_figure(chart) if len(chart.panels) == 1 else _grid_figure(chart)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", pil_kwargs=PNG_KWARGS)
    atomic_write(path, lambda f: f.write(buf.getvalue()), binary=True)


def _attempt(path: str | Path, write: Callable[[], None]) -> bool:
    """Run one file's ``write``; a failure warns once and leaves no file (D33)."""
    try:
        write()
    except Exception as e:
        logger.warning(f"Graph not rendered: {path}: {type(e).__name__}: {e}")
        return False
    return True


def render_chart(chart: Chart, png_path: str | Path, html: bool = True) -> list[str]:
    """Write ``png_path`` and (with ``html``) the HTML file of the same stem. Returns the paths written; nothing
    under ``PY_ENV=test``. Each file fails on its own, with a warning."""
    if not graphs_enabled():
        return []
    written = []
    if _attempt(png_path, lambda: _write_png(chart, png_path)):
        written.append(str(png_path))
    if html:
        html_path = Path(png_path).with_suffix(".html")
        if _attempt(html_path, lambda: plotly_graph.write_html(chart, html_path, COLORS)):
            written.append(str(html_path))
    return written


def render_line_graph(
    path: str | Path, x: FloatSeq, ys: Mapping[str, FloatSeq], *, title: str, x_title: str, y_title: str
) -> bool:
    """Write a PNG (and its HTML) of one line per ``ys`` entry against ``x``. Returns whether the PNG was written."""
    chart = Chart.single(title, x_title, y_title, [Line(label, x, y) for label, y in ys.items()])
    return str(path) in render_chart(chart, path)


def envelope_series(label: str, x: FloatSeq, mean: FloatSeq, std: FloatSeq, color: str) -> list[Series]:
    """The mean line over a shaded ``mean ± std`` band; a NaN std (one session) gives a zero-width band."""
    mu = _f64(mean)
    sd = np.nan_to_num(_f64(std), nan=0.0)
    return [Band(f"{label} ± std", x, mu - sd, mu + sd, color), Line(label, x, mu, color)]


def render_envelope_graph(
    path: str | Path,
    x: FloatSeq,
    mean: FloatSeq,
    std: FloatSeq,
    *,
    label: str,
    title: str,
    x_title: str,
    y_title: str,
) -> bool:
    """Write a PNG (and its HTML) of ``mean`` with a shaded ``mean ± std`` envelope. Returns whether the PNG was
    written."""
    chart = Chart.single(title, x_title, y_title, envelope_series(label, x, mean, std, COLORS[0]))
    return str(path) in render_chart(chart, path)


# ---------------------------------------------------------------------------------------------------------------
# the lab's graph sets


def _align(x: FloatSeq, y: FloatSeq, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pair ``y[i]`` with ``x[i + offset]`` (see ``SERIES_OFFSET``), both cut to the common length."""
    xs, ys = _f64(x)[offset:], _f64(y)
    n = min(len(xs), len(ys))
    return xs[:n], ys[:n]


def _raw_and_ma(prefix: str, name: str, x_name: str, x: FloatSeq, y: FloatSeq, title: str) -> list[str]:
    """``{prefix}_{name}_vs_{x_name}`` and ``{prefix}_{name}_ma_vs_{x_name}``."""
    xs, ys = _align(x, y, SERIES_OFFSET.get(name, 0))
    written = render_chart(
        Chart.single(title, x_name, name, [Line(name, xs, ys)]), f"{prefix}_{name}_vs_{x_name}.png"
    )
    ma_name = f"{name}_ma"
    ma_chart = Chart.single(title, x_name, ma_name, [Line(ma_name, xs, moving_average(ys))])
    return written + render_chart(ma_chart, f"{prefix}_{ma_name}_vs_{x_name}.png")


def plot_session(
    graph_prepath: str,
    df_mode: str,
    local: Mapping[str, FloatSeq],
    session_df: pd.DataFrame,
    title: str,
) -> list[str]:
    """Session graphs: mean returns (raw and MA) vs frames, and each of loss/explore_var/entropy vs frame when the
    column exists and is not all NaN. ``local`` is the session's local metrics. Returns the paths written (PNG and
    HTML)."""
    prefix = f"{graph_prepath}_session_graph_{df_mode}"
    written = _raw_and_ma(prefix, "mean_returns", "frames", local["frames"], local["mean_returns"], title)
    if "frame" not in session_df.columns:
        return written
    for col in SESSION_EXTRA_COLS:
        if col in session_df.columns and session_df[col].notna().any():
            chart = Chart.single(title, "frame", col, [Line(col, session_df["frame"], session_df[col])])
            written += render_chart(chart, f"{prefix}_{col}_vs_frame.png")
    return written


def plot_session_extra(
    graph_prepath: str, df_mode: str, local: Mapping[str, FloatSeq], title: str
) -> list[str]:
    """The ``--log-extra`` session graphs: strengths, sample_efficiencies and stabilities vs frames,
    training_efficiencies vs opt_steps, each raw and MA."""
    prefix = f"{graph_prepath}_session_graph_{df_mode}"
    written: list[str] = []
    for name, x_name in EXTRA_SESSION_SERIES:
        written += _raw_and_ma(prefix, name, x_name, local[x_name], local[name], title)
    return written


def mean_std(series_list: Sequence[FloatSeq]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std (ddof 1) across series, truncated to the shortest; NaN skipped, std 0 for one series."""
    n = min(len(s) for s in series_list)
    df = pd.DataFrame([_f64(s)[:n] for s in series_list])
    return df.mean(axis=0).to_numpy(), df.std(axis=0, ddof=1).fillna(0.0).to_numpy()


def _envelope_pair(
    prefix: str, name: str, x_name: str, x: FloatSeq, series: Sequence[FloatSeq], title: str
) -> list[str]:
    """``{prefix}_{name}_vs_{x_name}`` and ``_ma``: mean ± std across sessions (each session's MA taken first),
    all sessions cut to the shortest."""
    offset = SERIES_OFFSET.get(name, 0)
    n = max(0, min(min(len(s) for s in series), len(x) - offset))
    raw = [_f64(s)[:n] for s in series]
    xs = _f64(x)[offset : offset + n]
    written: list[str] = []
    for suffix, group in ((name, raw), (f"{name}_ma", [moving_average(r) for r in raw])):
        mean, std = mean_std(group)
        chart = Chart.single(title, x_name, suffix, envelope_series(suffix, xs, mean, std, COLORS[0]))
        written += render_chart(chart, f"{prefix}_{suffix}_vs_{x_name}.png")
    return written


def plot_trial(
    graph_prepath: str, returns_list: Sequence[FloatSeq], frames: FloatSeq, title: str
) -> list[str]:
    """Trial graphs: the mean returns across sessions with a ±1 std envelope, raw and MA (each session's MA first,
    then mean/std). ``frames`` is session 0's frame series. Returns the paths written (PNG and HTML)."""
    if not returns_list:
        return []
    n = min(min(len(r) for r in returns_list), len(frames))
    returns = [_f64(r)[:n] for r in returns_list]
    return _envelope_pair(
        f"{graph_prepath}_trial_graph", "mean_returns", "frames", _f64(frames)[:n], returns, title
    )


def plot_trial_extra(graph_prepath: str, local: Mapping[str, Any], title: str) -> list[str]:
    """The ``--log-extra`` trial graphs: the session series of ``plot_session_extra`` as mean ± std across
    sessions, plus the trial's consistencies vs frames, each raw and MA. ``local`` is the trial's local metrics."""
    prefix = f"{graph_prepath}_trial_graph"
    written: list[str] = []
    for name, x_name in EXTRA_SESSION_SERIES:
        if local.get(name):
            written += _envelope_pair(prefix, name, x_name, local[x_name], local[name], title)
    written += _raw_and_ma(prefix, "consistencies", "frames", local["frames"], local["consistencies"], title)
    return written

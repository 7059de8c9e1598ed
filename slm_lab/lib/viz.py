"""Headless graphs of the session and trial metrics (contract §4.4).

Rendering uses matplotlib's ``Figure`` with the Agg canvas directly, never the pyplot state machine, so it works
in any process (spawned sessions, Ray workers) and without a display (D33). A rendering failure logs one warning and
returns ``False``; it never aborts a run. Every graph is skipped when ``PY_ENV=test``.
"""

import io
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from loguru import logger

from slm_lab.lib.io_util import atomic_write

__all__ = [
    "MA_WINDOW",
    "SESSION_EXTRA_COLS",
    "graphs_enabled",
    "moving_average",
    "plot_session",
    "plot_trial",
    "render_envelope_graph",
    "render_line_graph",
]

MA_WINDOW = 100
SESSION_EXTRA_COLS = ("loss", "explore_var", "entropy")
# 2x scale: a 6.4 x 4 inch figure at 200 dpi gives a 1280 x 800 PNG
FIG_SIZE = (6.4, 4.0)
DPI = 200
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
ENVELOPE_ALPHA = 0.15
# fast zlib level: graphs are re-rendered at checkpoints, so render time matters more than a few kB
PNG_KWARGS: dict[str, Any] = {"compress_level": 1}

FloatSeq = Sequence[float] | np.ndarray | pd.Series


def graphs_enabled() -> bool:
    """Graphs are skipped under ``PY_ENV=test``."""
    return os.environ.get("PY_ENV") != "test"


def moving_average(values: FloatSeq, window: int = MA_WINDOW) -> np.ndarray:
    """Rolling mean with ``min_periods=1``; NaN values are skipped (a window of only NaN stays NaN)."""
    return pd.Series(np.asarray(values, dtype=np.float64)).rolling(window, min_periods=1).mean().to_numpy()


def _new_figure(title: str, x_title: str, y_title: str) -> tuple[Any, Any]:
    # imported here: matplotlib costs about 0.5 s to import, and runs under PY_ENV=test never need it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIG_SIZE, dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    # leave room below the axes for the legend
    ax = fig.add_axes((0.1, 0.25, 0.86, 0.65), facecolor="white")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(x_title, fontsize=9)
    ax.set_ylabel(y_title, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#888888")
    return fig, ax


def _finish(fig: Any, ax: Any, path: str | Path, n_series: int) -> None:
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.18),
        ncol=max(1, min(n_series, 4)),
        frameon=False,
        fontsize=8,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", pil_kwargs=PNG_KWARGS)
    atomic_write(path, lambda f: f.write(buf.getvalue()), binary=True)


def _render(path: str | Path, draw: Callable[[Any], int], title: str, x_title: str, y_title: str) -> bool:
    """Draw on a fresh figure with ``draw(ax) -> legend entries`` and write the PNG; a failure only warns (D33)."""
    if not graphs_enabled():
        return False
    try:
        fig, ax = _new_figure(title, x_title, y_title)
        _finish(fig, ax, path, draw(ax))
    except Exception as e:
        logger.warning(f"Graph not rendered: {path}: {type(e).__name__}: {e}")
        return False
    return True


def render_line_graph(
    path: str | Path,
    x: FloatSeq,
    ys: Mapping[str, FloatSeq],
    *,
    title: str,
    x_title: str,
    y_title: str,
) -> bool:
    """Write a PNG of one line per ``ys`` entry against ``x``. Returns whether a file was written."""

    def draw(ax: Any) -> int:
        xs = np.asarray(x, dtype=np.float64)
        for i, (label, y) in enumerate(ys.items()):
            ax.plot(
                xs, np.asarray(y, dtype=np.float64), color=COLORS[i % len(COLORS)], linewidth=1.2, label=label
            )
        return len(ys)

    return _render(path, draw, title, x_title, y_title)


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
    """Write a PNG of ``mean`` with a shaded ``mean ± std`` envelope. Returns whether a file was written."""

    def draw(ax: Any) -> int:
        xs = np.asarray(x, dtype=np.float64)
        mu = np.asarray(mean, dtype=np.float64)
        sd = np.nan_to_num(np.asarray(std, dtype=np.float64), nan=0.0)
        ax.fill_between(
            xs, mu - sd, mu + sd, color=COLORS[0], alpha=ENVELOPE_ALPHA, linewidth=0, label=f"{label} ± std"
        )
        ax.plot(xs, mu, color=COLORS[0], linewidth=1.2, label=label)
        return 2

    return _render(path, draw, title, x_title, y_title)


def plot_session(
    graph_prepath: str,
    df_mode: str,
    local: Mapping[str, FloatSeq],
    session_df: pd.DataFrame,
    title: str,
) -> list[str]:
    """Session graphs: mean returns (raw and MA) vs frames, and each of loss/explore_var/entropy vs frame when the
    column exists and is not all NaN. ``local`` is the session's local metrics. Returns the paths written."""
    prefix = f"{graph_prepath}_session_graph_{df_mode}"
    frames = local["frames"]
    returns = np.asarray(local["mean_returns"], dtype=np.float64)
    jobs: list[tuple[str, FloatSeq, dict[str, FloatSeq], str, str]] = [
        (f"{prefix}_mean_returns_vs_frames.png", frames, {"mean_returns": returns}, "frames", "mean_returns"),
        (
            f"{prefix}_mean_returns_ma_vs_frames.png",
            frames,
            {"mean_returns_ma": moving_average(returns)},
            "frames",
            "mean_returns_ma",
        ),
    ]
    for col in SESSION_EXTRA_COLS:
        if col in session_df.columns and session_df[col].notna().any() and "frame" in session_df.columns:
            jobs.append(
                (f"{prefix}_{col}_vs_frame.png", session_df["frame"], {col: session_df[col]}, "frame", col)
            )
    written = []
    for path, x, ys, x_title, y_title in jobs:
        if render_line_graph(path, x, ys, title=title, x_title=x_title, y_title=y_title):
            written.append(path)
    return written


def _mean_std(series_list: Sequence[FloatSeq]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std (ddof 1) across series, truncated to the shortest; NaN skipped, std 0 for one series."""
    n = min(len(s) for s in series_list)
    df = pd.DataFrame([np.asarray(s, dtype=np.float64)[:n] for s in series_list])
    return df.mean(axis=0).to_numpy(), df.std(axis=0, ddof=1).fillna(0.0).to_numpy()


def plot_trial(
    graph_prepath: str,
    returns_list: Sequence[FloatSeq],
    frames: FloatSeq,
    title: str,
) -> list[str]:
    """Trial graphs: the mean returns across sessions with a ±1 std envelope, raw and MA (each session's MA first,
    then mean/std). ``frames`` is session 0's frame series. Returns the paths written."""
    if not returns_list:
        return []
    n = min(min(len(r) for r in returns_list), len(frames))
    x = np.asarray(frames, dtype=np.float64)[:n]
    raw = [np.asarray(r, dtype=np.float64)[:n] for r in returns_list]
    written = []
    for suffix, label, series in (
        ("mean_returns", "mean_returns", raw),
        ("mean_returns_ma", "mean_returns_ma", [moving_average(r) for r in raw]),
    ):
        path = f"{graph_prepath}_trial_graph_{suffix}_vs_frames.png"
        mean, std = _mean_std(series)
        if render_envelope_graph(
            path, x, mean, std, label=label, title=title, x_title="frames", y_title=label
        ):
            written.append(path)
    return written

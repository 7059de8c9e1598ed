"""A renderer-independent description of a graph, so that one description gives both the PNG and the interactive
HTML file of a graph (B6) and the two can never disagree.

A ``Chart`` is a title plus one or more ``Panel``s (a grid for the experiment graph); a panel holds series: ``Line``,
``Band`` (a shaded low–high envelope), ``Points`` (a scatter, optionally coloured point by point) and ``Intervals``
(horizontal low–mid–high bars on a categorical axis, for probabilities of improvement). Values are plain float
sequences; NaN marks a gap. No matplotlib here: ``viz`` draws the PNG, ``plotly_graph`` writes the HTML.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["Band", "Chart", "ColorScale", "FloatSeq", "Intervals", "Line", "Panel", "Points", "Series"]

FloatSeq = Sequence[float] | np.ndarray | pd.Series


@dataclass(frozen=True)
class Line:
    """A line through (x, y); NaN values break it."""

    label: str
    x: FloatSeq
    y: FloatSeq
    color: str | None = None


@dataclass(frozen=True)
class Band:
    """A shaded area between ``low`` and ``high`` along x (15% opacity), e.g. mean ± std across sessions."""

    label: str
    x: FloatSeq
    low: FloatSeq
    high: FloatSeq
    color: str | None = None


@dataclass(frozen=True)
class Points:
    """A scatter. ``colors`` gives one colour per point (a colour scale, see ``Chart.color_scale``), else all points
    take ``color``; ``texts`` is one hover text per point."""

    label: str
    x: FloatSeq
    y: FloatSeq
    color: str | None = None
    colors: Sequence[str] | None = None
    texts: Sequence[str] | None = None


@dataclass(frozen=True)
class Intervals:
    """One horizontal bar per category from ``low`` to ``high`` with a dot at ``mid``; categories run top down."""

    label: str
    categories: Sequence[str]
    low: FloatSeq
    mid: FloatSeq
    high: FloatSeq
    color: str | None = None


Series = Line | Band | Points | Intervals


@dataclass(frozen=True)
class Panel:
    """One set of axes. ``x_ticks`` makes x categorical: label ``x_ticks[i]`` at position i. ``x_range`` fixes the
    x axis (e.g. [0, 1] for a probability)."""

    series: Sequence[Series]
    x_title: str
    y_title: str
    title: str = ""
    x_ticks: Sequence[str] | None = None
    x_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class ColorScale:
    """What per-point colours mean: ``label`` from ``vmin`` (first stop) to ``vmax`` (last stop)."""

    label: str
    cmap: str
    vmin: float
    vmax: float
    stops: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True)
class Chart:
    """A graph: a title, panels laid out ``ncols`` to a row, an optional legend (below) and colour scale."""

    title: str
    panels: Sequence[Panel]
    ncols: int = 1
    legend: bool = True
    color_scale: ColorScale | None = None

    @classmethod
    def single(
        cls, title: str, x_title: str, y_title: str, series: Sequence[Series], **kwargs: object
    ) -> "Chart":
        """A one-panel chart; ``kwargs`` go to ``Panel`` (``x_ticks``, ``x_range``)."""
        return cls(
            title=title, panels=[Panel(series=list(series), x_title=x_title, y_title=y_title, **kwargs)]
        )  # type: ignore[arg-type]

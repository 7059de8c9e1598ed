"""Interactive HTML graphs (B6): one self-contained file per graph that opens offline in any browser.

The file holds the chart's data as JSON and a small inline script that draws it as SVG: hover shows the values under
the cursor, clicking a legend entry hides or shows that series, dragging across a panel zooms into that x range and a
double click zooms back out. Nothing is fetched at view time (no CDN, no fonts), so the graphs of a run folder can be
copied anywhere and still open; a plotting library that inlines its whole bundle would cost megabytes per file,
this costs a few kB plus the data.
"""

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slm_lab.lib.chart import Band, Chart, Intervals, Line, Panel, Points, Series
from slm_lab.lib.io_util import atomic_write

__all__ = ["chart_to_html", "chart_to_json", "write_html"]

_SIG_DIGITS = 7  # enough to read values back exactly at float32 precision, short enough to keep files small


def _num(v: Any) -> float | None:
    """JSON has no NaN/inf: a gap is ``null``."""
    f = float(v)
    return float(f"{f:.{_SIG_DIGITS}g}") if math.isfinite(f) else None


def _nums(values: Any) -> list[float | None]:
    return [_num(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def _series_json(s: Series, color: str) -> dict[str, Any]:
    if isinstance(s, Line):
        return {"type": "line", "label": s.label, "color": s.color or color, "x": _nums(s.x), "y": _nums(s.y)}
    if isinstance(s, Band):
        return {
            "type": "band",
            "label": s.label,
            "color": s.color or color,
            "x": _nums(s.x),
            "low": _nums(s.low),
            "high": _nums(s.high),
        }
    if isinstance(s, Points):
        out: dict[str, Any] = {
            "type": "points",
            "label": s.label,
            "color": s.color or color,
            "x": _nums(s.x),
            "y": _nums(s.y),
        }
        if s.colors is not None:
            out["colors"] = list(s.colors)
        if s.texts is not None:
            out["texts"] = [str(t) for t in s.texts]
        return out
    if isinstance(s, Intervals):
        return {
            "type": "intervals",
            "label": s.label,
            "color": s.color or color,
            "categories": [str(c) for c in s.categories],
            "low": _nums(s.low),
            "mid": _nums(s.mid),
            "high": _nums(s.high),
        }
    raise TypeError(f"unknown series type {type(s).__name__}")


def _panel_json(panel: Panel, palette: Sequence[str]) -> dict[str, Any]:
    series = [_series_json(s, palette[i % len(palette)]) for i, s in enumerate(panel.series)]
    out: dict[str, Any] = {
        "title": panel.title,
        "x_title": panel.x_title,
        "y_title": panel.y_title,
        "series": series,
    }
    if panel.x_ticks is not None:
        out["x_ticks"] = [str(t) for t in panel.x_ticks]
    if panel.x_range is not None:
        out["x_range"] = [float(panel.x_range[0]), float(panel.x_range[1])]
    return out


def chart_to_json(chart: Chart, palette: Sequence[str]) -> dict[str, Any]:
    """The data embedded in the HTML file: the chart with NaN as null and a colour for every series."""
    out: dict[str, Any] = {
        "title": chart.title,
        "ncols": max(1, int(chart.ncols)),
        "legend": chart.legend,
        "panels": [_panel_json(p, palette) for p in chart.panels],
    }
    if chart.color_scale is not None:
        cs = chart.color_scale
        out["color_scale"] = {
            "label": cs.label,
            "vmin": _num(cs.vmin),
            "vmax": _num(cs.vmax),
            "stops": list(cs.stops),
        }
    return out


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def chart_to_html(chart: Chart, palette: Sequence[str]) -> str:
    """The complete HTML document of ``chart``."""
    data = json.dumps(chart_to_json(chart, palette), allow_nan=False, separators=(",", ":"))
    # "<" only occurs inside JSON strings: as \u003c no label can end the data block or open a tag
    data = data.replace("<", "\\u003c")
    parts = {"TITLE": _escape_html(chart.title), "DATA": data, "SCRIPT": _SCRIPT}
    # one pass, so that a label containing a placeholder's name is never substituted
    return re.sub(r"__(TITLE|DATA|SCRIPT)__", lambda m: parts[m.group(1)], _TEMPLATE)


def write_html(chart: Chart, path: str | Path, palette: Sequence[str]) -> None:
    """Write ``chart`` as a self-contained HTML file (atomically)."""
    html = chart_to_html(chart, palette)
    atomic_write(path, lambda f: f.write(html))


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body{margin:16px;background:#fff;color:#222;font:13px system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif}
h1{font-size:15px;font-weight:600;margin:0 0 8px}
#panels{display:grid;gap:8px}
svg{display:block;user-select:none}
svg text{font-size:11px;fill:#444}
svg .ptitle{font-size:12px;fill:#222}
.grid line{stroke:#e5e5e5}
.axis{stroke:#888}
#legend{display:flex;flex-wrap:wrap;gap:4px 16px;margin:8px 0 0 60px}
#legend span{cursor:pointer;white-space:nowrap}
#legend span.off{opacity:.35}
#legend i{display:inline-block;width:14px;height:3px;margin:0 6px 3px 0;vertical-align:middle}
#scale{margin:8px 0 0 60px}
#scale div{width:240px;height:10px;margin:4px 0}
#tip{position:fixed;pointer-events:none;background:rgba(255,255,255,.95);border:1px solid #bbb;
border-radius:3px;padding:4px 6px;font-size:12px;display:none;white-space:nowrap;z-index:9}
#help{color:#888;font-size:11px;margin-top:8px}
</style>
</head>
<body>
<h1 id="title"></h1>
<div id="panels"></div>
<div id="legend"></div>
<div id="scale"></div>
<div id="help">Hover for values &middot; click a legend entry to hide it &middot; drag across a graph to zoom, \
double-click to reset</div>
<div id="tip"></div>
<noscript>This graph is drawn by JavaScript; the PNG file of the same name shows it without.</noscript>
<script type="application/json" id="chart-data">__DATA__</script>
<script>
__SCRIPT__
</script>
</body>
</html>
"""

_SCRIPT = r"""(function () {
"use strict";
var D = JSON.parse(document.getElementById("chart-data").textContent);
var NS = "http://www.w3.org/2000/svg";
var hidden = {};
var tip = document.getElementById("tip");
document.getElementById("title").textContent = D.title;
document.title = D.title;
var single = D.panels.length === 1;
var W = single ? 760 : 330, H = single ? 440 : 250;
var M = {l: 66, r: 34, t: 26, b: 46};
var box = document.getElementById("panels");
box.style.gridTemplateColumns = "repeat(" + D.ncols + ", " + W + "px)";

function el(tag, attrs, parent) {
  var e = document.createElementNS(NS, tag);
  for (var k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function fmt(v) {
  if (v === null || v === undefined) return "\u2013";
  var a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
  return String(+v.toPrecision(5));
}
function ticks(lo, hi, n) {
  var span = hi - lo, step = Math.pow(10, Math.floor(Math.log(span / n) / Math.LN10)), err = span / n / step;
  if (err >= 7.5) step *= 10; else if (err >= 3.5) step *= 5; else if (err >= 1.5) step *= 2;
  var out = [];
  for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}
function extent(vals, pad) {
  var lo = Infinity, hi = -Infinity;
  for (var i = 0; i < vals.length; i++) { var v = vals[i]; if (v !== null) { if (v < lo) lo = v; if (v > hi) hi = v; } }
  if (lo === Infinity) return [0, 1];
  if (hi === lo) { var d = Math.abs(lo) * 0.1 || 1; return [lo - d, hi + d]; }
  var p = (hi - lo) * pad;
  return [lo - p, hi + p];
}
function nearest(xs, x) {
  var lo = 0, hi = xs.length - 1;
  while (hi - lo > 1) { var mid = (lo + hi) >> 1; if (xs[mid] === null || xs[mid] < x) lo = mid; else hi = mid; }
  return (xs[hi] !== null && Math.abs(xs[hi] - x) < Math.abs(xs[lo] - x)) ? hi : lo;
}
function pathOf(xs, ys, sx, sy) {
  var d = "", pen = false;
  for (var i = 0; i < xs.length; i++) {
    if (xs[i] === null || ys[i] === null) { pen = false; continue; }
    d += (pen ? "L" : "M") + sx(xs[i]).toFixed(1) + "," + sy(ys[i]).toFixed(1);
    pen = true;
  }
  return d;
}
function bandOf(s, sx, sy) {
  var d = "", seg = [];
  function flush() {
    if (seg.length > 1) {
      d += "M" + seg.map(function (i) { return sx(s.x[i]).toFixed(1) + "," + sy(s.high[i]).toFixed(1); }).join("L");
      d += "L" + seg.slice().reverse().map(function (i) { return sx(s.x[i]).toFixed(1) + "," + sy(s.low[i]).toFixed(1); }).join("L") + "Z";
    }
    seg = [];
  }
  for (var i = 0; i < s.x.length; i++) {
    if (s.x[i] === null || s.low[i] === null || s.high[i] === null) flush(); else seg.push(i);
  }
  flush();
  return d;
}

function Panel(p) {
  this.p = p;
  this.zoom = null;
  this.svg = el("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H});
  box.appendChild(this.svg);
}
Panel.prototype.domains = function (vis) {
  var p = this.p, z = this.zoom, xs = [], ys = [], cats = 0;
  vis.forEach(function (s) {
    if (s.type === "intervals") { xs = xs.concat(s.low, s.high); cats = Math.max(cats, s.categories.length); return; }
    for (var i = 0; i < s.x.length; i++) {
      var x = s.x[i];
      if (x === null || (z && (x < z[0] || x > z[1]))) continue;
      xs.push(x);
      if (s.type === "band") { ys.push(s.low[i]); ys.push(s.high[i]); } else ys.push(s.y[i]);
    }
  });
  var scatter = vis.some(function (s) { return s.type === "points"; });
  var xd = z || p.x_range || (p.x_ticks ? [-0.5, p.x_ticks.length - 0.5] : extent(xs, scatter ? 0.05 : 0));
  var yd = cats ? [cats - 0.5, -0.5] : extent(ys, 0.05);
  return {x: xd, y: yd, cats: cats};
};
Panel.prototype.draw = function () {
  var self = this, p = this.p, svg = this.svg;
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  var vis = p.series.filter(function (s) { return !hidden[s.label]; });
  var dom = this.domains(vis);
  var cats = null;
  vis.forEach(function (s) { if (s.type === "intervals") cats = s.categories; });
  var longest = cats ? Math.max.apply(null, cats.map(function (c) { return c.length; })) : 0;
  var x0 = Math.max(M.l, 7 * longest + 16), x1 = W - M.r, y0 = H - M.b, y1 = M.t;
  var sx = function (v) { return x0 + (v - dom.x[0]) / (dom.x[1] - dom.x[0]) * (x1 - x0); };
  var sy = function (v) { return y0 - (v - dom.y[0]) / (dom.y[1] - dom.y[0]) * (y0 - y1); };
  this.sx = sx; this.x0 = x0; this.x1 = x1; this.dom = dom;
  var clipId = "clip" + Math.random().toString(36).slice(2);
  el("rect", {x: x0, y: y1, width: x1 - x0, height: y0 - y1}, el("clipPath", {id: clipId}, el("defs", {}, svg)));
  if (p.title) el("text", {x: (x0 + x1) / 2, y: 16, "text-anchor": "middle", "class": "ptitle"}, svg).textContent = p.title;
  var grid = el("g", {"class": "grid"}, svg);
  var xt = p.x_ticks ? p.x_ticks.map(function (_, i) { return i; }) : ticks(dom.x[0], dom.x[1], single ? 8 : 4);
  xt.forEach(function (v) {
    if (v < Math.min(dom.x[0], dom.x[1]) || v > Math.max(dom.x[0], dom.x[1])) return;
    el("line", {x1: sx(v), x2: sx(v), y1: y0, y2: y1}, grid);
    el("text", {x: sx(v), y: y0 + 16, "text-anchor": "middle"}, svg).textContent = p.x_ticks ? p.x_ticks[v] : fmt(v);
  });
  var yt = cats ? cats.map(function (_, i) { return i; }) : ticks(Math.min(dom.y[0], dom.y[1]), Math.max(dom.y[0], dom.y[1]), single ? 6 : 4);
  yt.forEach(function (v) {
    if (!cats) el("line", {x1: x0, x2: x1, y1: sy(v), y2: sy(v)}, grid);
    el("text", {x: x0 - 6, y: sy(v) + 4, "text-anchor": "end"}, svg).textContent = cats ? cats[v] : fmt(v);
  });
  el("line", {x1: x0, x2: x1, y1: y0, y2: y0, "class": "axis"}, svg);
  el("line", {x1: x0, x2: x0, y1: y0, y2: y1, "class": "axis"}, svg);
  el("text", {x: (x0 + x1) / 2, y: H - 8, "text-anchor": "middle"}, svg).textContent = p.x_title;
  el("text", {x: 14, y: (y0 + y1) / 2, "text-anchor": "middle", transform: "rotate(-90 14 " + (y0 + y1) / 2 + ")"}, svg).textContent = p.y_title;
  var g = el("g", {"clip-path": "url(#" + clipId + ")"}, svg);
  vis.forEach(function (s) {
    if (s.type === "band") el("path", {d: bandOf(s, sx, sy), fill: s.color, "fill-opacity": 0.15}, g);
    else if (s.type === "line") el("path", {d: pathOf(s.x, s.y, sx, sy), fill: "none", stroke: s.color, "stroke-width": 1.5}, g);
    else if (s.type === "points") {
      s.x.forEach(function (x, i) {
        if (x === null || s.y[i] === null) return;
        var c = el("circle", {cx: sx(x), cy: sy(s.y[i]), r: single ? 4 : 3.5, fill: s.colors ? s.colors[i] : s.color, stroke: "#555", "stroke-width": 0.4}, g);
        el("title", {}, c).textContent = (s.texts ? s.texts[i] + "\n" : "") + p.x_title + ": " + (p.x_ticks ? p.x_ticks[x] : fmt(x)) + "\n" + p.y_title + ": " + fmt(s.y[i]);
      });
    } else if (s.type === "intervals") {
      s.categories.forEach(function (c, i) {
        if (s.low[i] === null || s.high[i] === null) return;
        var bar = el("g", {}, g);
        el("line", {x1: sx(s.low[i]), x2: sx(s.high[i]), y1: sy(i), y2: sy(i), stroke: s.color, "stroke-width": 10, "stroke-opacity": 0.45}, bar);
        if (s.mid[i] !== null) el("circle", {cx: sx(s.mid[i]), cy: sy(i), r: 4, fill: s.color}, bar);
        el("title", {}, bar).textContent = c + ": " + fmt(s.mid[i]) + " [" + fmt(s.low[i]) + ", " + fmt(s.high[i]) + "]";
      });
    }
  });
  if (p.x_ticks || cats) return;  // categorical axes: native tooltips only, no zoom
  var guide = el("line", {y1: y0, y2: y1, stroke: "#999", "stroke-dasharray": "3,3", visibility: "hidden"}, svg);
  var sel = el("rect", {y: y1, height: y0 - y1, fill: "#1f77b4", "fill-opacity": 0.12, visibility: "hidden"}, svg);
  var overlay = el("rect", {x: x0, y: y1, width: x1 - x0, height: y0 - y1, fill: "transparent"}, svg);
  var drag = null;
  function mx(ev) { var r = svg.getBoundingClientRect(); return Math.max(x0, Math.min(x1, ev.clientX - r.left)); }
  function xval(px) { return dom.x[0] + (px - x0) / (x1 - x0) * (dom.x[1] - dom.x[0]); }
  overlay.addEventListener("mousedown", function (ev) { drag = mx(ev); ev.preventDefault(); });
  overlay.addEventListener("mousemove", function (ev) {
    var px = mx(ev), x = xval(px), rows = [];
    guide.setAttribute("x1", px); guide.setAttribute("x2", px); guide.setAttribute("visibility", "visible");
    if (drag !== null) { sel.setAttribute("x", Math.min(drag, px)); sel.setAttribute("width", Math.abs(px - drag)); sel.setAttribute("visibility", "visible"); }
    var xv = null;
    vis.forEach(function (s) {
      if (s.type !== "line" && s.type !== "band") return;
      var i = nearest(s.x, x);
      if (xv === null) xv = s.x[i];
      var v = s.type === "line" ? fmt(s.y[i]) : fmt(s.low[i]) + " \u2013 " + fmt(s.high[i]);
      rows.push("<span style=\"color:" + s.color + "\">\u25A0</span> " + s.label.replace(/</g, "&lt;") + ": " + v);
    });
    if (!rows.length) return;
    tip.innerHTML = "<b>" + p.x_title.replace(/</g, "&lt;") + ": " + fmt(xv) + "</b><br>" + rows.join("<br>");
    tip.style.display = "block";
    tip.style.left = (ev.clientX + 14) + "px"; tip.style.top = (ev.clientY + 10) + "px";
  });
  overlay.addEventListener("mouseleave", function () { guide.setAttribute("visibility", "hidden"); tip.style.display = "none"; drag = null; sel.setAttribute("visibility", "hidden"); });
  overlay.addEventListener("mouseup", function (ev) {
    var px = mx(ev);
    if (drag !== null && Math.abs(px - drag) > 5) { var a = xval(Math.min(drag, px)), b = xval(Math.max(drag, px)); self.zoom = [a, b]; self.draw(); tip.style.display = "none"; }
    drag = null; sel.setAttribute("visibility", "hidden");
  });
  overlay.addEventListener("dblclick", function () { self.zoom = null; self.draw(); });
};

var panels = D.panels.map(function (p) { return new Panel(p); });
function drawAll() { panels.forEach(function (p) { p.draw(); }); }
if (D.legend) {
  var seen = {}, legend = document.getElementById("legend");
  D.panels.forEach(function (p) {
    p.series.forEach(function (s) {
      if (seen[s.label]) return;
      seen[s.label] = true;
      var item = document.createElement("span");
      var sw = document.createElement("i");
      sw.style.background = s.color;
      if (s.type === "band") sw.style.opacity = 0.35;
      item.appendChild(sw);
      item.appendChild(document.createTextNode(s.label));
      item.addEventListener("click", function () { hidden[s.label] = !hidden[s.label]; item.className = hidden[s.label] ? "off" : ""; drawAll(); });
      legend.appendChild(item);
    });
  });
}
if (D.color_scale) {
  var cs = D.color_scale, scale = document.getElementById("scale");
  scale.textContent = "colour: " + cs.label;
  var bar = document.createElement("div");
  bar.style.background = "linear-gradient(to right, " + cs.stops.join(", ") + ")";
  scale.appendChild(bar);
  scale.appendChild(document.createTextNode(fmt(cs.vmin) + " \u2026 " + fmt(cs.vmax)));
}
drawAll();
})();"""

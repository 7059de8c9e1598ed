"""Shared fixtures: every test writes run outputs under its own tmp folder, never the repo's data/."""

import base64
import json
import os
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
# local Ray clusters of the tests start without the dashboard, which only costs start-up time here; the one test
# of the dashboard turns it on
os.environ.setdefault("SLM_RAY_DASHBOARD", "false")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data folder used as SLM_DATA_DIR, with the cwd moved to tmp_path."""
    out = tmp_path / "data"
    monkeypatch.setenv("SLM_DATA_DIR", str(out))
    monkeypatch.chdir(tmp_path)
    return out


class _GraphHTMLParser(HTMLParser):
    """Collects the tags of a graph page and any reference to another file or URL."""

    def __init__(self) -> None:
        super().__init__()
        self.open_tags: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.open_tags.append(tag)
        self.external += [f"{tag} {k}={v}" for k, v in attrs if k in ("src", "href")]


def _decoded(value: Any) -> Any:
    """``value`` with every array that plotly wrote as base64 (``{"dtype", "bdata"}``) as a list, NaN as None."""
    if isinstance(value, dict) and set(value) >= {"dtype", "bdata"}:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return [None if np.isnan(v) else float(v) for v in array.astype(np.float64)]
    if isinstance(value, dict):
        return {k: _decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    return value


def _plotly_figure(text: str) -> dict:
    """The data and layout of the ``Plotly.newPlot(id, data, layout, config)`` call of a graph page."""
    decoder = json.JSONDecoder()
    pos = text.index("Plotly.newPlot(") + len("Plotly.newPlot(")
    args = []
    for _ in range(3):  # the div id, the data, the layout
        while text[pos] in " ,\n":
            pos += 1
        arg, pos = decoder.raw_decode(text, pos)
        args.append(arg)
    return {"data": _decoded(args[1]), "layout": _decoded(args[2])}


def _check_png(path: Path) -> dict:
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        image.load()
        assert image.width >= 600 and image.height >= 400, image.size
        return {"size": image.size}


def _check_html(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>"), f"{path} is not an HTML document"
    parser = _GraphHTMLParser()
    parser.feed(text)
    parser.close()
    assert {"html", "head", "body", "script"} <= set(parser.open_tags)
    # plotly.js is the one file a page loads, from its own folder
    assert parser.external == ["script src=plotly.min.js"], f"{path} refers to other files: {parser.external}"
    assert (path.parent / "plotly.min.js").is_file(), f"{path} has no plotly.min.js beside it"
    figure = _plotly_figure(text)
    assert figure["layout"]["title"]["text"] and figure["data"], figure
    return figure


@pytest.fixture
def check_graph() -> Callable[[Path | str], dict]:
    """Assert that a graph file is a loadable PNG (signature, decodes) or a plotly HTML page (parses, draws a
    titled figure, loads nothing but the plotly.min.js beside it). Returns the PNG size or the figure's data and
    layout, arrays as lists with NaN as None."""

    def check(path: Path | str) -> dict:
        path = Path(path)
        assert path.is_file(), f"missing graph {path}"
        return _check_png(path) if path.suffix == ".png" else _check_html(path)

    return check

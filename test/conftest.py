"""Shared fixtures: every test writes run outputs under its own tmp folder, never the repo's data/."""

import json
import os
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

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
    """Collects the tags of a graph page, its embedded chart data, and any reference to another file or URL."""

    def __init__(self) -> None:
        super().__init__()
        self.open_tags: list[str] = []
        self.external: list[str] = []
        self.chart_json: str | None = None
        self._in_data = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.open_tags.append(tag)
        self.external += [f"{tag} {k}={v}" for k, v in attrs if k in ("src", "href")]
        self._in_data = tag == "script" and ("id", "chart-data") in attrs

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.chart_json = (self.chart_json or "") + data

    def handle_endtag(self, tag: str) -> None:
        self._in_data = False


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
    assert not parser.external, f"{path} refers to other files: {parser.external}"
    assert parser.chart_json is not None, f"{path} has no chart data"
    chart = json.loads(parser.chart_json)
    assert chart["title"] and chart["panels"], chart
    return chart


@pytest.fixture
def check_graph() -> Callable[[Path | str], dict]:
    """Assert that a graph file is a loadable PNG (signature, decodes) or a self-contained HTML page (parses, holds
    its chart data, refers to nothing outside itself). Returns the PNG size or the chart data."""

    def check(path: Path | str) -> dict:
        path = Path(path)
        assert path.is_file(), f"missing graph {path}"
        return _check_png(path) if path.suffix == ".png" else _check_html(path)

    return check

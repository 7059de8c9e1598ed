"""Shared fixtures: every test writes run outputs under its own tmp folder, never the repo's data/; helpers that
build an env and an agent from a spec, roll them out and start a session; graph checks."""

import base64
import copy
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


def _build_env_agent(
    spec: dict[str, Any],
    mode: str = "train",
    seed: int = 0,
    *,
    validate: bool = False,
    seed_numpy: bool = False,
) -> tuple[Any, Any]:
    """The env and the agent of ``spec`` on the CPU. ``validate`` first checks the spec as the loader does; torch's
    global RNG (and numpy's with ``seed_numpy``) is then seeded with ``seed``, so that the nets start the same."""
    import torch

    from slm_lab.agent import build_agent
    from slm_lab.env import make_env
    from slm_lab.spec.loader import validate_spec

    if validate:
        validate_spec(spec)
    torch.manual_seed(seed)
    if seed_numpy:
        np.random.seed(seed)
    env = make_env(spec)
    return env, build_agent(spec, env, mode, torch.device("cpu"))


def _rollout(env: Any, agent: Any, vector_steps: int, seed: int = 0) -> None:
    """The session's loop without its checkpoints: reset with ``seed``, then act, step and update the agent for
    ``vector_steps`` vector steps (the agent trains whenever its memory is ready)."""
    state = env.reset(seed=seed)
    for _ in range(vector_steps):
        action = agent.act(state)
        step = env.step(action)
        agent.update(state, action, step)
        state = step.obs


def _start_session(spec: dict[str, Any], mode: str = "train") -> Any:
    """A Session of ``spec`` as a trial starts its first one: ``spec`` is ticked for a trial and a session in place,
    so that it holds the prepaths the run writes to, and the session gets its own copy of it."""
    from slm_lab.experiment.control import Session
    from slm_lab.spec.loader import tick

    tick(spec, "trial")
    tick(spec, "session")
    return Session(copy.deepcopy(spec), mode)


@pytest.fixture
def build_env_agent() -> Callable[..., tuple[Any, Any]]:
    """``build_env_agent(spec, mode="train", seed=0, *, validate=False, seed_numpy=False) -> (env, agent)``."""
    return _build_env_agent


@pytest.fixture
def rollout() -> Callable[..., None]:
    """``rollout(env, agent, vector_steps, seed=0)``: act, step and update for that many vector steps."""
    return _rollout


@pytest.fixture
def start_session() -> Callable[..., Any]:
    """``start_session(spec, mode="train") -> Session``, with ``spec`` ticked for a trial and a session."""
    return _start_session


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

"""Shared fixtures: every test writes run outputs under its own tmp folder, never the repo's data/."""

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data folder used as SLM_DATA_DIR, with the cwd moved to tmp_path."""
    out = tmp_path / "data"
    monkeypatch.setenv("SLM_DATA_DIR", str(out))
    monkeypatch.chdir(tmp_path)
    return out

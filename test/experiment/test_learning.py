"""Longer learning tests (marker ``slow``; run with ``uv run pytest -m slow``)."""

import copy
from pathlib import Path

import pytest

from slm_lab.experiment.control import Session
from slm_lab.spec.loader import get_spec, override_spec, tick


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_ppo_demo_solves_cartpole_in_200k_frames(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """The demo spec reaches a 100-checkpoint moving average of at least 400 by its 200k-frame budget."""
    monkeypatch.setenv("PY_ENV", "test")
    spec = override_spec(get_spec(), "train")
    spec["meta"].update(max_session=1, random_seed=seed)
    tick(spec, "trial")
    tick(spec, "session")
    session = Session(copy.deepcopy(spec), "train")
    session.run()
    df = session.tracker.df
    assert df["frame"].iloc[-1] == 200_000
    assert df["total_reward_ma"].iloc[-1] >= 400, df["total_reward_ma"].tail(5).tolist()

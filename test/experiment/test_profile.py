"""Where a session's time goes: phase times (bin/benchmark), and --profile's traces and summary."""

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slm_lab.cli.main import app
from slm_lab.experiment.control import Session
from slm_lab.experiment.profile import PHASES, PhaseTimer

from .test_control import run_session, session_spec


class _Busy:
    """Methods that sleep, one calling another, to check what each phase is charged."""

    def outer(self) -> None:
        time.sleep(0.02)
        self.inner()

    def inner(self) -> None:
        time.sleep(0.01)


def test_a_nested_call_is_charged_once_to_the_outer_phase() -> None:
    timer = PhaseTimer()
    busy = _Busy()
    timer.wrap(busy, "outer", "checkpoint")
    timer.wrap(busy, "inner", "act")
    busy.outer()
    assert timer.seconds["act"] == 0.0
    assert timer.seconds["checkpoint"] >= 0.03
    busy.inner()
    assert 0.01 <= timer.seconds["act"] < 0.03


def test_phase_shares_cover_the_session(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PY_ENV", "test")
    spec = session_spec(1024)
    session = Session(spec, "train")
    timer = PhaseTimer().attach(session)
    session.run()
    shares = timer.shares()
    assert set(shares) == {*PHASES, "other"}
    assert sum(shares.values()) == pytest.approx(1.0)
    # a PPO session acts, steps, stores and trains every run; nothing is charged twice
    assert all(shares[p] > 0 for p in ("act", "env", "memory", "train", "checkpoint", "analysis"))
    assert timer.steps == 1024 // session.env.num_envs


def test_without_profile_nothing_is_wrapped_or_written(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PY_ENV", "test")
    monkeypatch.delenv("PROFILE", raising=False)
    spec = session_spec(256)
    session = Session(spec, "train")
    assert session.profiler is None
    assert "step" not in vars(session.env) and "act" not in vars(session.agent.algorithm)
    session.run()
    assert not (Path(spec["meta"]["predir"]) / "profiler").exists()


def test_profile_writes_a_trace_and_a_summary(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PY_ENV", "test")
    monkeypatch.setenv("PROFILE", "true")
    spec = session_spec(2048)
    run_session(spec)
    folder = Path(spec["meta"]["predir"]) / "profiler"
    traces = list(folder.glob("*.pt.trace.json"))
    assert len(traces) == 1
    events = json.loads(traces[0].read_text())["traceEvents"]
    names = {e.get("name") for e in events}
    assert {"lab/act", "lab/env", "lab/train"} <= names  # the lab's phases are ranges in the trace
    summary = (folder / f"{Path(spec['meta']['prepath']).name}_summary.txt").read_text()
    for phase in PHASES:
        assert f"\n{phase} " in summary
    assert "Top operators" in summary and "aten::" in summary


def test_profile_is_refused_for_a_search() -> None:
    result = CliRunner().invoke(
        app, ["run", "slm_lab/spec/benchmark/ppo/ppo_cartpole.json", "ppo_cartpole", "search", "--profile"]
    )
    assert result.exit_code == 1
    assert "--profile" in result.output and "search" in result.output

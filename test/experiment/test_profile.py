"""Where a session's time goes: phase times (bin/benchmark), and --profile's traces and summary."""

import json
import os
import subprocess
import sys
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
    figures = json.loads((folder / f"{Path(spec['meta']['prepath']).name}_summary.json").read_text())
    assert set(figures["phases"]) == {*PHASES, "other"}
    assert sum(row["share"] for row in figures["phases"].values()) == pytest.approx(1.0)
    assert figures["env_steps"] == 2048 // 2 and figures["peak_rss_mb"] > 0
    assert figures["top_ops"] and all(op["calls"] > 0 for op in figures["top_ops"])


def test_train_with_profile_runs_one_session_as_dev_and_writes_the_trial_summary(tmp_path: Path) -> None:
    """A fresh ``train --profile`` takes dev's overrides (one session of the fixture's two) and the trial gathers
    its sessions' figures into profiler_summary.json and a self-contained dashboard."""
    env = {**os.environ, "SLM_DATA_DIR": str(tmp_path / "data")}
    env.pop("PY_ENV", None)
    spec_file = Path(__file__).resolve().parents[1] / "fixtures" / "ppo_cartpole_tiny.json"
    args = ["run", str(spec_file), "ppo_cartpole_tiny", "train", "--profile", "-s", "max_frame=600"]
    out = subprocess.run(
        [sys.executable, "-m", "slm_lab.cli.main", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    (predir,) = (tmp_path / "data").iterdir()
    sessions = sorted(p.name for p in (predir / "info").glob("*_session_df_train.csv"))
    assert sessions == ["ppo_cartpole_tiny_t0_s0_session_df_train.csv"]
    summary = json.loads((predir / "profiler" / "profiler_summary.json").read_text())
    assert summary["trial"] == "ppo_cartpole_tiny_t0"
    assert [s["session"] for s in summary["sessions"]] == ["ppo_cartpole_tiny_t0_s0"]
    page = (predir / "profiler" / "profiling_dashboard.html").read_text()
    assert "ppo_cartpole_tiny_t0_s0" in page and "<script" not in page and "http" not in page


def test_profile_is_refused_for_a_search() -> None:
    result = CliRunner().invoke(
        app, ["run", "slm_lab/spec/benchmark/ppo/ppo_cartpole.json", "ppo_cartpole", "search", "--profile"]
    )
    assert result.exit_code == 1
    assert "--profile" in result.output and "search" in result.output

"""Trial behaviour: its session pool's messages, the means it reports, and its analysis."""

import copy
import dataclasses
import math
import pickle
import signal
from pathlib import Path

import pandas as pd
import pytest

from slm_lab.errors import Interrupted, SessionFailed
from slm_lab.experiment import analysis
from slm_lab.experiment.control import Session, Trial, max_parallel_sessions
from slm_lab.experiment.trial import (
    CheckpointReport,
    SessionDone,
    SessionError,
    SessionFailure,
    SessionInterrupted,
    _CheckpointMeans,
    _receive,
)
from slm_lab.experiment.trial_analysis import TrialAnalysis

from .test_control import session_spec


def test_session_messages_cross_processes_and_end_the_trial_with_their_error() -> None:
    """The messages pickle (the queue between processes) and stay frozen; a finished session files its metrics,
    the other endings raise the error of the session in the trial."""
    results: dict = {}
    done = pickle.loads(pickle.dumps(SessionDone(1, {"scalar": {"strength": 1.0}})))
    _receive(done, None, results)
    assert results == {1: {"scalar": {"strength": 1.0}}}
    with pytest.raises(dataclasses.FrozenInstanceError):
        done.session = 2  # type: ignore[misc]
    with pytest.raises(Interrupted, match="stopped by SIGTERM") as stopped:
        _receive(SessionInterrupted(0, signal.SIGTERM, "session 0 stopped by SIGTERM"), None, results)
    assert stopped.value.signum == signal.SIGTERM
    with pytest.raises(SessionFailed, match="session 0 failed at frame 64"):
        _receive(SessionFailure(0, "session 0 failed at frame 64: ValueError"), None, results)
    with pytest.raises(RuntimeError, match="session 2 failed:\nTraceback"):
        _receive(SessionError(2, "Traceback (most recent call last): ..."), None, results)


def test_checkpoint_means_pair_the_sessions_checkpoints_by_their_order() -> None:
    """B2: a checkpoint is reported once every session reached it, at the latest frame, with the mean MA of the
    sessions that have one; one no session has an MA for is not reported."""
    reports: list = []
    means = _CheckpointMeans(2, lambda *r: reports.append(r))
    for report in (
        CheckpointReport(0, 256, math.nan, None),
        CheckpointReport(0, 512, 10.0, None),
        CheckpointReport(1, 258, math.nan, None),
        CheckpointReport(1, 514, 30.0, None),
        CheckpointReport(0, 768, 20.0, None),
        CheckpointReport(1, 770, math.nan, None),
    ):
        _receive(report, means, {})
    assert reports == [(514, 20.0, None), (770, 20.0, None)]


def test_trial_analysis_refreshes_from_the_session_files_written_so_far(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session's TrialAnalysis writes nothing before any session file exists, then the trial metrics of the
    session files on disk."""
    monkeypatch.setenv("PY_ENV", "test")
    spec = session_spec(1000)
    trial_analysis = TrialAnalysis.for_session(spec)
    trial_metrics = Path(f"{trial_analysis.spec['meta']['info_prepath']}_trial_metrics.json")
    trial_analysis.refresh("train")
    assert not trial_metrics.exists()
    df = pd.DataFrame({"total_reward": [10.0, 20.0, 30.0], "frame": [256, 512, 768], "opt_step": [8, 16, 24]})
    session_metrics = analysis.analyze_session(spec, df, "train", plot=False)
    trial_analysis.refresh("train")
    written = analysis.load_trial_metrics(trial_analysis.spec, spec["meta"]["trial"])
    assert written is not None and written["local"]["mean_returns"] == [
        session_metrics["local"]["mean_returns"]
    ]
    assert written["scalar"]["strength"] == session_metrics["scalar"]["strength"]


def test_session_0_refreshes_its_trial_files_when_its_graphs_are_due(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With graphs due at every checkpoint, session 0 rewrites the trial files at each checkpoint that analyses
    (the third row on), so that a trial stopped early has them; its final analysis leaves them to the trial."""
    from slm_lab.experiment import session as session_module

    monkeypatch.setenv("PY_ENV", "test")
    monkeypatch.setattr(session_module, "GRAPH_INTERVAL", 0.0)
    calls = []
    original = analysis.analyze_trial
    monkeypatch.setattr(analysis, "analyze_trial", lambda *a, **k: calls.append(1) or original(*a, **k))
    spec = session_spec(1000)  # rows at 256, 512, 768 and 1000 frames
    Session(copy.deepcopy(spec), "train").run()
    assert len(calls) == 2
    assert Path(f"{spec['meta']['info_prepath'].rsplit('_s', 1)[0]}_trial_metrics.json").is_file()


def test_a_trial_analyses_itself_once_at_its_end(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints within GRAPH_INTERVAL of each other leave the trial files to the trial's final analysis."""
    monkeypatch.setenv("PY_ENV", "test")
    calls = []
    original = analysis.analyze_trial
    monkeypatch.setattr(analysis, "analyze_trial", lambda *a, **k: calls.append(1) or original(*a, **k))
    spec = session_spec(1000)
    Trial(spec, "train").run()
    assert len(calls) == 1
    assert Path(f"{spec['meta']['info_prepath'].rsplit('_s', 1)[0]}_trial_metrics.json").is_file()


def test_max_parallel_sessions_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_MAX_PARALLEL", "3")
    assert max_parallel_sessions(8) == 3
    assert max_parallel_sessions(2) == 2
    monkeypatch.delenv("SLM_MAX_PARALLEL")
    assert 1 <= max_parallel_sessions(64) <= 64

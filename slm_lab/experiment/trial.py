"""Trial: the sessions of one spec with different seeds, run in a pool of processes, then the trial analysis.

A session in a process of its own talks to its trial through a queue of typed messages: a ``CheckpointReport`` per
checkpoint (only when the trial reports to a search scheduler), then exactly one of ``SessionDone``,
``SessionInterrupted``, ``SessionFailure`` or ``SessionError``. They are frozen dataclasses, pickled across the
processes.
"""

import copy
import os
import queue
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import numpy as np
from loguru import logger

from slm_lab.errors import Interrupted, SessionFailed
from slm_lab.experiment import analysis
from slm_lab.experiment.profile import profile_enabled, write_trial_profile
from slm_lab.experiment.session import Session, SessionReporter
from slm_lab.experiment.signals import raise_interrupted, signal_handler
from slm_lab.experiment.trial_analysis import TrialAnalysis
from slm_lab.lib.logger import add_file_sink, remove_sink, setup_logging
from slm_lab.spec.loader import save_spec, tick

__all__ = [
    "CheckpointReport",
    "SessionDone",
    "SessionError",
    "SessionFailure",
    "SessionInterrupted",
    "SessionMessage",
    "Trial",
    "TrialReporter",
    "max_parallel_sessions",
]

# (frame, mean total_reward_ma over the sessions, trial metrics {scalar, local} or None), called by a trial at each
# checkpoint its sessions have all reached
TrialReporter = Callable[[int, float, dict[str, Any] | None], None]


@dataclass(frozen=True)
class CheckpointReport:
    """Session ``session`` reached a checkpoint at ``frame``: its ``total_reward_ma`` and its {scalar, local}
    metrics (None before it has three rows)."""

    session: int
    frame: int
    ma: float
    metrics: dict[str, Any] | None


@dataclass(frozen=True)
class SessionDone:
    """Session ``session`` finished; ``metrics`` are the {scalar, local} metrics the trial is judged on."""

    session: int
    metrics: dict[str, Any]


@dataclass(frozen=True)
class SessionInterrupted:
    """Session ``session`` was stopped by signal ``signum`` and saved its state (``Interrupted``)."""

    session: int
    signum: int
    message: str


@dataclass(frozen=True)
class SessionFailure:
    """The env or the agent of session ``session`` raised; its state is saved, ``message`` says so in one line
    (``SessionFailed``)."""

    session: int
    message: str


@dataclass(frozen=True)
class SessionError:
    """Session ``session`` stopped on any other exception; ``traceback`` is its formatted traceback."""

    session: int
    traceback: str


SessionMessage = CheckpointReport | SessionDone | SessionInterrupted | SessionFailure | SessionError


def max_parallel_sessions(max_session: int) -> int:
    """At most min(max_session, CPU count) concurrent session processes; ``SLM_MAX_PARALLEL`` overrides (D26).
    Inside a search trial the CPU count is the trial's share (``SLM_CPUS``)."""
    cap = int(os.environ.get("SLM_MAX_PARALLEL") or os.environ.get("SLM_CPUS") or (os.cpu_count() or 1))
    return max(1, min(max_session, cap))


def checkpoint_reporter(index: int, send: Callable[[CheckpointReport], None]) -> SessionReporter:
    """The reporter of session ``index`` that sends each of its checkpoints to ``send`` as a ``CheckpointReport``."""

    def reporter(frame: int, ma: float, metrics: dict[str, Any] | None) -> None:
        send(CheckpointReport(index, frame, ma, metrics))

    return reporter


def _session_process(
    spec: dict[str, Any], mode: str, concurrent_sessions: int, parent_pid: int, messages: Any, report: bool
) -> None:
    """Entry point of a spawned session process; it puts its ``SessionMessage``s on ``messages``: with ``report``,
    a ``CheckpointReport`` per checkpoint; then how it ended."""
    setup_logging()
    index = spec["meta"]["session"]
    reporter = checkpoint_reporter(index, messages.put) if report else None
    try:
        session = Session(spec, mode, concurrent_sessions, reporter=reporter, parent_pid=parent_pid)
        metrics = session.run()
    except Interrupted as e:
        messages.put(SessionInterrupted(index, e.signum, str(e)))
        return
    except SessionFailed as e:
        messages.put(SessionFailure(index, str(e)))
        return
    except BaseException as e:
        messages.put(SessionError(index, "".join(traceback.format_exception(e))))
        raise
    messages.put(SessionDone(index, metrics))


class _CheckpointMeans:
    """Pairs the sessions' checkpoints by their order and reports each one all sessions have reached: the mean
    of their ``total_reward_ma`` (sessions still without an episode are left out; none at all: not reported) and
    the trial metrics of their latest session metrics (B2)."""

    def __init__(self, num_sessions: int, reporter: TrialReporter) -> None:
        self.num_sessions = num_sessions
        self.reporter = reporter
        self.counts = [0] * num_sessions
        self.pending: dict[int, dict[int, tuple[int, float]]] = {}
        self.latest: dict[int, dict[str, Any]] = {}

    def add(self, report: CheckpointReport) -> None:
        session = report.session
        ordinal = self.counts[session]
        self.counts[session] += 1
        if report.metrics is not None:
            self.latest[session] = report.metrics
        reached = self.pending.setdefault(ordinal, {})
        reached[session] = (report.frame, report.ma)
        if len(reached) < self.num_sessions:
            return
        del self.pending[ordinal]
        mas = np.array([ma for _, ma in reached.values()], dtype=np.float64)
        if np.isnan(mas).all():
            return
        trial_metrics = None
        if len(self.latest) == self.num_sessions:
            trial_metrics = analysis.calc_trial_metrics([self.latest[s] for s in range(self.num_sessions)])
        self.reporter(max(f for f, _ in reached.values()), float(np.nanmean(mas)), trial_metrics)


def _receive(
    message: SessionMessage, means: _CheckpointMeans | None, results: dict[int, dict[str, Any]]
) -> None:
    """Act on one message of a session process: a checkpoint goes to ``means``, a session's metrics to
    ``results``; a session that did not finish stops the trial with its error."""
    match message:
        case CheckpointReport():
            assert means is not None, "sessions report their checkpoints only to a trial that reports means"
            means.add(message)
        case SessionDone(session=index, metrics=metrics):
            results[index] = metrics
        case SessionInterrupted(signum=signum, message=text):
            raise Interrupted(signum, text)
        case SessionFailure(message=text):
            raise SessionFailed(text)
        case SessionError(session=index, traceback=text):
            raise RuntimeError(f"session {index} failed:\n{text}")


class Trial:
    """``max_session`` sessions of one spec with different seeds, then the trial analysis."""

    def __init__(
        self, spec: dict[str, Any], mode: str = "train", reporter: TrialReporter | None = None
    ) -> None:
        self.spec = spec
        self.mode = mode
        # with a reporter (a search trial under a scheduler), every session runs at once and the reporter gets the
        # mean of their checkpoints (B2)
        self.reporter = reporter
        self.metrics: dict[str, Any] | None = None  # {scalar, local} once the trial has run
        meta = spec["meta"]
        self.index = meta["trial"]
        self.log_sink = add_file_sink(f"{meta['log_prepath']}.log")
        save_spec(spec, "trial")

    def session_specs(self) -> list[dict[str, Any]]:
        spec = copy.deepcopy(self.spec)
        specs = []
        for _ in range(spec["meta"]["max_session"]):
            tick(spec, "session")
            specs.append(copy.deepcopy(spec))
        return specs

    def run_sessions(self) -> list[dict[str, Any]]:
        specs = self.session_specs()
        means = None if self.reporter is None else _CheckpointMeans(len(specs), self.reporter)
        if len(specs) == 1:  # in-process
            report = None if means is None else checkpoint_reporter(0, means.add)
            return [Session(specs[0], self.mode, reporter=report).run()]
        # with a reporter (a search trial under a scheduler) every session runs at once, for the means (B2)
        limit = len(specs) if means is not None else max_parallel_sessions(len(specs))
        return self.run_session_processes(specs, limit, means)

    def run_session_processes(
        self, specs: list[dict[str, Any]], limit: int, means: _CheckpointMeans | None
    ) -> list[dict[str, Any]]:
        """Each session in its own spawned process, at most ``limit`` at a time; checkpoints go to ``means`` as
        they arrive. When the trial stops (Ctrl-C, SIGTERM, a failed or interrupted session) the running
        sessions get SIGTERM, save their state and stop, and the ones not started yet never start."""
        ctx = get_context("spawn")
        messages = ctx.Queue()
        n = len(specs)
        procs: dict[int, Any] = {}
        results: dict[int, dict[str, Any]] = {}
        try:
            with signal_handler(raise_interrupted, signal.SIGTERM):
                while len(results) < n:
                    while len(procs) < n and len(procs) - len(results) < limit:
                        i = len(procs)
                        # not daemonic: a session may start processes of its own (an async vector env); an
                        # orphaned session saves its state and stops at its next checkpoint instead (parent_pid)
                        procs[i] = ctx.Process(
                            target=_session_process,
                            args=(specs[i], self.mode, limit, os.getpid(), messages, means is not None),
                        )
                        procs[i].start()
                    try:
                        message: SessionMessage = messages.get(timeout=1.0)
                    except queue.Empty:
                        dead = [
                            i for i, p in procs.items() if i not in results and p.exitcode not in (None, 0)
                        ]
                        if dead:
                            raise RuntimeError(
                                f"session {dead[0]} exited with code {procs[dead[0]].exitcode}"
                            ) from None
                        continue
                    _receive(message, means, results)
        finally:
            for proc in procs.values():
                if proc.is_alive():
                    proc.terminate()
            for proc in procs.values():
                proc.join()
        return [results[i] for i in range(n)]

    def run(self) -> dict[str, Any]:
        try:
            session_metrics = self.run_sessions()
            metrics = TrialAnalysis(self.spec).write(session_metrics)
            self.metrics = metrics
            if profile_enabled():
                write_trial_profile(self.spec["meta"]["predir"], f"{self.spec['name']}_t{self.index}")
            logger.info(analysis.trial_metrics_line(metrics["scalar"]))
            logger.info(analysis.trial_stats_line(metrics["scalar"], len(session_metrics)))
            logger.info(f"Trial {self.index} done")
            return metrics["scalar"]
        finally:
            remove_sink(self.log_sink)

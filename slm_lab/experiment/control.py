"""Session and Trial: the RL loop, and its repetition over seeds (contract §3.2, §3.3)."""

import copy
import math
import os
import queue
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np
import torch
import yaml
from loguru import logger

from slm_lab.agent import Agent, build_agent, get_device
from slm_lab.env import LabEnv, make_env
from slm_lab.experiment import analysis
from slm_lab.experiment.metrics import MetricsTracker
from slm_lab.experiment.progress import Progress
from slm_lab.experiment.tensorboard_log import TensorBoardLog
from slm_lab.lib.io_util import atomic_write, load_torch_file
from slm_lab.lib.logger import add_file_sink, remove_sink, setup_logging
from slm_lab.lib.paths import prepath
from slm_lab.lib.perf import setup_perf
from slm_lab.lib.seed import get_rng_state, session_seed, set_global_seed, set_rng_state
from slm_lab.spec.loader import save_spec, tick

__all__ = [
    "GRAPH_INTERVAL",
    "Session",
    "SessionReporter",
    "Trial",
    "TrialReporter",
    "max_parallel_sessions",
    "run_session",
]

# (frame, total_reward_ma, session metrics {scalar, local} or None), called by a session at each checkpoint
SessionReporter = Callable[[int, float, dict[str, Any] | None], None]
# (frame, mean total_reward_ma over the sessions, trial metrics {scalar, local} or None), called by a trial at each
# checkpoint its sessions have all reached
TrialReporter = Callable[[int, float, dict[str, Any] | None], None]

# Checkpoint files (CSV, metrics) are written at every checkpoint; graphs, the slow part, at most this often (wall
# seconds) and always at the end of the session, so that frequent checkpoints do not throttle training.
GRAPH_INTERVAL = 60.0


def max_parallel_sessions(max_session: int) -> int:
    """At most min(max_session, CPU count) concurrent session processes; ``SLM_MAX_PARALLEL`` overrides (D26).
    Inside a search trial the CPU count is the trial's share (``SLM_CPUS``)."""
    cap = int(os.environ.get("SLM_MAX_PARALLEL") or os.environ.get("SLM_CPUS") or (os.cpu_count() or 1))
    return max(1, min(max_session, cap))


def trial_view(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of a session spec with the trial-level prepaths, for trial analysis from inside a session."""
    trial_spec = copy.deepcopy(spec)
    meta = trial_spec["meta"]
    meta["session"] = -1
    meta["prepath"] = prepath(trial_spec, "trial")
    for sub in ("info", "graph", "log", "model"):
        meta[f"{sub}_prepath"] = prepath(trial_spec, "trial", sub)
    return trial_spec


class Session:
    """One agent, one env, one seed: the RL loop with log checkpoints, model files and analysis."""

    def __init__(
        self,
        spec: dict[str, Any],
        mode: str = "train",
        concurrent_sessions: int = 1,
        reporter: "SessionReporter | None" = None,
        parent_pid: int | None = None,
    ) -> None:
        self.spec = spec
        self.mode = mode
        # called at each checkpoint with (frame, total_reward_ma, session metrics or None): how a search trial
        # reports intermediate results to its scheduler
        self.reporter = reporter
        # set in a spawned session process: the session stops at its next checkpoint if that parent is gone, so
        # a killed trial (e.g. stopped by a search scheduler) leaves no orphan sessions running
        self.parent_pid = parent_pid
        meta = spec["meta"]
        self.index = meta["session"]
        self.seed = session_seed(spec)
        set_global_seed(self.seed)
        self.device = get_device(spec)
        self.log_sink = add_file_sink(f"{meta['log_prepath']}.log")
        self.perf = setup_perf(self.device, concurrent_sessions)
        self.env: LabEnv = make_env(spec)
        self.tracker = MetricsTracker()
        self.agent: Agent = build_agent(spec, self.env, mode, self.device)
        self.max_frame = int(spec["env"]["max_frame"])
        self.log_frequency = int(meta.get("log_frequency") or 10000)
        self.last_graph_time = time.monotonic()  # first graphs after GRAPH_INTERVAL, or at close
        self.trial_spec = trial_view(spec)
        self.tb = TensorBoardLog.for_session(spec, mode, self.agent.algorithm.nets)
        if self.index == 0:
            logger.info(f"Performance set-up: {self.perf}")
            algo = spec["agent"]["algorithm"]
            logger.info(f"Algorithm {algo['name']} hyperparameters:\n{yaml.safe_dump(algo, sort_keys=False)}")

    # the loop ------------------------------------------------------------------------------------------------
    def run_rl(self) -> None:
        """reset, then while frame < max_frame: act, step, update, checkpoint."""
        env, agent, clock, tb = self.env, self.agent, self.env.clock, self.tb
        log_frequency, num_envs = self.log_frequency, env.num_envs
        state = env.reset(seed=self.seed)
        clock.reset_timer()
        progress = self.make_progress()
        if tb is not None:
            tb.add_graph(state)
        try:
            while clock.frame < self.max_frame:
                action = agent.act(state)
                step = env.step(action)
                agent.update(state, action, step)
                if tb is not None:
                    tb.add_actions(action)
                if clock.frame % log_frequency < num_envs or clock.frame >= self.max_frame:
                    self.checkpoint()
                if progress is not None:
                    progress.update(clock.frame)
                state = step.obs
        finally:
            if progress is not None:
                progress.close()
        self.checkpoint()  # a final checkpoint always happens (D36); a duplicate frame records nothing

    def make_progress(self) -> Progress | None:
        """Session 0 reports its progress: a live line on a terminal, plain log lines otherwise (B6)."""
        if self.index > 0:
            return None
        meta = self.spec["meta"]
        label = f"[t{meta['trial']} s{self.index}]"

        def ma() -> float:
            return self.tracker.rows[-1]["total_reward_ma"] if self.tracker.rows else math.nan

        return Progress(self.max_frame, label, ma, start_frame=self.env.clock.frame)

    def checkpoint(self) -> None:
        """Append a df row, log it, save the latest model (and ckpt-best), write the analysis files."""
        algorithm = self.agent.algorithm
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            raise SystemExit(f"session {self.index}: its parent process {self.parent_pid} is gone; stopping")
        row = self.tracker.record(self.env, self.agent.loss, algorithm.lr, algorithm.df_extras())
        if row is None:
            return
        meta = self.spec["meta"]
        header = f"Trial {meta['trial']} session {self.index} {self.spec['name']}_t{meta['trial']}_s{self.index} [train]"
        logger.info(analysis.format_checkpoint_block(header, row))
        if self.tb is not None:
            self.tb.write_checkpoint(row, int(self.env.clock.frame))
        model_prepath = meta["model_prepath"]
        self.agent.save(model_prepath)
        if self.tracker.is_best(row):
            self.agent.save(model_prepath, ckpt="ckpt-best")
            self.save_state(ckpt="ckpt-best")
        metrics = None
        if len(self.tracker.rows) > 2:
            now = time.monotonic()
            plot = now - self.last_graph_time >= GRAPH_INTERVAL
            if plot:
                self.last_graph_time = now
            metrics = self.analyze(plot)
        if self.reporter is not None:
            self.reporter(int(self.env.clock.frame), float(row["total_reward_ma"]), metrics)

    def analyze(self, plot: bool) -> dict[str, Any]:
        metrics = analysis.analyze_session(self.spec, self.tracker.df, "train", plot=plot)
        if self.index == 0:  # session 0 refreshes the trial analysis from the session files on disk
            session_metrics = analysis.load_session_metrics(self.trial_spec, "train")
            if session_metrics:
                analysis.analyze_trial(self.trial_spec, session_metrics, plot=plot)
        return metrics

    # state ---------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The resumable session state apart from net/optimizer weights and the memory (those have own files)."""
        return {
            "env": self.env.state_dict(),
            "agent": self.agent.state_dict(),
            "tracker": self.tracker.state_dict(),
            "rng": get_rng_state(),
        }

    def save_state(self, ckpt: str | None = None) -> None:
        """Write ``{model_prepath}[_{ckpt}]_state.pt`` and, for the latest state, ``_memory.pt`` (atomically)."""
        prefix = self.spec["meta"]["model_prepath"] + (f"_{ckpt}" if ckpt else "")
        state = self.state_dict()
        atomic_write(f"{prefix}_state.pt", lambda f: torch.save(state, f), binary=True)
        if ckpt is None:
            memory = self.agent.memory.state_dict()
            atomic_write(f"{prefix}_memory.pt", lambda f: torch.save(memory, f), binary=True)

    def load_state(self, model_prepath: str, ckpt: str | None = None) -> None:
        """Restore nets, optimizers and the full session state written by ``save`` and ``save_state``."""
        self.agent.algorithm.load(model_prepath, ckpt)
        prefix = model_prepath + (f"_{ckpt}" if ckpt else "")
        state = load_torch_file(f"{prefix}_state.pt")
        self.env.load_state_dict(state["env"])
        self.agent.load_state_dict(state["agent"])
        self.tracker.load_state_dict(state["tracker"])
        set_rng_state(state["rng"])
        if ckpt is None:
            self.agent.memory.load_state_dict(load_torch_file(f"{prefix}_memory.pt"))

    # lifecycle -----------------------------------------------------------------------------------------------
    def close(self) -> dict[str, Any]:
        """Final analysis with graphs, latest model and state, close the env. Returns {scalar, local} metrics."""
        metrics = self.analyze(plot=True)
        if analysis.log_extra_enabled():
            logger.info(analysis.session_metrics_line(self.index, metrics["scalar"]))
        self.agent.save(self.spec["meta"]["model_prepath"])
        self.save_state()
        self.close_tb()
        self.env.close()
        logger.info(f"Session {self.index} done")
        remove_sink(self.log_sink)
        return metrics

    def run(self) -> dict[str, Any]:
        try:
            self.run_rl()
        except BaseException:
            self.close_tb()
            self.env.close()
            remove_sink(self.log_sink)
            raise
        return self.close()

    def close_tb(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def run_session(
    spec: dict[str, Any], mode: str, concurrent_sessions: int = 1, parent_pid: int | None = None
) -> dict[str, Any]:
    """Entry point of a spawned session process: rebuild logging from the environment, run, return metrics."""
    setup_logging()
    return Session(spec, mode, concurrent_sessions, parent_pid=parent_pid).run()


def _reporting_session(
    spec: dict[str, Any], mode: str, concurrent_sessions: int, parent_pid: int, messages: Any
) -> None:
    """Entry point of a spawned session process whose checkpoints are reported to its trial through ``messages``:
    ``("ckpt", s, frame, ma, metrics)`` per checkpoint, then ``("done", s, metrics)`` or ``("error", s, text)``."""
    setup_logging()
    index = spec["meta"]["session"]

    def report(frame: int, ma: float, metrics: dict[str, Any] | None) -> None:
        messages.put(("ckpt", index, frame, ma, metrics))

    try:
        metrics = Session(spec, mode, concurrent_sessions, reporter=report, parent_pid=parent_pid).run()
    except BaseException as e:
        messages.put(("error", index, "".join(traceback.format_exception(e))))
        raise
    messages.put(("done", index, metrics))


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

    def add(self, session: int, frame: int, ma: float, metrics: dict[str, Any] | None) -> None:
        ordinal = self.counts[session]
        self.counts[session] += 1
        if metrics is not None:
            self.latest[session] = metrics
        reached = self.pending.setdefault(ordinal, {})
        reached[session] = (frame, ma)
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
        if self.reporter is not None:
            means = _CheckpointMeans(len(specs), self.reporter)
            if len(specs) > 1:
                return self.run_reporting_sessions(specs, means)

            def report(frame: int, ma: float, metrics: dict[str, Any] | None) -> None:
                means.add(0, frame, ma, metrics)

            return [Session(specs[0], self.mode, reporter=report).run()]
        if len(specs) == 1:
            return [Session(specs[0], self.mode).run()]
        workers = max_parallel_sessions(len(specs))
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_session, s, self.mode, workers, os.getpid()) for s in specs]
            return [f.result() for f in futures]  # ordered by session index

    def run_reporting_sessions(
        self, specs: list[dict[str, Any]], means: _CheckpointMeans
    ) -> list[dict[str, Any]]:
        """Every session in its own spawned process at once, their checkpoints reported as means as they arrive."""
        ctx = get_context("spawn")
        messages = ctx.Queue()
        n = len(specs)
        # not daemonic: a session may start processes of its own (an async vector env); an orphaned session stops
        # itself at its next checkpoint instead (parent_pid)
        procs = [
            ctx.Process(target=_reporting_session, args=(s, self.mode, n, os.getpid(), messages))
            for s in specs
        ]
        results: dict[int, dict[str, Any]] = {}
        try:
            for proc in procs:
                proc.start()
            while len(results) < n:
                try:
                    message = messages.get(timeout=1.0)
                except queue.Empty:
                    dead = [
                        i for i, p in enumerate(procs) if i not in results and p.exitcode not in (None, 0)
                    ]
                    if dead:
                        raise RuntimeError(
                            f"session {dead[0]} exited with code {procs[dead[0]].exitcode}"
                        ) from None
                    continue
                kind, index, *rest = message
                if kind == "ckpt":
                    means.add(index, *rest)
                elif kind == "done":
                    results[index] = rest[0]
                else:
                    raise RuntimeError(f"session {index} failed:\n{rest[0]}")
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
            for proc in procs:
                proc.join()
        return [results[i] for i in range(n)]

    def run(self) -> dict[str, Any]:
        try:
            session_metrics = self.run_sessions()
            metrics = analysis.analyze_trial(self.spec, session_metrics, plot=True)
            self.metrics = metrics
            logger.info(analysis.trial_metrics_line(metrics["scalar"]))
            logger.info(analysis.trial_stats_line(metrics["scalar"], len(session_metrics)))
            logger.info(f"Trial {self.index} done")
            return metrics["scalar"]
        finally:
            remove_sink(self.log_sink)

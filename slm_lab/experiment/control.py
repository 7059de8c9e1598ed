"""Session and Trial: the RL loop, and its repetition over seeds (contract §3.2, §3.3)."""

import copy
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

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

__all__ = ["GRAPH_INTERVAL", "Session", "Trial", "max_parallel_sessions", "run_session"]

# Checkpoint files (CSV, metrics) are written at every checkpoint; graphs, the slow part, at most this often (wall
# seconds) and always at the end of the session, so that frequent checkpoints do not throttle training.
GRAPH_INTERVAL = 60.0


def max_parallel_sessions(max_session: int) -> int:
    """At most min(max_session, CPU count) concurrent session processes; ``SLM_MAX_PARALLEL`` overrides (D26)."""
    cap = int(os.environ.get("SLM_MAX_PARALLEL") or (os.cpu_count() or 1))
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

    def __init__(self, spec: dict[str, Any], mode: str = "train", concurrent_sessions: int = 1) -> None:
        self.spec = spec
        self.mode = mode
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
        if len(self.tracker.rows) > 2:
            now = time.monotonic()
            plot = now - self.last_graph_time >= GRAPH_INTERVAL
            if plot:
                self.last_graph_time = now
            self.analyze(plot)

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


def run_session(spec: dict[str, Any], mode: str, concurrent_sessions: int = 1) -> dict[str, Any]:
    """Entry point of a spawned session process: rebuild logging from the environment, run, return metrics."""
    setup_logging()
    return Session(spec, mode, concurrent_sessions).run()


class Trial:
    """``max_session`` sessions of one spec with different seeds, then the trial analysis."""

    def __init__(self, spec: dict[str, Any], mode: str = "train") -> None:
        self.spec = spec
        self.mode = mode
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
        if len(specs) == 1:
            return [Session(specs[0], self.mode).run()]
        workers = max_parallel_sessions(len(specs))
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_session, s, self.mode, workers) for s in specs]
            return [f.result() for f in futures]  # ordered by session index

    def run(self) -> dict[str, Any]:
        try:
            session_metrics = self.run_sessions()
            metrics = analysis.analyze_trial(self.spec, session_metrics, plot=True)
            logger.info(analysis.trial_metrics_line(metrics["scalar"]))
            logger.info(analysis.trial_stats_line(metrics["scalar"], len(session_metrics)))
            logger.info(f"Trial {self.index} done")
            return metrics["scalar"]
        finally:
            remove_sink(self.log_sink)

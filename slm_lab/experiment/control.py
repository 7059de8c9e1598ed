"""Session and Trial: the RL loop, and its repetition over seeds."""

import contextlib
import copy
import functools
import math
import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from multiprocessing import get_context
from typing import Any

import numpy as np
import torch
import yaml
from loguru import logger

from slm_lab.agent import Agent, build_agent, get_device
from slm_lab.env import LabEnv, make_env
from slm_lab.env.snapshot import SnapshotError
from slm_lab.errors import CheckpointError, Interrupted, LabError, SessionFailed
from slm_lab.experiment import analysis
from slm_lab.experiment.checkpoint import has_resume_state, read_resume_state, write_resume_state
from slm_lab.experiment.metrics import MetricsTracker
from slm_lab.experiment.profile import SessionProfiler, profile_enabled, write_trial_profile
from slm_lab.experiment.progress import Progress
from slm_lab.experiment.tensorboard_log import TensorBoardLog
from slm_lab.lib.io_util import save_torch_file
from slm_lab.lib.logger import add_file_sink, remove_sink, setup_logging
from slm_lab.lib.paths import prepath
from slm_lab.lib.perf import ThreadBudget, setup_perf
from slm_lab.lib.seed import get_rng_state, session_seed, set_global_seed, set_rng_state
from slm_lab.spec.loader import save_spec, tick

__all__ = [
    "GRAPH_INTERVAL",
    "Session",
    "SessionReporter",
    "Trial",
    "TrialReporter",
    "max_parallel_sessions",
]

# (frame, total_reward_ma, session metrics {scalar, local} or None), called by a session at each checkpoint
SessionReporter = Callable[[int, float, dict[str, Any] | None], None]
# (frame, mean total_reward_ma over the sessions, trial metrics {scalar, local} or None), called by a trial at each
# checkpoint its sessions have all reached
TrialReporter = Callable[[int, float, dict[str, Any] | None], None]

# A session's checkpoint files (CSV, metrics) are written at every checkpoint; its graphs and the refresh of the
# trial's files, the slow parts, at most this often (wall seconds), so that frequent checkpoints do not throttle
# training. The session's graphs are always drawn at its end, the trial's by the trial when every session is done.
GRAPH_INTERVAL = 60.0
# The full state (memory included, which can be large) is written at a checkpoint at most this often (wall
# seconds), and always at the end of the session and when a signal stops it (→D10).
STATE_INTERVAL = 600.0
# The eval env of a rigorous evaluation is reset with the session seed + this + the frame, so each evaluation has
# its own reproducible episodes, apart from the training env's
EVAL_SEED_OFFSET = 10_000_000
# An evaluation stops after this many times the episode step limit (1000 without one) even if a copy never finished
EVAL_STEP_CAP = 10


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
    """One agent, one env, one seed: the RL loop with log checkpoints, model files and analysis.

    With ``meta.resume`` set and resume files present (``checkpoint.py``), the session continues from them: the
    same nets, optimizers, schedulers, memory, RNG states, clock, dataframe rows and episodes in progress, so the
    rest of the run is the one an uninterrupted session would have had (→D10, B4). The full state is written at
    the end, at a checkpoint when ``state_interval()`` seconds have passed since the last write, and when SIGINT
    or SIGTERM stops the session (then ``Interrupted`` is raised).
    """

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
        # this process's share of the machine's cores, looked at again while the loop runs
        self.threads: ThreadBudget | None = self.perf.pop("budget", None)
        self.env: LabEnv = make_env(spec)
        self.tracker = MetricsTracker()
        self.agent: Agent = build_agent(spec, self.env, mode, self.device)
        self.max_frame = int(spec["env"]["max_frame"])
        self.log_frequency = self.env.log_frequency
        self.learning = self.agent.learning
        # enjoy/eval runs act with the evaluation policy and write their rows as the eval dataframe
        self.df_mode = "train" if self.learning else "eval"
        # rigorous evaluation (→D12): a separate env normalised with the training statistics, frozen
        self.eval_env: LabEnv | None = None
        self.eval_tracker: MetricsTracker | None = None
        self.eval_frequency = self.env.eval_frequency
        if meta.get("rigorous_eval") and self.learning:
            self.eval_env = make_env(spec)
            self.eval_env.freeze_normalizers(source=self.env)
            self.eval_tracker = MetricsTracker()
        self.last_graph_time = time.monotonic()  # first graphs after GRAPH_INTERVAL, or at close
        self.trial_spec = trial_view(spec)
        self.tb = TensorBoardLog.for_session(spec, mode, self.agent.algorithm.nets)
        self.state_interval = state_interval()
        self.last_state_time = time.monotonic()
        self.stop_signal: int | None = None  # set by the SIGINT/SIGTERM handler, read after each step
        self.obs: np.ndarray | None = None  # the observation the agent acts on next
        self.resumed = False
        self.episodes_saved = True  # False once the env turned out not to support episode snapshots
        self.logged_episodes = 0  # enjoy/eval: episodes whose return was logged
        if meta.get("resume") and mode not in ("enjoy", "eval") and has_resume_state(meta["model_prepath"]):
            self.restore()
        # --profile: phase times and torch.profiler traces under {predir}/profiler/
        self.profiler = SessionProfiler(self) if profile_enabled() else None
        if self.index == 0:
            logger.info(f"Performance set-up: {self.perf}")
            algo = spec["agent"]["algorithm"]
            logger.info(f"Algorithm {algo['name']} hyperparameters:\n{yaml.safe_dump(algo, sort_keys=False)}")

    # the loop ------------------------------------------------------------------------------------------------
    def run_rl(self) -> None:
        """reset (or continue the restored episodes), then while frame < max_frame: act, step, update,
        checkpoint."""
        env, agent, clock, tb, threads = self.env, self.agent, self.env.clock, self.tb, self.threads
        log_frequency, num_envs = self.log_frequency, env.num_envs
        eval_frequency = self.eval_frequency if self.eval_env is not None else 0
        log_episodes = not self.learning
        if self.obs is not None:  # restored episodes in progress
            state = self.obs
        elif self.resumed:  # restored, but the env could not save its episodes: new ones, seeded by the frame
            state = env.reset(seed=self.seed + clock.frame)
        else:
            state = env.reset(seed=self.seed)
        clock.reset_timer()
        progress = self.make_progress()
        if threads is not None and threads.fixed is None:
            # the thread tuner reads the training totals at each refresh and also between optimizer steps
            threads.totals = lambda: (agent.train_clock(), clock.opt_step)
            clock.on_opt_step = threads.on_opt_step
        if tb is not None:
            tb.add_graph(state)
        try:
            while clock.frame < self.max_frame:
                action = agent.act(state)
                step = env.step(action)
                agent.update(state, action, step)
                state = step.obs
                if tb is not None:
                    tb.add_actions(action)
                if log_episodes:
                    self.log_episodes()
                frame = clock.frame
                if (
                    frame % log_frequency < num_envs
                    or (eval_frequency and frame % eval_frequency < num_envs)
                    or frame >= self.max_frame
                ):
                    self.checkpoint(state)
                if progress is not None:
                    progress.update(clock.frame)
                if threads is not None:
                    threads.maybe_refresh()
                if self.stop_signal is not None:
                    break
        finally:
            self.obs = state
            clock.on_opt_step = None
            if threads is not None:
                threads.totals = None
            if progress is not None:
                progress.close()
        if self.stop_signal is not None and self.learning:
            self.interrupt()  # an enjoy/eval run just ends early, with its files written
        self.checkpoint(state, final=True)  # always at the end (D36); a duplicate frame records nothing

    def interrupt(self) -> None:
        """Save the full state after a SIGINT/SIGTERM and raise ``Interrupted``."""
        signum = self.stop_signal
        name = signal.Signals(signum).name if signum is not None else "signal"
        self.save_resume_state()
        message = (
            f"session {self.index} stopped by {name} at frame {self.env.clock.frame}; its state is saved in "
            f"{self.spec['meta']['model_prepath']}_state.pt"
        )
        logger.warning(message[0].upper() + message[1:])
        raise Interrupted(signum or signal.SIGTERM, message)

    def make_progress(self) -> Progress | None:
        """Session 0 reports its progress: a live line on a terminal, plain log lines otherwise (B6)."""
        if self.index > 0:
            return None
        meta = self.spec["meta"]
        label = f"[t{meta['trial']} s{self.index}]"

        def ma() -> float:
            return self.tracker.rows[-1]["total_reward_ma"] if self.tracker.rows else math.nan

        return Progress(self.max_frame, label, ma, start_frame=self.env.clock.frame)

    def log_episodes(self) -> None:
        """Enjoy/eval runs log the return of every episode that ended at this step."""
        env = self.env
        new = int(env.episode_counts.sum()) - self.logged_episodes
        for value in list(env.returns)[-new:] if new > 0 else []:
            logger.info(f"Session {self.index} episode {self.logged_episodes + 1}: return {value:g}")
            self.logged_episodes += 1

    def checkpoint(self, obs: np.ndarray, final: bool = False) -> None:
        """A log checkpoint and/or an evaluation checkpoint at this frame, then the full state when
        ``state_interval`` has passed. ``obs`` is the observation the agent acts on next."""
        self.obs = obs
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            if self.learning:
                self.save_resume_state()
            raise SystemExit(f"session {self.index}: its parent process {self.parent_pid} is gone; stopping")
        frame, num_envs = self.env.clock.frame, self.env.num_envs
        if final or frame % self.log_frequency < num_envs or frame >= self.max_frame:
            self.log_checkpoint()
        if self.eval_env is not None and (
            final or frame % self.eval_frequency < num_envs or frame >= self.max_frame
        ):
            self.eval_checkpoint()
        if self.learning and time.monotonic() - self.last_state_time >= self.state_interval:
            self.save_resume_state()

    def log_checkpoint(self) -> None:
        """Append a df row, log it, save the latest model (and ckpt-best), write the analysis files."""
        algorithm = self.agent.algorithm
        row = self.tracker.record(self.env, self.agent.loss, algorithm.lr, algorithm.df_extras())
        if row is None:
            return
        logger.info(self.checkpoint_block("train" if self.learning else self.mode, row))
        if self.tb is not None:
            self.tb.write_checkpoint(row, int(self.env.clock.frame))
        model_prepath = self.spec["meta"]["model_prepath"]
        if self.learning:
            self.agent.save(model_prepath)
            if self.eval_env is None and self.tracker.is_best(row):
                self.save_best(latest_saved=True)
        metrics = None
        if len(self.tracker.rows) > 2:
            metrics = self.analyze(self.df_mode, self.plot_due())
        if self.reporter is not None:
            self.reporter(int(self.env.clock.frame), float(row["total_reward_ma"]), metrics)

    def checkpoint_block(self, label: str, row: dict[str, float]) -> str:
        """The logged block of a checkpoint row, headed by the session and ``[label]``."""
        t, s = self.spec["meta"]["trial"], self.index
        header = f"Trial {t} session {s} {self.spec['name']}_t{t}_s{s} [{label}]"
        return analysis.format_checkpoint_block(header, row)

    def eval_checkpoint(self) -> None:
        """Rigorous evaluation (→D12): the eval row's score is the mean return of the episodes finished in this
        evaluation; ckpt-best follows its MA."""
        assert self.eval_env is not None and self.eval_tracker is not None
        frame = self.env.clock.frame
        if self.eval_tracker.has_frame(frame):
            return
        score = self.evaluate()
        algorithm = self.agent.algorithm
        row = self.eval_tracker.record(
            self.env, self.agent.loss, algorithm.lr, algorithm.df_extras(), total_reward=score
        )
        if row is None:
            return
        logger.info(self.checkpoint_block("eval", row))
        if self.eval_tracker.is_best(row):
            self.save_best()
        if len(self.eval_tracker.rows) > 2:
            self.analyze("eval", self.plot_due())

    def evaluate(self) -> float:
        """Run the agent with its evaluation policy in the eval env, reset with a seed of its own for this frame,
        until every copy has finished an episode. Returns their mean raw return (NaN if none finished within
        the step cap)."""
        env, agent = self.eval_env, self.agent
        assert env is not None
        state = env.reset(seed=self.seed + EVAL_SEED_OFFSET + self.env.clock.frame)
        start = env.episode_counts.copy()
        returns: list[float] = []
        cap = EVAL_STEP_CAP * (env.max_t or 1000)
        with agent.algorithm.evaluating():
            for _ in range(cap):
                epi = env.clock.epi
                step = env.step(agent.act(state))
                state = step.obs
                if env.clock.epi > epi:
                    returns.extend(list(env.returns)[-(env.clock.epi - epi) :])
                    if (env.episode_counts > start).all():
                        break
            else:
                logger.warning(
                    f"Session {self.index}: evaluation stopped after {cap} steps with "
                    f"{int((env.episode_counts > start).sum())} of {env.num_envs} copies done"
                )
        return float(np.mean(returns)) if returns else math.nan

    def save_best(self, latest_saved: bool = False) -> None:
        """ckpt-best: the model files (copies of the latest ones when they were ``latest_saved`` at this step) and
        the state that goes with them."""
        model_prepath = self.spec["meta"]["model_prepath"]
        if latest_saved:
            self.agent.copy_saved(model_prepath, "ckpt-best")
        else:
            self.agent.save(model_prepath, ckpt="ckpt-best")
        self.save_best_state()

    def plot_due(self) -> bool:
        """Graphs at most every GRAPH_INTERVAL seconds at checkpoints."""
        now = time.monotonic()
        if now - self.last_graph_time < GRAPH_INTERVAL:
            return False
        self.last_graph_time = now
        return True

    @property
    def trial_df_mode(self) -> str:
        """The dataframe the trial is judged on: the evaluations' with rigorous_eval, else the training one."""
        return "eval" if self.eval_env is not None else "train"

    def analyze(self, df_mode: str, plot: bool, refresh_trial: bool = True) -> dict[str, Any]:
        """Write the session files of ``df_mode`` (train or eval). At a checkpoint with graphs due, session 0 of
        a learning run also refreshes the trial's files from the session files on disk, so that a trial stopped
        early has them at most ``GRAPH_INTERVAL`` seconds old; the final trial analysis belongs to ``Trial``."""
        tracker = self.eval_tracker if df_mode == "eval" and self.eval_tracker is not None else self.tracker
        metrics = analysis.analyze_session(self.spec, tracker.df, df_mode, plot=plot)
        if refresh_trial and plot and self.index == 0 and self.learning and df_mode == self.trial_df_mode:
            session_metrics = analysis.load_session_metrics(self.trial_spec, df_mode)
            if session_metrics:
                analysis.analyze_trial(self.trial_spec, session_metrics, plot=plot)
        return metrics

    # state ---------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The session state apart from net/optimizer weights, the memory and the episodes in progress: what
        ``ckpt-best`` keeps beside its model files (normaliser statistics, schedulers, clock, rows, RNG)."""
        return {
            "env": self.env.state_dict(),
            "agent": self.agent.state_dict(),
            "tracker": self.tracker.state_dict(),
            "eval_tracker": None if self.eval_tracker is None else self.eval_tracker.state_dict(),
            "rng": get_rng_state(),
        }

    def save_best_state(self) -> None:
        """Write ``{model_prepath}_ckpt-best_state.pt`` (atomically), the state that goes with ckpt-best."""
        save_torch_file(f"{self.spec['meta']['model_prepath']}_ckpt-best_state.pt", self.state_dict())

    def episode_state(self) -> torch.Tensor | None:
        """The env's episodes in progress as a byte tensor; None (with a warning, once) when the env cannot
        capture them, so that a resume starts new episodes."""
        if not self.episodes_saved:
            return None
        try:
            blob = self.env.episode_state()
        except SnapshotError as e:
            self.episodes_saved = False
            logger.warning(
                f"Session {self.index}: the episodes in progress of {self.env.name} cannot be saved ({e}); "
                "a resumed session starts new episodes, so it is not an exact continuation"
            )
            return None
        return torch.frombuffer(bytearray(blob), dtype=torch.uint8)

    def save_resume_state(self) -> None:
        """Write the full state (``_state.pt`` and ``_memory.pt``, see ``checkpoint.py``) at the current step."""
        episodes = self.episode_state()
        obs = None if episodes is None or self.obs is None else torch.from_numpy(np.array(self.obs))
        state = {
            **self.state_dict(),
            "mode": self.mode,
            "nets": self.agent.algorithm.net_state_dict(),
            "episodes": episodes,
            "obs": obs,
        }
        write_resume_state(self.spec["meta"]["model_prepath"], state, self.agent.memory.state_dict())
        self.last_state_time = time.monotonic()

    def restore(self) -> None:
        """Load the full state written by ``save_resume_state`` (→D10)."""
        model_prepath = self.spec["meta"]["model_prepath"]
        state, memory = read_resume_state(model_prepath)
        path = f"{model_prepath}_state.pt"
        try:
            self.agent.algorithm.load_net_state_dict(state["nets"])
            self.agent.memory.load_state_dict(memory)
            self.agent.load_state_dict(state["agent"])
            self.env.load_state_dict(state["env"])
            self.tracker.load_state_dict(state["tracker"])
            if self.eval_tracker is not None and state.get("eval_tracker") is not None:
                self.eval_tracker.load_state_dict(state["eval_tracker"])
            if state["episodes"] is not None:
                self.env.load_episode_state(state["episodes"].numpy().tobytes())
                self.obs = state["obs"].numpy()
        except (KeyError, RuntimeError, ValueError, SnapshotError) as e:
            raise CheckpointError(f"{path} does not fit this spec: {type(e).__name__}: {e}") from None
        set_rng_state(state["rng"])
        self.resumed = True
        clock = self.env.clock
        logger.info(
            f"Session {self.index}: resumed from {path} at frame {clock.frame} (epi {clock.epi}, "
            f"opt_step {clock.opt_step}, wall_t {int(clock.wall_t)})"
            + ("" if self.obs is not None else "; the env starts new episodes")
        )

    # lifecycle -----------------------------------------------------------------------------------------------
    def close(self) -> dict[str, Any]:
        """Final analysis with graphs (train and eval files; without rigorous_eval the eval ones come from the
        training dataframe), latest model and state, close the envs. Returns the {scalar, local} metrics the trial
        is judged on (the evaluations' with rigorous_eval)."""
        metrics = self.analyze(self.df_mode, plot=True, refresh_trial=False)
        if self.learning:
            # the eval files, as the reference writes them in every learning run: from the evaluations with
            # rigorous_eval, else from the training dataframe itself
            eval_metrics = self.analyze("eval", plot=True, refresh_trial=False)
            metrics = eval_metrics if self.eval_env is not None else metrics
        if analysis.log_extra_enabled():
            logger.info(analysis.session_metrics_line(self.index, metrics["scalar"]))
        if self.learning:
            self.agent.save(self.spec["meta"]["model_prepath"])
            self.save_resume_state()
        self.close_envs()
        logger.info(f"Session {self.index} done")
        remove_sink(self.log_sink)
        return metrics

    def run(self) -> dict[str, Any]:
        with self.stop_on_signals():
            try:
                self.run_rl()
            except (Interrupted, LabError, KeyboardInterrupt, SystemExit):
                self.close_envs()
                remove_sink(self.log_sink)
                raise
            except Exception as e:
                failure = self.fail(e)
                self.close_envs()
                remove_sink(self.log_sink)
                raise failure from None
            metrics = self.close()
            self.check_learned()
            return metrics

    def check_learned(self) -> None:
        """After a learning session, whose files are all written: an error when most of its updates were skipped
        for a non-finite loss, or when it never trained (a result it did not learn is not reported as one)."""
        if not self.learning or not self.agent.algorithm.learns:
            return
        updates = self.agent.algorithm.updates
        total = updates["run"] + updates["skipped"]
        predir = self.spec["meta"]["predir"]
        nonfinite = self.env.nonfinite
        seen = (
            f"non-finite values from the env: {nonfinite['reward']} rewards, {nonfinite['obs']} observations"
        )
        if updates["skipped"] > updates["run"]:
            raise SessionFailed(
                f"session {self.index}: {updates['skipped']} of {total} updates were skipped for a non-finite loss "
                f"({seen}); its files are kept in {predir}"
            )
        if total == 0 and not self.resumed:
            raise SessionFailed(
                f"session {self.index} never trained in {self.env.clock.frame} frames: env.max_frame is shorter "
                f"than the algorithm's first update (training_start_step, time_horizon or training_frequency); its "
                f"files are kept in {predir}"
            )

    def fail(self, error: Exception) -> SessionFailed:
        """After an exception from the env or the agent mid-run: the traceback goes to the session log, the full
        state is saved as on SIGTERM (when it can be), and the returned error says in one line what failed, where
        the traceback is and how to continue."""
        meta = self.spec["meta"]
        log_path = f"{meta['log_prepath']}.log"
        with open(log_path, "a", encoding="utf-8") as f:
            f.write("".join(traceback.format_exception(error)))
        frame = self.env.clock.frame
        cause = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")
        message = f"session {self.index} failed at frame {frame}: {cause} (traceback in {log_path})"
        if not self.learning:
            return SessionFailed(message)
        try:
            self.save_resume_state()
        except (
            Exception
        ) as save_error:  # a broken env or agent may not be savable; the error is still reported
            return SessionFailed(f"{message}; its state could not be saved ({type(save_error).__name__})")
        return SessionFailed(
            f"{message}; its state is saved, continue with: slm-lab run train@{meta['predir']}"
        )

    @contextlib.contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """While the loop runs, SIGINT and SIGTERM only set ``stop_signal``; the loop then saves the state and
        stops after the current step. Signal handlers belong to the main thread, so a session run in another
        thread (a search trial's) keeps the process's own handling."""

        def handler(signum: int, frame: Any) -> None:  # no logging here: the handler may interrupt a log call
            # the first signal names the stop (a trial forwards SIGTERM after a Ctrl-C)
            if self.stop_signal is None:
                self.stop_signal = signum

        with _signal_handler(handler, signal.SIGINT, signal.SIGTERM):
            yield

    def close_envs(self) -> None:
        """Close TensorBoard and the envs, and give this session's cores back."""
        if self.threads is not None:
            self.threads.leave()
            self.threads = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        self.env.close()
        if self.eval_env is not None:
            self.eval_env.close()


def state_interval() -> float:
    """Seconds between two writes of the full state at checkpoints: ``SLM_STATE_INTERVAL``, default 600 (→D10).
    0 writes it at every checkpoint."""
    value = os.environ.get("SLM_STATE_INTERVAL")
    try:
        return STATE_INTERVAL if value in (None, "") else max(0.0, float(value))
    except ValueError:
        raise LabError(f"SLM_STATE_INTERVAL must be a number of seconds, got {value!r}") from None


def _session_process(
    spec: dict[str, Any], mode: str, concurrent_sessions: int, parent_pid: int, messages: Any, report: bool
) -> None:
    """Entry point of a spawned session process; it talks to its trial through ``messages``: with ``report``,
    ``("ckpt", s, frame, ma, metrics)`` per checkpoint; then ``("done", s, metrics)``, ``("interrupted", s,
    signum, text)``, ``("failed", s, line)`` (an exception from the env or agent, state saved) or ``("error", s,
    text)``."""
    setup_logging()
    index = spec["meta"]["session"]

    def reporter(frame: int, ma: float, metrics: dict[str, Any] | None) -> None:
        messages.put(("ckpt", index, frame, ma, metrics))

    try:
        session = Session(
            spec, mode, concurrent_sessions, reporter=reporter if report else None, parent_pid=parent_pid
        )
        metrics = session.run()
    except Interrupted as e:
        messages.put(("interrupted", index, e.signum, str(e)))
        return
    except SessionFailed as e:
        messages.put(("failed", index, str(e)))
        return
    except BaseException as e:
        messages.put(("error", index, "".join(traceback.format_exception(e))))
        raise
    messages.put(("done", index, metrics))


@contextlib.contextmanager
def _signal_handler(handler: Callable[[int, Any], None], *signals: signal.Signals) -> Iterator[None]:
    """``handler`` for ``signals`` inside the block, the previous handlers after it. Only the main thread may set
    handlers, so in any other thread (a search trial's) the process keeps its own handling."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _raise_interrupted(signum: int, frame: Any) -> None:
    """A trial waiting on its session processes: SIGTERM raises ``Interrupted`` (as Ctrl-C raises
    KeyboardInterrupt), so that it stops them in order."""
    raise Interrupted(signum, "the trial was stopped by SIGTERM")


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
        means = None if self.reporter is None else _CheckpointMeans(len(specs), self.reporter)
        if len(specs) == 1:  # in-process
            report = None if means is None else functools.partial(means.add, 0)
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
            with _signal_handler(_raise_interrupted, signal.SIGTERM):
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
                        message = messages.get(timeout=1.0)
                    except queue.Empty:
                        dead = [
                            i for i, p in procs.items() if i not in results and p.exitcode not in (None, 0)
                        ]
                        if dead:
                            raise RuntimeError(
                                f"session {dead[0]} exited with code {procs[dead[0]].exitcode}"
                            ) from None
                        continue
                    kind, index, *rest = message
                    if kind == "ckpt" and means is not None:
                        means.add(index, *rest)
                    elif kind == "done":
                        results[index] = rest[0]
                    elif kind == "interrupted":
                        raise Interrupted(rest[0], rest[1])
                    elif kind == "failed":
                        raise SessionFailed(rest[0])
                    else:
                        raise RuntimeError(f"session {index} failed:\n{rest[0]}")
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
            metrics = analysis.analyze_trial(self.spec, session_metrics, plot=True)
            self.metrics = metrics
            if profile_enabled():
                write_trial_profile(self.spec["meta"]["predir"], f"{self.spec['name']}_t{self.index}")
            logger.info(analysis.trial_metrics_line(metrics["scalar"]))
            logger.info(analysis.trial_stats_line(metrics["scalar"], len(session_metrics)))
            logger.info(f"Trial {self.index} done")
            return metrics["scalar"]
        finally:
            remove_sink(self.log_sink)

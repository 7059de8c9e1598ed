"""Session: one agent, one env, one seed; the RL loop, its checkpoints and the session's files.

The session delegates three jobs: rigorous evaluation to ``evaluation.Evaluation``, the saved state it resumes from
to ``resume.ResumeState``, and the refresh of its trial's files to ``trial_analysis.TrialAnalysis``.
"""

import contextlib
import math
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import yaml
from loguru import logger

from slm_lab.agent import Agent, build_agent, get_device
from slm_lab.env import LabEnv, make_env
from slm_lab.errors import Interrupted, LabError, SessionFailed
from slm_lab.experiment import analysis
from slm_lab.experiment.evaluation import Evaluation
from slm_lab.experiment.metrics import MetricsTracker
from slm_lab.experiment.profile import SessionProfiler, profile_enabled
from slm_lab.experiment.progress import Progress
from slm_lab.experiment.resume import ResumeState
from slm_lab.experiment.signals import parent_gone, signal_handler
from slm_lab.experiment.tensorboard_log import TensorBoardLog
from slm_lab.experiment.trial_analysis import TrialAnalysis
from slm_lab.lib.logger import add_file_sink, remove_sink
from slm_lab.lib.perf import ThreadBudget, setup_perf
from slm_lab.lib.seed import session_seed, set_global_seed

__all__ = ["GRAPH_INTERVAL", "Session", "SessionReporter"]

# (frame, total_reward_ma, session metrics {scalar, local} or None), called by a session at each checkpoint
SessionReporter = Callable[[int, float, dict[str, Any] | None], None]

# A session's checkpoint files (CSV, metrics) are written at every checkpoint; its graphs and the refresh of the
# trial's files, the slow parts, at most this often (wall seconds), so that frequent checkpoints do not throttle
# training. The session's graphs are always drawn at its end, the trial's by the trial when every session is done.
GRAPH_INTERVAL = 60.0


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
        reporter: SessionReporter | None = None,
        parent_pid: int | None = None,
    ) -> None:
        self.spec = spec
        self.mode = mode
        # called at each checkpoint with (frame, total_reward_ma, session metrics or None): how a trial collects
        # its sessions' checkpoints for a search scheduler
        self.reporter = reporter
        # set in a spawned session process: the session stops at its next checkpoint if that parent is gone
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
        self.evaluation = (
            Evaluation(spec, self.env, self.agent, self.seed, self.index)
            if meta.get("rigorous_eval") and self.learning
            else None
        )
        self.last_graph_time = time.monotonic()  # first graphs after GRAPH_INTERVAL, or at close
        # session 0 of a learning run keeps its trial's files up to date while the trial runs
        self.trial_analysis = TrialAnalysis.for_session(spec) if self.index == 0 and self.learning else None
        self.tb = TensorBoardLog.for_session(spec, mode, self.agent.nets)
        self.resume_state = ResumeState(
            self.env, self.agent, self.tracker, self.eval_tracker, mode, meta["model_prepath"], self.index
        )
        self.stop_signal: int | None = None  # set by the SIGINT/SIGTERM handler, read after each step
        self.obs: np.ndarray | None = None  # the observation the agent acts on next
        self.resumed = False
        self.logged_episodes = 0  # enjoy/eval: episodes whose return was logged
        if meta.get("resume") and mode not in ("enjoy", "eval") and self.resume_state.exists():
            self.restore()
        # --profile: phase times and torch.profiler traces under {predir}/profiler/
        self.profiler = SessionProfiler(self) if profile_enabled() else None
        if self.index == 0:
            logger.info(f"Performance set-up: {self.perf}")
            algo = spec["agent"]["algorithm"]
            logger.info(f"Algorithm {algo['name']} hyperparameters:\n{yaml.safe_dump(algo, sort_keys=False)}")

    @property
    def eval_env(self) -> LabEnv | None:
        """The env of rigorous evaluation (→D12), None without it."""
        return None if self.evaluation is None else self.evaluation.env

    @property
    def eval_tracker(self) -> MetricsTracker | None:
        """The eval dataframe rows of rigorous evaluation, None without it."""
        return None if self.evaluation is None else self.evaluation.tracker

    # the loop ------------------------------------------------------------------------------------------------
    def run_rl(self) -> None:
        """reset (or continue the restored episodes), then while frame < max_frame: act, step, update,
        checkpoint."""
        env, agent, clock, tb, threads = self.env, self.agent, self.env.clock, self.tb, self.threads
        log_frequency, num_envs = self.log_frequency, env.num_envs
        eval_frequency = self.evaluation.frequency if self.evaluation is not None else 0
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
        if parent_gone(self.parent_pid):
            if self.learning:
                self.save_resume_state()
            raise SystemExit(f"session {self.index}: its parent process {self.parent_pid} is gone; stopping")
        frame, num_envs = self.env.clock.frame, self.env.num_envs
        if final or frame % self.log_frequency < num_envs or frame >= self.max_frame:
            self.log_checkpoint()
        if self.evaluation is not None and (
            final or frame % self.evaluation.frequency < num_envs or frame >= self.max_frame
        ):
            self.eval_checkpoint()
        if self.learning and self.resume_state.due():
            self.save_resume_state()

    def log_checkpoint(self) -> None:
        """Append a df row, log it, save the latest model (and ckpt-best), write the analysis files."""
        row = self.tracker.record(self.env, self.agent.loss, self.agent.lr, self.agent.diagnostics())
        if row is None:
            return
        logger.info(self.checkpoint_block("train" if self.learning else self.mode, row))
        if self.tb is not None:
            self.tb.write_checkpoint(row, int(self.env.clock.frame))
        model_prepath = self.spec["meta"]["model_prepath"]
        if self.learning:
            self.agent.save(model_prepath)
            if self.evaluation is None and self.tracker.is_best(row):
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
        assert self.evaluation is not None and self.eval_tracker is not None
        frame = self.env.clock.frame
        if self.eval_tracker.has_frame(frame):
            return
        score = self.evaluation.evaluate()
        row = self.eval_tracker.record(
            self.env, self.agent.loss, self.agent.lr, self.agent.diagnostics(), total_reward=score
        )
        if row is None:
            return
        logger.info(self.checkpoint_block("eval", row))
        if self.eval_tracker.is_best(row):
            self.save_best()
        if len(self.eval_tracker.rows) > 2:
            self.analyze("eval", self.plot_due())

    def save_best(self, latest_saved: bool = False) -> None:
        """ckpt-best: the model files (copies of the latest ones when they were ``latest_saved`` at this step) and
        the state that goes with them."""
        model_prepath = self.spec["meta"]["model_prepath"]
        if latest_saved:
            self.agent.copy_saved(model_prepath, "ckpt-best")
        else:
            self.agent.save(model_prepath, ckpt="ckpt-best")
        self.resume_state.save_best()

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
        return "eval" if self.evaluation is not None else "train"

    def analyze(self, df_mode: str, plot: bool, refresh_trial: bool = True) -> dict[str, Any]:
        """Write the session files of ``df_mode`` (train or eval). At a checkpoint with graphs due, session 0 of
        a learning run also refreshes the trial's files (its ``trial_analysis``) from the session files on disk,
        so that a trial stopped early has them at most ``GRAPH_INTERVAL`` seconds old; the final trial analysis
        is the ``Trial``'s."""
        tracker = self.eval_tracker if df_mode == "eval" and self.eval_tracker is not None else self.tracker
        metrics = analysis.analyze_session(self.spec, tracker.df, df_mode, plot=plot)
        if refresh_trial and plot and self.trial_analysis is not None and df_mode == self.trial_df_mode:
            self.trial_analysis.refresh(df_mode)
        return metrics

    # state ---------------------------------------------------------------------------------------------------
    def save_resume_state(self) -> None:
        """Write the full state (``_state.pt`` and ``_memory.pt``, see ``resume.py``) at the current step."""
        self.resume_state.save(self.obs)

    def restore(self) -> None:
        """Continue from the full state an earlier run of this session saved (→D10)."""
        self.obs = self.resume_state.restore()
        self.resumed = True

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
            metrics = eval_metrics if self.evaluation is not None else metrics
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
        if not self.learning or not self.agent.learns:
            return
        updates = self.agent.updates
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

        with signal_handler(handler, signal.SIGINT, signal.SIGTERM):
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
        if self.evaluation is not None:
            self.evaluation.close()

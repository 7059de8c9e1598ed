"""Where a session's time goes: the lab's phases (``PhaseTimer``) and, with ``--profile``, torch.profiler traces
of a window of the loop with a plain summary (``SessionProfiler``).

Both attach to a built ``Session`` by wrapping its methods on the instance (act, env step, memory, train,
checkpoint, final analysis), so the loop itself holds no timing code and a session that is not profiled pays
nothing.
"""

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["PHASES", "PhaseTimer", "SessionProfiler", "profile_enabled"]

# phase -> what it covers
PHASES = {
    "act": "the agent choosing actions (forward pass, sampling)",
    "env": "the env stepping (including its wrappers and vector-env bookkeeping)",
    "memory": "storing the step in the memory",
    "train": "training updates (sampling batches, losses, backward, optimizer steps)",
    "checkpoint": "log checkpoints (metrics, model files, graphs) and evaluations",
    "analysis": "the session's final analysis, graphs and files",
}
# the window of loop steps torch.profiler records: skip the first steps (set-up, warm-up of lazy modules and of
# the memory), warm the profiler up, then record long enough to hold several training updates
PROFILE_WAIT, PROFILE_WARMUP, PROFILE_ACTIVE = 200, 20, 300


def profile_enabled() -> bool:
    return os.environ.get("PROFILE", "false").lower() == "true"


class PhaseTimer:
    """Seconds spent in each of ``PHASES`` by one session, and the loop's total. Nested calls (an evaluation's
    actions inside a checkpoint) count once, in the outer phase. With ``label`` each phase is also a
    ``torch.profiler.record_function`` range named ``lab/{phase}``; with ``sync`` (a CUDA session) each phase
    ends by waiting for the GPU, so its time is the work it started and not only the launch."""

    def __init__(self, label: bool = False, sync: bool = False) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.loop_s = 0.0
        self.steps = 0
        self.label = label
        self.sync = sync
        self.active: str | None = None
        self.on_step: Callable[[], None] | None = None

    def wrap(self, owner: Any, method: str, phase: str) -> None:
        original = getattr(owner, method)
        seconds, clock = self.seconds, time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.active is not None:
                return original(*args, **kwargs)
            self.active = phase
            start = clock()
            try:
                if self.label:
                    with torch.profiler.record_function(f"lab/{phase}"):
                        return original(*args, **kwargs)
                return original(*args, **kwargs)
            finally:
                if self.sync:
                    torch.cuda.synchronize()
                seconds[phase] += clock() - start
                self.active = None
                if phase == "env":
                    self.steps += 1
                    if self.on_step is not None:
                        self.on_step()

        setattr(owner, method, timed)

    def attach(self, session: Any) -> "PhaseTimer":
        agent = session.agent
        self.wrap(agent.algorithm, "act", "act")
        self.wrap(session.env, "step", "env")
        self.wrap(agent.memory, "update", "memory")
        self.wrap(agent.algorithm, "train", "train")
        self.wrap(session, "checkpoint", "checkpoint")
        self.wrap(session, "close", "analysis")
        run_rl = session.run_rl

        def timed_loop() -> None:
            start = time.perf_counter()
            try:
                run_rl()
            finally:
                self.loop_s += time.perf_counter() - start

        session.run_rl = timed_loop
        return self

    def shares(self) -> dict[str, float]:
        """Each phase's fraction of the session's time (loop plus final analysis), with ``other`` the rest of
        the loop (the loop's own bookkeeping, progress, TensorBoard)."""
        total = self.loop_s + self.seconds["analysis"]
        if total <= 0:
            return {**dict.fromkeys(PHASES, 0.0), "other": 0.0}
        in_loop = sum(s for phase, s in self.seconds.items() if phase != "analysis")
        shares = {phase: s / total for phase, s in self.seconds.items()}
        shares["other"] = max(0.0, self.loop_s - in_loop) / total
        return shares

    def table(self) -> str:
        total = self.loop_s + self.seconds["analysis"]
        lines = [f"{'phase':<11} {'seconds':>9} {'share':>7}  covers"]
        for phase, share in self.shares().items():
            seconds = share * total
            covers = PHASES.get(phase, "the rest of the loop (bookkeeping, progress, TensorBoard)")
            lines.append(f"{phase:<11} {seconds:>9.2f} {share:>7.1%}  {covers}")
        lines.append(f"{'total':<11} {total:>9.2f} {1:>7.0%}  {self.steps} env steps")
        return "\n".join(lines)


class SessionProfiler:
    """``--profile``: phase times for the whole session, and torch.profiler traces of a window of the loop
    (``PROFILE_WAIT`` steps skipped, then up to ``PROFILE_ACTIVE`` recorded, with CPU and, on a GPU, CUDA activity),
    written under ``{predir}/profiler/`` for TensorBoard (``tensorboard --logdir {predir}/profiler``) or
    ``chrome://tracing`` / Perfetto. At the end of the session ``profiler/{name}_t{t}_s{s}_summary.txt`` holds the
    phase table and the top operators of the window, and the session logs it."""

    def __init__(self, session: Any) -> None:
        meta = session.spec["meta"]
        self.folder = Path(meta["predir"]) / "profiler"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name = Path(meta["prepath"]).name
        cuda = session.device.type == "cuda"
        # a short run (dev mode) still gets a window: skip a tenth of its steps, record up to PROFILE_ACTIVE
        steps = max(1, int(session.max_frame) // session.env.num_envs)
        self.wait = min(PROFILE_WAIT, steps // 10)
        self.warmup = min(PROFILE_WARMUP, max(1, steps // 20))
        self.active = max(1, min(PROFILE_ACTIVE, steps - self.wait - self.warmup))
        activities = [torch.profiler.ProfilerActivity.CPU]
        if cuda:
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profiler = torch.profiler.profile(
            activities=activities,
            schedule=torch.profiler.schedule(
                wait=self.wait, warmup=self.warmup, active=self.active, repeat=1
            ),
            on_trace_ready=torch.profiler.tensorboard_trace_handler(str(self.folder), worker_name=self.name),
        )
        self.sort_key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        self.timer = PhaseTimer(label=True, sync=cuda)
        self.timer.on_step = self.profiler.step
        self.timer.attach(session)
        self.profiler.start()
        close = session.close

        def close_and_summarise() -> Any:
            try:
                return close()
            finally:
                self.stop()

        session.close = close_and_summarise
        self.stopped = False

    def stop(self) -> str:
        """Stop the profiler (a window cut short by the end of the run is still written) and write the summary."""
        from loguru import logger

        if self.stopped:
            return ""
        self.stopped = True
        self.profiler.stop()
        try:
            ops = self.profiler.key_averages().table(sort_by=self.sort_key, row_limit=20)
        except (AssertionError, RuntimeError):  # no step of the window was recorded
            ops = "(no operators recorded: the run ended before the profiled window)"
        text = (
            f"Where the time went in {self.name} ({self.timer.steps} env steps)\n\n{self.timer.table()}\n\n"
            f"Top operators in the profiled window (env steps {self.wait + self.warmup}-"
            f"{self.wait + self.warmup + self.active}), by self time:\n{ops}\n"
        )
        path = self.folder / f"{self.name}_summary.txt"
        path.write_text(text, encoding="utf-8")
        logger.info(
            f"Profile of {self.name}:\n{self.timer.table()}\nfull summary and traces in {self.folder}"
        )
        return text

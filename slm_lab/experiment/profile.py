"""Where a session's time goes: the lab's phases (``PhaseTimer``) and, with ``--profile``, torch.profiler traces
of a window of the loop with a plain summary (``SessionProfiler``).

Both attach to a built ``Session`` by wrapping its methods on the instance (act, env step, memory, train,
checkpoint, final analysis), so the loop itself holds no timing code and a session that is not profiled pays
nothing.
"""

import html
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from slm_lab.lib.io_util import atomic_write, read_json, write_json

__all__ = ["PHASES", "PhaseTimer", "SessionProfiler", "profile_enabled", "write_trial_profile"]

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
TOP_OPS = 20  # operators listed in a session's summary
SUMMARY_FILE, DASHBOARD_FILE = "profiler_summary.json", "profiling_dashboard.html"


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
    phase table and the top operators of the window, ``..._summary.json`` the same figures with peak memory, and
    the session logs the table; the trial then gathers its sessions' figures (``write_trial_profile``)."""

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
        self.cuda = cuda
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
            averages = self.profiler.key_averages()
            ops = averages.table(sort_by=self.sort_key, row_limit=TOP_OPS)
            top = _top_ops(averages, self.cuda)
        except (AssertionError, RuntimeError):  # no step of the window was recorded
            ops, top = "(no operators recorded: the run ended before the profiled window)", []
        window = (self.wait + self.warmup, self.wait + self.warmup + self.active)
        text = (
            f"Where the time went in {self.name} ({self.timer.steps} env steps)\n\n{self.timer.table()}\n\n"
            f"Top operators in the profiled window (env steps {window[0]}-{window[1]}), by self time:\n{ops}\n"
        )
        atomic_write(self.folder / f"{self.name}_summary.txt", lambda f: f.write(text))
        write_json(self.folder / f"{self.name}_summary.json", self.figures(window, top))
        logger.info(
            f"Profile of {self.name}:\n{self.timer.table()}\nfull summary and traces in {self.folder}"
        )
        return text

    def figures(self, window: tuple[int, int], top: list[dict[str, Any]]) -> dict[str, Any]:
        """The session's profile as data: phase seconds and shares, env steps, peak memory, top operators."""
        timer = self.timer
        total = timer.loop_s + timer.seconds["analysis"]
        return {
            "session": self.name,
            "device": "cuda" if self.cuda else "cpu",
            "env_steps": timer.steps,
            "seconds": total,
            "phases": {
                phase: {"seconds": share * total, "share": share} for phase, share in timer.shares().items()
            },
            "peak_rss_mb": _peak_rss_mb(),
            "cuda_peak_allocated_mb": torch.cuda.max_memory_allocated() / 1024**2 if self.cuda else None,
            "window_env_steps": list(window),
            "top_ops": top,
        }


def _peak_rss_mb() -> float | None:
    """The process's peak resident memory in MB (None where the platform does not say)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return peak / (1024**2 if sys.platform == "darwin" else 1024)


def _top_ops(averages: Any, cuda: bool) -> list[dict[str, Any]]:
    """The ``TOP_OPS`` operators with the most self time (device time on a GPU), in milliseconds."""

    def device_us(e: Any) -> float:
        return float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)))

    key = device_us if cuda else (lambda e: float(e.self_cpu_time_total))
    rows = sorted(averages, key=key, reverse=True)[:TOP_OPS]
    return [
        {
            "name": e.key,
            "calls": int(e.count),
            "self_cpu_ms": e.self_cpu_time_total / 1e3,
            "cpu_total_ms": e.cpu_time_total / 1e3,
            **({"self_cuda_ms": device_us(e) / 1e3} if cuda else {}),
        }
        for e in rows
    ]


def write_trial_profile(predir: str | Path, prename: str) -> Path | None:
    """Gather the summaries of the trial's sessions (``{prename}_s*_summary.json``) into
    ``profiler/profiler_summary.json`` and draw ``profiler/profiling_dashboard.html``: each session's phase shares
    as bars and its top operators. Returns the summary's path, None when no session wrote one."""
    folder = Path(predir) / "profiler"
    sessions = [read_json(p) for p in sorted(folder.glob(f"{prename}_s*_summary.json"))]
    if not sessions:
        return None
    summary = {"trial": prename, "phases_covered": PHASES, "sessions": sessions}
    path = folder / SUMMARY_FILE
    write_json(path, summary)
    page = _dashboard(summary)
    atomic_write(folder / DASHBOARD_FILE, lambda f: f.write(page))
    return path


def _dashboard(summary: dict[str, Any]) -> str:
    """A self-contained HTML page (no script, nothing fetched) of a trial's profile."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Profile of {esc(summary['trial'])}</title><style>",
        "body{font-family:sans-serif;margin:2em;color:#222} table{border-collapse:collapse;margin:1em 0}",
        "td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right} td:first-child,th:first-child"
        "{text-align:left} .bar{background:#1f77b4;height:12px;display:inline-block}",
        "</style></head><body>",
        f"<h1>Where the time went: {esc(summary['trial'])}</h1>",
    ]
    for s in summary["sessions"]:
        fps = s["env_steps"] / s["seconds"] if s["seconds"] else 0.0
        cuda = s.get("cuda_peak_allocated_mb")
        rss = s.get("peak_rss_mb")
        memory = "" if rss is None else f"; peak RSS {rss:.0f} MB"
        if cuda is not None:
            memory += f", CUDA peak {cuda:.0f} MB"
        parts.append(
            f"<h2>{esc(s['session'])}</h2><p>{s['env_steps']} env steps in {s['seconds']:.1f} s "
            f"({fps:.0f} env steps/s) on {esc(s['device'])}{memory}</p>"
        )
        parts.append("<table><tr><th>phase</th><th>seconds</th><th>share</th><th></th></tr>")
        for phase, row in s["phases"].items():
            width = round(300 * row["share"])
            parts.append(
                f"<tr><td title='{esc(PHASES.get(phase, 'the rest of the loop'))}'>{esc(phase)}</td>"
                f"<td>{row['seconds']:.2f}</td><td>{row['share']:.1%}</td>"
                f"<td style='text-align:left'><span class='bar' style='width:{width}px'></span></td></tr>"
            )
        parts.append("</table>")
        if s["top_ops"]:
            first, last = s["window_env_steps"]
            cuda_col = "self_cuda_ms" in s["top_ops"][0]
            parts.append(
                f"<p>Top operators, env steps {first}-{last}</p><table><tr><th>operator</th><th>calls</th>"
                "<th>self CPU ms</th><th>CPU total ms</th>"
                + ("<th>self CUDA ms</th>" if cuda_col else "")
                + "</tr>"
            )
            for op in s["top_ops"]:
                cells = [str(op["calls"]), f"{op['self_cpu_ms']:.2f}", f"{op['cpu_total_ms']:.2f}"]
                if cuda_col:
                    cells.append(f"{op['self_cuda_ms']:.2f}")
                parts.append(
                    f"<tr><td>{esc(op['name'])}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
                )
            parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)

"""Performance set-up of a session process (``--optimize-perf``): torch threads sized to this process's fair share of
the machine's cores, shared with every other lab process running on it, and the GPU switches.

Why a machine-wide share: torch sizes its thread pool to the whole machine, and OpenMP threads spin while they wait
for work. Two processes that each size themselves to the whole machine therefore fight for every core: on a 2-core
machine two PPO runs started together each fell to about a tenth of the speed either had alone. One thread per core
between all the lab's processes keeps each at about its share instead. A passive OpenMP wait policy would also stop
the fight but makes a run alone two to three times slower, so the lab leaves the wait policy alone and divides the
cores instead.

How: each lab process that trains (a session) writes one small file named by its pid in a per-user folder of the
temp dir (``SLM_THREAD_REGISTRY`` to choose another) and removes it when it ends; a file whose process is gone is
pruned by the next reader. Each process takes ``cores // n`` threads for the ``n`` processes listed (the oldest
``cores % n`` one more), at least 1 and at most 32, and looks again about once a second while it runs, so a run
started alone gives cores back when a second one starts and takes them again when it ends.

Within its share, how many threads: more threads help big batched matrix products (SAC's 256-row batches through
256-wide layers, Atari's convolutions) and can hurt small ones, where waking the other threads costs more than
they save (a PPO session training on 64-row minibatches through the same layers ran 9–35% faster on one thread
than on two on a 2-core machine, and 8–11% slower in a later sitting on the same machine). No rule of
thumb predicts which, so a ``ThreadTuner`` measures it: once the session trains, it times the training updates
(seconds per optimizer step) for windows of at least ``TUNE_SECONDS`` of training at each candidate count (1, half
the share, the share), keeps the fastest, and measures again every ``RETUNE_INTERVAL`` seconds and whenever the
share changes. The clock calls the budget after every optimizer step, so a window can end inside one long update.

Overrides: ``--no-optimize-perf`` (``OPTIMIZE_PERF=false``) leaves torch's threads as torch sets them and joins
nothing; ``SLM_THREADS=N`` fixes this process's threads at N (it is still listed, so the others count it) and
turns the tuner off; inside a search trial ``SLM_CPUS`` is the trial's share of the cores and caps its sessions'
threads.

Reproducibility: the thread count does not change the result of the products and gradients the lab's nets compute,
but torch sums a large tensor (hundreds of thousands of elements) in per-thread parts, so such a sum can differ in
its last bits between thread counts. The lab's losses are means over minibatches far below that size; pin
``--threads`` to rule it out.
"""

import atexit
import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from loguru import logger

from slm_lab.errors import LabError

__all__ = ["ThreadBudget", "ThreadTuner", "machine_cores", "setup_perf"]

MAX_THREADS = 32
REFRESH_INTERVAL = 1.0  # seconds between two looks at the other lab processes
TUNE_SECONDS = 0.5  # seconds of training a thread count is timed over, at least
RETUNE_INTERVAL = 300.0  # seconds after which the tuner measures again, in case the work changed
TUNE_MARGIN = 1.05  # fewer threads than the share must be this much faster to be kept
TUNE_CHECK_INTERVAL = 0.1  # seconds between two looks of the tuner from inside a training update


def machine_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (a container's limit)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    return max(1, cores)


def _start_token(pid: int) -> str:
    """When ``pid`` started (clock ticks since boot, from /proc), so that a reused pid is not mistaken for a listed
    process; empty where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, starttime; the command name may hold spaces


def _alive(pid: int, token: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not token or _start_token(pid) in ("", token)


def registry_dir() -> Path:
    folder = os.environ.get("SLM_THREAD_REGISTRY")
    if folder:
        return Path(folder)
    return (
        Path(tempfile.gettempdir())
        / f"slm_lab-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        / "running"
    )


class ThreadTuner:
    """The fastest torch thread count for training within a share of ``share`` threads.

    ``observe(train_seconds, opt_steps, now)`` is given the session's running totals of time spent in training
    updates and of optimizer steps, and returns the thread count to use from now on. The first window runs at the
    share and is not counted (the first updates allocate their buffers), then each candidate runs for a window of
    at least ``TUNE_SECONDS`` of training and one optimizer step, in the order share → 1 → 1 → share (with half
    the share in between on bigger machines), so that a machine slowly getting busier or freer favours none of
    them. A candidate's cost is its seconds per optimizer step over its two windows. The fastest is kept (the share
    unless another beats it by ``TUNE_MARGIN``) until ``RETUNE_INTERVAL`` has passed.
    """

    def __init__(self, share: int, warm_up: bool = True) -> None:
        self.share = share
        self.candidates = sorted({1, (share + 1) // 2, share}, reverse=True)
        self.rounds = self.candidates + self.candidates[::-1]
        self.queue = ([share] if warm_up else []) + self.rounds
        self.totals: dict[int, tuple[float, int]] = {}  # candidate -> (train seconds, optimizer steps) timed
        self.mark: tuple[float, int] | None = None  # (train_seconds, opt_steps) where the window began
        self.best = share
        self.tuned_at: float | None = None

    @property
    def probing(self) -> bool:
        return bool(self.queue) and self.share > 1

    @property
    def threads(self) -> int:
        return self.queue[0] if self.probing else self.best

    def observe(self, train_seconds: float, opt_steps: int, now: float) -> int:
        if not self.probing:
            if self.tuned_at is not None and now - self.tuned_at >= RETUNE_INTERVAL:
                self.queue, self.totals, self.mark = list(self.rounds), {}, None
            return self.threads
        if self.mark is None:
            self.mark = (train_seconds, opt_steps)
            return self.threads
        seconds, steps = train_seconds - self.mark[0], opt_steps - self.mark[1]
        if seconds < TUNE_SECONDS or steps < 1:
            return self.threads
        threads = self.queue.pop(0)
        if len(self.queue) < len(self.rounds):  # not the warm-up window
            timed_s, timed_steps = self.totals.get(threads, (0.0, 0))
            self.totals[threads] = (timed_s + seconds, timed_steps + steps)
        self.mark = (train_seconds, opt_steps)
        if not self.queue:
            costs = self.costs
            fastest = min(costs, key=costs.__getitem__)
            self.best = self.share if costs[self.share] <= TUNE_MARGIN * costs[fastest] else fastest
            self.tuned_at = now
            shown = ", ".join(f"{n}: {1e3 * c:.3g} ms" for n, c in sorted(costs.items()))
            logger.debug(f"torch threads: {self.best} of {self.share} (per optimizer step {shown})")
        return self.threads

    @property
    def costs(self) -> dict[int, float]:
        """Seconds per optimizer step of each candidate timed so far."""
        return {n: seconds / steps for n, (seconds, steps) in self.totals.items()}


class ThreadBudget:
    """This process's torch threads: its share of ``cores`` among the lab processes listed in ``folder``.

    ``join`` lists the process, ``leave`` unlists it (joins are counted, so nested sessions in one process list it
    once), ``refresh`` re-reads the list and resizes torch's thread pool when the share changed; ``maybe_refresh``
    does so at most once per ``REFRESH_INTERVAL`` and is cheap enough to call every step. Given the session's
    training totals (as arguments, or through ``totals``), a refresh also lets a ``ThreadTuner`` choose the thread
    count within the share.
    ``cap`` bounds the threads (a search trial's ``SLM_CPUS``), ``fixed`` pins them (``SLM_THREADS``, no tuning),
    ``floor`` is the number of processes assumed at least (the sessions a trial starts together, before they have
    all listed themselves). ``threads`` is the count in use, ``share_threads`` the share.
    """

    def __init__(
        self,
        cores: int,
        folder: Path,
        cap: int | None = None,
        fixed: int | None = None,
        floor: int = 1,
    ) -> None:
        self.cores = max(1, cores)
        self.folder = folder
        self.cap = cap
        self.fixed = fixed
        self.floor = max(1, floor)
        self.pid = os.getpid()
        self.token = _start_token(self.pid)
        self.joined = 0
        self.exit_hook = False
        self.listed = False  # False when the folder could not be written: the share is then cores // floor
        self.share_threads = self.threads = self.share(self.floor, 0)
        self.processes = self.floor  # lab processes counted at the last refresh
        self.next_check = 0.0
        self.tuner: ThreadTuner | None = None
        # the session's (training seconds, optimizer steps) so far, for the tuner between optimizer steps
        self.totals: Callable[[], tuple[float, int]] | None = None
        self.next_tune = 0.0

    @property
    def entry(self) -> Path:
        return self.folder / str(self.pid)

    def join(self) -> int:
        self.joined += 1
        self.tuner, self.totals = None, None  # a new session: its training is timed afresh
        if self.joined == 1:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                tmp = self.folder / f".{self.pid}.tmp"
                tmp.write_text(self.token)
                tmp.replace(self.entry)
                self.listed = True
                if not self.exit_hook:
                    atexit.register(self._unlist)
                    self.exit_hook = True
            except OSError:
                self.listed = False
        return self.refresh()

    def leave(self) -> None:
        self.joined = max(0, self.joined - 1)
        if self.joined == 0:
            self._unlist()

    def _unlist(self) -> None:
        if self.listed and os.getpid() == self.pid:
            with contextlib.suppress(OSError):
                self.entry.unlink()
        self.listed = False

    def members(self) -> list[int]:
        """The pids listed, oldest first; entries of processes that are gone are removed."""
        if not self.listed:
            return []
        found: list[tuple[float, int]] = []
        with contextlib.suppress(OSError):
            for path in self.folder.iterdir():
                if not path.name.isdigit():
                    continue
                pid = int(path.name)
                try:
                    token = path.read_text().strip()
                    if pid != self.pid and not _alive(pid, token):
                        path.unlink()
                        continue
                    found.append((path.stat().st_mtime, pid))
                except OSError:
                    continue
        if self.pid not in (pid for _, pid in found):
            found.append((time.time(), self.pid))
        return [pid for _, pid in sorted(found)]

    def share(self, n: int, rank: int) -> int:
        """Threads of the process ranked ``rank`` (0 = oldest) among ``n``."""
        if self.fixed is not None:
            return max(1, self.fixed)
        base, extra = divmod(self.cores, n)
        threads = max(1, base + (1 if rank < extra else 0))
        return max(1, min(threads, self.cap or MAX_THREADS, MAX_THREADS))

    def refresh(self, train_seconds: float | None = None, opt_steps: int = 0) -> int:
        """Re-read the listing and set torch's threads: the share, or within it the tuner's choice when the
        session's training totals are given (or ``totals`` gives them). Returns the threads in use."""
        if train_seconds is None and self.totals is not None:
            train_seconds, opt_steps = self.totals()
        now = time.monotonic()
        self.next_check = now + REFRESH_INTERVAL
        members = self.members()
        n = max(len(members), self.floor)
        rank = members.index(self.pid) if self.pid in members else 0
        share = self.share(n, rank)
        threads = share
        if train_seconds is not None and self.fixed is None:
            if self.tuner is None or self.tuner.share != share:
                self.tuner = ThreadTuner(share, warm_up=self.tuner is None)
            threads = self.tuner.observe(train_seconds, opt_steps, now)
        self._use(threads)
        self.share_threads, self.processes = share, n
        return threads

    def _use(self, threads: int) -> None:
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        self.threads = threads

    def maybe_refresh(self, train_seconds: float | None = None, opt_steps: int = 0) -> None:
        if time.monotonic() >= self.next_check:
            self.refresh(train_seconds, opt_steps)

    def on_opt_step(self) -> None:
        """After an optimizer step (the clock calls it): let the tuner look at most every ``TUNE_CHECK_INTERVAL``,
        so that its windows can end inside one long update (a PPO update is thousands of optimizer steps) instead of
        at the loop's next refresh. Needs ``totals``; the listing is re-read only by ``refresh``."""
        tuner, totals = self.tuner, self.totals
        if tuner is None or totals is None:
            return
        now = time.monotonic()
        if now < self.next_tune:
            return
        self.next_tune = now + TUNE_CHECK_INTERVAL
        self._use(tuner.observe(*totals(), now))


_BUDGET: ThreadBudget | None = None


def _int_env(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        raise LabError(f"{name} must be a whole number of threads, got {value!r}") from None
    if number < 1:
        raise LabError(f"{name} must be at least 1, got {value!r}")
    return number


def thread_budget(concurrent_sessions: int = 1) -> ThreadBudget:
    """The process's budget, made on first use from the environment (``SLM_THREADS``, ``SLM_CPUS``,
    ``SLM_THREAD_REGISTRY``)."""
    global _BUDGET
    cpus = _int_env("SLM_CPUS")
    cap = None if cpus is None else max(1, cpus // max(1, concurrent_sessions))
    fixed = _int_env("SLM_THREADS")
    folder = registry_dir()
    if _BUDGET is None or _BUDGET.pid != os.getpid() or (_BUDGET.joined == 0 and _BUDGET.folder != folder):
        _BUDGET = ThreadBudget(machine_cores(), folder, cap, fixed, concurrent_sessions)
    else:  # a later session of this process: the same listing, today's settings
        _BUDGET.cap, _BUDGET.fixed, _BUDGET.floor = cap, fixed, max(1, concurrent_sessions)
    return _BUDGET


def setup_perf(device: torch.device, concurrent_sessions: int = 1) -> dict[str, object]:
    """Set this session process up: CPU threads from its share of the machine (the module's docstring); on a GPU
    also TF32 on compute capability ≥ 8 and cudnn.benchmark. Returns what was set, with the ``budget`` the session
    refreshes while it runs and leaves when it ends (absent with ``OPTIMIZE_PERF=false``)."""
    if os.environ.get("OPTIMIZE_PERF", "true").lower() == "false":
        return {"optimize_perf": False}
    info: dict[str, object] = {"optimize_perf": True}
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        if major >= 8:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        info.update(device=str(device), tf32=major >= 8, cudnn_benchmark=True)
    budget = thread_budget(concurrent_sessions)
    threads = budget.join()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    info.setdefault("device", "cpu")
    info.update(torch_threads=threads, lab_processes=budget.processes, budget=budget)
    return info

"""CPU threads: each lab process takes its share of the machine's cores among the lab processes running on it,
resized as they start and end; SLM_CPUS caps a search trial's sessions, SLM_THREADS pins, OPTIMIZE_PERF=false
leaves torch alone."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from slm_lab.errors import LabError
from slm_lab.lib import perf
from slm_lab.lib.perf import ThreadBudget, setup_perf


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """setup_perf sets torch's threads and the BLAS variables of this process: put them back afterwards. Each test
    lists its processes in its own folder, on a pretend 16-core machine."""
    threads = torch.get_num_threads()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLAS_NUM_THREADS", "SLM_CPUS", "OPTIMIZE_PERF"):
        monkeypatch.setenv(var, "")  # recorded, so that teardown restores the variable or its absence
        monkeypatch.delenv(var)
    monkeypatch.delenv("SLM_THREADS", raising=False)
    monkeypatch.setenv("SLM_THREAD_REGISTRY", str(tmp_path / "running"))
    monkeypatch.setattr(perf, "machine_cores", lambda: 16)
    monkeypatch.setattr(perf, "_BUDGET", None)
    yield
    if perf._BUDGET is not None:
        while perf._BUDGET.joined:
            perf._BUDGET.leave()
    torch.set_num_threads(threads)


@pytest.fixture
def others(tmp_path: Path):
    """Start n idle processes listed as lab processes (as running sessions would be); stopped afterwards."""
    procs: list[subprocess.Popen] = []

    def start(n: int) -> list[subprocess.Popen]:
        for _ in range(n):
            proc = subprocess.Popen(["sleep", "60"])
            procs.append(proc)
            folder = tmp_path / "running"
            folder.mkdir(exist_ok=True)
            (folder / str(proc.pid)).write_text(perf._start_token(proc.pid))
        return procs[-n:]

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_process_alone_takes_the_whole_machine() -> None:
    info = setup_perf(torch.device("cpu"))
    assert info["torch_threads"] == 16 and info["lab_processes"] == 1
    assert torch.get_num_threads() == 16 and os.environ["OMP_NUM_THREADS"] == "16"


def test_the_cores_are_shared_with_the_other_lab_processes(others) -> None:
    others(3)
    info = setup_perf(torch.device("cpu"))
    assert info["lab_processes"] == 4 and info["torch_threads"] == 4


def test_the_oldest_processes_take_the_cores_left_over(tmp_path: Path, others) -> None:
    older = others(2)  # listed before this process: 16 cores over 3 processes are 6, 5 and 5
    for age, proc in enumerate(older):
        os.utime(tmp_path / "running" / str(proc.pid), (1_000 + age, 1_000 + age))
    assert setup_perf(torch.device("cpu"))["torch_threads"] == 5
    budget = perf._BUDGET
    assert [budget.share(3, rank) for rank in range(3)] == [6, 5, 5]


def test_a_running_session_gives_cores_back_and_takes_them_again(others) -> None:
    assert setup_perf(torch.device("cpu"))["torch_threads"] == 16
    budget = perf._BUDGET
    started = others(1)
    assert budget.refresh() == 8 and torch.get_num_threads() == 8
    started[0].kill()
    started[0].wait()
    assert budget.refresh() == 16 and torch.get_num_threads() == 16


def test_entries_of_processes_that_are_gone_are_removed(tmp_path: Path) -> None:
    folder = tmp_path / "running"
    folder.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    (folder / str(gone.pid)).write_text("1")
    # a pid now used by another process than the one listed: its start time differs
    (folder / str(os.getppid())).write_text("not-its-start-time")
    assert setup_perf(torch.device("cpu"))["torch_threads"] == 16
    assert sorted(p.name for p in folder.iterdir()) == [str(os.getpid())]


def test_leaving_unlists_the_process_once_every_session_of_it_left(tmp_path: Path) -> None:
    setup_perf(torch.device("cpu"))
    setup_perf(torch.device("cpu"))  # a second session in the same process
    budget = perf._BUDGET
    entry = tmp_path / "running" / str(os.getpid())
    budget.leave()
    assert entry.exists()
    budget.leave()
    assert not entry.exists()


def test_sessions_a_trial_starts_together_split_the_cores_before_they_are_listed() -> None:
    assert setup_perf(torch.device("cpu"), concurrent_sessions=4)["torch_threads"] == 4


def test_a_search_trial_uses_its_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_CPUS", "2")
    assert setup_perf(torch.device("cpu"))["torch_threads"] == 2
    perf._BUDGET.leave()
    assert setup_perf(torch.device("cpu"), concurrent_sessions=2)["torch_threads"] == 1


def test_an_explicit_thread_count_wins_and_is_still_counted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, others
) -> None:
    others(3)
    monkeypatch.setenv("SLM_THREADS", "6")
    info = setup_perf(torch.device("cpu"))
    assert info["torch_threads"] == 6 and torch.get_num_threads() == 6
    assert (tmp_path / "running" / str(os.getpid())).exists()


@pytest.mark.parametrize("value", ["0", "two"])
def test_a_bad_thread_count_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SLM_THREADS", value)
    with pytest.raises(LabError, match="SLM_THREADS"):
        setup_perf(torch.device("cpu"))


def test_optimize_perf_off_leaves_threads_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPTIMIZE_PERF", "false")
    before = torch.get_num_threads()
    assert setup_perf(torch.device("cpu"), concurrent_sessions=8) == {"optimize_perf": False}
    assert torch.get_num_threads() == before
    assert not (tmp_path / "running").exists()


def test_an_unwritable_registry_falls_back_to_the_static_split(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("SLM_THREAD_REGISTRY", str(blocker / "running"))  # a folder under a file
    assert setup_perf(torch.device("cpu"), concurrent_sessions=2)["torch_threads"] == 8


def test_maybe_refresh_looks_again_only_after_the_interval(monkeypatch: pytest.MonkeyPatch, others) -> None:
    setup_perf(torch.device("cpu"))
    budget: ThreadBudget = perf._BUDGET
    others(1)
    budget.maybe_refresh()
    assert budget.threads == 16  # looked less than a second ago
    budget.next_check = 0.0
    budget.maybe_refresh()
    assert budget.threads == 8


def test_two_processes_started_at_once_each_take_half(tmp_path: Path) -> None:
    """Real processes, each as a session would: list itself, look again once the other has listed itself."""
    script = textwrap.dedent(
        """
        import sys, time
        import torch
        from slm_lab.lib import perf
        perf.machine_cores = lambda: 16
        budget = perf.ThreadBudget(16, perf.registry_dir())
        budget.join()
        deadline = time.monotonic() + 30
        while len(budget.members()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        budget.refresh()
        print(budget.threads, torch.get_num_threads())
        sys.stdout.flush()
        time.sleep(0.5)  # stay listed until the other one has looked too
        """
    )
    env = {**os.environ, "SLM_THREAD_REGISTRY": str(tmp_path / "reg")}
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=60)[0].split() for proc in procs]
    assert outputs == [["8", "8"], ["8", "8"]]
    assert not list((tmp_path / "reg").iterdir())  # each unlisted itself at exit

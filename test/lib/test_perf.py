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


# the thread tuner: which count within the share trains fastest ------------------------------------------------
def _feed(tuner: perf.ThreadTuner, windows: dict[int, float], steps: int = 100) -> float:
    """Run the tuner's windows: at each thread count it asks for, train ``steps`` optimizer steps at the cost per
    step given for that count (the warm-up window costs 1 s per step, which must not count). Returns the clock."""
    train_s, opt, now = 0.0, 0, 0.0
    tuner.observe(train_s, opt, now)
    while tuner.probing:
        threads = tuner.threads
        cost = 1.0 if len(tuner.queue) > len(tuner.rounds) else windows[threads]
        train_s, opt, now = train_s + cost * steps, opt + steps, now + cost * steps
        tuner.observe(train_s, opt, now)
    return now


def test_the_tuner_keeps_the_thread_count_with_the_fastest_optimizer_steps() -> None:
    tuner = perf.ThreadTuner(16)
    assert tuner.candidates == [16, 8, 1] and tuner.threads == 16  # the warm-up window runs at the share
    _feed(tuner, {16: 0.004, 8: 0.003, 1: 0.005})
    assert tuner.best == 8 and tuner.threads == 8
    assert tuner.costs == pytest.approx({16: 0.004, 8: 0.003, 1: 0.005})


def test_the_tuner_keeps_the_share_unless_fewer_threads_are_clearly_faster() -> None:
    tuner = perf.ThreadTuner(2)
    assert tuner.candidates == [2, 1]
    _feed(tuner, {2: 0.00102, 1: 0.001})  # 2% apart: noise on a shared machine
    assert tuner.threads == 2


def test_a_window_needs_enough_training_before_it_counts() -> None:
    tuner = perf.ThreadTuner(2, warm_up=False)
    tuner.observe(0.0, 0, 0.0)
    tuner.observe(perf.TUNE_SECONDS / 2, 1_000, 1.0)  # many steps, too little time
    tuner.observe(10.0, 0, 2.0)  # much time, no optimizer step: a session not training yet
    assert tuner.queue == [2, 1, 1, 2] and not tuner.costs
    tuner.observe(perf.TUNE_SECONDS, 1_000, 3.0)
    assert tuner.queue == [1, 1, 2] and tuner.threads == 1


def test_the_tuner_measures_again_after_the_retune_interval() -> None:
    tuner = perf.ThreadTuner(2)
    now = _feed(tuner, {2: 0.002, 1: 0.001})
    assert tuner.threads == 1
    tuner.observe(1e9, 10**9, now + perf.RETUNE_INTERVAL / 2)
    assert not tuner.probing
    tuner.observe(1e9, 10**9, now + perf.RETUNE_INTERVAL)
    assert tuner.probing and tuner.threads == 2 and tuner.queue == [2, 1, 1, 2]  # no warm-up the second time


def test_the_budget_sets_the_tuned_count_and_tunes_again_when_its_share_changes(others) -> None:
    setup_perf(torch.device("cpu"))
    budget: ThreadBudget = perf._BUDGET
    tuner = budget.tuner
    assert tuner is None  # nothing to tune before the session trains
    train_s, opt = 0.0, 0
    costs = {16: 0.002, 8: 0.003, 1: 0.001}
    budget.refresh(train_s, opt)
    while budget.tuner.probing:
        warm = len(budget.tuner.queue) > len(budget.tuner.rounds)
        train_s += 1.0 if warm else 1000 * costs[budget.threads]
        opt += 1000
        budget.refresh(train_s, opt)
    assert budget.threads == 1 and torch.get_num_threads() == 1 and budget.share_threads == 16
    others(1)
    assert budget.refresh(train_s, opt) == 8  # a new share: measured again, from the share down
    assert budget.tuner.share == 8 and budget.tuner.queue == [8, 4, 1, 1, 4, 8]


def test_a_pinned_thread_count_is_not_tuned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_THREADS", "3")
    setup_perf(torch.device("cpu"))
    budget: ThreadBudget = perf._BUDGET
    for step in range(5):
        assert budget.refresh(10.0 * step, 1000 * step) == 3
    assert budget.tuner is None


def _tiny_spec(max_frame: int) -> dict:
    """The tiny PPO CartPole spec in train mode, one session."""
    from slm_lab.spec.loader import get_spec, override_spec

    fixture = Path(__file__).parents[1] / "fixtures" / "ppo_cartpole_tiny.json"
    spec = override_spec(get_spec(str(fixture), "ppo_cartpole_tiny", [f"max_frame={max_frame}"]), "train")
    spec["meta"]["max_session"] = 1
    return spec


def test_the_thread_count_does_not_change_a_seeded_session(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, start_session
) -> None:
    """What lets the tuner switch counts mid-run without costing reproducibility: the same seeded session on one
    thread and on two writes the same CSV (apart from the clock columns)."""
    import pandas as pd

    monkeypatch.setenv("PY_ENV", "test")
    dfs = []
    for threads in ("1", "2"):
        monkeypatch.setenv("SLM_THREADS", threads)
        session = start_session(_tiny_spec(1024), "train")
        session.run()
        assert torch.get_num_threads() == int(threads)
        csv = Path(f"{session.spec['meta']['info_prepath']}_session_df_train.csv")
        dfs.append(pd.read_csv(csv).drop(columns=["wall_t", "fps"]))
    pd.testing.assert_frame_equal(dfs[0], dfs[1], check_exact=True)


def test_a_training_session_tunes_its_threads(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, start_session
) -> None:
    """A real PPO session on a pretend 4-core machine, with windows short enough for its few updates: it times
    each candidate count and ends on the fastest (which one depends on this machine)."""
    monkeypatch.setenv("PY_ENV", "test")
    monkeypatch.setattr(perf, "machine_cores", lambda: 4)
    monkeypatch.setattr(perf, "REFRESH_INTERVAL", 0.0)
    monkeypatch.setattr(perf, "TUNE_SECONDS", 0.0)
    # 16 updates of 128 frames: a warm-up window and two per candidate
    session = start_session(_tiny_spec(2048), "train")
    budget = session.threads
    session.run()
    assert session.agent.train_seconds > 0
    tuner = budget.tuner
    assert tuner is not None and set(tuner.costs) == {4, 2, 1}
    assert all(cost > 0 for cost in tuner.costs.values())
    assert budget.threads == tuner.best


def test_the_tuner_also_looks_between_optimizer_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside one long update the loop does not refresh; the clock's opt-step hook lets the tuner move on."""
    from slm_lab.env.clock import Clock

    monkeypatch.setattr(perf, "TUNE_CHECK_INTERVAL", 0.0)
    setup_perf(torch.device("cpu"))
    budget: ThreadBudget = perf._BUDGET
    clock, seconds = Clock(1000), [0.0]
    costs = {16: 0.004, 8: 0.002, 1: 0.003}
    budget.refresh(0.0, 0)  # the loop's first look makes the tuner
    budget.totals = lambda: (seconds[0], clock.opt_step)
    clock.on_opt_step = budget.on_opt_step
    while budget.tuner.probing:
        warm = len(budget.tuner.queue) > len(budget.tuner.rounds)
        seconds[0] += 1.0 if warm else costs[budget.threads]
        clock.tick_opt_step()
    assert budget.threads == 8 and torch.get_num_threads() == 8
    assert clock.opt_step < 4000  # windows of 0.5 s of training: a few hundred steps each

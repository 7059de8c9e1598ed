"""CPU thread set-up: the cores are split between concurrent sessions, and a search trial uses only its share."""

import pytest
import torch

from slm_lab.lib.perf import setup_perf


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch: pytest.MonkeyPatch):
    """setup_perf sets torch's threads and the BLAS variables of this process: put them back afterwards."""
    threads = torch.get_num_threads()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLAS_NUM_THREADS", "SLM_CPUS", "OPTIMIZE_PERF"):
        monkeypatch.setenv(var, "")  # recorded, so that teardown restores the variable or its absence
        monkeypatch.delenv(var)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    yield
    torch.set_num_threads(threads)


def test_cores_are_split_between_concurrent_sessions() -> None:
    assert setup_perf(torch.device("cpu"), concurrent_sessions=4)["torch_threads"] == 4
    assert torch.get_num_threads() == 4


def test_a_search_trial_uses_its_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLM_CPUS", "2")
    assert setup_perf(torch.device("cpu"))["torch_threads"] == 2
    assert setup_perf(torch.device("cpu"), concurrent_sessions=2)["torch_threads"] == 1


def test_optimize_perf_off_leaves_threads_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIMIZE_PERF", "false")
    before = torch.get_num_threads()
    assert setup_perf(torch.device("cpu"), concurrent_sessions=8) == {"optimize_perf": False}
    assert torch.get_num_threads() == before

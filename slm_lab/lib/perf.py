"""Performance set-up for a session process (``--optimize-perf``, contract §1.2)."""

import os

import torch

__all__ = ["setup_perf"]


def setup_perf(device: torch.device, concurrent_sessions: int = 1) -> dict[str, object]:
    """CPU: torch threads = the cores this session may use (cpu_count / concurrent sessions, at most 32), with the
    BLAS thread variables to match; inside a search trial the cores are the trial's share, ``SLM_CPUS``. GPU: TF32
    on compute capability ≥ 8 and cudnn.benchmark. Returns what was set.

    Dividing the cores between concurrent sessions avoids oversubscription: with 4 sessions on 2 cores the reference
    runs 4×2 threads on 2 cores.
    """
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
    else:
        cpus = int(os.environ.get("SLM_CPUS") or os.cpu_count() or 1)
        threads = max(1, min(cpus // max(1, concurrent_sessions), 32))
        torch.set_num_threads(threads)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
        info.update(device="cpu", torch_threads=threads)
    return info

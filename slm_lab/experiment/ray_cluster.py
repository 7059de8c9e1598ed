"""The Ray cluster a search runs on: a local one the lab starts, or an existing one it attaches to (B1).

A cluster the lab starts is marked: before ``ray.init`` starts it, the driver sets ``SLM_RAY_OWNER`` in its
environment, and every process of that cluster (GCS, raylet, workers, and the session processes trials spawn)
inherits it. ``slm-lab run --stop-ray`` stops exactly the processes that carry the mark, so a cluster the user
started with ``ray start`` (which the lab only attaches to) is never touched.

``ray`` is imported only inside the functions, so the CLI stays light.
"""

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from slm_lab.errors import LabError

__all__ = [
    "OWNER_ENV",
    "RayConnection",
    "connect",
    "disconnect",
    "lab_ray_processes",
    "prepare_attach",
    "stop_lab_ray",
]

OWNER_ENV = "SLM_RAY_OWNER"
_LOCAL = ("", "local")


@dataclass(frozen=True)
class RayConnection:
    """How the driver is connected: ``started`` is true when the lab started the (local) cluster itself."""

    started: bool
    address: str
    dashboard_url: str | None


def connect(address: str | None = None) -> RayConnection:
    """Attach to the Ray cluster at ``address`` (or ``$RAY_ADDRESS``), or start a local one when neither is given
    (or the address is ``local``). A cluster that cannot be reached is a ``LabError`` naming the address."""
    import ray

    address = _address(address)
    if ray.is_initialized():
        ray.shutdown()
    if address is None or address.strip() in _LOCAL:
        os.environ[OWNER_ENV] = str(os.getpid())  # inherited by every process of the cluster started here
        # the dashboard (ray[default]) starts with a local cluster unless SLM_RAY_DASHBOARD=false (the test suite,
        # where its start-up would only cost time)
        dashboard = os.environ.get("SLM_RAY_DASHBOARD", "true").lower() != "false"
        ctx = ray.init(address="local", log_to_driver=True, include_dashboard=dashboard)
        started = True
    else:
        try:
            ctx = ray.init(address=address, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
            hint = (
                " (is the cluster running at that address? A cluster started with `ray start` also wants its auth "
                "token: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, with RAY_AUTH_MODE=token)"
            )
            raise LabError(f"--ray-address {address}: cannot attach to a Ray cluster: {e}{hint}") from None
        started = False
    url = getattr(ctx, "dashboard_url", None) or None
    conn = RayConnection(started, "local" if started else address, url)
    where = "started a local Ray cluster" if started else f"attached to the Ray cluster at {conn.address}"
    dashboard = (
        f"Ray dashboard: http://{url}"
        if url
        else "Ray dashboard: not running (off with SLM_RAY_DASHBOARD=false; it needs ray[default])"
    )
    resources = ray.cluster_resources()
    logger.info(
        f"Search: {where}; {int(resources.get('CPU', 0))} CPUs, {int(resources.get('GPU', 0))} GPUs. {dashboard}. "
        "Leftover processes of a lab-started cluster: slm-lab run --stop-ray"
    )
    return conn


def _address(address: str | None) -> str | None:
    return address if address is not None else os.environ.get("RAY_ADDRESS")


def prepare_attach(address: str | None = None) -> None:
    """Call before Ray is first imported. ``ray start`` enables token authentication, but a driver that attaches
    sends its token only in token mode, and Ray reads the mode once, at import. When the search will attach to a
    cluster, the user has not chosen a mode, and a token is at hand (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
    ``~/.ray/auth_token``), attach in token mode."""
    address = _address(address)
    if address is None or address.strip() in _LOCAL or "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
        logger.debug("Search: attaching with RAY_AUTH_MODE=token (a Ray auth token was found)")


def disconnect(conn: RayConnection | None) -> None:
    """Disconnect the driver; a cluster the lab started shuts down with it, an attached one keeps running."""
    import ray

    with contextlib.suppress(Exception):
        ray.shutdown()
    if conn is not None and conn.started:
        os.environ.pop(OWNER_ENV, None)


# ---------------------------------------------------------------------------------------------------------------
# --stop-ray


def _marked(pid: int) -> bool:
    """Whether process ``pid`` was started with ``SLM_RAY_OWNER`` in its environment (readable for own processes)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return any(item.startswith(OWNER_ENV.encode() + b"=") for item in environ.split(b"\0"))


def lab_ray_processes() -> list[int]:
    """The pids of live processes that belong to a Ray cluster the lab started (Linux: read from ``/proc``)."""
    proc = Path("/proc")
    if not proc.is_dir():
        raise LabError(
            "--stop-ray needs /proc (Linux) to find the lab's Ray processes; use `ray stop` instead"
        )
    me = os.getpid()
    return sorted(
        int(p.name) for p in proc.iterdir() if p.name.isdigit() and int(p.name) != me and _marked(int(p.name))
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        return state.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is already dead
    return True


def stop_lab_ray(grace: float = 5.0) -> list[int]:
    """SIGTERM every process of a lab-started Ray cluster (and the lab processes its workers spawned), then SIGKILL
    those still alive after ``grace`` seconds. Returns the pids that were signalled."""
    pids = lab_ray_processes()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return pids

"""The resume files of a session, written so that a kill at any moment leaves a consistent pair (→D10, B4).

A session's full state is two files: ``{model_prepath}_state.pt`` (nets, optimizers, schedulers, normalisers, clock,
dataframe rows, RNG states, the episodes in progress) and ``{model_prepath}_memory.pt`` (the replay or on-policy
buffer, which can be large). Both carry the same random token. Each file is written atomically (a temporary file
renamed over the old one), and the pair is committed in two phases:

1. the new state goes to ``_state.pt.pending``;
2. the new memory replaces ``_memory.pt``;
3. ``_state.pt.pending`` is renamed to ``_state.pt``.

A kill before step 2 leaves the old pair and a pending state whose token matches no memory: it is discarded. A kill
between steps 2 and 3 leaves a pending state whose token matches the new memory: reading rolls it forward. So the
reader always finds a matching pair, and a mismatch means files from different runs were mixed, which is an error.
"""

import os
import uuid
from pathlib import Path
from typing import Any

from slm_lab.errors import CheckpointError
from slm_lab.lib.io_util import load_torch_file, save_torch_file

__all__ = ["STATE_VERSION", "has_resume_state", "read_resume_state", "resume_paths", "write_resume_state"]

STATE_VERSION = 1


def resume_paths(model_prepath: str) -> tuple[Path, Path, Path]:
    """(state, pending state, memory) file paths of a session's resume files."""
    state = Path(f"{model_prepath}_state.pt")
    return state, Path(f"{state}.pending"), Path(f"{model_prepath}_memory.pt")


def has_resume_state(model_prepath: str) -> bool:
    """Whether a session wrote a resume state (a first write stopped before its memory file left none)."""
    state, pending, memory = resume_paths(model_prepath)
    return state.exists() or (pending.exists() and memory.exists())


def write_resume_state(model_prepath: str, state: dict[str, Any], memory: dict[str, Any]) -> None:
    """Write the state and memory files of a session as one consistent pair (see the module doc)."""
    state_path, pending, memory_path = resume_paths(model_prepath)
    token = uuid.uuid4().hex
    state = {**state, "version": STATE_VERSION, "token": token}
    # durable: each file is on disk before the rename that commits it
    save_torch_file(pending, state, durable=True)
    save_torch_file(memory_path, {"token": token, "memory": memory}, durable=True)
    os.replace(pending, state_path)


def read_resume_state(model_prepath: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state, memory state) of a session, completing or discarding an interrupted write first. Raises
    ``CheckpointError`` naming the file when one is missing, unreadable or from another checkpoint."""
    state_path, pending, memory_path = resume_paths(model_prepath)
    # on the CPU: a state saved on a GPU machine resumes on one without (load_state_dict moves it to the device)
    memory = load_torch_file(memory_path, map_location="cpu")
    if not isinstance(memory, dict) or "token" not in memory:
        raise CheckpointError(f"{memory_path} is not a lab memory checkpoint")
    if pending.exists():
        try:
            candidate = load_torch_file(pending, map_location="cpu")
        except CheckpointError:
            candidate = None  # never happens with atomic writes; a damaged pending file was never committed
        if isinstance(candidate, dict) and candidate.get("token") == memory["token"]:
            os.replace(pending, state_path)  # the write stopped after the memory: roll forward
        else:
            pending.unlink()  # the write stopped before the memory: the old pair stands
    state = load_torch_file(state_path, map_location="cpu")
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise CheckpointError(
            f"{state_path} is not a resume state of this version (version {state.get('version')!r}, "
            f"expected {STATE_VERSION})"
            if isinstance(state, dict)
            else f"{state_path} is not a lab state checkpoint"
        )
    if state["token"] != memory["token"]:
        raise CheckpointError(f"{state_path} and {memory_path} are from different checkpoints")
    return state, memory["memory"]

"""File output helpers: atomic writes (a crash never leaves a half-written file) and JSON conversion."""

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["atomic_write", "load_torch_file", "read_json", "save_torch_file", "to_jsonable", "write_json"]

_UMASK = os.umask(0)
os.umask(_UMASK)


def to_jsonable(obj: Any) -> Any:
    """Numpy scalars/arrays -> JSON numbers/lists, containers recursively, anything else unknown -> ``str``."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return str(obj)


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None], binary: bool = False) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def snapshot_file(src: str | Path, dst: str | Path) -> None:
    """Make ``dst`` a copy of ``src`` as it is now, atomically. A hard link when the filesystem allows it (no
    bytes copied): every lab file is replaced through ``atomic_write``, never rewritten in place, so the link
    keeps this version after ``src`` is replaced. A plain copy otherwise."""
    import shutil

    dst = Path(dst)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.unlink(tmp)
        try:
            os.link(src, tmp)
        except OSError:  # no hard links here (some network or Windows filesystems)
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any, indent: int = 2) -> None:
    """Atomically write ``obj`` as JSON (NaN is written as ``NaN``, which Python's json reads back)."""
    atomic_write(path, lambda f: json.dump(to_jsonable(obj), f, indent=indent))


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)


def save_torch_file(path: str | Path, obj: Any, durable: bool = False) -> None:
    """``torch.save`` through ``atomic_write``. ``durable`` also syncs the file to disk before the rename, for
    files whose write order matters after a crash (the resume pair)."""
    import torch

    def write(f: IO[Any]) -> None:
        torch.save(obj, f)
        if durable:
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write, binary=True)


def load_torch_file(path: str | Path, map_location: Any = None) -> Any:
    """``torch.load`` of a lab checkpoint file, with a clear error naming the file when it is missing or corrupt."""
    import torch

    from slm_lab.errors import CheckpointError

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file not found: {path}") from None
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint file {path}: {e}") from None

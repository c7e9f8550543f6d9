"""Atomic file writes (a temporary file in the same folder, then os.replace,
so a kill mid-write never leaves a truncated file behind that a later run
would trust) and checks that a folder can be written."""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from molret.utils.errors import MolretError


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path next to ``path``; on success it replaces ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
        os.close(fd)
        # mkstemp makes 0600 files; give the result the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    except OSError as e:
        raise MolretError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path, data: bytes, fsync: bool = True) -> None:
    """``fsync=False`` for many small files (e.g. 100k .graph files), where
    the rename alone already rules out a truncated file after a kill."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())


def atomic_write_text(path, text: str, fsync: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), fsync)


def atomic_torch_save(obj, path) -> None:
    import torch
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_np_save(path, array) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def check_writable_dir(path, shown=None) -> Path:
    """Create ``path`` if needed and check that files can be written in it
    (the error names ``shown``, default ``path``)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise MolretError(f"output folder {shown or path} is not writable: {e.strerror or e}") from None
    return path


def is_writable_dir(path) -> bool:
    """Whether files can be written in ``path`` (created if needed), as ``check_writable_dir`` finds."""
    try:
        check_writable_dir(path)
    except MolretError:
        return False
    return True

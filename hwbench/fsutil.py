"""Files that are whole or absent: the one atomic write of the package.

Every layer may import this module (like hwbench.errors): the run folders (results.store), the
fp32 reference outputs (measure.trial) and the adapters' cached artefacts (adapter.kit) all
publish through publish() so that a reader never sees half a file, even after a crash.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (best effort: some file systems refuse to open a folder)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(staged: Path, target: Path) -> None:
    """Rename a finished file or folder into place (atomic on one file system) and fsync the folder."""
    os.replace(staged, target)
    fsync_dir(target.parent)


def atomic_write(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write to a temporary name beside `target`, fsync, then publish(): whole or absent."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        publish(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(target: Path, data: bytes) -> None:
    atomic_write(target, lambda fh: fh.write(data))


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write(target, lambda fh: fh.write(text.encode("utf-8")))

"""The run-folder lock: one hwbench process writes a run folder at a time, for the whole sweep.

Two `--resume` of one folder would run the same trials and mix their samples. The lock is an
advisory fcntl.flock on `RUN_DIR/.hwbench.lock`, which holds the holder's PID for the message.
The kernel drops a flock when its holder dies (kill -9 included), so a lock left by a dead
process is never in the way: the file stays, the lock does not, and the next run takes it
and writes its own PID. The file is opened close-on-exec, so the worker interpreters a sweep
starts never inherit it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from hwbench.errors import RunLocked

LOCK_FILE = ".hwbench.lock"


def _holder(fd: int) -> int | None:
    """The PID written in the lock file by its holder, or None (not written yet, or unreadable)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


class RunLock:
    """Held from `acquire()` to `release()` (or the with block's end); RunLocked if another process holds it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            who = f"hwbench process {pid}" if pid else "another hwbench process"
            raise RunLocked(f"{self.path.parent} is in use by {who} (lock {self.path}); "
                            "wait for it to finish, or stop it and resume") from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock; the file (with a stale PID) may stay: only the flock counts."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

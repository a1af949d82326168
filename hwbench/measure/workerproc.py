"""One worker process, run to completion, timeout or memory limit: its start, its watch and its outcome.

The sweep runner (hwbench.measure.runner) starts every trial in a worker of its own, forked from the
per-sweep server (hwbench.measure.forkserver) or as a fresh interpreter (hwbench.measure.worker), in a
session of its own so that a kill takes its children too. The parent waits on a pidfd (no busy
loop), waking twice a second only to read the worker's memory, and turns whatever happened (exit
code, signal, timeout, memory limit) into a WorkerOutcome with the tail of the worker's log.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwbench.measure.forkserver import ForkServer
from hwbench.measure.worker import SPAWNED_ENV, set_parent_death_signal

STDERR_TAIL_LINES = 5


@dataclass
class WorkerOutcome:
    returncode: int | None  # None: killed by us
    signal: int | None
    cause: str | None  # why it failed, None on success
    peak_rss_mb: float | None
    stderr_tail: str


def _tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(line for line in text.strip().splitlines()[-lines:])


def _kill(pid: int) -> None:
    """SIGKILL the worker's process group (its own session), or the worker alone if it has none yet."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait(pid: int) -> tuple[int, Any]:
    _, status, usage = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), usage


def run_worker(job_path: Path, log_path: Path, timeout_s: float, memory_limit_mb: float,
               server: ForkServer | None = None) -> WorkerOutcome:
    """Run one worker to completion, timeout or memory limit; never raises for the worker's faults.

    With a `server`, the worker is forked from it (and is this process's child all the same);
    without, or when the server fails, it is a fresh interpreter."""
    import psutil

    env = dict(os.environ, HWBENCH_WORKER_PARENT=str(os.getpid()), PYTHONUNBUFFERED="1", **{SPAWNED_ENV: repr(time.time())})
    pid = server.start(str(job_path), str(log_path), env) if server is not None else None
    if pid is None:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hwbench.measure.worker", str(job_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True, preexec_fn=set_parent_death_signal,
            )
        proc.returncode = 0  # reaped below with wait4 (for its rusage), never by Popen
        pid = proc.pid
    pidfd = os.pidfd_open(pid)
    deadline = time.monotonic() + timeout_s
    cause: str | None = None
    peak_rss = 0.0
    try:
        ps = psutil.Process(pid)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                cause = f"timeout: no result after {timeout_s:g} s"
                break
            ready, _, _ = select.select([pidfd], [], [], min(0.5, left))
            if ready:
                break
            try:
                rss = sum(p.memory_info().rss for p in [ps, *ps.children(recursive=True)]) / 2**20
            except psutil.Error:
                continue
            peak_rss = max(peak_rss, rss)
            if memory_limit_mb and rss > memory_limit_mb:
                cause = f"memory limit: worker used {rss:.0f} MB, above the {memory_limit_mb:.0f} MB limit"
                break
        if cause is not None:
            _kill(pid)
    except BaseException:
        _kill(pid)
        _wait(pid)
        raise
    finally:
        os.close(pidfd)
    code, usage = _wait(pid)
    peak_rss = max(peak_rss, usage.ru_maxrss / 1024.0)
    sig = -code if code < 0 else None
    tail = _tail(log_path)
    if cause is None and code != 0:
        if sig is not None:
            name = signal.Signals(sig).name
            cause = f"worker killed by {name}" + (" (out of memory?)" if sig == signal.SIGKILL else "")
        else:
            cause = f"worker exited with code {code}"
    return WorkerOutcome(code if cause is None else code, sig, cause, peak_rss or None, tail)

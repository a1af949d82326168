"""A fork server for workers: import the measurement stack once per sweep, fork a fresh process per job.

A fresh interpreter per trial spends 1-3 s importing numpy, scipy, pandas and pyarrow
before it measures anything. This server (`python -m hwbench.measure.worker --serve RUN_DIR`,
started by hwbench.measure.runner) imports them once and forks one worker per job, so each
trial still runs in a process of its own that a crash, hang or leak takes down alone.

Only modules are imported before forking: no adapter runtime, no session, no device,
no Python thread. The threads that numpy/scipy's OpenBLAS and pyarrow's jemalloc start
at import are shut down or re-armed by their own fork handlers; the server counts the
OS threads after its imports and refuses to fork (the runner falls back to spawning a
fresh interpreter) if any other thread appears later.

Each job is forked twice (server -> intermediate -> worker) and the intermediate exits at
once, so the worker is re-parented to the runner, which has made itself a child
subreaper: the runner waits on, times out, measures and kills the worker exactly as a
worker it spawned itself (pidfd, wait4, its own process group, parent-death signal).
Protocol: one JSON line per request on stdin ({"job", "log", "env", "parent"}), one per
reply on stdout ({"pid"} or {"error"}); {"ready"} once after start-up.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback

# What a trial job imports (hwbench.measure.worker._run), imported here once before any fork; and
# importlib.metadata, which adapters use for versions. No adapter module: a plug-in's may
# import its runtime at the top, and runtime imports stay in the trial's cold start.
PRELOAD = ("hwbench.models.spec", "hwbench.measure.settings", "hwbench.results.store", "hwbench.measure.trial", "hwbench.models.workload",
           "hwbench.measure.accuracy", "hwbench.measure.profiler", "hwbench.measure.stats", "hwbench.power.select", "hwbench.measure.worker",
           "importlib.metadata")
PARENT_WAIT_S = 5.0  # how long a worker waits to be re-parented to the runner


def _os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


def _reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _worker(req: dict) -> None:
    """In the forked worker: become the runner's child, take the job's stdio and env, run it. Never returns."""
    code = 1
    try:
        from hwbench.measure import worker

        worker.WORKER_START = worker.FORKED_AT = time.time()
        os.setsid()  # its own process group, which the runner kills as a whole
        deadline = time.monotonic() + PARENT_WAIT_S
        while os.getppid() != req["parent"] and time.monotonic() < deadline:
            time.sleep(0.0005)  # the intermediate is exiting
        if os.getppid() != req["parent"]:
            os._exit(3)  # the runner died (or is no subreaper): do nothing
        worker.set_parent_death_signal()
        if os.getppid() != req["parent"]:
            os._exit(3)
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.environ.clear()
        os.environ.update(req["env"])
        code = worker.main([req["job"]])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - report like an interpreter would, then exit
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _fork_job(req: dict) -> int:
    """Double-fork a worker for `req`; its pid, once the intermediate has exited."""
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    mid = os.fork()
    if mid == 0:
        try:
            os.close(r)
            pid = os.fork()
            if pid == 0:
                os.close(w)
                _worker(req)
            os.write(w, str(pid).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 64):
        data += chunk
    os.close(r)
    os.waitpid(mid, 0)  # once reaped, the worker has been re-parented to the runner
    return int(data)


def serve() -> int:
    """The server loop: preload, say ready, then fork one worker per request until stdin closes."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    baseline = _os_threads()
    _reply({"ready": True, "os_threads": baseline})
    while line := sys.stdin.buffer.readline():
        try:
            req = json.loads(line)
            if threading.active_count() != 1 or _os_threads() > baseline:
                _reply({"error": f"threads started after import ({_os_threads()} > {baseline}): not forking"})
                return 4
            _reply({"pid": _fork_job(req)})
        except Exception as e:  # noqa: BLE001 - a bad request is the runner's to handle
            _reply({"error": f"{type(e).__name__}: {e}"})
    return 0


# -- the runner's end -------------------------------------------------------------------
DISABLE_ENV = "HWBENCH_FORKSERVER"  # "0": spawn a fresh interpreter per job, as before
PR_SET_CHILD_SUBREAPER = 36


class ForkServerError(RuntimeError):
    """The server could not start or fork a worker. `clean`: it said so, and forked nothing for the
    job (the runner spawns the worker itself); otherwise a worker may exist, so the job is not rerun."""

    def __init__(self, message: str, clean: bool = False) -> None:
        super().__init__(message)
        self.clean = clean


def enabled() -> bool:
    return os.environ.get(DISABLE_ENV, "1") != "0" and sys.platform.startswith("linux")


def become_subreaper() -> None:
    """Orphaned descendants (the forked workers) become this process's children, so it can wait4 them."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise ForkServerError(f"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}")


class ForkServer:
    """The runner's handle on one server process (see the module docstring)."""

    def __init__(self, run_dir: str, log_path: str, start_timeout_s: float = 120.0) -> None:
        import subprocess

        from hwbench.measure.worker import set_parent_death_signal

        become_subreaper()
        env = dict(os.environ, HWBENCH_WORKER_PARENT=str(os.getpid()), PYTHONUNBUFFERED="1")
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hwbench.measure.worker", "--serve", run_dir],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                start_new_session=True, preexec_fn=set_parent_death_signal,
            )
        self._buf = b""
        try:
            reply = self._read(start_timeout_s)
        except BaseException:
            self.close()
            raise
        if not reply.get("ready"):
            self.close()
            raise ForkServerError(f"server did not start: {reply}")

    def _read(self, timeout_s: float) -> dict:
        import select

        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ForkServerError(f"no reply from the server in {timeout_s:g} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise ForkServerError(f"the server exited (code {self.proc.poll()})")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def start(self, job_path: str, log_path: str, env: dict[str, str], timeout_s: float = 30.0) -> int:
        """Fork a worker for one job; its pid (a child of this process by then)."""
        assert self.proc.stdin is not None
        req = {"job": job_path, "log": log_path, "env": env, "parent": os.getpid()}
        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
        except OSError as e:
            raise ForkServerError(f"the server is gone: {e}", clean=True) from e
        try:
            reply = self._read(timeout_s)
        except KeyboardInterrupt:  # the worker may exist already: do not leave it running
            self._abandon(2.0)
            raise
        if "pid" not in reply:
            raise ForkServerError(str(reply.get("error", reply)), clean=True)
        return int(reply["pid"])

    def _abandon(self, timeout_s: float) -> None:
        """Kill and reap the worker of a request whose reply was not awaited, if one was forked."""
        import signal

        try:
            reply = self._read(timeout_s)
        except (ForkServerError, KeyboardInterrupt):
            return
        if "pid" in reply:
            pid = int(reply["pid"])
            for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    kill()
                    break
                except ProcessLookupError:
                    continue
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass

    def close(self) -> None:
        """Stop the server (its workers are the runner's children now, not its own) and reap it."""
        import signal

        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=2.0)
        except Exception:  # noqa: BLE001 - not gone in time: kill it
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

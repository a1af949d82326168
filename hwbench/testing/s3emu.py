"""An S3 emulator for tests and benchmarks: moto's standalone server on 127.0.0.1, at a free port.

moto is an emulator of the S3 wire protocol, not S3: it keeps objects in memory and is good for
proving that the code speaks S3 (PUT, GET, ranged reads, listings, deletes), never for timing a real
bucket. The server only listens on the loopback address, and the credentials it gets are fake ones.

    with MotoServer() as s3, s3.exported():   # the AWS variables set for this process, restored after
        s3.create_bucket("results")            # then "s3://results/..." works
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _server_command(port: int) -> list[str]:
    exe = Path(sys.executable).with_name("moto_server")
    if exe.exists():
        return [str(exe), "-H", HOST, "-p", str(port)]
    found = shutil.which("moto_server")
    if found:
        return [found, "-H", HOST, "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]


class MotoServer:
    """A moto_server process, started on enter and stopped (by its pid) on exit."""

    def __init__(self, start_timeout_s: float = 30.0) -> None:
        self.port = free_port()
        self.endpoint = f"{HOST}:{self.port}"
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point any client at this server, with fake keys."""
        return {"AWS_ENDPOINT_URL_S3": f"http://{self.endpoint}", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    @contextlib.contextmanager
    def exported(self) -> Iterator[MotoServer]:
        """This process's environment pointed at the server (env()) for the block; restored after it."""
        saved = {k: os.environ.get(k) for k in self.env()}
        os.environ.update(self.env())
        try:
            yield self
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def __enter__(self) -> MotoServer:
        self.proc = subprocess.Popen(_server_command(self.port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, "MOTO_CALL_RESET_API": "false"})
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with code {self.proc.returncode}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError(f"moto_server did not listen on {self.endpoint} within {self.start_timeout_s:g} s")

    def filesystem(self):  # -> pyarrow.fs.S3FileSystem
        from pyarrow import fs

        return fs.S3FileSystem(endpoint_override=self.endpoint, scheme="http", region="us-east-1",
                               access_key="testing", secret_key="testing", allow_bucket_creation=True)

    def create_bucket(self, name: str) -> None:
        self.filesystem().create_dir(name)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

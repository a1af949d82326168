"""An append-only file of finished requests, written by a client process as each one ends.

A client process that dies mid-point (killed, crashed, out of memory) must not take the
requests it had finished with it. So it appends each one, pickled and length-prefixed, with a
single write() the moment it ends; the kernel keeps what was written whatever happens to the
writer afterwards. The parent reads the file once the measurement window is over. A record cut
short (the writer died inside write(), or the disk filled) is dropped: that request counts as
unfinished. One write per request costs a few microseconds of the client's CPU; the file lives
in /dev/shm where it can (memory, not disk).

    record = 8-byte little-endian length, then pickle((arrival index within the process, result))
"""

from __future__ import annotations

import os
import pickle
import struct

_LEN = struct.Struct("<Q")


class ResultLog:
    """The writing end (in the client process)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, index: int, result: object) -> None:
        data = pickle.dumps((index, result), protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_LEN.pack(len(data)) + data)
        while view:  # a regular file takes it whole, bar a full disk; never leave a record misaligned
            view = view[os.write(self._fd, view):]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_log(path: str) -> list[tuple[int, object]]:
    """Every whole record of a log, in the order written; [] when the file does not exist."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return []
    out: list[tuple[int, object]] = []
    at = 0
    while at + _LEN.size <= len(raw):
        (size,) = _LEN.unpack_from(raw, at)
        end = at + _LEN.size + size
        if end > len(raw):
            break  # cut short: the writer died mid-record
        index, result = pickle.loads(raw[at + _LEN.size:end])
        out.append((int(index), result))
        at = end
    return out

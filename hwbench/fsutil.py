"""Files that are whole or absent: the one atomic write of the package.

Every layer may import this module (like hwbench.errors): the run folders (results.store), the
fp32 reference outputs (measure.trial) and the adapters' cached artefacts (adapter.kit) all
publish through publish() so that a reader never sees half a file, even after a crash.
"""

from __future__ import annotations

import hashlib
import json
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


# -- self-checking cached artefacts ------------------------------------------------------------
# A cached artefact (a derived model, an engine, a folder) is published with a sidecar holding its
# size and SHA-256; a reader verifies both before use, so an entry cut short or overwritten with
# garbage is rebuilt once instead of failing every later run. Rebuilds leave a note for the record.

_REBUILT: list[str] = []


def checksum_path(target: Path) -> Path:
    return Path(target).with_name(f".{Path(target).name}.sha256")


def content_digest(target: Path) -> tuple[int, str]:
    """(bytes, sha256) of a file, or of a folder's files (relative names and contents, in name order)."""
    target = Path(target)
    files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
    h, total = hashlib.sha256(), 0
    for path in files:
        if path != target:
            h.update(str(path.relative_to(target)).encode("utf-8", "surrogatepass") + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
                total += len(block)
    return total, h.hexdigest()


def write_checksum(target: Path) -> None:
    """Record `target`'s size and hash beside it (after it is in place: a crash between means a rebuild)."""
    size, digest = content_digest(target)
    atomic_write_text(checksum_path(target), json.dumps({"bytes": size, "sha256": digest}))


def checksum_problem(target: Path) -> str | None:
    """Why the cached `target` cannot be trusted ('no checksum', 'size differs', 'content differs'), or None."""
    try:
        want = json.loads(checksum_path(target).read_text(encoding="utf-8"))
        size, digest = int(want["bytes"]), str(want["sha256"])
    except FileNotFoundError:
        return "no checksum (written by an older hwbench, or cut short)"
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable checksum"
    got_size, got = content_digest(target)
    if got_size != size:
        return f"{got_size} bytes where {size} were cached"
    return None if got == digest else "content differs from what was cached"


def note_rebuilt(message: str) -> None:
    """Say that a cached artefact failed its check and was rebuilt (collected by take_rebuilt_notes)."""
    if message not in _REBUILT:
        _REBUILT.append(message)


def take_rebuilt_notes() -> list[str]:
    """The rebuild notes since the last call (a trial puts them in its record's warnings)."""
    out = list(_REBUILT)
    _REBUILT.clear()
    return out

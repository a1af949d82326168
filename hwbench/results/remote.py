"""A run folder mirrored to a store location (hwbench.results.uri), with the local disk's no-loss rules.

A sweep always writes its run folder on the local disk first (hwbench.results.store.RunWriter: its
workers write there). A RunMirror then copies each file to the store as soon as it is whole:

  * the manifest when the sweep starts, and again when it ends;
  * a trial's latencies, then its record: on the store, as locally, a record's presence means the trial
    is complete;
  * at the end, the compacted latencies then the compacted records, and only then are the store's
    fragments removed (a crash in between leaves duplicates that loading keeps once, never a loss).

Each file is committed in one step. On a disk that is write-to-a-temporary-name then rename; on an
object store, which has no atomic rename (a "move" there is a copy then a delete), it is one PUT of the
final key: an object is whole or absent, and the key is written last, after everything it implies.
`pull` brings a stored run back to a local folder so that the runner resumes it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from hwbench.errors import ResultsError
from hwbench.results.uri import Location

MANIFEST = "manifest.json"
RECORDS = "records.parquet"
LATENCIES = "latencies.parquet"
_PULLED = (MANIFEST, RECORDS, LATENCIES)
_PULLED_DIRS = ("records", "latencies")


def put_bytes(loc: Location, path: str, data: bytes) -> None:
    """Commit `data` at `path` on `loc` in one step (a rename on disk, a single PUT on an object store), or
    raise ResultsError (one line) leaving nothing there that a reader would trip on.

    On an object store the object is checked after the PUT (one HEAD: its size): a client without
    credentials sends an unsigned, chunk-framed upload that a permissive S3-protocol server (an emulator,
    some gateways) stores framing and all, a file no reader can open. Such an object is removed and the
    write fails, naming the credentials. The one key two writers may put at once, a store's consolidated
    index (hwbench.results.consolidate), is whole either way: a mismatch there fails that consolidation
    and removes the index, and loads read the run folders (slower, never a loss)."""
    filesystem = loc.fs
    head = path.rpartition("/")[0]
    try:
        if loc.atomic_rename:
            filesystem.create_dir(head, recursive=True)
            tmp = f"{head}/.{path.rpartition('/')[2]}.tmp{os.getpid()}-{uuid.uuid4().hex[:6]}"
            with filesystem.open_output_stream(tmp) as out:
                out.write(data)
            filesystem.move(tmp, path)
            return
        out = filesystem.open_output_stream(path)
        try:
            out.write(data)
        finally:
            out.close()  # the PUT (or the upload's completion): an error here is the write's error
        stored = filesystem.get_file_info(path).size
    except OSError as e:
        raise ResultsError(f"cannot write {loc.display(path)}: {_one_line(e)}") from e
    if stored != len(data):
        raise ResultsError(f"cannot write {loc.display(path)}: the store kept {stored} bytes of the {len(data)} sent "
                           f"(an unsigned or altered upload: does this node have credentials?); {_remove(loc, path)}")


def _remove(loc: Location, path: str) -> str:
    """Remove a bad object; what became of it, for the error message."""
    from pyarrow import fs

    try:
        loc.fs.delete_file(path)
    except OSError as e:  # S3 also re-creates the parent's marker after a delete: that may fail alone
        try:
            gone = loc.fs.get_file_info(path).type == fs.FileType.NotFound
        except OSError:
            gone = False
        if not gone:
            return f"it could not be removed ({_one_line(e)}): delete it by hand"
    return "it was removed"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


class RunMirror:
    """Copies one local run folder's files to `<store>/<run_id>/` as they become whole."""

    def __init__(self, loc: Location, run_id: str, local_dir: Path) -> None:
        self.loc = loc
        self.run_id = run_id
        self.local_dir = Path(local_dir)
        self.remote_dir = loc.join(run_id)

    def _put(self, rel: str) -> None:
        put_bytes(self.loc, f"{self.remote_dir}/{rel}", (self.local_dir / rel).read_bytes())

    def manifest(self) -> None:
        self._put(MANIFEST)

    def put_json(self, name: str, text: str) -> None:
        put_bytes(self.loc, f"{self.remote_dir}/{name}", text.encode("utf-8"))

    def trial(self, fragment_name: str) -> None:
        """A completed trial's fragment pair: latencies first, the record (the commit) last."""
        if (self.local_dir / "latencies" / fragment_name).exists():
            self._put(f"latencies/{fragment_name}")
        self._put(f"records/{fragment_name}")

    def compacted(self) -> None:
        """After local compaction: the compacted files, records last, then the store's fragments go."""
        from pyarrow import fs

        for name in (LATENCIES, RECORDS):
            if (self.local_dir / name).exists():
                self._put(name)
        for sub in _PULLED_DIRS:
            try:
                infos = self.loc.fs.get_file_info(fs.FileSelector(f"{self.remote_dir}/{sub}", allow_not_found=True))
                for info in infos:
                    if info.type == fs.FileType.File and info.path.endswith(".parquet"):
                        self.loc.fs.delete_file(info.path)
            except OSError as e:  # leftovers are duplicates that loading keeps once: note, never fail
                raise ResultsError(f"compacted {self.run_id} but could not remove its fragments: {e}") from e

    def exists(self) -> bool:
        from pyarrow import fs

        try:
            return self.loc.fs.get_file_info(f"{self.remote_dir}/{MANIFEST}").type == fs.FileType.File
        except OSError as e:
            raise ResultsError(f"cannot read {self.loc.display(self.remote_dir)}: {e}") from e

    def pull(self) -> bool:
        """Copy the stored run's manifest, records and latencies into the local folder; False if none is stored."""
        from pyarrow import fs

        if not self.exists():
            return False
        try:
            infos = self.loc.fs.get_file_info(fs.FileSelector(self.remote_dir, recursive=True))
        except OSError as e:
            raise ResultsError(f"cannot list {self.loc.display(self.remote_dir)}: {e}") from e
        prefix = self.remote_dir.rstrip("/") + "/"
        for info in infos:
            rel = info.path[len(prefix):]
            top = rel.split("/")[0]
            if info.type != fs.FileType.File or not (rel in _PULLED or (top in _PULLED_DIRS and rel.endswith(".parquet"))):
                continue
            target = self.local_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.loc.fs.open_input_stream(info.path) as src:
                target.write_bytes(src.read())
        return True

"""Results on object storage: a real S3-protocol server (moto, an emulator) on 127.0.0.1, one per module.

Covers the URI parsing (no credentials in URIs), mirroring a run folder with the no-loss rules,
loading through s3:// with filters pushed down, schema migration through the store, and resume's pull.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("moto", reason="the S3 tests need the fleet extra (pip install 'hwbench[fleet]')")

from hwbench.errors import ResultsError, UsageError  # noqa: E402
from hwbench.results.remote import RunMirror, put_bytes  # noqa: E402
from hwbench.results.schema import SCHEMA_VERSION, TrialRecord  # noqa: E402
from hwbench.results.store import RunWriter, load_latencies, load_records  # noqa: E402
from hwbench.results.uri import is_uri, open_location  # noqa: E402
from hwbench.testing.s3emu import MotoServer  # noqa: E402

GOLDEN = Path(__file__).parent / "fixtures" / "schema_v1_run"
BUCKET = "hwbench-test"


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoServer]:
    with MotoServer() as server, server.exported():
        server.create_bucket(BUCKET)
        yield server


def rec(run: str, trial_id: str, **kw) -> TrialRecord:
    base = dict(run_id=run, trial_id=trial_id, model="m", model_sha256="s", adapter="null", device="cpu",
                precision="fp32", batch_size=1, started_at="2026-06-01T00:00:00+00:00")
    base.update(kw)
    return TrialRecord(**base)


def write_run(folder: Path, run: str, records: list[TrialRecord]) -> RunWriter:
    w = RunWriter(folder / run)
    w.write_manifest({"run_id": run})
    for r in records:
        w.write_trial(r, np.arange(5))
    return w


def mirror_all(w: RunWriter, uri: str, run: str) -> RunMirror:
    m = RunMirror(open_location(uri), run, w.run_dir)
    m.manifest()
    for f in sorted((w.run_dir / "records").glob("*.parquet")):
        m.trial(f.name)
    return m


def test_uri_parsing_refuses_credentials_and_unknown_schemes(tmp_path: Path) -> None:
    assert is_uri("s3://b/p") and is_uri("file:///x") and not is_uri("/a/b:c") and not is_uri("results")
    with pytest.raises(UsageError, match="credentials"):
        open_location("s3://AKIA:secret@bucket/prefix")
    with pytest.raises(UsageError, match="not a results store"):
        open_location("ftp://host/x")
    loc = open_location(f"file://{tmp_path}")
    assert loc.atomic_rename and loc.root == tmp_path.as_posix()


def test_mirrored_run_loads_through_s3_like_the_local_folder(s3: MotoServer, tmp_path: Path) -> None:
    w = write_run(tmp_path, "r1", [rec("r1", f"t{i}", latency_p50_ms=float(i)) for i in range(3)])
    mirror_all(w, f"s3://{BUCKET}/a", "r1")
    remote = load_records(f"s3://{BUCKET}/a")
    local = load_records([tmp_path])
    assert sorted(remote.trial_id) == sorted(local.trial_id) == ["t0", "t1", "t2"]
    assert remote.sort_values("trial_id").latency_p50_ms.tolist() == [0.0, 1.0, 2.0]
    assert len(load_latencies(f"s3://{BUCKET}/a")) == 15


def test_compaction_on_s3_removes_fragments_and_a_crash_between_duplicates_nothing(s3: MotoServer, tmp_path: Path) -> None:
    w = write_run(tmp_path, "r2", [rec("r2", f"t{i}") for i in range(3)])
    m = mirror_all(w, f"s3://{BUCKET}/b", "r2")
    w.compact()
    # crash after the compacted records are put, before the fragments are removed: loading keeps each once
    put_bytes(m.loc, f"{m.remote_dir}/records.parquet", (w.run_dir / "records.parquet").read_bytes())
    assert sorted(load_records(f"s3://{BUCKET}/b").trial_id) == ["t0", "t1", "t2"]
    m.compacted()
    keys = [i.path for i in s3.filesystem().get_file_info(__import__("pyarrow.fs").fs.FileSelector(f"{BUCKET}/b", recursive=True))]
    assert not any("/records/" in k or "/latencies/" in k for k in keys), keys
    assert sorted(load_records(f"s3://{BUCKET}/b").trial_id) == ["t0", "t1", "t2"]


def test_filters_are_pushed_down(s3: MotoServer, tmp_path: Path) -> None:
    records = [rec("r3", "a", model="alpha", started_at="2026-01-01T00:00:00+00:00"),
               rec("r3", "b", model="beta", started_at="2026-03-01T00:00:00+00:00"),
               rec("r3", "c", model="alpha", started_at="2026-05-01T00:00:00+00:00")]
    mirror_all(write_run(tmp_path, "r3", records), f"s3://{BUCKET}/c", "r3")
    uri = f"s3://{BUCKET}/c"
    assert sorted(load_records(uri, models=["alpha"]).trial_id) == ["a", "c"]
    assert load_records(uri, since="2026-02-01", until="2026-04-01").trial_id.tolist() == ["b"]
    assert len(load_records(uri, schema_versions=[1])) == 0
    assert len(load_records(uri, schema_versions=[SCHEMA_VERSION])) == 3


def test_old_schema_is_migrated_through_the_store(s3: MotoServer) -> None:
    loc = open_location(f"s3://{BUCKET}/golden")
    for f in GOLDEN.iterdir():
        put_bytes(loc, loc.join("v1run", f.name), f.read_bytes())
    df = load_records(f"s3://{BUCKET}/golden")
    assert len(df) == 2 and set(df.schema_version) == {1}
    assert (df.processes == 1).all() and all(list(w) == [] for w in df.warnings)
    assert len(load_records(f"s3://{BUCKET}/golden", schema_versions=[1])) == 2


def test_pull_brings_a_stored_run_back_for_resume(s3: MotoServer, tmp_path: Path) -> None:
    w = write_run(tmp_path / "src", "r4", [rec("r4", "t0"), rec("r4", "t1")])
    mirror_all(w, f"s3://{BUCKET}/d", "r4")
    back = RunMirror(open_location(f"s3://{BUCKET}/d"), "r4", tmp_path / "dst" / "r4")
    assert back.pull()
    assert RunWriter(tmp_path / "dst" / "r4").completed_trial_ids() == {"t0", "t1"}
    assert not RunMirror(open_location(f"s3://{BUCKET}/d"), "nope", tmp_path / "x").pull()


def test_an_empty_prefix_is_a_results_error(s3: MotoServer) -> None:
    with pytest.raises(ResultsError, match="no hwbench runs"):
        load_records(f"s3://{BUCKET}/empty-prefix")


def test_frontier_reads_s3_directly(s3: MotoServer, tmp_path: Path) -> None:
    loc = open_location(f"s3://{BUCKET}/golden2")
    for f in GOLDEN.iterdir():
        put_bytes(loc, loc.join("v1run", f.name), f.read_bytes())
    res = subprocess.run([sys.executable, "-m", "hwbench", "frontier", f"s3://{BUCKET}/golden2", "--json"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=120)
    assert res.returncode == 0, res.stderr
    assert '"points"' in res.stdout
    assert "testing" not in res.stdout + res.stderr  # the (fake) secret key never reaches output
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_profile_out_s3_mirrors_the_run_as_it_goes(s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    import onnx
    from onnx import TensorProto, helper

    from hwbench.measure.session import build_config, run_profile
    from hwbench.measure.settings import SweepConfig

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    model = tmp_path / "tiny.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    cfg = build_config(SweepConfig(idle_power_s=0), model=str(model), adapter="null", precision="fp32", batch="1,2",
                       duration=0.05, max_duration=0.2, min_iters=5, no_accuracy=True)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the kept local copy stays in the test's folder
    seen = []
    result = run_profile(cfg, f"s3://{BUCKET}/profiled", on_event=lambda kind, data: seen.append(kind))
    assert "trial_done" in seen and any("mirrored to s3://" in n for n in result.notes)
    df = load_records(f"s3://{BUCKET}/profiled")
    assert sorted(df.batch_size) == [1, 2] and (df.status == "ok").all()
    assert df.run_id.unique().tolist() == [result.run_dir.name] and result.run_dir.is_relative_to(tmp_path)


def _objects(server: MotoServer, prefix: str) -> list[str]:
    from pyarrow import fs

    infos = server.filesystem().get_file_info(fs.FileSelector(f"{BUCKET}/{prefix}", recursive=True, allow_not_found=True))
    return [i.path for i in infos if i.type == fs.FileType.File]


def test_a_node_without_credentials_fails_in_one_line_and_leaves_nothing(s3: MotoServer, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Unsigned, the SDK frames the upload in chunks; the emulator (like some gateways) stores the framing too:
    an unreadable records.parquet, once. The write is checked and the object removed."""
    w = write_run(tmp_path, "nc", [rec("nc", "t0")])
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    m = RunMirror(open_location(f"s3://{BUCKET}/nocreds"), "nc", w.run_dir)
    for step in (m.manifest, lambda: m.trial(next((w.run_dir / "records").glob("*.parquet")).name)):
        with pytest.raises(ResultsError) as err:
            step()
        assert "\n" not in str(err.value) and "credentials" in str(err.value) and "it was removed" in str(err.value)
    assert _objects(s3, "nocreds") == []
    monkeypatch.undo()
    with pytest.raises(ResultsError, match="no hwbench runs"):  # nothing a reader trips on
        load_records(f"s3://{BUCKET}/nocreds")


def test_a_store_refusing_the_credentials_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key the store does not know: every request is refused (403), the put is a one-line HwbenchError."""
    from hwbench.errors import HwbenchError

    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")  # this moto server checks every request's key
    with MotoServer() as strict, strict.exported():
        loc = open_location(f"s3://{BUCKET}/refused")
        with pytest.raises(HwbenchError, match=r"^cannot write s3://hwbench-test/refused/r/records/x\.parquet: ") as err:
            put_bytes(loc, loc.join("r", "records", "x.parquet"), b"PAR1" + bytes(100_000))
        assert "\n" not in str(err.value) and "Access Key" in str(err.value)

"""`hwbench plan` capacity sources: results measured here joined by a given table (each keeping its
source), the MLPerf example table, and results read from object storage (the moto S3 emulator)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwbench.analyse import capacities as capmod
from hwbench.analyse import capacity as queueing_model
from hwbench.analyse.demand import load_workload, parse_workload
from hwbench.cli import app
from hwbench.errors import UsageError
from test_plan_workload import EXAMPLE, doc, fake_modelled, write_results

ROOT = Path(__file__).resolve().parents[1]
MLPERF_TABLE = ROOT / "examples" / "capacities_mlperf.csv"
MLPERF_WORKLOAD = ROOT / "examples" / "workload_mlperf.toml"
runner = CliRunner()


def test_results_joined_by_a_given_table_keep_each_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queueing_model, "modelled_capacity_rps", fake_modelled)
    root = write_results(tmp_path / "results")  # measures c6a.large and c7i.large
    w = parse_workload(doc() | {"pool": {"instance_types": ["c6a.large", "c7i.large", "g6.xlarge"]}})
    (tmp_path / "caps.csv").write_text("class,instance_type,capacity_rps,source\n"
                                       "live,g6.xlarge,900,a cited bench\nlive,c6a.large,999,a cited bench\n")
    table = capmod.load_capacities(w, results=[root], table=tmp_path / "caps.csv")
    by_type = {c.instance_type: c for c in table.capacities}
    assert set(by_type) == {"c6a.large", "c7i.large", "g6.xlarge"}
    assert by_type["g6.xlarge"].source == "given: a cited bench" and by_type["g6.xlarge"].capacity_rps == 900
    assert by_type["c6a.large"].source.startswith("modelled: ")  # what was measured here wins over the table
    assert any("c6a.large: given: a cited bench set aside" in n for n in table.notes)


def test_two_measured_sources_or_none_are_refused(tmp_path: Path) -> None:
    w = parse_workload(doc())
    with pytest.raises(UsageError, match="not both"):
        capmod.load_capacities(w, results=[tmp_path], frontier=tmp_path / "f.json")
    with pytest.raises(UsageError, match="give --results DIR, --frontier F.json or --capacities TABLE"):
        capmod.load_capacities(w)


def test_the_mlperf_table_cites_each_result_and_plans_with_the_example_workload() -> None:
    rows = list(csv.DictReader(MLPERF_TABLE.open(encoding="utf-8")))
    assert {(r["class"], r["instance_type"]) for r in rows} == {(c, t) for c in ("interactive", "tagging")
                                                              for t in ("g6.xlarge", "p5.4xlarge")}
    for r in rows:
        value = r["capacity_rps"]
        assert f"{value} samples/s VALID at p99 <= 15 ms" in r["source"]  # the figure is the one the summary states
        assert "inference_results_v3.1 @eaf622a2" in r["source"] and "mlperf_log_summary.txt" in r["note"]
        assert r["as_of"] == "2023-09-11" and "no division" in r["note"]
    w = load_workload(MLPERF_WORKLOAD)
    table = capmod.load_capacities(w, table=MLPERF_TABLE)
    assert {c.source.split(",")[0] for c in table.capacities} == {"given: MLPerf Inference v3.1 closed"}


def test_plan_cli_joins_results_and_a_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queueing_model, "modelled_capacity_rps", fake_modelled)
    root = write_results(tmp_path / "results")
    table = tmp_path / "caps.csv"
    table.write_text("class,instance_type,capacity_rps,source\ninteractive,c7g.large,40,a cited bench\n"
                     "tagging,c7g.large,40,a cited bench\n")
    out = runner.invoke(app, ["plan", str(EXAMPLE), "--results", str(root), "--capacities", str(table), "--json"])
    assert out.exit_code == 0, out.output
    sources = {(c["instance_type"], c["source"].split(":")[0]) for c in json.loads(out.output)["capacities"]}
    assert ("c7g.large", "given") in sources and ("c6a.large", "modelled") in sources


BUCKET = "hwbench-plan"


@pytest.fixture(scope="module")
def s3() -> Iterator[object]:
    pytest.importorskip("moto", reason="the S3 test needs the fleet extra (pip install 'hwbench[fleet]')")
    from hwbench.testing.s3emu import MotoServer

    with MotoServer() as server, server.exported():
        server.create_bucket(BUCKET)
        yield server


def test_plan_from_results_on_s3_matches_the_local_folder(s3: object, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from hwbench.results.remote import put_bytes
    from hwbench.results.uri import open_location

    monkeypatch.setattr(queueing_model, "modelled_capacity_rps", fake_modelled)
    root = write_results(tmp_path / "results")
    loc = open_location(f"s3://{BUCKET}/team")
    for f in sorted(p for p in root.rglob("*") if p.is_file()):  # the run folders as they are, uploaded
        put_bytes(loc, loc.join(*f.relative_to(root).parts), f.read_bytes())
    remote = runner.invoke(app, ["plan", str(EXAMPLE), "--results", f"s3://{BUCKET}/team", "--json"])
    assert remote.exit_code == 0, remote.output
    local = runner.invoke(app, ["plan", str(EXAMPLE), "--results", str(root), "--json"])
    r, l_ = json.loads(remote.output), json.loads(local.output)
    assert r["usd_per_hour"] == pytest.approx(l_["usd_per_hour"]) and r["usd_per_hour"] > 0
    assert sorted((c["class"], c["instance_type"], round(c["capacity_rps"], 6)) for c in r["capacities"]) == \
        sorted((c["class"], c["instance_type"], round(c["capacity_rps"], 6)) for c in l_["capacities"])
    assert {c["instance_type"] for c in r["capacities"]} == {"c6a.large", "c7i.large"}
    assert "testing" not in remote.output  # the emulator's (fake) secret key never reaches output

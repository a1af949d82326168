"""`hwbench plan` end to end: the example workload on results the store wrote, tables, --json, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwbench.cli import app
from hwbench.analyse import capacity as queueing_model
from hwbench.analyse.planexport import load_plan
from test_plan_workload import EXAMPLE, fake_modelled, write_results

runner = CliRunner()


def test_plan_example_on_results_with_simulation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queueing_model, "modelled_capacity_rps", fake_modelled)
    root = write_results(tmp_path / "results")
    out = runner.invoke(app, ["plan", str(EXAMPLE), "--results", str(root), "--simulate", "--sim-requests", "4000",
                              "--export", str(tmp_path / "plan.json")])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    for expected in ("Routing table", "Mixed fleet", "best homogeneous fleet", "fastest type (no accelerator pooled)",
                     "modelled: fake M/G/1", "Simulated SLO attainment", "no spot price in the catalog"):
        assert expected in text
    plan = load_plan(tmp_path / "plan.json")
    assert plan.hours == 24 and set(plan.routing(12)) == {"interactive", "tagging"}
    assert plan.doc["simulation"]["classes"]["interactive"]["requests"] > 0


def test_plan_json_from_a_given_table(tmp_path: Path) -> None:
    table = tmp_path / "caps.csv"
    table.write_text("class,instance_type,capacity_rps,source,as_of\n"
                     "interactive,c6a.large,12,test table,2026-11-01\ntagging,c6a.large,15,test table,2026-11-01\n"
                     "interactive,c7i.large,20,test table,2026-11-01\ntagging,c7i.large,18,test table,2026-11-01\n")
    out = runner.invoke(app, ["plan", str(EXAMPLE), "--capacities", str(table), "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["kind"] == "hwbench.plan" and doc["schema_version"] == 1
    assert doc["solver"]["status"] == "optimal" and doc["solver"]["mip_gap"] <= 1e-9
    assert {c["source"] for c in doc["capacities"]} == {"given: test table (as of 2026-11-01)"}
    assert doc["baselines"]["homogeneous"]["usd_per_hour"] >= doc["usd_per_hour"] - 1e-9


def test_main_exits_2_with_one_line_naming_the_class_that_cannot_be_served(tmp_path: Path) -> None:
    table = tmp_path / "caps.csv"
    table.write_text("class,instance_type,capacity_rps,source\ninteractive,c6a.large,12,test table\n")
    proc = subprocess.run([sys.executable, "-m", "hwbench", "plan", str(EXAMPLE), "--capacities", str(table)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "class 'tagging' (resnet50) cannot be served" in lines[0]


def test_exactly_one_capacity_source() -> None:
    out = runner.invoke(app, ["plan", str(EXAMPLE)])
    assert out.exit_code != 0

"""`hwbench prices update`: the AWS offer file and Azure Retail Prices pages into a dated catalog.

The inputs are the hand-made fixtures in tests/fixtures/price_lists/ (see the README there): their
reserved and spot figures are invented test data. Nothing here reaches the network.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwbench.catalog import aws_offers, azure_retail
from hwbench.catalog.catalog_file import write_catalog
from hwbench.catalog.prices import RESERVED, SPOT, load_builtin, load_catalog
from hwbench.cli import app
from hwbench.errors import ConfigError, UsageError

FIXTURES = Path(__file__).parent / "fixtures" / "price_lists"
AWS = FIXTURES / "aws"
AZURE = FIXTURES / "azure"
runner = CliRunner()


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a price-update test tried to reach the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_aws_offer_file_keeps_linux_shared_used_rows_with_the_1yr_no_upfront_reserved_rate() -> None:
    update = aws_offers.read_offer(AWS, "us-east-1", builtin=load_builtin())
    assert update.as_of == "2026-01-19"  # the file's publicationDate
    assert sorted(update.entries) == ["c6a.large", "c7g.large", "g5.xlarge", "inf2.xlarge"]
    c7g = update.entries["c7g.large"]
    # not the Windows row (0.1645), not the unused-reservation row (0), not the us-west-2 row
    assert c7g["on_demand_usd_per_hour"] == 0.0725 and c7g["region"] == "us-east-1"
    # 1yr standard no upfront (0.04), not the 3yr (0.03) nor the partial-upfront (0.038) term
    assert (c7g["reserved_usd_per_hour"], c7g["reserved_term"]) == (0.04, "1yr standard no upfront")
    assert (c7g["cpu_vendor"], c7g["cpu_family"], c7g["vcpus"]) == ("AWS", "Graviton3", 2)
    assert (update.entries["c6a.large"]["cpu_vendor"], update.entries["c6a.large"]["cpu_family"]) == ("AMD", "Zen 3")
    g5 = update.entries["g5.xlarge"]
    assert (g5["accelerator"], g5["accelerator_count"]) == ("A10G", 1)  # model from the family, count from the file
    inf2 = update.entries["inf2.xlarge"]
    assert (inf2["accelerator"], inf2["accelerator_count"]) == ("Inferentia2", 1)  # count from the built-in entry
    assert "spot_usd_per_hour" not in c7g  # the Price List has no spot prices
    assert [s for s in update.skipped if s.startswith("dl1.24xlarge")]  # a GPU model the file does not name


def test_aws_without_a_builtin_entry_an_inferentia_count_is_not_guessed() -> None:
    update = aws_offers.read_offer(AWS / "us-east-1" / "index.json", "us-east-1", builtin=None)
    assert "inf2.xlarge" not in update.entries
    assert any(s.startswith("inf2.xlarge: accelerated type whose accelerator count") for s in update.skipped)


def test_several_regions_without_region_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"holds 2 regions \(us-east-1, us-west-2\): pass --region"):
        aws_offers.read_offer(AWS / "us-east-1" / "index.json")
    with pytest.raises(ConfigError, match=r"hold 2 regions \(eastus, westus2\): pass --region"):
        azure_retail.read_pages(AZURE, as_of="2026-11-30")


def test_not_an_offer_file_is_refused_with_the_format_url(tmp_path: Path) -> None:
    bad = tmp_path / "index.json"
    bad.write_text(json.dumps({"Items": []}))
    with pytest.raises(ConfigError, match="not an AWS Price List offer file"):
        aws_offers.read_offer(bad)
    with pytest.raises(ConfigError, match="not an Azure Retail Prices API response"):
        azure_retail.read_pages(AWS / "us-east-1" / "index.json", as_of="2026-11-30")


def test_azure_pages_give_pay_as_you_go_and_spot_and_nothing_else() -> None:
    update = azure_retail.read_pages(AZURE, "eastus", as_of="2026-11-30")
    assert sorted(update.entries) == ["Standard_D2als_v6", "Standard_D2ps_v6", "Standard_NC24ads_A100_v4"]
    d2 = update.entries["Standard_D2als_v6"]
    # the latest effective Linux Consumption meter (0.0804, not the 2024 0.09), not Windows, DevTest,
    # Low Priority nor the Reservation row; the " Spot" meter is the spot price, dated and volatile
    assert d2["on_demand_usd_per_hour"] == 0.0804 and d2["spot_usd_per_hour"] == 0.0161
    assert d2["spot_as_of"] == "2026-11-30" and "volatile" in d2["spot_source"] and d2["spot_source"].startswith("given")
    assert (d2["vcpus"], d2["cpu_vendor"], d2["cpu_family"], d2["accelerator_count"]) == (2, "AMD", "Zen 4", 0)
    assert (update.entries["Standard_D2ps_v6"]["cpu_vendor"], update.entries["Standard_D2ps_v6"]["cpu_family"]) \
        == ("Microsoft", "Cobalt 100")
    a100 = update.entries["Standard_NC24ads_A100_v4"]
    assert (a100["accelerator"], a100["accelerator_count"], a100["vcpus"]) == ("A100-80GB", 1, 24)
    reasons = dict(s.split(": ", 1) for s in update.skipped)
    assert "GPU size" in reasons["Standard_NC6s_v3"] and "naming convention" in reasons["Standard_E16-4as_v5"]


def test_azure_a_page_with_a_next_link_and_no_next_page_is_said(tmp_path: Path) -> None:
    shutil.copy(AZURE / "page1.json", tmp_path / "page1.json")
    update = azure_retail.read_pages(tmp_path, "eastus", as_of="2026-11-30")
    assert any("NextPageLink" in s for s in update.skipped)
    assert "Standard_NC24ads_A100_v4" not in update.entries  # it is on the missing page


def test_azure_dates_the_pages_by_their_file_date_when_not_told() -> None:
    update = azure_retail.read_pages(AZURE / "page2.json", "eastus")
    newest = dt.date.fromtimestamp((AZURE / "page2.json").stat().st_mtime).isoformat()
    assert update.as_of == newest and newest in update.source


def test_cli_writes_a_catalog_the_loader_reads_and_merges(tmp_path: Path) -> None:
    out = tmp_path / "aws.toml"
    res = runner.invoke(app, ["prices", "update", "--from", "aws", "--region", "us-east-1", "--input", str(AWS),
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote 4 aws instance prices as of 2026-01-19" in res.output and "dl1.24xlarge" in res.output
    catalog = load_catalog([out])
    c7g = catalog.get("c7g.large")
    assert c7g.usd_per_hour(RESERVED) == 0.04 and c7g.origin == str(out) and c7g.as_of == "2026-01-19"
    assert "Price List bulk offer file" in c7g.source and RESERVED in c7g.kinds
    doc = json.loads(runner.invoke(app, ["prices", "update", "--from", "aws", "--region", "us-east-1", "--input",
                                         str(AWS), "--out", str(tmp_path / "again.toml"), "--json"]).output)
    assert doc["as_of"] == "2026-01-19" and "c7g.large" in doc["instances"] and doc["skipped"]
    out_az = tmp_path / "azure.toml"
    res = runner.invoke(app, ["prices", "update", "--from", "azure", "--region", "eastus", "--input", str(AZURE),
                              "--out", str(out_az), "--as-of", "2026-11-30"])
    assert res.exit_code == 0, res.output
    a100 = load_catalog([out_az]).get("Standard_NC24ads_A100_v4")
    assert a100.usd_per_hour(SPOT) == 0.7346 and a100.spot_as_of == "2026-11-30"


def test_cli_without_input_says_fetching_needs_internet_and_gives_the_url(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "hwbench", "prices", "update", "--from", "azure", "--region",
                           "westeurope", "--out", str(tmp_path / "x.toml")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and not (tmp_path / "x.toml").exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hwbench: error: --input is required"), proc.stderr
    assert "needs internet" in lines[0] and "https://prices.azure.com/api/retail/prices" in lines[0]
    assert "westeurope" in lines[0]
    res = runner.invoke(app, ["prices", "update", "--from", "gcp", "--input", str(AWS), "--out", str(tmp_path / "x.toml")])
    assert isinstance(res.exception, UsageError) and "--from must be aws or azure" in str(res.exception)


def test_a_generated_catalog_dated_in_the_future_is_not_written(tmp_path: Path) -> None:
    future = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    update = azure_retail.read_pages(AZURE, "eastus", as_of=future)
    out = tmp_path / "future.toml"
    with pytest.raises(ConfigError) as err:
        write_catalog(update, out)
    message = str(err.value)
    assert message.startswith(str(out)) and "instances.Standard_D2als_v6: as_of" in message and "future" in message
    assert "\n" not in message and not out.exists()

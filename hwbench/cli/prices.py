"""`hwbench prices`: the price catalog in force, with the date and source of every price."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from hwbench.cli.common import console, escape, print_json, Table
from hwbench.cli.options import JsonFlag, PricesOpt, epilog, price_files

COMMAND = dict(epilog=epilog("hwbench prices", "hwbench prices --prices mine.toml,quotes.toml",
                             "HWBENCH_PRICES=mine.toml hwbench prices --json",
                             "hwbench prices update --from aws --region us-east-1 --input index.json --out aws.toml"))

# `hwbench prices` shows the catalog; `hwbench prices update` writes one from a cloud's price list
app = typer.Typer(name="prices", add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)

if TYPE_CHECKING:
    from hwbench.catalog.prices import Price


def _hourly(p: Price) -> str:
    if p.tco is None:
        return f"{p.on_demand_usd_per_hour:.6g}" if p.on_demand_usd_per_hour is not None else "-"
    hourly = p.tco.usd_per_hour()
    return f"{hourly:.4g} (TCO)" if hourly is not None else "TCO + run power"


def _tco_basis(p: Price) -> str:
    if p.tco is None:
        return ""
    t = p.tco
    power = f"{t.power_w:g} W" if t.power_w is not None else "measured power"
    return f"${t.capital_usd:,.0f} over {t.lifetime_years:g} y, {power}, PUE {t.pue:g}, ${t.usd_per_kwh:g}/kWh"


def _spot(p: Price) -> str:
    if p.spot_usd_per_hour is None:
        return "-"
    return f"{p.spot_usd_per_hour:.6g} ({p.spot_as_of or p.as_of}, volatile)"


@app.callback(invoke_without_command=True)
def prices(
    ctx: typer.Context,
    prices_given: PricesOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Show the price catalog in force, with the date and source of every price.

    `hwbench prices update --from aws|azure` writes a dated catalog file from a cloud's price list."""
    if ctx.invoked_subcommand is not None:
        return
    from hwbench.catalog.prices import load_catalog  # tomllib and the catalog: only when run

    catalog = load_catalog(price_files(prices_given))
    if json_out:
        print_json({
            "files": list(catalog.files),
            "electricity": asdict(catalog.electricity) if catalog.electricity else None,
            "instances": [asdict(catalog.prices[n]) for n in catalog.names()],
        })
        return
    table = Table(title="Price catalog ($/hour; k of n accelerators are charged k/n)", title_justify="left")
    width = max((len(n) for n in catalog.names()), default=8)
    table.add_column("instance", min_width=width, no_wrap=True)
    table.add_column("where")
    table.add_column("accelerators")
    table.add_column("CPU")
    table.add_column("vCPUs", justify="right")
    table.add_column("on-demand $/h", justify="right", no_wrap=True)
    table.add_column("reserved $/h", justify="right")
    table.add_column("spot $/h", justify="right")
    table.add_column("as of", no_wrap=True)
    table.add_column("src", no_wrap=True)
    sources: dict[str, int] = {}  # long and repeated: numbered, and listed under the table
    for name in catalog.names():
        p = catalog.prices[name]
        accel = f"{p.accelerator_count} x {p.accelerator}" if p.accelerator_count else "CPU only"
        accel += "" if p.profilable else " (not profiled by hwbench)"
        source = p.source if p.origin == "built-in" else f"{p.source} (from {p.origin})"
        reserved = f"reserved {p.reserved_term}" if p.reserved_term else ""
        spot = f"spot: {p.spot_source}" if p.spot_source and p.spot_source != p.source else ""
        source += "".join(f"; {x}" for x in (_tco_basis(p), reserved, spot, p.note or "") if x)
        ref = sources.setdefault(source, len(sources) + 1)
        where = " ".join(x for x in (p.provider, p.region) if x)
        cpu = f"{p.cpu_vendor} {p.cpu_family}" if p.cpu_vendor else "-"
        table.add_row(escape(name), escape(where), escape(accel), escape(cpu), str(p.vcpus or "-"), _hourly(p),
                      f"{p.reserved_usd_per_hour:.6g}" if p.reserved_usd_per_hour is not None else "-",
                      escape(_spot(p)), p.as_of, escape(f"[{ref}]"))
    console.print(table)
    for source, ref in sources.items():
        console.print(escape(f"[{ref}] {source}"))
    e = catalog.electricity
    if e is not None:
        console.print(escape(f"electricity: ${e.usd_per_kwh:g}/kWh as of {e.as_of}, {e.source} [{e.origin}]"))
    else:
        console.print("electricity: no price (add \\[electricity] to a --prices file to price energy per 1M inferences)")


FETCH_HELP = {
    "aws": "https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonEC2/current/{region}/index.json",
    "azure": "https://prices.azure.com/api/retail/prices?$filter=serviceName eq 'Virtual Machines' "
             "and armRegionName eq '{region}' (follow NextPageLink; save every page)",
}
DEFAULT_REGION = {"aws": "us-east-1", "azure": "eastus"}


@app.command("update", epilog=epilog(
    "hwbench prices update --from aws --region us-east-1 --input index.json --out aws-us-east-1.toml",
    "hwbench prices update --from azure --region eastus --input pages/ --out azure-eastus.toml --as-of 2026-12-01"))
def update(
    provider: Annotated[str, typer.Option("--from", help="Whose price list: aws (Price List bulk offer file) "
                                          "or azure (Retail Prices API response pages).")],
    out: Annotated[Path, typer.Option("--out", help="The catalog file to write (then use it with --prices).")],
    input_path: Annotated[Optional[Path], typer.Option("--input", help="The downloaded price list: a file, or a "
                                                       "folder (AWS: <region>/index.json; Azure: every *.json page).")] = None,
    region: Annotated[Optional[str], typer.Option("--region", help="Keep this region only (AWS regionCode, "
                                                  "Azure armRegionName).")] = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Azure: the date the pages were retrieved "
                                                 "(default: the newest page file's date). AWS files carry their own.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Write a dated catalog file from a cloud's public price list (AWS or Azure).

    It reads a price list downloaded beforehand: hwbench never fetches it (no network)."""
    from hwbench.errors import UsageError

    provider = provider.strip().lower()
    if provider not in FETCH_HELP:
        raise UsageError(f"--from must be aws or azure, got {provider!r}")
    if input_path is None:
        url = FETCH_HELP[provider].format(region=region or DEFAULT_REGION[provider])
        raise UsageError(f"--input is required: fetching a price list needs internet, which hwbench does not use; "
                         f"download {url} and pass it with --input")
    from hwbench.catalog import aws_offers, azure_retail
    from hwbench.catalog.catalog_file import summary, write_catalog
    from hwbench.catalog.prices import load_builtin

    if provider == "aws":
        result = aws_offers.read_offer(input_path, region, builtin=load_builtin())
    else:
        if as_of is not None:
            import datetime as dt
            try:
                as_of = dt.date.fromisoformat(as_of).isoformat()
            except ValueError:
                raise UsageError(f"--as-of must be a date like 2026-12-01, got {as_of!r}") from None
        result = azure_retail.read_pages(input_path, region, as_of)
    write_catalog(result, out)
    if json_out:
        print_json({"out": str(out), "provider": result.provider, "as_of": result.as_of, "source": result.source,
                    "instances": sorted(result.entries), "skipped": result.skipped})
        return
    for line in summary(result, out):
        console.print(escape(line), soft_wrap=True)

"""`hwbench prices`: the price catalog in force, with the date and source of every price."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING


from hwbench.cli.common import console, escape, print_json, Table
from hwbench.cli.options import JsonFlag, PricesOpt, epilog, price_files

COMMAND = dict(epilog=epilog("hwbench prices", "hwbench prices --prices mine.toml,quotes.toml",
                             "HWBENCH_PRICES=mine.toml hwbench prices --json"))

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


def prices(
    prices_given: PricesOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Show the price catalog in force, with the date and source of every price."""
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
    table.add_column("vCPUs", justify="right")
    table.add_column("on-demand $/h", justify="right", no_wrap=True)
    table.add_column("spot $/h", justify="right")
    table.add_column("as of", no_wrap=True)
    table.add_column("src", no_wrap=True)
    sources: dict[str, int] = {}  # long and repeated: numbered, and listed under the table
    for name in catalog.names():
        p = catalog.prices[name]
        accel = f"{p.accelerator_count} x {p.accelerator}" if p.accelerator_count else "CPU only"
        source = p.source if p.origin == "built-in" else f"{p.source} (from {p.origin})"
        source += "".join(f"; {x}" for x in (_tco_basis(p), p.note or "") if x)
        ref = sources.setdefault(source, len(sources) + 1)
        where = " ".join(x for x in (p.provider, p.region) if x)
        table.add_row(escape(name), escape(where), escape(accel), str(p.vcpus or "-"), _hourly(p),
                      f"{p.spot_usd_per_hour:.6g}" if p.spot_usd_per_hour is not None else "-", p.as_of, escape(f"[{ref}]"))
    console.print(table)
    for source, ref in sources.items():
        console.print(escape(f"[{ref}] {source}"))
    e = catalog.electricity
    if e is not None:
        console.print(escape(f"electricity: ${e.usd_per_kwh:g}/kWh as of {e.as_of}, {e.source} [{e.origin}]"))
    else:
        console.print("electricity: no price (add \\[electricity] to a --prices file to price energy per 1M inferences)")

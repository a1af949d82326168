"""Read Azure Retail Prices API responses into catalog entries.

The format (https://learn.microsoft.com/en-us/rest/api/cost-management/retail-prices/azure-retail-prices):
each page is a JSON object with `Items`, `NextPageLink` (the next page's URL, null on the last)
and `Count`. An item has currencyCode, retailPrice, unitOfMeasure ("1 Hour"), armRegionName,
armSkuName ("Standard_D2als_v6"), skuName ("D2als v6", or "D2als v6 Spot" / "... Low Priority"),
productName ("Virtual Machines Dalsv6 Series", "... Windows" for Windows meters), serviceName,
type (Consumption, DevTestConsumption, Reservation) and effectiveStartDate.

Kept: serviceName "Virtual Machines", USD, "1 Hour", type Consumption, Linux (productName not
ending " Windows"), not Low Priority, not the "Cloud Services" products; skuName ending " Spot"
gives the spot price, the other the on-demand price. Reservation items are not read (their
price is for the whole term; hwbench keeps AWS's hourly reserved rate only).

The API says nothing of vCPUs, CPUs or GPUs. vCPUs and the CPU come from the size's name by
Azure's naming convention (https://learn.microsoft.com/en-us/azure/virtual-machines/vm-naming-conventions:
the number after the family is the vCPU count; feature letter 'a' AMD, 'p' Arm) and the series'
documented processor (table below); GPU sizes only from the table of documented GPU sizes.
A GPU size not in the table is left out and said so, never guessed.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Iterable

from hwbench.catalog.catalog_file import Update, positive_usd, read_json
from hwbench.errors import ConfigError

API_URL = "https://prices.azure.com/api/retail/prices"
DOCS_URL = "https://learn.microsoft.com/en-us/rest/api/cost-management/retail-prices/azure-retail-prices"
_SIZE = re.compile(r"^Standard_(?P<family>[A-Z]+)(?P<vcpus>\d+)(?P<features>[a-z]*)(?:_(?P<accel>[A-Za-z0-9]+))?_v(?P<version>\d+)$")
_SERIES = "https://learn.microsoft.com/en-us/azure/virtual-machines/sizes"

# (kind, version) -> CPU, for the D/E/F families (Azure size-series pages under _SERIES/general-purpose/)
CPU_OF_SERIES = {
    ("amd", 4): ("AMD", "Zen 2"), ("amd", 5): ("AMD", "Zen 3"), ("amd", 6): ("AMD", "Zen 4"),
    ("arm", 5): ("Ampere", "Altra"), ("arm", 6): ("Microsoft", "Cobalt 100"),
    ("intel", 5): ("Intel", "Ice Lake"), ("intel", 6): ("Intel", "Emerald Rapids"),
}

# documented GPU sizes: armSkuName -> (accelerator, count, cpu_vendor, cpu_family), from the
# series pages under _SERIES/gpu-accelerated/ (ncast4v3, nca100v4, ncadsh100v5, nvadsa10v5, ndh100v5)
GPU_SIZES = {
    "Standard_NC4as_T4_v3": ("T4", 1, "AMD", "Zen 2"),
    "Standard_NC8as_T4_v3": ("T4", 1, "AMD", "Zen 2"),
    "Standard_NC16as_T4_v3": ("T4", 1, "AMD", "Zen 2"),
    "Standard_NC64as_T4_v3": ("T4", 4, "AMD", "Zen 2"),
    "Standard_NC24ads_A100_v4": ("A100-80GB", 1, "AMD", "Zen 3"),
    "Standard_NC48ads_A100_v4": ("A100-80GB", 2, "AMD", "Zen 3"),
    "Standard_NC96ads_A100_v4": ("A100-80GB", 4, "AMD", "Zen 3"),
    "Standard_NC40ads_H100_v5": ("H100-NVL", 1, "AMD", "Zen 4"),
    "Standard_NC80adis_H100_v5": ("H100-NVL", 2, "AMD", "Zen 4"),
    "Standard_NV36ads_A10_v5": ("A10", 1, "AMD", "Zen 3"),
    "Standard_NV72ads_A10_v5": ("A10", 2, "AMD", "Zen 3"),
    "Standard_ND96isr_H100_v5": ("H100", 8, "Intel", "Sapphire Rapids"),
}


def describe(sku: str) -> dict[str, Any] | str:
    """vCPUs, CPU and accelerators of a size, from its name and the tables; or why it is left out."""
    m = _SIZE.match(sku)
    if not m:
        return "size name not in Azure's naming convention (constrained-vCPU and promo sizes are left out)"
    out: dict[str, Any] = {"vcpus": int(m["vcpus"]), "accelerator_count": 0}
    if sku in GPU_SIZES:
        model, count, vendor, family = GPU_SIZES[sku]
        return {**out, "accelerator": model, "accelerator_count": count, "cpu_vendor": vendor, "cpu_family": family}
    if m["family"].startswith("N") or m["accel"]:
        return "GPU size whose GPU model and count are not in hwbench's table of documented sizes"
    kind = "arm" if "p" in m["features"] else "amd" if "a" in m["features"] else "intel"
    cpu = CPU_OF_SERIES.get((kind, int(m["version"]))) if m["family"] in ("D", "E", "F") else None
    if cpu:
        out["cpu_vendor"], out["cpu_family"] = cpu
    return out


def _items(pages: Iterable[Any], origin: str) -> tuple[list[dict[str, Any]], bool]:
    items: list[dict[str, Any]] = []
    more = False
    for page in pages:
        if not isinstance(page, dict) or not isinstance(page.get("Items"), list):
            raise ConfigError(f"{origin}: not an Azure Retail Prices API response (needs 'Items'; see {DOCS_URL})")
        items += [i for i in page["Items"] if isinstance(i, dict)]
        more = bool(page.get("NextPageLink"))
    return items, more


def _kept(item: dict[str, Any], region: str | None) -> bool:
    return (item.get("serviceName") == "Virtual Machines" and item.get("currencyCode", "USD") == "USD"
            and item.get("unitOfMeasure") == "1 Hour" and item.get("type") == "Consumption"
            and not str(item.get("productName", "")).endswith(" Windows")
            and "Cloud Services" not in str(item.get("productName", ""))
            and not str(item.get("skuName", "")).endswith(" Low Priority")
            and (region is None or item.get("armRegionName") == region))


def parse_pages(pages: Iterable[Any], origin: str, as_of: str, region: str | None = None) -> Update:
    """Catalog entries from the pages of one query, observed on `as_of` (see module doc)."""
    items, more = _items(pages, origin)
    regions = sorted({str(i.get("armRegionName")) for i in items if i.get("armRegionName")})
    if region is None and len(regions) > 1:
        raise ConfigError(f"{origin}: the pages hold {len(regions)} regions ({', '.join(regions[:5])}): pass --region")
    source = f"Azure Retail Prices API ({API_URL}), retrieved {as_of} ({origin})"
    update = Update(provider="azure", as_of=as_of, source=source, header=[
        "hwbench price catalog generated by `hwbench prices update --from azure`.",
        f"From: {source}.",
        "Pay-as-you-go (Consumption) and Spot prices, Linux, per instance-hour (USD). Spot prices move: volatile.",
    ])
    if more:
        update.header.append("The last page read has a NextPageLink: later pages were not in the input.")
        update.skipped.append("(pages): the last page read has a NextPageLink, so later pages are missing")
    prices: dict[str, dict[str, tuple[str, float, str]]] = {}  # sku -> kind -> (effective date, price, region)
    for item in items:
        sku = item.get("armSkuName")
        price = positive_usd(item.get("retailPrice"))
        if not sku or price is None or not _kept(item, region):
            continue
        kind = "spot" if str(item.get("skuName", "")).endswith(" Spot") else "on-demand"
        seen = prices.setdefault(sku, {})
        start = str(item.get("effectiveStartDate") or "")
        if kind not in seen or start > seen[kind][0]:  # the latest effective price of the meter
            seen[kind] = (start, price, str(item.get("armRegionName") or region or ""))
    for sku in sorted(prices):
        kinds = prices[sku]
        if "on-demand" not in kinds:
            update.skipped.append(f"{sku}: a spot price but no pay-as-you-go price")
            continue
        described = describe(sku)
        if isinstance(described, str):
            update.skipped.append(f"{sku}: {described}")
            continue
        start, od, where = kinds["on-demand"]
        entry: dict[str, Any] = {"provider": "azure", "region": where or None, **described,
                                 "on_demand_usd_per_hour": od, "as_of": as_of, "source": source}
        if "spot" in kinds:
            entry.update(spot_usd_per_hour=kinds["spot"][1], spot_as_of=as_of,
                         spot_source=f"given, {source}; volatile")
        if start:
            entry["note"] = f"effectiveStartDate {start[:10]}"
        update.entries[sku] = {k: v for k, v in entry.items() if v is not None}
    return update


def page_files(given: Path) -> list[Path]:
    """The response pages: the given file, or every *.json in the given folder, by name."""
    given = Path(given)
    if given.is_dir():
        files = sorted(given.glob("*.json"))
        if not files:
            raise ConfigError(f"{given}: no *.json response pages in it")
        return files
    return [given]


def read_pages(path: Path, region: str | None = None, as_of: str | None = None) -> Update:
    """Parse saved response pages; dated `as_of`, or by the newest page file's modification date."""
    files = page_files(path)
    for f in files:
        if not f.is_file():
            raise ConfigError(f"price list {f} does not exist")
    if as_of is None:
        as_of = max(dt.date.fromtimestamp(f.stat().st_mtime) for f in files).isoformat()
    return parse_pages((read_json(f) for f in files), str(path), as_of, region)

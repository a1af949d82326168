"""Read an AWS Price List bulk offer file for Amazon EC2 into catalog entries.

The format (https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/reading-service-price-list-file-for-services.html):
a JSON document with `publicationDate`, `products` (SKU -> productFamily and `attributes`:
instanceType, vcpu, memory, physicalProcessor, gpu, operatingSystem, tenancy, preInstalledSw,
capacitystatus, licenseModel, regionCode, ...) and `terms`: OnDemand and Reserved, SKU -> offer
term -> `priceDimensions` (unit "Hrs", pricePerUnit {"USD": "0.0725000000"}) and, for Reserved,
`termAttributes` (LeaseContractLength, OfferingClass, PurchaseOption).

A region's file: https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonEC2/current/<region>/index.json

One row per instance type: Linux, shared tenancy, no pre-installed software, a used (not reserved-
capacity) box. Prices are dated by the file's publicationDate. The Price List has no spot prices
(spot is a market: AWS publishes it through the EC2 API's DescribeSpotPriceHistory), so none
come from here. The file names the GPU count but not its model, and says nothing of Inferentia
or Trainium counts: the model comes from the instance family (AWS "Specifications for Amazon
EC2 accelerated computing instances", https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html)
and a missing count from the built-in catalog's entry of the same name; an accelerated type
neither knows is left out and said so, never guessed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from hwbench.catalog.catalog_file import Update, positive_usd, read_json
from hwbench.catalog.prices import PriceCatalog
from hwbench.errors import ConfigError

BULK_URL = "https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonEC2/current/{region}/index.json"
DOCS_URL = "https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/reading-service-price-list-file-for-services.html"
RESERVED_TERM = ("1yr", "standard", "No Upfront")  # the reserved price kept: 1 year, standard, no upfront
_WANTED = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA"}
_OPTIONAL = {"capacitystatus": "Used", "licenseModel": "No License required"}

# instance family -> accelerator model (AWS accelerated computing specifications, see module doc)
ACCELERATOR_OF_FAMILY = {
    "g4dn": "T4", "g4ad": "Radeon Pro V520", "g5": "A10G", "g5g": "T4G", "g6": "L4", "g6e": "L40S",
    "gr6": "L4", "p4d": "A100-40GB", "p4de": "A100-80GB", "p5": "H100", "p5e": "H200", "p5en": "H200",
    "p6-b200": "B200", "inf1": "Inferentia", "inf2": "Inferentia2", "trn1": "Trainium", "trn1n": "Trainium",
    "trn2": "Trainium2",
}
NEURON_FAMILIES = frozenset(("inf1", "inf2", "trn1", "trn1n", "trn2"))

# physicalProcessor text -> (cpu_vendor, cpu_family), named as hwbench.host.cpu names a host's CPU
_PROCESSORS = (
    (re.compile(r"Graviton4"), ("AWS", "Graviton4")),
    (re.compile(r"Graviton3"), ("AWS", "Graviton3")),
    (re.compile(r"Graviton2"), ("AWS", "Graviton2")),
    (re.compile(r"AMD EPYC 9R45|AMD EPYC 9005"), ("AMD", "Zen 5")),
    (re.compile(r"AMD EPYC 9R14|AMD EPYC 9004"), ("AMD", "Zen 4")),
    (re.compile(r"AMD EPYC 7R13|AMD EPYC 7003"), ("AMD", "Zen 3")),
    (re.compile(r"AMD EPYC 7R32|AMD EPYC 7002"), ("AMD", "Zen 2")),
    (re.compile(r"8488C|Sapphire Rapids"), ("Intel", "Sapphire Rapids")),
    (re.compile(r"8375C|Ice Lake"), ("Intel", "Ice Lake")),
)


def cpu_of(physical_processor: str | None) -> tuple[str, str] | None:
    """The CPU vendor and family a physicalProcessor string names, or None when not known here."""
    for pattern, cpu in _PROCESSORS:
        if physical_processor and pattern.search(physical_processor):
            return cpu
    return None


def _hourly_usd(term: Mapping[str, Any]) -> float | None:
    for dim in (term.get("priceDimensions") or {}).values():
        if dim.get("unit") == "Hrs":
            return positive_usd((dim.get("pricePerUnit") or {}).get("USD"))
    return None


def _term_price(terms: Mapping[str, Any], sku: str, reserved: bool) -> float | None:
    for term in (terms.get(sku) or {}).values():
        if reserved:
            a = term.get("termAttributes") or {}
            if (a.get("LeaseContractLength"), a.get("OfferingClass"), a.get("PurchaseOption")) != RESERVED_TERM:
                continue
        price = _hourly_usd(term)
        if price is not None:
            return price
    return None


def _wanted(attrs: Mapping[str, Any], region: str | None) -> bool:
    if any(attrs.get(k) != v for k, v in _WANTED.items()):
        return False
    if any(k in attrs and attrs[k] != v for k, v in _OPTIONAL.items()):
        return False
    return region is None or attrs.get("regionCode") == region


def _count(text: Any) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def _accelerator(name: str, attrs: Mapping[str, Any], builtin: PriceCatalog | None) -> tuple[str | None, int] | str:
    """(model, count) for the type, (None, 0) for a CPU type, or the reason it cannot be told."""
    family = name.split(".", 1)[0]
    known = builtin.get(name) if builtin else None
    count = _count(attrs.get("gpu")) or 0
    model = ACCELERATOR_OF_FAMILY.get(family)
    if family in NEURON_FAMILIES and not count:
        count = known.accelerator_count if known else 0
    if count and model:
        return model, count
    if count and known and known.accelerator:
        return known.accelerator, count
    if count or family in NEURON_FAMILIES:
        return f"accelerated type whose accelerator {'model' if count else 'count'} the offer file does not give"
    return None, 0


def parse_offer(doc: Any, origin: str, region: str | None = None, builtin: PriceCatalog | None = None) -> Update:
    """Catalog entries from one EC2 offer document (see module doc)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("products"), dict) or not isinstance(doc.get("terms"), dict):
        raise ConfigError(f"{origin}: not an AWS Price List offer file (needs 'products' and 'terms'; see {DOCS_URL})")
    published = str(doc.get("publicationDate") or "")[:10]
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", published):
        raise ConfigError(f"{origin}: the offer file has no publicationDate, so its prices cannot be dated")
    source = (f"AWS Price List bulk offer file, AmazonEC2 {doc.get('version', '')}, published "
              f"{doc.get('publicationDate')} ({origin}; {BULK_URL.format(region=region or '<region>')})")
    update = Update(provider="aws", as_of=published, source=source, header=[
        "hwbench price catalog generated by `hwbench prices update --from aws`.",
        f"From: {source}.",
        "On-demand and 1-year standard no-upfront reserved prices, Linux, shared tenancy, per instance-hour (USD).",
        "The AWS Price List carries no spot prices.",
    ])
    on_demand, reserved_terms = doc["terms"].get("OnDemand") or {}, doc["terms"].get("Reserved") or {}
    regions = sorted({str(p.get("attributes", {}).get("regionCode")) for p in doc["products"].values()
                      if isinstance(p, dict) and p.get("attributes", {}).get("regionCode")})
    if region is None and len(regions) > 1:
        raise ConfigError(f"{origin}: the offer file holds {len(regions)} regions ({', '.join(regions[:5])}): pass --region")
    for sku, product in doc["products"].items():
        attrs = product.get("attributes") or {}
        name = attrs.get("instanceType")
        if not name or product.get("productFamily") not in (None, "Compute Instance") or not _wanted(attrs, region):
            continue
        od = _term_price(on_demand, sku, reserved=False)
        if od is None:
            update.skipped.append(f"{name}: no hourly on-demand USD price")
            continue
        if name in update.entries:
            update.skipped.append(f"{name}: a second matching product ({sku}) ignored")
            continue
        accel = _accelerator(name, attrs, builtin)
        if isinstance(accel, str):
            update.skipped.append(f"{name}: {accel}")
            continue
        entry: dict[str, Any] = {"provider": "aws", "region": attrs.get("regionCode") or region,
                                 "accelerator_count": accel[1], "on_demand_usd_per_hour": od,
                                 "as_of": published, "source": source}
        if accel[0]:
            entry["accelerator"] = accel[0]
        vcpus = _count(attrs.get("vcpu"))
        if vcpus and vcpus > 0:
            entry["vcpus"] = vcpus
        cpu = cpu_of(attrs.get("physicalProcessor"))
        if cpu:
            entry["cpu_vendor"], entry["cpu_family"] = cpu
        elif attrs.get("physicalProcessor"):
            entry["note"] = f"processor: {attrs['physicalProcessor']}"
        rsv = _term_price(reserved_terms, sku, reserved=True)
        if rsv is not None:
            entry["reserved_usd_per_hour"], entry["reserved_term"] = rsv, "1yr standard no upfront"
        update.entries[name] = {k: v for k, v in entry.items() if v is not None}
    return update


def offer_path(given: Path, region: str | None) -> Path:
    """The offer file: the given file, or <dir>/<region>/index.json, or <dir>/index.json."""
    given = Path(given)
    if given.is_dir():
        for candidate in ([given / region / "index.json"] if region else []) + [given / "index.json"]:
            if candidate.is_file():
                return candidate
        raise ConfigError(f"{given}: no index.json in it{' or in ' + region + '/' if region else ''}")
    return given


def read_offer(path: Path, region: str | None = None, builtin: PriceCatalog | None = None) -> Update:
    """Parse the offer file at `path` (a file, or a folder holding one)."""
    path = offer_path(path, region)
    return parse_offer(read_json(path), str(path), region, builtin)

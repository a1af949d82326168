"""The workload file `hwbench plan` reads: request classes with their rates and SLOs, and the hardware pool.

A request class is traffic for one model (optionally one shape bucket) at a rate, constant or
a 24-value hourly profile, under a p99 latency SLO. A served LLM's class names its bucket
"pP/oO" (prompt and output tokens) and may add TTFT/TPOT p99 bounds; its slo_p99_ms bounds the
end-to-end p99 (hwbench.analyse.llmcapacity). An interruptible class may run on spot capacity.

    schema_version = 1
    [classes.vision]
    model = "resnet50";  rate_rps = 40;  slo_p99_ms = 250;  interruptible = false
    [classes.batch-vision]
    model = "resnet50";  hourly_rps = [5, 5, ... 24 values];  slo_p99_ms = 2000;  interruptible = true
    [pool]
    instance_types = ["c6a.large", "c7i.large"]
    pricing = ["on-demand", "spot"]          # on-demand | spot | reserved | owned
    max_count = { "c7i.large" = 4 }          # optional availability caps
    headroom = 0.1                           # optional: plan every instance to at most 90% of its capacity
    spot_interruption_derate = 0.05          # optional: a spot instance counts as 95% of one
    objective = "cost"                       # or "cost+energy" with usd_per_kwh

Validated once by pydantic; every problem is reported in one line naming the file and the key.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hwbench.errors import ConfigError

WORKLOAD_SCHEMA_VERSION = 1
HOURS = 24
PRICING_KINDS = ("on-demand", "spot", "reserved", "owned")
COMMITTED_KINDS = ("reserved", "owned")  # paid every hour of the day, whatever the hour's load
OBJECTIVES = ("cost", "cost+energy")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _positive(v: float, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{what} must be a finite number above 0, got {v!r}")
    return float(v)


class ClassModel(_Strict):
    """One [classes.NAME] table."""

    model: str = Field(min_length=1)
    bucket: str | None = None  # a shape bucket ("seq=128"; a served LLM's "p128/o128"); matched against a capacity table's bucket column
    rate_rps: float | None = None
    hourly_rps: list[float] | None = None
    slo_p99_ms: float | None = None
    slo_ttft_ms: float | None = None  # served LLMs: p99 bounds met on the endpoint's measured curve
    slo_tpot_ms: float | None = None
    interruptible: bool = False

    @field_validator("rate_rps", "slo_p99_ms", "slo_ttft_ms", "slo_tpot_ms", mode="before")
    @classmethod
    def _positive_number(cls, v: Any) -> float:
        return _positive(v, "it")

    @field_validator("hourly_rps", mode="before")
    @classmethod
    def _profile(cls, v: Any) -> list[float]:
        if not isinstance(v, list) or len(v) != HOURS:
            raise ValueError(f"must be a list of {HOURS} hourly rates (requests/s), got {v!r}"[:160])
        out = []
        for i, r in enumerate(v):
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r < 0:
                raise ValueError(f"hour {i} must be a finite rate >= 0, got {r!r}")
            out.append(float(r))
        if not any(out):
            raise ValueError("every hour is 0 requests/s: give a class some traffic or leave it out")
        return out

    @model_validator(mode="after")
    def _one_rate_and_an_slo(self) -> ClassModel:
        if (self.rate_rps is None) == (self.hourly_rps is None):
            raise ValueError("give exactly one of rate_rps (constant) or hourly_rps (24 values)")
        if self.slo_p99_ms is None:
            extra = " (for a served LLM: the end-to-end p99 bound, beside slo_ttft_ms/slo_tpot_ms)" if self.slo_ttft_ms or self.slo_tpot_ms else ""
            raise ValueError(f"needs slo_p99_ms, the p99 latency the class must meet{extra}")
        return self


class PoolModel(_Strict):
    """The [pool] table."""

    instance_types: list[str] = Field(min_length=1)
    pricing: list[Literal["on-demand", "spot", "reserved", "owned"]] = Field(default=["on-demand"], min_length=1)
    max_count: dict[str, int] = {}
    headroom: float = Field(default=0.0, ge=0.0, lt=1.0)
    spot_interruption_derate: float = Field(default=0.0, ge=0.0, lt=1.0)
    objective: Literal["cost", "cost+energy"] = "cost"
    usd_per_kwh: float | None = Field(default=None, ge=0.0)

    @field_validator("max_count")
    @classmethod
    def _caps(cls, v: dict[str, int]) -> dict[str, int]:
        for name, cap in v.items():
            if cap < 0:
                raise ValueError(f"max_count for {name!r} must be >= 0, got {cap}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> PoolModel:
        unknown = sorted(set(self.max_count) - set(self.instance_types))
        if unknown:
            raise ValueError(f"max_count names {', '.join(unknown)}, not in instance_types")
        if self.objective == "cost+energy" and self.usd_per_kwh is None:
            raise ValueError("objective 'cost+energy' needs usd_per_kwh (the electricity price)")
        if len(set(self.instance_types)) != len(self.instance_types):
            raise ValueError("instance_types lists a type twice")
        return self


class WorkloadModel(_Strict):
    schema_version: int = WORKLOAD_SCHEMA_VERSION
    classes: dict[str, ClassModel] = Field(min_length=1)
    pool: PoolModel

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != WORKLOAD_SCHEMA_VERSION:
            raise ValueError(f"schema_version {v} is not supported (this hwbench reads {WORKLOAD_SCHEMA_VERSION})")
        return v


@dataclass(frozen=True)
class RequestClass:
    """A class's traffic: `rates_rps` has one rate per planned hour (one value for a constant rate)."""

    name: str
    model: str
    slo_p99_ms: float
    rates_rps: tuple[float, ...]
    interruptible: bool = False
    bucket: str | None = None
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None


@dataclass(frozen=True)
class Pool:
    instance_types: tuple[str, ...]
    pricing: tuple[str, ...] = ("on-demand",)
    max_count: dict[str, int] = field(default_factory=dict)
    headroom: float = 0.0
    spot_interruption_derate: float = 0.0
    objective: str = "cost"
    usd_per_kwh: float | None = None


@dataclass(frozen=True)
class Workload:
    """Request classes and the pool. `hours` is 24 when any class has an hourly profile, else 1."""

    classes: tuple[RequestClass, ...]
    pool: Pool
    source: str = "<memory>"

    @property
    def hours(self) -> int:
        return max(len(c.rates_rps) for c in self.classes)

    def rates(self, hour: int) -> dict[str, float]:
        return {c.name: c.rates_rps[hour] if len(c.rates_rps) > 1 else c.rates_rps[0] for c in self.classes}


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p not in ("function-after", "function-before"))


def _problems(error: ValidationError) -> list[str]:
    out = []
    for e in error.errors(include_url=False):
        key = _where(tuple(e["loc"]))
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            out.append(f"{key}: unknown key")
        elif e["type"] == "missing":
            out.append(f"{key}: required")
        else:
            out.append(f"{key}: {msg}" if key else msg)
    return out


def parse_workload(doc: dict[str, Any], source: str = "<memory>") -> Workload:
    """A workload document (the TOML's dict) as a Workload, or ConfigError listing every problem in one line."""
    try:
        m = WorkloadModel.model_validate(doc)
    except ValidationError as e:
        problems = _problems(e)
        raise ConfigError(f"{source}: {len(problems)} problem{'s' if len(problems) > 1 else ''}: " + "; ".join(problems)) from None
    classes = []
    hourly = any(c.hourly_rps is not None for c in m.classes.values())
    for name, c in m.classes.items():
        rates = tuple(c.hourly_rps) if c.hourly_rps is not None else ((c.rate_rps,) * HOURS if hourly else (c.rate_rps,))
        classes.append(RequestClass(name=name, model=c.model, slo_p99_ms=float(c.slo_p99_ms), rates_rps=rates,  # type: ignore[arg-type]
                                    interruptible=c.interruptible, bucket=c.bucket, slo_ttft_ms=c.slo_ttft_ms,
                                    slo_tpot_ms=c.slo_tpot_ms))
    p = m.pool
    pool = Pool(instance_types=tuple(p.instance_types), pricing=tuple(dict.fromkeys(p.pricing)), max_count=dict(p.max_count),
                headroom=p.headroom, spot_interruption_derate=p.spot_interruption_derate, objective=p.objective,
                usd_per_kwh=p.usd_per_kwh)
    return Workload(classes=tuple(classes), pool=pool, source=source)


def load_workload(path: Path | str) -> Workload:
    """Read and validate a workload TOML file."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"workload file {p} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"workload file {p} is not valid TOML: {e}") from e
    return parse_workload(doc, str(p))

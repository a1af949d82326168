"""The fleet file: which node groups a cluster has, what each costs, and which sweep runs on each.

    name = "nightly"                 # names the run folders: <name>-<group>-<n>; re-running resumes them
    node_timeout_s = 120             # how long to wait for a group's first node before reporting it missing

    [sweeps.cpu]                     # a sweep: any sweep-file key, or file = "sweep.toml" (relative to this file)
    models = ["resnet50"]
    adapters = ["ort-cpu", "openvino"]

    [groups.c7i]
    resource = "c7i"                 # a Ray resource every node of the group has: custom, or "accelerator_type:A10G"
    instance_type = "c7i.2xlarge"    # for pricing (`hwbench prices`); overrides the sweep's instance_type
    sweep = "cpu"

Checked by pydantic before anything is scheduled; every problem is reported at once.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hwbench.errors import ConfigError
from hwbench.measure.settings import SweepConfig
from hwbench.measure.sweepfile import SweepFileError, load_sweep, parse_sweep
from hwbench.results.store import safe_name

MAX_FILE_BYTES = 256 * 1024


class GroupModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resource: str = Field(min_length=1, max_length=200)
    sweep: str = Field(min_length=1)
    instance_type: str | None = Field(None, min_length=1, max_length=200)


class FleetModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=60)
    node_timeout_s: float = Field(120.0, gt=0, le=86400)
    sweeps: dict[str, dict[str, Any]] = Field(min_length=1)
    groups: dict[str, GroupModel] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _safe(cls, v: str) -> str:
        if safe_name(v) != v:
            raise ValueError(f"use letters, digits, '.', '_' or '-' only (e.g. {safe_name(v)!r})")
        return v

    @model_validator(mode="after")
    def _sweeps_exist(self) -> FleetModel:
        for name, g in self.groups.items():
            if g.sweep not in self.sweeps:
                raise ValueError(f"groups.{name}.sweep: no sweep named {g.sweep!r} (defined: {', '.join(self.sweeps)})")
            if safe_name(name) != name:
                raise ValueError(f"groups.{name}: a group name uses letters, digits, '.', '_' or '-' only")
        return self


@dataclass(frozen=True)
class Group:
    name: str
    resource: str
    instance_type: str | None
    sweep: SweepConfig


@dataclass(frozen=True)
class Fleet:
    name: str
    node_timeout_s: float
    groups: tuple[Group, ...]

    def run_id(self, group: str, index: int) -> str:
        """The run folder of a group's node `index`: stable, so re-running the same fleet resumes it."""
        return safe_name(f"{self.name}-{group}-{index}", limit=120)


def _sweep(name: str, doc: dict[str, Any], source: str, base_dir: Path) -> SweepConfig:
    if "file" in doc:
        if len(doc) > 1:
            raise ConfigError(f"{source}: sweeps.{name}: give either file = ... or sweep keys, not both")
        path = Path(doc["file"])
        return load_sweep(path if path.is_absolute() else base_dir / path)
    try:
        return parse_sweep(doc, f"{source} [sweeps.{name}]", base_dir=base_dir)
    except SweepFileError:
        raise


def parse_fleet(doc: Any, source: str = "fleet file", base_dir: Path | None = None) -> Fleet:
    """A parsed fleet document -> Fleet; ConfigError listing every problem."""
    try:
        model = FleetModel.model_validate(doc)
    except ValidationError as e:
        problems = [f"{'.'.join(map(str, err['loc'])) or 'top level'}: {err['msg']}" for err in e.errors(include_url=False)]
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None
    base = base_dir or Path.cwd()
    sweeps = {n: _sweep(n, d, source, base) for n, d in model.sweeps.items()}
    groups = []
    for name, g in model.groups.items():
        cfg = sweeps[g.sweep]
        if g.instance_type:
            cfg = SweepConfig.from_dict({**cfg.to_dict(), "instance_type": g.instance_type})
        groups.append(Group(name, g.resource, g.instance_type or cfg.instance_type, cfg))
    return Fleet(model.name, model.node_timeout_s, tuple(groups))


def load_fleet(path: Path) -> Fleet:
    """Read and check a fleet file (TOML); ConfigError with what is wrong."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"fleet file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read fleet file {path}: {e.strerror or e}") from e
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"fleet file {path} is larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"fleet file {path} is not valid TOML: {e}") from e
    return parse_fleet(doc, str(path), path.resolve().parent)

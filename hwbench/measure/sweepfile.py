"""Sweep files: a TOML description of a sweep, validated as a whole into a SweepConfig.

One set of pydantic models (extra keys forbidden, strict types) holds every bound of every
sweep setting, and checks both a sweep file and the `hwbench profile` flags that set the same
keys (hwbench.cli.profile.build_config): a bound is written once. Every problem in a file is
collected with its location (``measure.min_iters``, ``batch_sizes[2]``) and reported at once
in one ConfigError, so a user fixes a file in one pass. Unknown keys get a close-match
suggestion. Adapters are names from the registry only (never a path or a ``module:Class``).
Building the config reads the file and nothing else: no model is resolved, no adapter imported.

Relative ``.onnx`` paths in ``models`` are taken relative to the sweep file's folder.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, ValidationError, ValidationInfo, field_validator

from hwbench.errors import ConfigError
from hwbench.precision import ALL, SCENARIOS
from hwbench.measure.sweeptypes import (BATCH, COUNT, COUNT_OR_ZERO, DIM_NAME, DURATION, DURATION_OR_ZERO, PERCENT,
                                        USD_PER_HOUR, Bool, Choice, Int, Num, PerCore, Text, _adapter, _fail, _key,
                                        _kind, _list, _memory_limit, _model, _show, _suggest)
from hwbench.measure.settings import WORKLOADS, AccuracySettings, GenerateSettings, MeasureSettings, ServerSettings, SweepConfig

MAX_FILE_BYTES = 1 << 20
MAX_DIM = 1 << 20  # as hwbench.models accepts
MAX_PROCESSES = 64  # fresh worker processes per trial (--processes)
TORCH_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "eager")

# Names people type that are close to, but not, a key: suggested, never accepted.
_ALIASES = {
    "model": "models", "adapter": "adapters", "precision": "precisions", "batch": "batch_sizes",
    "batches": "batch_sizes", "batch_size": "batch_sizes", "scenario": "scenarios", "instance": "instance_type",
    "timeout": "trial_timeout_s", "timeout_s": "trial_timeout_s", "duration": "measure.min_duration_s",
    "memory_limit": "memory_limit_mb", "tdp": "tdp_w",
}


class SweepFileError(ConfigError):
    """A sweep file with problems; `problems` holds one 'location: what is wrong' per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        if len(problems) == 1:
            text = f"{source}: {problems[0]}"
        else:
            text = f"{source} has {len(problems)} problems:\n" + "\n".join(f"  {source}: {p}" for p in problems)
        super().__init__(text)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem: its path in the document (('measure', 'min_iters'), ('batch_sizes', 2)) and what is wrong."""

    loc: tuple[str | int, ...]
    message: str

    @property
    def where(self) -> str:
        out = ""
        for part in self.loc:
            out += f"[{part}]" if isinstance(part, int) else (f".{_key(part)}" if out else _key(part))
        return out

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


# -- the models -------------------------------------------------------------------------


def _not_below(low_key: str, where: str, unit: str = "", spec: str = "") -> Any:
    """A validator of a section's maximum that refuses it below the minimum `low_key` (set before it),
    reported at the minimum: "<low><unit> is above <where> (<v><unit>)", numbers in format `spec`."""
    def check(cls: Any, v: Any, info: ValidationInfo) -> Any:
        low = info.data.get(low_key)
        if low is not None and low > v:
            raise _fail(f"{low:{spec}}{unit} is above {where} ({v:{spec}}{unit})", at=low_key)
        return v
    return classmethod(check)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_M = MeasureSettings()
_A = AccuracySettings()
_S = SweepConfig()
_V = ServerSettings()
MAX_RATE_RPS = 1e6  # as hwbench.measure.arrivals.MAX_RATE_RPS
MAX_RATES = 64
MAX_SERVER_BATCH = 4096


class MeasureModel(_Section):
    """[measure]: the timed loop's stopping rule (hwbench.measure.settings.MeasureSettings)."""

    warmup_s: DURATION_OR_ZERO = _M.warmup_s
    warmup_min_iters: COUNT_OR_ZERO = _M.warmup_min_iters
    min_duration_s: DURATION = _M.min_duration_s
    min_iters: COUNT = _M.min_iters
    max_iters: COUNT = Field(_M.max_iters, validate_default=True)
    max_duration_s: DURATION = Field(_M.max_duration_s, validate_default=True)
    target_p50_rel_halfwidth: Num("a relative half-width above 0 and below 1 (e.g. 0.01 for +-1%)",
                                  gt=0.0, lt=1.0) = _M.target_p50_rel_halfwidth
    max_cv: Num("a coefficient of variation above 0 and up to 10 (1000%)", gt=0.0, le=10.0) = _M.max_cv
    min_samples_for_p99: COUNT = _M.min_samples_for_p99
    max_steal_pct: PERCENT = _M.max_steal_pct
    max_other_cpu_pct: PERCENT = _M.max_other_cpu_pct

    _iters = field_validator("max_iters")(_not_below("min_iters", "measure.max_iters"))

    _durations = field_validator("max_duration_s")(_not_below("min_duration_s", "measure.max_duration_s", " s", "g"))


class AccuracyModel(_Section):
    """[accuracy]: drift thresholds (hwbench.measure.settings.AccuracySettings)."""

    enabled: Bool = _A.enabled
    min_cosine: Num("a cosine similarity from -1 to 1", ge=-1.0, le=1.0) = _A.min_cosine
    min_top1_agreement: Num("a share from 0 to 1", ge=0.0, le=1.0) = _A.min_top1_agreement
    max_mean_rel_err: Num("a relative error >= 0", ge=0.0, le=1e6) = _A.max_mean_rel_err
    min_items: BATCH = _A.min_items
    seed: Int(0, 2**32 - 1, "an integer from 0 to 4294967295") = _A.seed


_G = GenerateSettings()
MAX_TOKENS = 1 << 20


class GenerateModel(_Section):
    """[generate]: the generate workload's timed loop (hwbench.measure.settings.GenerateSettings)."""

    warmup_calls: COUNT_OR_ZERO = _G.warmup_calls
    min_calls: COUNT = _G.min_calls
    min_duration_s: DURATION = _G.min_duration_s
    max_duration_s: DURATION = Field(_G.max_duration_s, validate_default=True)
    max_rel_halfwidth: Num("a fraction from 0 to 1", ge=0.0, le=1.0) = _G.max_rel_halfwidth
    greedy_tokens: COUNT = _G.greedy_tokens
    accuracy_prompt_tokens: COUNT = _G.accuracy_prompt_tokens

    _durations = field_validator("max_duration_s")(_not_below("min_duration_s", "generate.max_duration_s", " s", "g"))


class ServerModel(_Section):
    """[server]: the server scenario's load, batching, validity and search (hwbench.measure.settings.ServerSettings)."""

    rates_rps: Annotated[list[Num(f"a rate in requests/s above 0 and up to {MAX_RATE_RPS:g}", gt=0.0, le=MAX_RATE_RPS)],
                         Field(max_length=MAX_RATES)] = list(_V.rates_rps)
    slo_p99_ms: Num("a latency in ms above 0 and up to one hour (3600000)", gt=0.0, le=3.6e6) = None  # type: ignore[assignment]
    burstiness: Num("a gamma shape from 0.01 to 100 (1 = Poisson)", ge=0.01, le=100.0) = _V.burstiness
    max_batch: Int(1, MAX_SERVER_BATCH, f"a batch size from 1 to {MAX_SERVER_BATCH}") = _V.max_batch
    max_queue_delay_ms: Num("a delay in ms from 0 up to 60000", ge=0.0, le=60000.0) = _V.max_queue_delay_ms
    min_duration_s: DURATION = _V.min_duration_s
    min_queries: Int(1, 10**8, "a positive integer up to 100000000") = _V.min_queries
    max_duration_s: DURATION = Field(_V.max_duration_s, validate_default=True)
    drain_s: Num("a duration in seconds from 0 up to 3600", ge=0.0, le=3600.0) = _V.drain_s
    max_queue: Int(0, 10**8, "an integer from 0 (unbounded) up to 100000000") = _V.max_queue
    max_sched_lag_ms: Num("a lag in ms above 0 and up to 60000", gt=0.0, le=60000.0) = _V.max_sched_lag_ms
    warmup_s: DURATION_OR_ZERO = _V.warmup_s
    max_rates: Int(1, MAX_RATES, f"an integer from 1 to {MAX_RATES}") = _V.max_rates
    rel_tol: Num("a relative tolerance from 0.001 to 10", ge=0.001, le=10.0) = _V.rel_tol
    seed: Int(0, 2**32 - 1, "an integer from 0 to 4294967295") = _V.seed
    confirm_tries: Int(0, 10, "an integer from 0 (no confirmation) to 10") = _V.confirm_tries
    confirm_step: Num("a fraction above 0 and below 1", gt=0.0, lt=1.0) = _V.confirm_step
    confirm_min_queries: Int(1, 10**8, "a positive integer up to 100000000") = _V.confirm_min_queries
    confirm_max_duration_s: DURATION = _V.confirm_max_duration_s

    _durations = field_validator("max_duration_s")(_not_below("min_duration_s", "server.max_duration_s", " s", "g"))


class TorchOptions(_Section):
    """[adapter_options.torch]: passed to the torch adapter as AdapterOptions.extra."""

    compile_mode: Choice(TORCH_COMPILE_MODES, "torch compile mode") = "default"  # "eager": no torch.compile
    channels_last: Bool = True  # CNNs in channels_last memory format
    static_cache: Bool = False  # generate: a static (preallocated) KV cache instead of the dynamic one
    generate_compile: Bool = False  # generate: torch.compile of the forward pass


class OpenVinoOptions(_Section):
    """[adapter_options.openvino]: passed to the OpenVINO adapter as AdapterOptions.extra."""

    num_streams: PerCore("an integer from 1", lo=1) = 1  # offline scenario: NUM_STREAMS of the THROUGHPUT compile


class AdapterOptionsModel(_Section):
    """[adapter_options.NAME]: settings that only one adapter understands, by adapter name."""

    torch: TorchOptions = Field(default_factory=TorchOptions)
    openvino: OpenVinoOptions = Field(default_factory=OpenVinoOptions)


class SweepModel(_Section):
    """A whole sweep file (or the flags on top of one): every key, every bound."""

    measure: MeasureModel = Field(default_factory=MeasureModel)  # first: trial_timeout_s is checked against it
    accuracy: AccuracyModel = Field(default_factory=AccuracyModel)
    models: _list(Annotated[str, PlainValidator(_model)]) = list(_S.models)
    adapters: _list(Annotated[str, PlainValidator(_adapter)]) = list(_S.adapters)
    precisions: _list(Choice(ALL, "precision")) = list(_S.precisions)
    batch_sizes: _list(BATCH) = list(_S.batch_sizes)
    scenarios: _list(Choice(SCENARIOS, "scenario")) = list(_S.scenarios)
    instance_type: Text() = None  # type: ignore[assignment]
    dims: dict[DIM_NAME, Int(1, MAX_DIM, f"a positive integer up to {MAX_DIM}")] = Field(default_factory=dict)
    trial_timeout_s: DURATION = Field(_S.trial_timeout_s, validate_default=True)
    threads: PerCore("an integer from 0 (runtime default)") = _S.threads
    device: Text(allow_empty=True) = _S.device
    concurrency: PerCore("an integer from 0 (tuned)") = _S.concurrency
    tdp_w: Num("a power in watts above 0 and up to 5000", gt=0.0, le=5000.0) = None  # type: ignore[assignment]
    usd_per_hour: USD_PER_HOUR = None  # type: ignore[assignment]
    price_note: Text() = None  # type: ignore[assignment]
    memory_limit_mb: Annotated[Num("a size in MB from 0 (the default) up to 16 TiB", ge=0.0, le=16.0 * 2**20),
                               AfterValidator(_memory_limit)] = _S.memory_limit_mb
    idle_power_s: Num("a duration in seconds from 0 (off) up to 3600", ge=0.0, le=3600.0) = _S.idle_power_s
    allow_emulated: Bool = _S.allow_emulated
    processes: Int(1, MAX_PROCESSES, f"an integer from 1 to {MAX_PROCESSES}") = _S.processes
    adapter_options: AdapterOptionsModel = Field(default_factory=AdapterOptionsModel)
    workload: Choice(WORKLOADS, "workload") = _S.workload
    prompt_tokens: _list(Int(1, MAX_TOKENS, f"a positive number of tokens up to {MAX_TOKENS}")) = list(_S.prompt_tokens)
    output_tokens: _list(Int(1, MAX_TOKENS, f"a positive number of tokens up to {MAX_TOKENS}")) = list(_S.output_tokens)
    generate: GenerateModel = Field(default_factory=GenerateModel)
    server: ServerModel = Field(default_factory=ServerModel, validate_default=True)  # after scenarios, processes, timeout

    @field_validator("server")
    @classmethod
    def _server_scenario(cls, v: ServerModel, info: ValidationInfo) -> ServerModel:
        d = info.data
        problem = ServerSettings(**v.model_dump()).problem(d.get("scenarios") or (), d.get("processes") or 1,
                                                           d.get("trial_timeout_s"))
        if problem:
            raise _fail(problem[1], at=problem[0])
        return v

    @field_validator("trial_timeout_s")
    @classmethod
    def _room_to_measure(cls, v: float, info: ValidationInfo) -> float:
        m = info.data.get("measure")
        if m is not None and m.warmup_s + m.min_duration_s >= v:
            raise _fail(f"{v:g} s leaves no time to measure: warm-up {m.warmup_s:g} s plus "
                        f"measure.min_duration_s {m.min_duration_s:g} s already reach it")
        return v

    def to_config(self) -> SweepConfig:
        """The SweepConfig of the keys given (the dataclass keeps the defaults of the others)."""
        given = self.model_dump(exclude_unset=True)
        top = {k: v for k, v in given.items() if k not in ("measure", "accuracy", "adapter_options", "generate", "server")}
        for k in ("models", "adapters", "precisions", "batch_sizes", "scenarios", "prompt_tokens", "output_tokens"):
            if k in top:
                top[k] = tuple(dict.fromkeys(top[k]))
        options = {name: table for name, table in given.get("adapter_options", {}).items() if table}
        server = dict(given.get("server", {}))
        if "rates_rps" in server:
            server["rates_rps"] = tuple(dict.fromkeys(server["rates_rps"]))
        return SweepConfig(measure=MeasureSettings(**given.get("measure", {})),
                           accuracy=AccuracySettings(**given.get("accuracy", {})),
                           generate=GenerateSettings(**given.get("generate", {})),
                           server=ServerSettings(**server),
                           adapter_options=options, **top)


MEASURE_KEYS = tuple(MeasureModel.model_fields)
ACCURACY_KEYS = tuple(AccuracyModel.model_fields)
TOP_KEYS = tuple(SweepModel.model_fields)


# -- problems, in the document's order ---------------------------------------------------


def _unknown(loc: tuple[str | int, ...]) -> str:
    key = str(loc[-1])
    if len(loc) == 1:
        if key in MEASURE_KEYS or key in ACCURACY_KEYS:
            return f"unknown key (did you mean {key} under [{'measure' if key in MEASURE_KEYS else 'accuracy'}]?)"
        if key in _ALIASES:
            return f"unknown key (did you mean {_ALIASES[key]!r}?)"
    model: type[BaseModel] = SweepModel
    for part in loc[:-1]:
        model = model.model_fields[str(part)].annotation  # type: ignore[assignment]
    known = sorted(model.model_fields, key=lambda k: k in ("measure", "accuracy"))  # the tables after the keys
    hint = _suggest(key, known)
    return f"unknown key{hint}" if hint else f"unknown key; known: {', '.join(known)}"


def _message(error: Any, loc: tuple[str | int, ...]) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "hwbench":
        return error["ctx"]["message"]
    if kind == "extra_forbidden":
        return _unknown(loc)
    if kind == "model_type":
        return f"expected a table ([{Problem(loc, '').where}]), got {_kind(value)} {_show(value)}"
    if kind == "list_type":
        return f"expected an array, e.g. [...], got {_kind(value)} {_show(value)}"
    if kind == "too_short":
        return "expected a non-empty array (leave the key out for the default)"
    if kind == "dict_type":
        return f"expected a table of NAME = positive integer, got {_kind(value)} {_show(value)}"
    return error["msg"]


def _order(doc: Any, loc: tuple[str | int, ...]) -> tuple[int, ...]:
    """Where a location comes in the document (keys in the order written; unknown places last)."""
    out = []
    for part in loc:
        if isinstance(doc, Mapping) and part in doc:
            out.append(list(doc).index(part))
            doc = doc[part]
        elif isinstance(doc, list) and isinstance(part, int) and part < len(doc):
            out.append(part)
            doc = doc[part]
        else:
            out.append(1 << 30)
            doc = None
    return tuple(out)


def problems_of(error: ValidationError, doc: Any) -> list[Problem]:
    """A pydantic ValidationError of SweepModel as one Problem per error, in the document's order."""
    out = []
    for e in error.errors(include_url=False):
        loc = tuple(e["loc"])
        if len(loc) == 3 and loc[0] == "dims" and loc[2] == "[key]":  # a dims key's own error names the key
            loc = loc[:2]
        at = (e.get("ctx") or {}).get("at")
        if at:
            loc = (*loc[:-1], at)
        out.append(Problem(loc, _message(e, loc)))
    return sorted(out, key=lambda p: _order(doc, p.loc))


def validate(doc: Mapping[str, Any], base_dir: Path | None = None) -> tuple[SweepConfig | None, list[Problem]]:
    """A sweep document -> (its SweepConfig, []) or (None, every problem)."""
    try:
        model = SweepModel.model_validate(doc, context={"base_dir": base_dir})
    except ValidationError as e:
        return None, problems_of(e, doc)
    return model.to_config(), []


def config_doc(config: SweepConfig) -> dict[str, Any]:
    """A SweepConfig as the sweep document that gives it (flags are laid over this and checked again)."""
    doc = dataclasses.asdict(config)
    out = {k: list(v) if isinstance(v, tuple) else v for k, v in doc.items() if v is not None and v != ()}
    out["adapter_options"] = {k: dict(v) for k, v in config.adapter_options.items()}
    out["server"] = {k: list(v) if isinstance(v, tuple) else v for k, v in doc["server"].items() if v is not None}
    return out


def parse_sweep(data: Any, source: str = "sweep file", base_dir: Path | None = None) -> SweepConfig:
    """A parsed TOML document -> SweepConfig; SweepFileError (a ConfigError) lists every problem."""
    if not isinstance(data, Mapping):
        raise SweepFileError(source, [f"top level: expected a table, got {_kind(data)}"])
    config, problems = validate(data, base_dir)
    if problems:
        raise SweepFileError(source, [str(p) for p in problems])
    assert config is not None
    return config


def load_sweep(path: Path) -> SweepConfig:
    """Read and validate a sweep file. ConfigError with one line for an unreadable file,
    or with every problem listed for a file that parses."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"sweep file {source} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"sweep file {source} is a directory, not a file") from None
    except OSError as e:
        raise ConfigError(f"cannot read sweep file {source}: {e.strerror or e}") from e
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"sweep file {source} is larger than {MAX_FILE_BYTES // 1024} KiB: not a sweep file")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"sweep file {source} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"sweep file {source} is not valid TOML: {e}") from e
    return parse_sweep(doc, source, base_dir=path.resolve().parent)

"""A `hwbench profile` session as a library call: flags (or a sweep file, or a run to resume) -> config -> sweep.

The command line only parses, shows progress and prints; everything between is here, so a
script gets the same checks and the same run folder as the CLI. Flags and sweep-file keys
are one setting, checked by one model (hwbench.measure.sweepfile.SweepModel); a problem is
reported under the flag that set the value. Building the config has no side effects: the
sweep (and pandas, scipy, the runtimes) starts only in `run_profile`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwbench.adapter import registry
from hwbench.errors import ResultsError, UsageError
from hwbench.measure.settings import GenerateSettings, MeasureSettings, SweepConfig
from hwbench.precision import ALL, SCENARIOS, parse_batches, parse_list

if TYPE_CHECKING:
    from hwbench.measure.runner import Event, SweepResult


def parse_dims(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--dim takes NAME=VALUE, got {item!r}")
        try:
            number = int(value)
        except ValueError:
            raise UsageError(f"--dim {name}: {value!r} is not an integer") from None
        if name.strip() in out:  # a repeated name is a typo or a clash, never "the last one wins"
            raise UsageError(f"--dim {name.strip()} is given twice ({out[name.strip()]} and {value.strip()}); give it once")
        out[name.strip()] = number
        if out[name.strip()] <= 0:
            raise UsageError(f"--dim {name}: must be positive")
    return out


# The sweep key each flag sets: one model (hwbench.measure.sweepfile.SweepModel) checks both.
_FLAG_OF: dict[tuple[str, ...], str] = {
    ("models",): "MODEL", ("adapters",): "--adapter", ("precisions",): "--precision", ("batch_sizes",): "--batch",
    ("scenarios",): "--scenario", ("instance_type",): "--instance", ("threads",): "--threads",
    ("device",): "--device", ("concurrency",): "--concurrency", ("tdp_w",): "--tdp-w",
    ("trial_timeout_s",): "--timeout-s", ("processes",): "--processes", ("usd_per_hour",): "--usd-per-hour",
    ("price_note",): "--price-note", ("dims",): "--dim", ("measure", "min_duration_s"): "--duration-s",
    ("measure", "min_iters"): "--min-iters", ("measure", "max_duration_s"): "--max-duration-s",
    ("measure", "target_p50_rel_halfwidth"): "--ci-target",
    ("workload",): "--workload", ("prompt_tokens",): "--prompt-tokens", ("output_tokens",): "--output-tokens",
    ("server", "rates_rps"): "--rate-rps", ("server", "slo_p99_ms"): "--slo-p99-ms",
    ("server", "burstiness"): "--burstiness", ("server", "max_batch"): "--max-batch",
    ("server", "max_queue_delay_ms"): "--max-queue-delay-ms",
}
_SERVER_FLAGS = {"slo_p99_ms": "slo_p99_ms", "burstiness": "burstiness", "max_batch": "max_batch",
                 "max_queue_delay_ms": "max_queue_delay_ms"}


def parse_rates(text: str) -> list[float]:
    """Parse '5,10,20' (requests/s) into numbers; their bounds are the sweep model's (server.rates_rps)."""
    out: list[float] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            out.append(float(part))
        except ValueError:
            raise UsageError(f"--rate-rps: {part!r} is not a number of requests/s") from None
    if not out:
        raise UsageError("--rate-rps: empty rate list")
    return out
_PLAIN_FLAGS = {"instance_type": "instance_type", "threads": "threads", "device": "device", "concurrency": "concurrency",
                "tdp_w": "tdp_w", "trial_timeout_s": "trial_timeout_s", "processes": "processes",
                "usd_per_hour": "usd_per_hour", "price_note": "price_note"}
_MEASURE_FLAGS = {"duration": "min_duration_s", "min_iters": "min_iters", "max_duration": "max_duration_s",
                  "ci_target": "target_p50_rel_halfwidth"}


def parse_tokens(text: str, flag: str) -> list[int]:
    """'128,1024' -> [128, 1024]; UsageError naming the flag for anything but positive integers."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise UsageError(f"{flag}: {part!r} is not a number of tokens") from None
        if value <= 0:
            raise UsageError(f"{flag}: {value} tokens; give at least 1" + (" (a generate call must produce a token)"
                                                                           if flag == "--output-tokens" else ""))
        out.append(value)
    if not out:
        raise UsageError(f"{flag}: empty list")
    return list(dict.fromkeys(out))


def _flag_problem(problem: Any) -> str:
    """A sweep-model problem as the flag that set the value: '--threads: expected ...'."""
    for n in (2, 1):
        flag = _FLAG_OF.get(tuple(problem.loc[:n]))
        if flag:
            rest = "".join(f"[{p}]" if isinstance(p, int) else f" {p}" for p in problem.loc[n:])
            return f"{flag}{rest}: {problem.message}"
    return str(problem)


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and 0 < v < float("inf")


def build_config(base: SweepConfig, **flags: Any) -> SweepConfig:
    """Command-line flags on top of a sweep file (or the defaults), checked by the sweep file's model.
    None means 'not given'; an empty list flag (`-b ""`) is an error, not the defaults."""
    from hwbench.measure.sweepfile import config_doc, validate

    doc = config_doc(base)
    if flags.get("model") is not None:
        doc["models"] = [m.strip() for m in flags["model"].split(",") if m.strip()]
        if not doc["models"]:
            raise UsageError("no model given")
    if flags.get("adapter") is not None:
        doc["adapters"] = registry.parse_adapters(flags["adapter"])
    if flags.get("precision") is not None:
        doc["precisions"] = parse_list(flags["precision"], ALL, "precision")
    if flags.get("batch") is not None:
        doc["batch_sizes"] = parse_batches(flags["batch"])
    if flags.get("scenario") is not None:
        doc["scenarios"] = parse_list(flags["scenario"], SCENARIOS, "scenario")
    for flag, key in _PLAIN_FLAGS.items():
        if flags.get(flag) is not None:
            doc[key] = flags[flag]
    if flags.get("workload") is not None:
        doc["workload"] = flags["workload"]
    for flag, key in (("prompt_tokens", "--prompt-tokens"), ("output_tokens", "--output-tokens")):
        if flags.get(flag) is not None:
            doc[flag] = parse_tokens(flags[flag], key)
            if doc.get("workload") != "generate":
                raise UsageError(f"{key} goes with --workload generate (an LLM's prompt and output lengths)")
    if flags.get("price_note") is not None:
        if flags.get("usd_per_hour") is None and base.usd_per_hour is None:
            raise UsageError("--price-note describes a --usd-per-hour price; give the price too")
        doc["price_note"] = flags["price_note"].strip()
    if flags.get("dim"):
        doc["dims"] = {**base.dims, **parse_dims(flags["dim"])}
    measure = doc["measure"] = dataclasses.asdict(MeasureSettings.quick()) if flags.get("quick") else doc["measure"]
    for flag, key in _MEASURE_FLAGS.items():
        if flags.get(flag) is not None:
            measure[key] = flags[flag]
    low, cap = measure["min_duration_s"], measure["max_duration_s"]
    if _positive(low) and _positive(cap) and low > cap:
        if flags.get("max_duration") is not None:
            raise UsageError(f"--max-duration-s {cap:g} is below the minimum duration {low:g} s (--duration-s)")
        measure["max_duration_s"] = low  # without --max-duration-s, the cap follows a --duration-s above it
    if flags.get("rate_rps") is not None:
        doc["server"]["rates_rps"] = parse_rates(flags["rate_rps"])
    for flag, key in _SERVER_FLAGS.items():
        if flags.get(flag) is not None:
            doc["server"][key] = flags[flag]
    if flags.get("allow_emulated"):
        doc["allow_emulated"] = True
    if flags.get("no_accuracy"):
        doc["accuracy"]["enabled"] = False
    if flags.get("quick"):
        doc["idle_power_s"] = min(base.idle_power_s, 0.3)
        doc["generate"] = dataclasses.asdict(GenerateSettings.quick())
    config, problems = validate(doc)
    if problems:
        raise UsageError("; ".join(_flag_problem(p) for p in problems))
    assert config is not None
    return config


# flag names for the keys of a `flags` dict, where not --key-with-dashes (for the --resume check)
_FLAG_NAMES = {"model": "MODEL", "instance_type": "--instance", "trial_timeout_s": "--timeout-s", "dim": "--dim",
               "duration": "--duration-s", "max_duration": "--max-duration-s"}


def requested_config(flags: dict[str, Any], config: Path | None = None, resume: Path | None = None) -> SweepConfig:
    """The sweep asked for: a resumed run's own request (no flags allowed with it), else flags over a
    sweep file (or the defaults). UsageError (or ConfigError) names the flag or key at fault."""
    if resume is not None:
        from hwbench.results.store import read_manifest

        given = [_FLAG_NAMES.get(k, f"--{k.replace('_', '-')}") for k, v in flags.items() if v not in (None, False, [])]
        if config is not None:
            given.append("--config")
        if given:
            raise UsageError(f"--resume completes a run as it was first requested; drop {', '.join(given)}")
        requested = read_manifest(resume, require=("run_id", "requested"))["requested"]
        try:
            return SweepConfig.from_dict(requested)
        except (TypeError, ValueError, AttributeError) as e:
            raise ResultsError(f"{resume}/manifest.json: its 'requested' sweep is unreadable ({e})") from e
    if config is not None:
        from hwbench.measure.sweepfile import load_sweep

        return build_config(load_sweep(config), **flags)
    return build_config(SweepConfig(), **flags)


CONFIRM_ABOVE_TRIALS = 200  # a larger sweep states its size and needs --yes (or a yes at a terminal)


@dataclasses.dataclass(frozen=True)
class SweepSize:
    """How big a sweep is before it runs: its trial count and the time its settings imply (estimated)."""

    trials: int
    low_s: float  # every trial stops at its minimums: warm-up + minimum timed window, per process
    high_s: float  # every trial runs to its cap (max_duration_s), per process

    def describe(self) -> str:
        return (f"{self.trials} trials, estimated {_duration(self.low_s)} to {_duration(self.high_s)} "
                "(from each trial's warm-up, minimum and maximum timed window; model preparation not included)")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def sweep_size(cfg: SweepConfig) -> SweepSize:
    """Trials and an estimated duration range for `cfg` (no adapter named: every CPU default counted)."""
    adapters = len(cfg.adapters) or len(registry.CPU_DEFAULTS)
    trials = len(cfg.models) * adapters * len(cfg.precisions) * len(cfg.batch_sizes) * len(cfg.scenarios)
    m = cfg.measure
    per = cfg.processes
    return SweepSize(trials, trials * per * (m.warmup_s + m.min_duration_s), trials * per * (m.warmup_s + m.max_duration_s))


def run_profile(cfg: SweepConfig, out: Path | str, *, resume: Path | None = None, retry_errors: bool = False,
                on_event: Event | None = None) -> SweepResult:
    """Run (or complete, with `resume`) the sweep `cfg` into a run folder under `out`; return its records.
    `out` may be a store URI (s3://, gs://, az://, file://: hwbench.measure.mirrored).
    Adapters named in the config are required; with none named, every available CPU adapter runs."""
    if retry_errors and resume is None:
        raise UsageError("--retry-errors goes with --resume RUN_DIR")
    from hwbench.results.uri import is_uri, open_location

    if resume is None and is_uri(str(out)):
        loc = open_location(str(out))
        if not loc.atomic_rename:
            from hwbench.measure.mirrored import run_into_store

            return run_into_store(cfg, loc, on_event=on_event, explicit_adapters=bool(cfg.adapters))
        out = Path(loc.root)
    from hwbench.measure.runner import SweepRunner  # imported late: bad flags fail without loading pandas and scipy

    runner = SweepRunner(cfg, out, on_event=on_event, resume_dir=resume, explicit_adapters=bool(cfg.adapters),
                         retry_errors=retry_errors)
    return runner.run()


def failed_sweep(records: list[dict[str, Any]]) -> str | None:
    """Why a sweep failed (at least one trial ended in error), or None: README "Exit codes", row 3.
    Points only unsupported here are a finished sweep; an error among measured points is not."""
    statuses = [r["status"] for r in records]
    errors = statuses.count("error")
    if not errors:
        return None
    if "ok" in statuses:
        return f"{errors} of {len(statuses)} trial(s) ended in error, {statuses.count('ok')} measured"
    unsupported = statuses.count("unsupported")
    return (f"all {len(statuses)} trial(s) failed: {errors} ended in error"
            + (f", {unsupported} unsupported" if unsupported else "") + ", none measured")

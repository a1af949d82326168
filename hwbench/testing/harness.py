"""What the conformance kit (hwbench.testing.conformance) drives an adapter with: a trial context
for hwbench.measure.trial.run_trial, an instrumented subclass that logs the adapter's calls, and
the fp32 ONNX Runtime reference outputs.

Call logs, not clocks: whether prepare() ran outside the timed loop, and whether every timed
call was a run(), is read from the order of logged events, which a busy host cannot disturb.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from hwbench.adapter import Adapter, AdapterOptions
from hwbench.models.spec import ModelSpec

# The timed loop of the kit's trials: short, since the kit checks behaviour, not speed.
KIT_MEASURE = dict(warmup_s=0.05, warmup_min_iters=2, min_duration_s=0.2, min_iters=10, max_duration_s=1.0,
                   target_p50_rel_halfwidth=0.05)

PREPARE_BEGIN, PREPARE_END, RUN = "prepare-begin", "prepare-end", "run"
TIMED_BEGIN, TIMED_END = "timed-begin", "timed-end"


def merge_options(base: AdapterOptions | None, override: dict[str, Any]) -> AdapterOptions:
    """`base` (what run_trial builds from the sweep) with the kit's own adapter options on top."""
    base = base or AdapterOptions()
    extra = {**base.extra, **override.get("extra", {})}
    fields = {k: v for k, v in override.items() if k != "extra"}
    return dataclasses.replace(base, **fields, extra=extra)


def instrumented(cls: type[Adapter], log: list[str], override: dict[str, Any]) -> type[Adapter]:
    """A subclass of `cls` that appends PREPARE_BEGIN/PREPARE_END/RUN to `log` and applies `override`
    to the options it is built with (run_trial builds options from the sweep alone)."""

    def __init__(self: Any, options: AdapterOptions | None = None) -> None:
        cls.__init__(self, merge_options(options, override))

    def prepare(self: Any, model: ModelSpec, precision: str, batch_size: int, inputs: dict[str, np.ndarray]) -> None:
        log.append(PREPARE_BEGIN)
        cls.prepare(self, model, precision, batch_size, inputs)
        log.append(PREPARE_END)

    def run(self: Any) -> None:
        cls.run(self)
        log.append(RUN)

    return type(f"Instrumented{cls.__name__}", (cls,), {"__init__": __init__, "prepare": prepare, "run": run})


def trial_context(spec: ModelSpec, adapter: str, precision: str, batch_size: int, scenario: str,
                  cache_dir: Path, options: dict[str, Any]) -> Any:
    """A TrialContext for one point with the kit's short timed loop and no accuracy check."""
    from hwbench.host.fingerprint import cpu_model
    from hwbench.measure.settings import AccuracySettings, MeasureSettings, SweepConfig
    from hwbench.measure.trial import TrialContext

    config = SweepConfig(models=(spec.name,), adapters=(adapter,), precisions=(precision,),
                         batch_sizes=(batch_size,), scenarios=(scenario,), measure=MeasureSettings(**KIT_MEASURE),
                         accuracy=AccuracySettings(enabled=False), idle_power_s=0.0,
                         device=str(options.get("device", "")), threads=int(options.get("threads", 0)),
                         concurrency=int(options.get("concurrency", 0)))
    return TrialContext(run_id="conformance", config=config, cpu_model=cpu_model(), hostname="conformance",
                        cache_dir=str(cache_dir))


def reference_outputs(spec: ModelSpec, batches: list[dict[str, np.ndarray]], cache_dir: Path) -> list[np.ndarray]:
    """The fp32 ONNX Runtime CPU outputs of every batch, flattened batch by batch (hwbench's reference)."""
    from hwbench.adapter import registry
    from hwbench.measure.trial import REFERENCE_ADAPTER, REFERENCE_PRECISION

    ref = registry.load(REFERENCE_ADAPTER)(AdapterOptions(cache_dir=str(cache_dir)))
    try:
        ref.prepare(spec, REFERENCE_PRECISION, len(next(iter(batches[0].values()))), batches[0])
        return [np.asarray(o, dtype=np.float32) for b in batches for o in ref.infer(b)]
    finally:
        ref.close()


def timed_window(log: list[str]) -> list[str]:
    """The events logged between TIMED_BEGIN and TIMED_END (the profiler's loop, warm-up included)."""
    if TIMED_BEGIN not in log or TIMED_END not in log:
        return []
    return log[log.index(TIMED_BEGIN) + 1 : log.index(TIMED_END)]

"""`hwbench profile`: sweep a model over adapters x precisions x batch sizes x scenarios."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hwbench.adapter import registry
from hwbench.cli.common import JsonFlag, console, err_console, print_json
from hwbench.errors import UsageError
from hwbench.precision import ALL, SCENARIOS, parse_batches, parse_list
from hwbench.measure.settings import MeasureSettings, SweepConfig


def _dims(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--dim takes NAME=VALUE, got {item!r}")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise UsageError(f"--dim {name}: {value!r} is not an integer") from None
        if out[name.strip()] <= 0:
            raise UsageError(f"--dim {name}: must be positive")
    return out


# The sweep key each flag sets: one model (hwbench.measure.sweepfile.SweepModel) checks both.
_FLAG_OF: dict[tuple[str, ...], str] = {
    ("models",): "MODEL", ("adapters",): "--adapter", ("precisions",): "--precision", ("batch_sizes",): "--batch",
    ("scenarios",): "--scenario", ("instance_type",): "--instance", ("threads",): "--threads",
    ("device",): "--device", ("concurrency",): "--concurrency", ("tdp_w",): "--tdp-w",
    ("trial_timeout_s",): "--timeout", ("processes",): "--processes", ("usd_per_hour",): "--usd-per-hour",
    ("price_note",): "--price-note", ("dims",): "--dim", ("measure", "min_duration_s"): "--duration",
    ("measure", "min_iters"): "--min-iters", ("measure", "max_duration_s"): "--max-duration",
    ("measure", "target_p50_rel_halfwidth"): "--ci-target",
}
_PLAIN_FLAGS = {"instance_type": "instance_type", "threads": "threads", "device": "device", "concurrency": "concurrency",
                "tdp_w": "tdp_w", "trial_timeout_s": "trial_timeout_s", "processes": "processes",
                "usd_per_hour": "usd_per_hour", "price_note": "price_note"}
_MEASURE_FLAGS = {"duration": "min_duration_s", "min_iters": "min_iters", "max_duration": "max_duration_s",
                  "ci_target": "target_p50_rel_halfwidth"}


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
    if flags.get("price_note") is not None:
        if flags.get("usd_per_hour") is None and base.usd_per_hour is None:
            raise UsageError("--price-note describes a --usd-per-hour price; give the price too")
        doc["price_note"] = flags["price_note"].strip()
    if flags.get("dim"):
        doc["dims"] = {**base.dims, **_dims(flags["dim"])}
    measure = doc["measure"] = dataclasses.asdict(MeasureSettings.quick()) if flags.get("quick") else doc["measure"]
    for flag, key in _MEASURE_FLAGS.items():
        if flags.get(flag) is not None:
            measure[key] = flags[flag]
    low, cap = measure["min_duration_s"], measure["max_duration_s"]
    if _positive(low) and _positive(cap) and low > cap:
        if flags.get("max_duration") is not None:
            raise UsageError(f"--max-duration {cap:g} s is below the minimum duration {low:g} s (--duration)")
        measure["max_duration_s"] = low  # without --max-duration, the cap follows a --duration above it
    if flags.get("allow_emulated"):
        doc["allow_emulated"] = True
    if flags.get("no_accuracy"):
        doc["accuracy"]["enabled"] = False
    if flags.get("quick"):
        doc["idle_power_s"] = min(base.idle_power_s, 0.3)
    config, problems = validate(doc)
    if problems:
        raise UsageError("; ".join(_flag_problem(p) for p in problems))
    assert config is not None
    return config


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None or v != v else format(v, spec)


def _num(v: Any) -> str:
    """A number for a narrow column: no exponent unless it is tiny."""
    if v is None or v != v:
        return "-"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.01:
        return f"{v:.3f}"
    return f"{v:.1e}"


def _flags(r: dict[str, Any]) -> list[str]:
    """Why a measured point deserves a second look: validity, warnings (a noisy host...), drift."""
    out = list(r["invalid_reasons"] or []) + list(r.get("warnings") or [])
    if r["accuracy_ok"] is False:
        out.append(f"accuracy drift: cosine {_fmt(r['acc_cosine'], '.4f')}, mean rel. err {_fmt(r['acc_mean_rel_err'], '.3f')}")
    return out


def render_summary(records: list[dict[str, Any]]) -> list[Any]:
    """A compact table of measured points, then footnotes, then what did not run and why."""
    models = sorted({r["model"] for r in records})
    one_model = len(models) == 1
    t = Table(title=f"hwbench profile: {models[0] if one_model else 'all models'} (measured)")
    for col, right in ((() if one_model else (("model", 0),)) + (("adapter", 0),) +
                       ( ("prec.", 0), ("batch", 1), ("scen.", 0), ("p50 ms", 1),
                       ("p99 ms", 1), ("items/s", 1), ("cold s", 1), ("J/item", 1), ("flags", 0))):
        t.add_column(col, justify="right" if right else "left", overflow="fold")
    notes: list[str] = []
    others: list[str] = []
    for r in records:
        if r["status"] != "ok":
            color = "yellow" if r["status"] == "unsupported" else "red"
            others.append(f"[{color}]{r['status']}[/] {r['model']} {r['adapter']} {r['precision']} b{r['batch_size']}: {r['error']}")
            continue
        prec = r["precision"]
        if r["precision_effective"] and r["precision_effective"] != prec:
            prec = f"{prec}->{r['precision_effective']}"
        if r.get("precision_native") is False:
            prec += " (emul.)"
        refs = []
        for flag in _flags(r):
            if flag not in notes:
                notes.append(flag)
            refs.append(str(notes.index(flag) + 1))
        steal = r.get("cpu_steal_pct")
        if steal is not None and steal >= MeasureSettings().max_steal_pct:
            refs.append(f"steal {steal:.0f}%")
        energy = _num(r["energy_j_per_inference"])
        if r["power_method"] == "estimate-tdp" and energy != "-":
            energy += "*"
        style = "" if r["valid"] and r["accuracy_ok"] is not False else "dim"
        scen = "off" if r["scenario"] == "offline" else "ss"
        cells = [r["adapter"], prec, str(r["batch_size"]), scen, _num(r["latency_p50_ms"]),
                 _num(r["latency_p99_ms"]), _num(r["throughput_sps"]), _num(r["cold_start_s"]),
                 energy, ",".join(refs) or "ok"]
        t.add_row(*(cells if one_model else [r["model"], *cells]), style=style)
    out: list[Any] = [t]
    out += [f"  [{i}] {n}" for i, n in enumerate(notes, 1)]
    if any(r["power_method"] == "estimate-tdp" for r in records):
        out.append("  * energy estimated from the processor's TDP and utilisation, not measured (see power_note)")
    out += others
    return out


_FLAG_NAMES = {"model": "MODEL", "instance_type": "--instance", "trial_timeout_s": "--timeout", "dim": "--dim"}


def profile(
    model: Annotated[Optional[str], typer.Argument(help="Built-in model name(s), comma-separated, or a path to an .onnx file. Default: resnet50.")] = None,
    adapter: Annotated[Optional[str], typer.Option("--adapter", "-a", help="Adapters, comma-separated (default: every available CPU adapter).")] = None,
    batch: Annotated[Optional[str], typer.Option("--batch", "-b", help="Batch sizes, e.g. 1,8,32 (default 1,8).")] = None,
    precision: Annotated[Optional[str], typer.Option("--precision", "-p", help=f"Precisions from {','.join(ALL)} (default fp32,bf16,int8).")] = None,
    scenario: Annotated[Optional[str], typer.Option("--scenario", help="single-stream, offline, or both (default single-stream).")] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", help="Minimum timed seconds per trial (default 2).")] = None,
    min_iters: Annotated[Optional[int], typer.Option("--min-iters", help="Minimum timed iterations per trial (default 100).")] = None,
    max_duration: Annotated[Optional[float], typer.Option("--max-duration", help="Cap on each trial's timed window in seconds (default 10; at least --duration).")] = None,
    ci_target: Annotated[Optional[float], typer.Option("--ci-target", help="Stop a trial once its p50's 95% interval is within this relative half-width (default 0.01: +-1%).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Short trials for smoke tests and CI (records flagged when too short).")] = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder that receives one run folder per invocation.")] = Path("results"),
    instance: Annotated[Optional[str], typer.Option("--instance", help="Instance type this machine is, e.g. c7i.xlarge, or 'auto' (detect, else assume from the CPU; stated). Used for pricing.")] = None,
    usd_per_hour: Annotated[Optional[float], typer.Option("--usd-per-hour", help="What an hour of this machine costs, for a machine you price yourself.")] = None,
    price_note: Annotated[Optional[str], typer.Option("--price-note", help="Where the --usd-per-hour figure comes from (shown as the price basis).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="A sweep file (TOML); flags override it.")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Complete an interrupted run folder without redoing finished trials.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="Runtime threads (default: the runtime's choice; at most 4 x the logical CPUs).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="Adapter device, e.g. cuda, cuda:1, GPU, NPU.")] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", help="Offline scenario: requests in flight (default: tuned by the adapter).")] = None,
    dim: Annotated[Optional[list[str]], typer.Option("--dim", help="A non-batch dynamic dimension, NAME=VALUE (e.g. sequence=64). Repeatable.")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Seconds before a trial's worker is killed (default 900).")] = None,
    tdp_w: Annotated[Optional[float], typer.Option("--tdp-w", help="Processor TDP in watts for the estimate-tdp power meter.")] = None,
    no_accuracy: Annotated[bool, typer.Option("--no-accuracy", help="Skip the drift check against the fp32 reference.")] = False,
    allow_emulated: Annotated[bool, typer.Option("--allow-emulated", help="Run precisions this device only emulates or upcasts (default: recorded unsupported).")] = False,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="With --resume: run again the trials that ended in error.")] = False,
    processes: Annotated[Optional[int], typer.Option("--processes", help="Fresh worker processes per trial, one after another (1-64, default 1); samples pooled.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Profile MODEL on each adapter over batch sizes x precisions; write a run folder and print a table."""
    flags = dict(model=model, adapter=adapter, batch=batch, precision=precision, scenario=scenario, duration=duration,
                 min_iters=min_iters, quick=quick, instance_type=instance, threads=threads, device=device,
                 concurrency=concurrency, dim=dim or [], trial_timeout_s=timeout, tdp_w=tdp_w, no_accuracy=no_accuracy,
                 allow_emulated=allow_emulated, max_duration=max_duration, ci_target=ci_target,
                 usd_per_hour=usd_per_hour, price_note=price_note,
                 processes=processes)
    if resume is not None:
        from hwbench.results.store import read_manifest

        given = [_FLAG_NAMES.get(k, f"--{k.replace('_', '-')}") for k, v in flags.items() if v not in (None, False, [])]
        if config is not None:
            given.append("--config")
        if given:
            raise UsageError(f"--resume completes a run as it was first requested; drop {', '.join(given)}")
        cfg = SweepConfig.from_dict(read_manifest(resume)["requested"])
        explicit = bool(cfg.adapters)
    else:
        if config is not None:
            from hwbench.measure.sweepfile import load_sweep

            base = load_sweep(config)
        else:
            base = SweepConfig()
        cfg = build_config(base, **flags)
        explicit = bool(cfg.adapters)
    status = err_console if json_out else console
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=status, transient=False)
    task = None

    def on_event(kind: str, data: dict[str, Any]) -> None:
        nonlocal task
        if kind == "model":
            status.print(f"preparing model [bold]{data['name']}[/] (exported once, then cached)")
        elif kind == "reference":
            status.print(f"computing the fp32 reference outputs for {data['model']}")
        elif kind == "start":
            status.print(f"run folder: {data['run_dir']}")
            for note in data["notes"]:
                status.print(f"[yellow]note:[/] {note}")
            progress.start()
            task = progress.add_task("trials", total=data["total"], completed=data["total"] - data["todo"])
        elif kind == "trial_start" and task is not None:
            t = data["trial"]
            progress.update(task, description=f"{t.model} {t.adapter} {t.precision} b{t.batch_size} {t.scenario}")
        elif kind == "trial_done" and task is not None:
            progress.advance(task)

    from hwbench.measure.runner import SweepRunner  # imported late: bad flags fail without loading pandas and scipy
    from hwbench.results.store import as_dicts

    if retry_errors and resume is None:
        raise UsageError("--retry-errors goes with --resume RUN_DIR")
    runner = SweepRunner(cfg, out, on_event=on_event, resume_dir=resume, explicit_adapters=explicit,
                         retry_errors=retry_errors)
    try:
        result = runner.run()
    finally:
        progress.stop()
    records = as_dicts(result.records)
    if json_out:
        print_json({"run_dir": str(result.run_dir), "interrupted": result.interrupted, "notes": result.notes, "records": records})
    else:
        for item in render_summary(records):
            console.print(item)
        console.print(f"results: {result.run_dir}")
    if result.interrupted:
        # soft_wrap and no markup: the command must survive a narrow terminal and a path with [ or spaces
        err_console.print("interrupted: completed trials are saved. Resume with:\n"
                          f"  hwbench profile --resume {shlex.quote(str(result.run_dir))}", soft_wrap=True, markup=False)
        sys.exit(130)

"""`hwbench profile`: sweep a model over adapters x precisions x batch sizes x scenarios.

The command parses flags, shows progress and prints; the session itself (config, sweep) is
hwbench.measure.session."""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from hwbench.adapter import registry
from hwbench.cli.common import console, err_console, escape, print_json, real_console, Table
from hwbench.cli.options import JsonFlag, OutDir, complete_list, epilog, renamed_flags, split_list
from hwbench.errors import UsageError
from hwbench.measure.session import (CONFIRM_ABOVE_TRIALS, build_config, failed_sweep, requested_config,  # noqa: F401
                                     run_profile, sweep_size)  # (build_config: API)
from hwbench.measure.settings import MeasureSettings, ServerSettings, SweepConfig
from hwbench.precision import ALL, SCENARIOS

MAX_PROCESSES = 64  # as hwbench.measure.sweepfile.MAX_PROCESSES (pydantic: not imported for --help)
EXIT_TRIALS_FAILED = 3  # README, "Exit codes"
EXIT_SIGTERM = 143  # 128 + SIGTERM, as a shell reports a process the signal ended
RENAMED = {"--duration": "--duration-s", "--max-duration": "--max-duration-s", "--timeout": "--timeout-s"}
COMMAND = dict(cls=renamed_flags(RENAMED), epilog=epilog(
    "hwbench profile resnet50 --adapter ort-cpu --batch 1,8 --precision fp32,int8",
    "hwbench profile resnet50 --adapter ort-cpu --precision fp32 --scenario server --slo-p99-ms 100",
    "hwbench profile my_model.onnx --dim sequence=64,vocab=1000 --duration-s 5 --instance c7i.xlarge",
    "hwbench profile --config sweep.toml --quick --out results/ci"))
_S, _M, _Q, _V = SweepConfig(), MeasureSettings(), MeasureSettings.quick(), ServerSettings()
_EP = "Served endpoints (MODEL an http(s):// URL, --adapter openai)"


def _csv(items: Any) -> str:
    return ",".join(map(str, items))


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
    if records and all(r.get("workload") == "generate" for r in records):
        from hwbench.cli.genview import render_generate

        return render_generate(records)
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
        scen = {"offline": "off", "server": f"srv@{_num(r.get('offered_rps'))}"}.get(r["scenario"], "ss")
        cells = [r["adapter"], prec, str(r["batch_size"]), scen, _num(r["latency_p50_ms"]),
                 _num(r["latency_p99_ms"]), _num(r["throughput_sps"]), _num(r["cold_start_s"]),
                 energy, ",".join(refs) or "ok"]
        t.add_row(*(cells if one_model else [r["model"], *cells]), style=style)
    out: list[Any] = [t]
    out += [f"  [{i}] {n}" for i, n in enumerate(notes, 1)]
    if any(r["power_method"] == "estimate-tdp" for r in records):
        out.append("  * energy estimated from the processor's TDP and utilisation, not measured (see power_note)")
    out += capacity_lines(records)
    out += others
    return out


def capacity_lines(records: list[dict[str, Any]]) -> list[str]:
    """One line per server-scenario search: the capacity at its SLO and its bracket (measured)."""
    out: list[str] = []
    seen: set[str] = set()
    for r in records:
        key = r.get("capacity_search")
        if r["scenario"] != "server" or not key or key in seen or r.get("slo_p99_ms") is None:
            continue
        seen.add(key)
        cap, hi = r.get("capacity_at_slo_rps"), r.get("capacity_hi_rps")
        tried = sum(1 for x in records if x.get("capacity_search") == key)
        what = (f"[bold]{_num(cap)} req/s[/] (bracket {_num(cap)} to {_num(hi)} req/s)" if cap is not None
                else f"none (no rate tried met it; lowest failing {_num(hi)} req/s)")
        out.append(f"  capacity at p99 <= {r['slo_p99_ms']:g} ms, {r['model']} {r['adapter']} {r['precision']}: "
                   f"{what}, {tried} rates measured")
    return out


def profile(
    model: Annotated[Optional[str], typer.Argument(help=f"Built-in model name(s), comma-separated, a path to an .onnx file or a model folder, or an http(s):// endpoint URL (--adapter openai). Default: {','.join(_S.models)}.")] = None,
    adapter: Annotated[Optional[str], typer.Option("--adapter", "-a", metavar="NAMES", autocompletion=complete_list(registry.names), help="Adapters, comma-separated (default: every available CPU adapter; `hwbench devices` lists them).")] = None,
    batch: Annotated[Optional[str], typer.Option("--batch", "-b", metavar="SIZES", help=f"Batch sizes, comma-separated, e.g. 1,8,32 (default {_csv(_S.batch_sizes)}).")] = None,
    precision: Annotated[Optional[str], typer.Option("--precision", "-p", metavar="NAMES", autocompletion=complete_list(lambda: ALL), help=f"Precisions, comma-separated, from {','.join(ALL)} (default {_csv(_S.precisions)}).")] = None,
    scenario: Annotated[Optional[str], typer.Option("--scenario", metavar="NAMES", autocompletion=complete_list(lambda: SCENARIOS), help=f"Scenarios, comma-separated, from {','.join(SCENARIOS)} (default {_csv(_S.scenarios)}).")] = None,
    duration: Annotated[Optional[float], typer.Option("--duration-s", help=f"Minimum timed seconds per trial (default {_M.min_duration_s:g}).")] = None,
    min_iters: Annotated[Optional[int], typer.Option("--min-iters", help=f"Minimum timed iterations per trial (default {_M.min_iters}).")] = None,
    max_duration: Annotated[Optional[float], typer.Option("--max-duration-s", help=f"Cap on each trial's timed window in seconds (default {_M.max_duration_s:g}; at least --duration-s).")] = None,
    ci_target: Annotated[Optional[float], typer.Option("--ci-target", help=f"Stop a trial once its p50's 95% interval is within this relative half-width (default {_M.target_p50_rel_halfwidth:g}: +-{_M.target_p50_rel_halfwidth:.0%}).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help=f"Short trials for smoke tests and CI ({_Q.min_duration_s:g} s, at least {_Q.min_iters} iterations; records flagged when too short).")] = False,
    out: OutDir = "results",
    instance: Annotated[Optional[str], typer.Option("--instance", help="Instance type this machine is, e.g. c7i.xlarge, or 'auto' (detect, else assume from the CPU; stated). Used for pricing.")] = None,
    usd_per_hour: Annotated[Optional[float], typer.Option("--usd-per-hour", help="What an hour of this machine costs, for a machine you price yourself.")] = None,
    price_note: Annotated[Optional[str], typer.Option("--price-note", help="Where the --usd-per-hour figure comes from (shown as the price basis).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="A sweep file (TOML); flags override it.")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Complete an interrupted run folder without redoing finished trials.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="Runtime threads (default: the runtime's choice; at most 4 x the logical CPUs).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="Adapter device, e.g. cuda, cuda:1, GPU, NPU.")] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", help="Offline scenario: requests in flight (default: tuned by the adapter).")] = None,
    dim: Annotated[Optional[list[str]], typer.Option("--dim", metavar="NAME=VALUE,...", help="Non-batch dynamic dimensions, comma-separated NAME=VALUE (e.g. sequence=64,vocab=1000).")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout-s", help=f"Seconds before a trial's worker is killed (default {_S.trial_timeout_s:g}).")] = None,
    tdp_w: Annotated[Optional[float], typer.Option("--tdp-w", help="Processor TDP in watts for the estimate-tdp power meter.")] = None,
    no_accuracy: Annotated[bool, typer.Option("--no-accuracy", help="Skip the drift check against the fp32 reference.")] = False,
    allow_emulated: Annotated[bool, typer.Option("--allow-emulated", help="Run precisions this device only emulates or upcasts (default: recorded unsupported).")] = False,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="With --resume: run again the trials that ended in error.")] = False,
    workload: Annotated[Optional[str], typer.Option("--workload", metavar="NAME", help="inference (default: one forward pass per item) or generate (an LLM decoding tokens; README, 'Generative LLMs').")] = None,
    prompt_tokens: Annotated[Optional[str], typer.Option("--prompt-tokens", metavar="N,...", help=f"--workload generate: prompt lengths in tokens, comma-separated (default {_csv(_S.prompt_tokens)}).")] = None,
    output_tokens: Annotated[Optional[str], typer.Option("--output-tokens", metavar="N,...", help=f"--workload generate: tokens generated per sequence, comma-separated (default {_csv(_S.output_tokens)}).")] = None,
    rate_rps: Annotated[Optional[str], typer.Option("--rate-rps", metavar="RATES", help="Server scenario: offered rates in requests/s, comma-separated (Poisson arrivals, open loop).")] = None,
    slo_p99_ms: Annotated[Optional[float], typer.Option("--slo-p99-ms", help="Server scenario: search the rate axis for the capacity at this p99 latency (ms); with --rate-rps, judge those rates.")] = None,
    burstiness: Annotated[Optional[float], typer.Option("--burstiness", help=f"Server scenario: gamma shape of the arrival gaps (1 = Poisson, below 1 burstier; default {_V.burstiness:g}).")] = None,
    max_batch: Annotated[Optional[int], typer.Option("--max-batch", help=f"Server scenario: dynamic batching's largest batch (1 = none; default {_V.max_batch}).")] = None,
    max_queue_delay_ms: Annotated[Optional[float], typer.Option("--max-queue-delay-ms", help=f"Server scenario: how long the oldest request may wait for a batch to fill (default {_V.max_queue_delay_ms:g} ms).")] = None,
    processes: Annotated[Optional[int], typer.Option("--processes", help=f"Fresh worker processes per trial, one after another (1-{MAX_PROCESSES}, default {_S.processes}); samples pooled.")] = None,
    json_out: JsonFlag = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help=f"Run a sweep of more than {CONFIRM_ABOVE_TRIALS} trials without asking (needed when stdin is not a terminal).")] = False,
    served_model: Annotated[Optional[str], typer.Option("--served-model", help="Endpoint (MODEL is an http(s):// URL, --adapter openai): the model name the server serves.", rich_help_panel=_EP)] = None,
    api: Annotated[str, typer.Option("--api", help="Endpoint: chat (/v1/chat/completions) or completions (/v1/completions).", rich_help_panel=_EP)] = "chat",
    api_key_env: Annotated[Optional[str], typer.Option("--api-key-env", metavar="VAR", help="Endpoint: the environment variable holding the API key (never written anywhere).", rich_help_panel=_EP)] = None,
    accelerator: Annotated[Optional[str], typer.Option("--accelerator", help="Endpoint: what it runs on, e.g. '1xH100' (recorded as given; without --instance, priced as an estimate: the cheapest catalog type with it).", rich_help_panel=_EP)] = None,
    requests: Annotated[Optional[int], typer.Option("--requests", help="Endpoint: requests per load point (default 32; open loop: at least this many, and at least --duration-s of arrivals).", rich_help_panel=_EP)] = None,
    slo_ttft_ms: Annotated[Optional[float], typer.Option("--slo-ttft-ms", help="Endpoint: p99 TTFT bound for goodput and the capacity search.", rich_help_panel=_EP)] = None,
    slo_tpot_ms: Annotated[Optional[float], typer.Option("--slo-tpot-ms", help="Endpoint: p99 TPOT bound.", rich_help_panel=_EP)] = None,
    slo_e2e_ms: Annotated[Optional[float], typer.Option("--slo-e2e-ms", help="Endpoint: p99 end-to-end bound.", rich_help_panel=_EP)] = None,
    slo_preset: Annotated[Optional[str], typer.Option("--slo-preset", help="Endpoint: named TTFT/TPOT bounds: llama3.1-8b-server (2000/100 ms), llama3.1-8b-interactive (500/30 ms).", rich_help_panel=_EP)] = None,
    ignore_eos: Annotated[bool, typer.Option("--ignore-eos", help="Endpoint: ask the server to ignore EOS (a vLLM/SGLang extension; others may refuse it).", rich_help_panel=_EP)] = False,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", metavar="DIR", help="Endpoint: a local Hugging Face tokenizer folder for exact prompt lengths (default: calibrated synthetic text).", rich_help_panel=_EP)] = None,
    client_processes: Annotated[Optional[int], typer.Option("--client-processes", metavar="N", help="Endpoint: client processes the load is spread over (open loop, default: one per 2,000 offered requests/s, at most one per CPU, one CPU fewer when the endpoint is on this host; a closed loop splits its --concurrency workers, default one process).", rich_help_panel=_EP)] = None,
) -> None:
    """Profile MODEL on each adapter over batch sizes x precisions; write a run folder and print a table.

    Exit status: 0 done (points unsupported here are recorded, not failures), 2 bad input,
    3 a trial ended in error (the others are kept), 4 nothing asked for can run here, 130 interrupted
    (Ctrl-C) and 143 terminated (SIGTERM): completed trials kept, the --resume command printed.
    """
    from hwbench.cli.endpoint import is_endpoint

    if is_endpoint(model):
        from hwbench.cli.endpoint import run_endpoint

        return run_endpoint(str(model), adapter=adapter, served_model=served_model, api=api, api_key_env=api_key_env,
                            instance=instance, accelerator=accelerator, prompt_tokens=prompt_tokens,
                            output_tokens=output_tokens, concurrency=concurrency, rate_rps=rate_rps, burstiness=burstiness,
                            requests=requests, duration_s=duration, slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms,
                            slo_e2e_ms=slo_e2e_ms, slo_preset=slo_preset, ignore_eos=ignore_eos, tokenizer=tokenizer,
                            read_timeout_s=timeout, out=out, json_out=json_out, client_processes=client_processes)
    endpoint_only = {"--served-model": served_model, "--api-key-env": api_key_env, "--accelerator": accelerator,
                     "--client-processes": client_processes,
                     "--requests": requests, "--slo-ttft-ms": slo_ttft_ms, "--slo-tpot-ms": slo_tpot_ms,
                     "--slo-e2e-ms": slo_e2e_ms, "--slo-preset": slo_preset, "--tokenizer": tokenizer}
    given = [k for k, v in endpoint_only.items() if v is not None] + (["--ignore-eos"] if ignore_eos else []) + (
        ["--api"] if api != "chat" else [])
    if given:
        raise UsageError(f"{', '.join(given)} go with a served endpoint: MODEL an http(s):// URL and --adapter openai")
    flags = dict(model=model, adapter=adapter, batch=batch, precision=precision, scenario=scenario, duration=duration,
                 min_iters=min_iters, quick=quick, instance_type=instance, threads=threads, device=device,
                 concurrency=concurrency, dim=split_list(dim), trial_timeout_s=timeout, tdp_w=tdp_w, no_accuracy=no_accuracy,
                 allow_emulated=allow_emulated, max_duration=max_duration, ci_target=ci_target,
                 usd_per_hour=usd_per_hour, price_note=price_note,
                 processes=processes, workload=workload, prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                 rate_rps=rate_rps, slo_p99_ms=slo_p99_ms, burstiness=burstiness,
                 max_batch=max_batch, max_queue_delay_ms=max_queue_delay_ms)
    cfg = requested_config(flags, config, resume)
    size = sweep_size(cfg)
    if resume is None and size.trials > CONFIRM_ABOVE_TRIALS and not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"this sweep has {size.describe()}; add --yes to run it")
        typer.confirm(f"This sweep has {size.describe()}. Run it?", abort=True, err=True)
    status = err_console if json_out else console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=real_console(status), transient=False)
    task = None

    def on_event(kind: str, data: dict[str, Any]) -> None:
        nonlocal task
        if kind == "model":
            how = " (exported once, then cached)" if data.get("builtin", True) else ""
            status.print(f"preparing model [bold]{escape(data['name'])}[/]{how}")
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
        elif kind == "server_point":
            r = data["record"]
            mark = "[green]ok[/]" if r.valid else "[red]invalid[/]"
            status.print(f"  {r.model} {r.adapter} {r.precision} server {_num(r.offered_rps)} req/s: "
                         f"p99 {_num(r.latency_p99_ms)} ms (queue {_num(r.queue_p99_ms)}, service {_num(r.service_p99_ms)}), "
                         f"achieved {_num(r.achieved_rps)} req/s, batches {r.batch_sizes_json} {mark}")
        elif kind == "trial_done" and task is not None:
            progress.advance(task)

    from hwbench.results.store import as_dicts

    terminated: list[int] = []

    def on_sigterm(signum: int, frame: Any) -> None:  # stop as Ctrl-C does: completed trials kept, then exit 143
        terminated.append(signum)
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, on_sigterm) if main_thread else None
    try:
        result = run_profile(cfg, out, resume=resume, retry_errors=retry_errors, on_event=on_event)
    except KeyboardInterrupt:  # outside the trial loop (preparing models, or compacting at the end)
        if not terminated:
            raise
        err_console.print("hwbench: terminated (SIGTERM); any completed trial is saved, `--resume RUN_DIR` finishes a run",
                          soft_wrap=True, markup=False)
        sys.exit(EXIT_SIGTERM)
    finally:
        progress.stop()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    records = as_dicts(result.records)
    if json_out:
        print_json({"run_dir": str(result.run_dir), "interrupted": result.interrupted, "notes": result.notes, "records": records})
    else:
        for item in render_summary(records):
            console.print(item)
        console.print(f"results: {result.run_dir}")
    if result.interrupted:
        # soft_wrap and no markup: the command must survive a narrow terminal and a path with [ or spaces
        err_console.print(f"{'terminated (SIGTERM)' if terminated else 'interrupted'}: completed trials are saved. Resume with:\n"
                          f"  hwbench profile --resume {shlex.quote(str(result.run_dir))}", soft_wrap=True, markup=False)
        sys.exit(EXIT_SIGTERM if terminated else 130)
    failed = failed_sweep(records)
    if failed:
        err_console.print(f"hwbench: error: {failed}; results: {result.run_dir}", soft_wrap=True, markup=False)
        raise typer.Exit(EXIT_TRIALS_FAILED)

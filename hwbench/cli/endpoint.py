"""`hwbench profile http://HOST:PORT/v1 --adapter openai --served-model NAME`: a served LLM under load.

The profile command hands a URL model here (hwbench.measure.endpoint_session does the work):
one table row per load point, the capacity at the SLOs when they are given, --json for scripts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hwbench.cli.common import console, err_console, print_json, Table
from hwbench.errors import UsageError

EXIT_TRIALS_FAILED = 3


def is_endpoint(model: str | None) -> bool:
    return bool(model) and str(model).lower().startswith(("http://", "https://"))


def _ints(text: str | None, flag: str, default: tuple[int, ...]) -> tuple[int, ...]:
    if text is None:
        return default
    out = []
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        try:
            out.append(int(part))
        except ValueError:
            raise UsageError(f"{flag}: {part!r} is not a whole number") from None
    if not out:
        raise UsageError(f"{flag}: empty list")
    return tuple(dict.fromkeys(out))


def _floats(text: str | None, flag: str) -> tuple[float, ...]:
    if text is None:
        return ()
    out = []
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        try:
            out.append(float(part))
        except ValueError:
            raise UsageError(f"{flag}: {part!r} is not a number") from None
    return tuple(dict.fromkeys(out))


def _num(v: Any, spec: str = ".1f") -> str:
    return "-" if v is None or v != v else format(v, spec)


def run_endpoint(url: str, *, adapter: str | None, served_model: str | None, api: str, api_key_env: str | None,
                 instance: str | None, accelerator: str | None, prompt_tokens: str | None, output_tokens: str | None,
                 concurrency: int | None, rate_rps: str | None, burstiness: float | None, requests: int | None,
                 duration_s: float | None, slo_ttft_ms: float | None, slo_tpot_ms: float | None,
                 slo_e2e_ms: float | None, slo_preset: str | None, ignore_eos: bool, tokenizer: str | None,
                 read_timeout_s: float | None, out: Path | str, json_out: bool, client_processes: int | None = None) -> None:
    """Validate the flags, run the load points, print; exit 3 when a point had no successful request."""
    from hwbench.adapter import registry
    from hwbench.measure.endpoint_session import EndpointConfig, as_json, preset, run_endpoint_profile

    if adapter not in registry.ENDPOINTS:
        raise UsageError(f"a URL model is a served endpoint: profile it with --adapter {' or '.join(registry.ENDPOINTS)} "
                         f"(got {adapter or 'no adapter'})")
    probe = registry.load_endpoint(adapter).probe()
    if not probe.available:
        raise UsageError(f"{adapter} unavailable here: {probe.reason} ({probe.install_hint})")
    OpenAIEndpoint = registry.load_endpoint(adapter)
    if not served_model:
        raise UsageError("--served-model is required for an endpoint: the model name it serves (GET /v1/models lists them)")
    slo = preset(slo_preset) if slo_preset else {}
    cfg = EndpointConfig(
        url=url, served_model=served_model, api=api, prompt_tokens=_ints(prompt_tokens, "--prompt-tokens", (128,)),
        output_tokens=_ints(output_tokens, "--output-tokens", (128,)), concurrency=(concurrency,) if concurrency else (),
        rates_rps=_floats(rate_rps, "--rate-rps"), burstiness=1.0 if burstiness is None else burstiness,
        requests=32 if requests is None else requests, duration_s=0.0 if duration_s is None else duration_s,
        slo_ttft_ms=slo_ttft_ms if slo_ttft_ms is not None else slo.get("ttft_ms"),
        slo_tpot_ms=slo_tpot_ms if slo_tpot_ms is not None else slo.get("tpot_ms"),
        slo_e2e_ms=slo_e2e_ms, instance=instance, accelerator=accelerator, tokenizer=tokenizer,
        client_processes=client_processes,
    )
    kwargs = dict(api=api, api_key_env=api_key_env, ignore_eos=ignore_eos,
                  read_timeout_s=60.0 if read_timeout_s is None else read_timeout_s)
    OpenAIEndpoint(url, served_model, **kwargs)  # validates the client's settings before anything runs
    status = err_console if json_out else console

    def factory() -> Any:
        return OpenAIEndpoint(url, served_model, **kwargs)

    status.print(f"endpoint {cfg.public_url()} serving {served_model} ({api} API); what it runs on: "
                 f"{accelerator or instance or 'not given (--instance / --accelerator)'}", soft_wrap=True, markup=False)
    run = run_endpoint_profile(cfg, factory, Path(out) if "://" not in str(out) else out, factory().describe(),
                               progress=lambda msg: status.print(f"  {msg}", soft_wrap=True, markup=False))
    if json_out:
        print_json(as_json(run))
    else:
        t = Table(title=f"hwbench profile: {served_model} at {cfg.public_url()} (measured by the client)")
        for col in ("prompt", "output", "load", "req/s", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "out tok/s",
                    "failed", "goodput/s", "flags"):
            t.add_column(col, justify="left" if col in ("load", "flags") else "right")
        for r in run.records:
            load = f"{r.offered_rps:g}/s open" if getattr(r, "offered_rps", None) else f"conc. {r.concurrency}"
            flags = "; ".join([*r.invalid_reasons, *r.warnings]) or "ok"
            t.add_row(str(r.prompt_tokens), str(r.output_tokens), load, _num(r.throughput_sps, ".2f"),
                      _num(r.ttft_p50_ms), _num(r.ttft_p99_ms), _num(r.tpot_p50_ms, ".2f"), _num(r.tpot_p99_ms, ".2f"),
                      _num(r.output_tokens_per_s), str(r.requests_failed), _num(r.goodput_rps, ".2f"), flags)
        console.print(t)
        caps = {(r.prompt_tokens, r.output_tokens): r.capacity_at_slo_rps for r in run.records if r.capacity_search}
        for (p, o), cap in caps.items():
            bound = ", ".join(f"{k} p99 <= {v:g} ms" for k, v in (("TTFT", cfg.slo_ttft_ms), ("TPOT", cfg.slo_tpot_ms),
                                                                   ("E2E", cfg.slo_e2e_ms)) if v is not None)
            console.print(f"capacity at {bound}, prompt {p} / output {o} tokens: "
                          f"{'none found' if cap is None else format(cap, '.3g') + ' requests/s (measured)'}")
        for note in run.notes:
            console.print(f"note: {note}", soft_wrap=True, markup=False)
        console.print(f"results: {run.run_dir}")
    if any(r.status == "error" for r in run.records):
        err_console.print("hwbench: error: a load point had no successful request (reasons in the records' "
                          f"failure_reasons); results: {run.run_dir}", soft_wrap=True, markup=False)
        sys.exit(EXIT_TRIALS_FAILED)

"""`hwbench profile --workload generate`'s table: TTFT, TPOT, token rates and $ per 1M tokens per point."""

from __future__ import annotations

from typing import Any

from hwbench.cli.common import Table


def _num(v: Any) -> str:
    if v is None or v != v:
        return "-"
    a = abs(v)
    return f"{v:,.0f}" if a >= 1000 else f"{v:.1f}" if a >= 10 else f"{v:.3f}" if a >= 0.01 else f"{v:.1e}"


def _hourly(r: dict[str, Any], catalog: Any) -> float | None:
    """The record's given price, else its instance type's on-demand catalog price; None when unknown."""
    if r.get("price_usd_per_hour"):
        return float(r["price_usd_per_hour"])
    price = catalog.get(r.get("instance_type")) if catalog is not None and r.get("instance_type") else None
    return price.usd_per_hour() if price is not None else None


def render_generate(records: list[dict[str, Any]]) -> list[Any]:
    """One row per measured (adapter, precision, batch, prompt, output) point, then footnotes and the rest."""
    try:
        from hwbench.catalog.prices import load_builtin

        catalog = load_builtin()
    except Exception:  # noqa: BLE001 - the table prints without prices rather than not at all
        catalog = None
    models = sorted({r["model"] for r in records})
    t = Table(title=f"hwbench profile --workload generate: {', '.join(models)} (measured)")
    cols = ("adapter", "prec.", "batch", "prompt", "out", "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms", "TPOT p99 ms",
            "out tok/s", "prefill tok/s", "decode tok/s", "$/1M out tok", "J/out tok", "flags")
    for c in cols:
        t.add_column(c, justify="left" if c in ("adapter", "prec.", "flags") else "right", overflow="fold")
    notes: list[str] = []
    others: list[str] = []
    unpriced = False
    for r in records:
        if r["status"] != "ok":
            color = "yellow" if r["status"] == "unsupported" else "red"
            others.append(f"[{color}]{r['status']}[/] {r['model']} {r['adapter']} {r['precision']} b{r['batch_size']} "
                          f"p{r.get('prompt_tokens')} o{r.get('output_tokens')}: {r['error']}")
            continue
        flags = list(r["invalid_reasons"] or []) + list(r.get("warnings") or [])
        if r["accuracy_ok"] is False:
            flags.append(f"accuracy drift vs fp32: cosine {_num(r['acc_cosine'])}, top-1 {_num(r['acc_top1_agreement'])}")
        refs = []
        for f in flags:
            if f not in notes:
                notes.append(f)
            refs.append(str(notes.index(f) + 1))
        hourly = _hourly(r, catalog)
        tps = r.get("output_tokens_per_s")
        cost = hourly / (tps * 3600) * 1e6 if hourly and tps else None
        unpriced |= cost is None
        prec = r["precision"] + (" (emul.)" if r.get("precision_native") is False else "")
        style = "" if r["valid"] and r["accuracy_ok"] is not False else "dim"
        t.add_row(r["adapter"], prec, str(r["batch_size"]), str(r.get("prompt_tokens")), str(r.get("output_tokens")),
                  _num(r.get("ttft_p50_ms")), _num(r.get("ttft_p99_ms")), _num(r.get("tpot_p50_ms")),
                  _num(r.get("tpot_p99_ms")), _num(tps), _num(r.get("prefill_tokens_per_s")),
                  _num(r.get("decode_tokens_per_s")), _num(cost), _num(r.get("energy_j_per_output_token")),
                  ",".join(refs) or "ok", style=style)
    out: list[Any] = [t]
    out += [f"  [{i}] {n}" for i, n in enumerate(notes, 1)]
    if any(r.get("random_weights") for r in records):
        out.append("  random weights and random token-id prompts: real speed, not real text; output length forced (EOS ignored)")
    if unpriced:
        out.append("  $/1M out tok: '-' where the machine has no price (give --instance TYPE or --usd-per-hour)")
    if any(r["power_method"] == "estimate-tdp" for r in records):
        out.append("  J/out tok estimated from the processor's TDP and utilisation, not measured (see power_note)")
    return out + others

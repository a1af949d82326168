"""`hwbench devices`: this host's fingerprint and every adapter's availability."""

from __future__ import annotations

from typing import Any

from hwbench.cli.common import console, escape, print_json, Table
from hwbench.cli.options import JsonFlag, epilog

COMMAND = dict(epilog=epilog("hwbench devices", "hwbench devices --json", "hwbench profile --help   # then measure on what is listed"))


def _meters() -> list[dict[str, str]]:
    from hwbench.power.select import available_meters

    out = []
    for kind in ("cpu", "cuda", "neuron"):
        for method, why in available_meters(kind):
            out.append({"device_kind": kind, "method": method, "available": not why, "reason": why})
    return out


def _row(name: str, p: Any, source: str) -> dict[str, Any]:
    return {"name": name, "available": p.available, "reason": p.reason, "install_hint": p.install_hint,
            "devices": list(p.devices), "versions": p.versions, "source": source}


def devices(json_out: JsonFlag = False) -> None:
    """Show this machine (CPU, ISA features, memory, GPUs, Neuron devices) and which adapters can run here:
    classifier adapters, generative (LLM) adapters and endpoint clients, each with why not where it cannot."""
    from hwbench.adapter import registry  # here, not at import: --help loads no adapter layer
    from hwbench.host.fingerprint import host_fingerprint  # importlib.metadata and subprocess: only when run

    fp = host_fingerprint()
    from hwbench.host.isa import CPU_PRECISIONS, host_support

    native = {p: host_support(p) for p in CPU_PRECISIONS}
    adapters = []
    for name in registry.names():
        adapters.append(_row(name, registry.probe(name), registry.info(name).source))
    generative = [_row(n, registry.probe_generative(n), registry.generative_info(n).source)
                  for n in registry.generative_names()]
    endpoints = [_row(n, registry.probe_endpoint(n), "builtin") for n in registry.endpoint_names()]
    meters = _meters()
    if json_out:
        print_json({"host": fp, "cpu_precisions": {p: {"native": s.native, "label": s.label, "note": s.note}
                                                  for p, s in native.items()},
                    "adapters": adapters, "generative_adapters": generative, "endpoint_adapters": endpoints,
                    "power_meters": meters})
        return
    host = Table(title="Host", show_header=False)
    host.add_row("CPU", fp["cpu_model"])
    host.add_row("cores", f"{fp['cores_physical']} physical, {fp['cores_logical']} logical")
    host.add_row("ISA", " ".join(fp["cpu_flags"]) or "-")
    host.add_row("precisions", escape(", ".join(f"{p} {s.label}" for p, s in native.items())))
    host.add_row("memory", f"{fp['memory_gb']} GiB")
    host.add_row("OS", fp["os"])
    host.add_row("Python", fp["python"])
    accel = fp["accelerators"]
    host.add_row("accelerators", ", ".join(f"{a.get('count', 1)}x {a.get('name')}" for a in accel) if accel else "none found")
    console.print(host)
    for title, rows in (("Adapters", adapters), ("Generative adapters (--workload generate)", generative),
                        ("Endpoint adapters (a served model elsewhere: hwbench profile URL --adapter NAME)", endpoints)):
        table = Table(title=title)
        for col in ("adapter", "available", "devices / reason", "install"):
            table.add_column(col)
        for a in rows:
            ok = "[green]yes[/]" if a["available"] else "[red]no[/]"
            detail = ", ".join(a["devices"]) if a["available"] else a["reason"]
            table.add_row(a["name"], ok, escape(detail), "" if a["available"] else escape(a["install_hint"]))
        console.print(table)
    if meters:
        mt = Table(title="Power meters")
        for col in ("device kind", "method", "available / reason"):
            mt.add_column(col)
        for m in meters:
            mt.add_row(m["device_kind"], m["method"], "[green]yes[/]" if m["available"] else escape(m["reason"]))
        console.print(mt)

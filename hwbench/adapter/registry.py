"""Adapter registry: a name -> "module:Class" table, imported lazily, plus entry points.

Vendor libraries are imported only inside their adapter module, and only when
that adapter is used. Third parties ship adapters as packages that declare an
entry point in the group ``hwbench.adapters``. Adapters never come from a path
in a config file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from hwbench.adapter import Adapter, Probe
from hwbench.adapter.generative import GenerativeAdapter
from hwbench.errors import UsageError
from hwbench.plugins import entry_points, load_class  # entry_points: tests patch it here

ENTRY_POINT_GROUP = "hwbench.adapters"

BUILTIN: dict[str, str] = {
    "null": "device_adapters.null:NullAdapter",
    "ort-cpu": "device_adapters.ort_cpu:OrtCpuAdapter",
    "openvino": "device_adapters.openvino_rt:OpenVinoAdapter",
    "torch": "device_adapters.pytorch:TorchAdapter",
    "tensorrt": "device_adapters.tensorrt_rt:TensorRtAdapter",
    "ort-cuda": "device_adapters.ort_gpu:OrtCudaAdapter",
    "ort-trt": "device_adapters.ort_gpu:OrtTensorRtAdapter",
    "neuron": "device_adapters.neuron:NeuronAdapter",
}

# Generative (LLM) adapters, by the same user-facing names: `--workload generate` looks here
# (hwbench.adapter.generative.GenerativeAdapter). No entry points yet: built-ins only.
GENERATIVE: dict[str, str] = {
    "torch": "device_adapters.pytorch_gen:TorchGenerativeAdapter",
    "openvino": "device_adapters.openvino_genai:OpenVinoGenAIAdapter",
}
GENERATIVE_DEFAULTS: tuple[str, ...] = ("torch", "openvino")

# Clients of served models (hwbench.adapter.endpoint): the system under test is a server elsewhere.
ENDPOINTS: dict[str, str] = {
    "openai": "device_adapters.openai_http:OpenAIEndpoint",
}

# Only for hwbench's own tests: enabled by HWBENCH_TEST_ADAPTERS=1.
TEST_ONLY: dict[str, str] = {
    "faulty": "device_adapters.faulty:FaultyAdapter",
}

# Adapters a plain `hwbench profile` / `make demo` uses when none is named.
CPU_DEFAULTS: tuple[str, ...] = ("ort-cpu", "openvino", "torch")


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    target: str  # "module:Class"
    source: str  # "builtin" | "entry-point:<dist>" | "test"


def _table() -> dict[str, AdapterInfo]:
    table = {n: AdapterInfo(n, t, "builtin") for n, t in BUILTIN.items()}
    if os.environ.get("HWBENCH_TEST_ADAPTERS") == "1":
        table.update({n: AdapterInfo(n, t, "test") for n, t in TEST_ONLY.items()})
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in table:
            continue  # built-ins win; a plugin cannot shadow them
        dist = ep.dist.name if ep.dist is not None else "?"
        table[ep.name] = AdapterInfo(ep.name, ep.value, f"entry-point:{dist}")
    return table


def names() -> list[str]:
    """Every registered adapter name, built-ins first."""
    return list(_table())


def info(name: str) -> AdapterInfo:
    table = _table()
    if name not in table:
        raise UsageError(f"unknown adapter {name!r}; known: {', '.join(table)}")
    return table[name]


def load(name: str) -> type[Adapter]:
    """Import and return the adapter class. Import errors surface as UsageError-free exceptions
    so that callers can turn them into an 'unavailable' probe (see probe())."""
    return load_class(info(name).target, Adapter, "Adapter")


def _probe_class(load_it: Callable[[], type], what: str, module: str | None = None) -> Probe:
    """Import a class with `load_it` and return its probe(); an import failure or a raising probe is a result.

    `what` names the kind in the message ("adapter", "generative adapter"...). A ModuleNotFoundError for
    `module` itself says the module is not part of this hwbench; UsageError (an unknown name) propagates.
    """
    try:
        cls = load_it()
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - any import failure of a plugin is a probe result
        if module is not None and isinstance(e, ModuleNotFoundError) and e.name == module:
            return Probe.missing(f"{what} module {module} is not part of this hwbench")
        return Probe.missing(f"{what} module failed to import: {type(e).__name__}: {e}")
    try:
        return cls.probe()
    except Exception as e:  # noqa: BLE001 - a probe must not take the CLI down
        return Probe.missing(f"probe raised {type(e).__name__}: {e}")


def probe(name: str) -> Probe:
    """Probe one adapter; a module whose import raises is reported, never raised."""
    return _probe_class(lambda: load(name), "adapter")


def parse_adapters(text: str) -> list[str]:
    """Parse 'a,b' into known adapter names (UsageError for unknown ones)."""
    items = [p.strip() for p in text.split(",") if p.strip()]
    if not items:
        raise UsageError("empty adapter list")
    for n in items:
        info(n)
    return list(dict.fromkeys(items))


# -- generative adapters (the generate workload) -------------------------------------------


def generative_names() -> list[str]:
    """Every generative adapter name."""
    return list(GENERATIVE)


def generative_info(name: str) -> AdapterInfo:
    if name not in GENERATIVE:
        raise UsageError(f"no generative adapter {name!r} for --workload generate; known: {', '.join(GENERATIVE)}")
    return AdapterInfo(name, GENERATIVE[name], "builtin")


def load_generative(name: str) -> type[GenerativeAdapter]:
    """Import and return a generative adapter class (import errors propagate, as load())."""
    return load_class(generative_info(name).target, GenerativeAdapter, "GenerativeAdapter")


def probe_generative(name: str) -> Probe:
    """Probe one generative adapter; a module that is missing or fails to import is a probe result."""
    target = generative_info(name).target
    return _probe_class(lambda: load_generative(name), "generative adapter", module=target.partition(":")[0])


def load_endpoint(name: str) -> type:
    """Import and return an endpoint adapter class by name (UsageError for an unknown one)."""
    from hwbench.adapter.endpoint import EndpointAdapter

    if name not in ENDPOINTS:
        raise UsageError(f"unknown endpoint adapter {name!r}; known: {', '.join(ENDPOINTS)}")
    return load_class(ENDPOINTS[name], EndpointAdapter, "EndpointAdapter")


def endpoint_names() -> list[str]:
    """Every endpoint (served-model client) adapter name."""
    return list(ENDPOINTS)


def probe_endpoint(name: str) -> Probe:
    """Probe one endpoint adapter's client side (its library); a module that fails to import is a probe result."""
    return _probe_class(lambda: load_endpoint(name), "endpoint adapter")

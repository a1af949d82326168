"""AWS Inferentia2 / Trainium through torch-neuronx ('neuron'): the PyTorch model traced and
compiled for one batch size (Neuron graphs have static shapes), run on one NeuronCore.

Facts relied on (AWS Neuron documentation):
- torch_neuronx.trace(module, example_inputs, compiler_args=[...], compiler_workdir=...)
  compiles ahead of time with neuronx-cc and returns a TorchScript module; calling it runs
  on a NeuronCore and returns CPU tensors once the device has finished. Traced modules can
  be saved with torch.jit.save and loaded back with torch.jit.load.
- neuronx-cc casts fp32 matrix multiplications to bf16 BY DEFAULT; `--auto-cast none`
  keeps the model's fp32. `--auto-cast all --auto-cast-type {bf16,fp16,tf32}` casts every
  fp32 operation to that type.
- A traced model runs on one NeuronCore unless wrapped in torch_neuronx.DataParallel;
  hwbench records 1 core used and the cores present (neuron-ls: nc_count per device).
- The price catalog counts Neuron devices (chips: inf2.48xlarge has 12 Inferentia2, 2 NeuronCores
  each), so the trial is charged ceil(cores used / cores per chip) chips: one core holds one chip,
  which no other trial uses meanwhile (hwbench.adapter.kit.neuron_chips_used).
- Neuron devices appear as /dev/neuron0, /dev/neuron1, ...

The model comes from hwbench.models.build_torch(spec) (built-in models only; it raises
UnsupportedPoint for user ONNX files). Compile time is the cold start; compiled models are
cached by model hash, precision, batch size and torch-neuronx version.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from hwbench.adapter import Adapter, AdapterOptions, Effective, Probe
from hwbench.adapter.kit import atomic_build, cache_root, neuron_effective
from hwbench.adapter.kit import cached as kit_cached
from hwbench.host.accelerators import neuron_devices, neuron_problem
from hwbench.models.spec import ModelSpec

INSTALL_HINT = "pip install 'hwbench[neuron]' on an Inf2/Trn1/Trn2 instance (Neuron pip index; torch-neuronx)"


def compiler_args(precision: str) -> list[str]:
    """neuronx-cc arguments for a precision (see the module docstring)."""
    if precision == "fp32":
        return ["--auto-cast", "none"]
    if precision in ("bf16", "fp16", "tf32"):
        return ["--auto-cast", "all", "--auto-cast-type", precision]
    raise ValueError(f"neuron has no setting for {precision!r}")


def static_batches(n: int, batch: int) -> list[tuple[int, int, int]]:
    """Cover n items with runs of exactly `batch`: (start, stop, padding rows) per run."""
    runs = []
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        runs.append((start, stop, batch - (stop - start)))
    return runs


def pad_rows(arr: np.ndarray, padding: int) -> np.ndarray:
    """Append `padding` copies of the last row (the compiled graph only takes its own batch)."""
    if padding <= 0:
        return arr
    return np.concatenate([arr, np.repeat(arr[-1:], padding, axis=0)], axis=0)


def compile_cache_key(model_sha256: str, precision: str, batch_size: int, neuronx_version: str, shapes: dict[str, list[int]]) -> str:
    payload = {"model": model_sha256, "precision": precision, "batch": batch_size, "neuronx": neuronx_version,
               "args": compiler_args(precision), "shapes": shapes}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


class NeuronAdapter(Adapter):
    """torch-neuronx trace per batch size, fp32 or auto-cast, one NeuronCore."""

    name = "neuron"
    device_kind = "neuron"
    NEURONCORES_USED = 1  # a traced model runs on one NeuronCore (module docstring)
    precisions = ("fp32", "tf32", "fp16", "bf16")
    description = "AWS Neuron (Inferentia2/Trainium) via torch-neuronx trace, static shapes"

    def __init__(self, options: AdapterOptions | None = None) -> None:
        super().__init__(options)
        self._traced: Any = None
        self._args: tuple[Any, ...] = ()
        self._order: list[str] = []
        self._batch = 0
        self._settings: dict[str, Any] = {}
        self._devices: list[Any] = []
        self._precision_effective = ""

    @classmethod
    def probe(cls) -> Probe:
        problems, versions = [], {}
        try:
            import torch_neuronx

            versions["torch-neuronx"] = getattr(torch_neuronx, "__version__", "?")
        except Exception as e:  # noqa: BLE001 - ImportError, or a broken Neuron runtime install
            problems.append(f"torch-neuronx is not importable ({type(e).__name__}: {e})")
        device = neuron_problem()
        if device:
            problems.append(device)
        if problems:
            return Probe(available=False, reason="; ".join(problems), install_hint=INSTALL_HINT, versions=versions)
        return Probe(available=True, devices=tuple(d.name for d in neuron_devices()), versions=versions)

    def check(self, model: ModelSpec, precision: str, batch_size: int, scenario: str) -> str | None:
        reason = super().check(model, precision, batch_size, scenario)
        if reason is None and self.placement.index:
            return "neuron runs on the first free NeuronCore; choosing a Neuron device is not implemented"
        if reason is None and not model.builtin:
            return "neuron traces the PyTorch model; a user ONNX file has none (built-in models only)"
        return reason

    def _tensors(self, inputs: dict[str, np.ndarray]) -> tuple[Any, ...]:
        import torch

        return tuple(torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in self._order)

    def prepare(self, model: ModelSpec, precision: str, batch_size: int, inputs: dict[str, np.ndarray]) -> None:
        import torch
        import torch_neuronx

        from hwbench.models import build_torch

        self._order = [i.name for i in model.inputs]  # build_torch's forward takes inputs in spec order
        self._batch = batch_size
        self._args = self._tensors(inputs)
        version = getattr(torch_neuronx, "__version__", "?")
        key = compile_cache_key(model.sha256, precision, batch_size, version, model.input_shapes(batch_size))
        cached = cache_root(self.options) / "neuron" / f"{model.name}-{precision}-b{batch_size}-{key}.pt"
        hit = kit_cached(cached)  # size and hash checked: a damaged entry is compiled again
        if hit:
            self._traced = torch.jit.load(str(cached))
        else:
            module = build_torch(model).eval()
            workdir = cached.parent / f"work-{key}"
            workdir.mkdir(parents=True, exist_ok=True)
            with torch.inference_mode():
                self._traced = torch_neuronx.trace(
                    module, self._args, compiler_args=compiler_args(precision), compiler_workdir=str(workdir)
                )
            atomic_build(cached, lambda staged: torch.jit.save(self._traced, str(staged)))
        self.run()  # loads the compiled graph onto the NeuronCore: part of the cold start
        self._devices = neuron_devices()
        self._precision_effective = precision if precision != "fp32" else "fp32 (--auto-cast none)"
        self._settings = {
            "compiler_args": compiler_args(precision),
            "torch_neuronx_version": version,
            "compile_cache_hit": hit,
            "static_batch": batch_size,
        }

    def run(self) -> None:
        assert self._traced is not None, "prepare() first"
        self._traced(*self._args)

    def infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs for any batch: runs of the compiled batch, the last one padded and trimmed."""
        n = len(next(iter(inputs.values())))
        parts: list[list[np.ndarray]] = []
        for start, stop, padding in static_batches(n, self._batch):
            chunk = {k: pad_rows(v[start:stop], padding) for k, v in inputs.items()}
            out = self._traced(*self._tensors(chunk))
            outs = out if isinstance(out, (tuple, list)) else (out,)
            parts.append([o.detach().float().numpy()[: stop - start] for o in outs])
        return [np.concatenate(col, axis=0) for col in zip(*parts)]

    def effective(self) -> Effective:
        """One NeuronCore ran it, charged as the chip that holds it (settings: cores used and present)."""
        return neuron_effective(self._precision_effective, self.NEURONCORES_USED, self._devices,
                                self.placement.meter_index, self._settings)

    def close(self) -> None:
        self._traced = None
        self._args = ()


"""PyTorch generation adapter: Hugging Face transformers `generate` with a KV cache, CPU or CUDA.

Greedy decoding of exactly `output_tokens` tokens per sequence: min_new_tokens = max_new_tokens,
so EOS cannot stop a sequence early (a random-weight model still produces the requested length).
A streamer stamps each decoding step with the profiler's clock as its tokens reach the host
(`generate` hands the streamer each step's tokens after `.cpu()`; on CUDA the stamp also calls
torch.cuda.synchronize so that no queued kernel is left out of it).

Precisions: fp32; bf16 (weights and compute in bfloat16; emulated on a CPU without avx512_bf16 or
AMX, recorded by the ISA rule); fp16 on CUDA only; int8 on CPU by torch's dynamic quantization of
the Linear layers (int8 weights, activations quantized per call, attention and norms fp32).
Settings (sweep file [adapter_options.torch]): static_cache (a preallocated KV cache,
cache_implementation="static") and generate_compile (torch.compile of the forward pass); both off
by default, and both recorded in the effective settings.
Threads: options.threads through torch.set_num_threads (0: torch's default). On a busy host,
2 threads on 2 cores collapse by ~25x (MEASURED.md): give --threads 1 there.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from hwbench.adapter import Effective, Probe
from hwbench.adapter.generative import Clock, GenerativeAdapter
from hwbench.adapter.kit import cpu_effective, cuda_effective
from hwbench.adapter.tokens import TokenTiming
from hwbench.errors import UnsupportedPoint
from hwbench.host.isa import PrecisionSupport, host_support
from hwbench.models.llmspec import LlmSpec

INSTALL_HINT = "pip install 'hwbench[torch,llm]'"
_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "float32"}


class _Stamper:
    """A transformers streamer: the first put() is the prompt, each later one a step's tokens."""

    def __init__(self, clock: Clock, sync: Any = None) -> None:
        self.clock, self.sync = clock, sync
        self.stamps: list[int] = []
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        if self.sync is not None:
            self.sync()
        self.stamps.append(self.clock())

    def end(self) -> None:
        pass


def cuda_precision_support(precision: str, major: int, minor: int) -> PrecisionSupport:
    """Native or not on a CUDA GPU of compute capability major.minor (tensor-core generations)."""
    sm = f"sm{major}{minor}"
    if precision == "fp32":
        return PrecisionSupport(True, "")
    if precision == "bf16":
        return PrecisionSupport(major >= 8, f"bf16 {'native' if major >= 8 else 'emulated'} on {sm} (native from sm80)")
    if precision == "fp16":
        return PrecisionSupport(major >= 7, f"fp16 {'native' if major >= 7 else 'slow'} on {sm} (tensor cores from sm70)")
    return PrecisionSupport(None, f"{precision} on {sm}: not known to hwbench")


class TorchGenerativeAdapter(GenerativeAdapter):
    name = "torch"
    device_kind = "cpu"
    precisions = ("fp32", "bf16", "fp16", "int8")
    description = "Hugging Face transformers generate (KV cache) on torch, CPU or CUDA"
    reuses_prepared = True  # prepare() loads the weights; generate() takes any batch and length

    @classmethod
    def probe(cls) -> Probe:
        try:
            import torch

            from hwbench.models.zoo.llama import import_transformers

            transformers = import_transformers()
        except Exception as e:  # noqa: BLE001 - any import failure means unavailable
            return Probe.missing(f"torch/transformers not importable: {type(e).__name__}: {e}", INSTALL_HINT)
        devices = ["CPU"] + [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
            if torch.cuda.is_available() else ["CPU"]
        return Probe(True, devices=tuple(devices),
                     versions={"torch": torch.__version__, "transformers": transformers.__version__})

    @property
    def on_cuda(self) -> bool:
        return self.placement.kind == "cuda"

    def _cuda_reason(self) -> str | None:
        import torch

        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA (a CPU build)"
            return f"torch {torch.__version__} ({build}) sees no CUDA device"
        index = self.placement.index or 0
        if index >= torch.cuda.device_count():
            return f"cuda:{index} requested but torch sees {torch.cuda.device_count()} CUDA device(s)"
        return None

    def check(self, llm: LlmSpec, precision: str, batch_size: int, prompt_tokens: int, output_tokens: int) -> str | None:
        reason = super().check(llm, precision, batch_size, prompt_tokens, output_tokens)
        if reason:
            return reason
        if self.placement.kind not in ("cpu", "cuda"):
            return f"the torch generation adapter runs on cpu or cuda, not {self.placement.label}"
        if self.on_cuda:
            reason = self._cuda_reason()
            if reason:
                return reason
            if precision == "int8":
                return "int8 for torch generation is CPU dynamic quantization; on CUDA it is not offered"
        elif precision == "fp16":
            return "fp16 generation with torch runs on CUDA only (CPU fp16 kernels are slow or missing)"
        return None

    def precision_support(self, precision: str) -> PrecisionSupport:
        if not self.on_cuda:
            return host_support(precision)
        import torch

        major, minor = torch.cuda.get_device_capability(self.placement.index or 0)
        return cuda_precision_support(precision, major, minor)

    # -- lifecycle ---------------------------------------------------------------------
    def prepare(self, llm: LlmSpec, precision: str, batch_size: int, max_prompt_tokens: int, max_output_tokens: int) -> None:
        import torch

        from hwbench.models.zoo.llama import import_transformers

        transformers = import_transformers()
        if self.options.threads > 0:
            torch.set_num_threads(self.options.threads)
        self.device = f"cuda:{self.placement.index or 0}" if self.on_cuda else "cpu"
        if self.on_cuda:
            torch.cuda.set_device(torch.device(self.device))
            torch.cuda.reset_peak_memory_stats()
        torch.set_float32_matmul_precision("highest")
        dtype = getattr(torch, _DTYPES[precision])
        self.llm, self.precision, self.batch_size = llm, precision, batch_size
        self.max_len = max_prompt_tokens + max_output_tokens
        model = transformers.AutoModelForCausalLM.from_pretrained(str(llm.path), dtype=dtype)
        model = model.eval().to(self.device)
        self.quantization = None
        if precision == "int8":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notices
                from torch.ao.quantization import quantize_dynamic

                model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            self.quantization = "dynamic int8 Linear (int8 weights per tensor, activations quantized per call), rest fp32"
        extra = self.options.extra or {}
        self.static_cache = bool(extra.get("static_cache", False))
        self.compiled = bool(extra.get("generate_compile", False))
        if self.compiled:
            model.forward = torch.compile(model.forward, dynamic=not self.static_cache)
        self.model = model
        self.eos = model.generation_config.eos_token_id
        self.pad = model.generation_config.pad_token_id if model.generation_config.pad_token_id is not None else 0

    def _generate(self, prompt_ids: np.ndarray, n: int, streamer: Any = None) -> Any:
        import torch

        ids = torch.as_tensor(np.ascontiguousarray(prompt_ids, dtype=np.int64), device=self.device)
        kwargs: dict[str, Any] = dict(
            attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False,
            num_beams=1, use_cache=True, pad_token_id=self.pad, streamer=streamer, temperature=None, top_p=None, top_k=None,
        )
        if self.static_cache:
            kwargs["cache_implementation"] = "static"
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # transformers' notes on generation flags
            out = self.model.generate(ids, **kwargs)
        new = out[:, ids.shape[1]:]
        if new.shape[1] != n:
            raise UnsupportedPoint(f"transformers generated {new.shape[1]} tokens, not the {n} asked for")
        return new

    def generate(self, prompt_ids: np.ndarray, output_tokens: int, clock: Clock) -> list[TokenTiming]:
        import torch

        stamper = _Stamper(clock, torch.cuda.synchronize if self.on_cuda else None)
        start = clock()
        self._generate(prompt_ids, output_tokens, stamper)
        if len(stamper.stamps) != output_tokens:
            raise RuntimeError(f"the streamer saw {len(stamper.stamps)} steps for {output_tokens} tokens")
        stamps = tuple(stamper.stamps)
        return [TokenTiming(start_ns=start, token_ns=stamps, prompt_tokens=int(prompt_ids.shape[1]))
                for _ in range(prompt_ids.shape[0])]

    def prefill_logits(self, prompt_ids: np.ndarray) -> np.ndarray:
        import torch

        ids = torch.as_tensor(np.ascontiguousarray(prompt_ids, dtype=np.int64), device=self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1, :]
        return logits.float().cpu().numpy()

    def greedy_tokens(self, prompt_ids: np.ndarray, n: int) -> np.ndarray:
        return self._generate(prompt_ids, n).cpu().numpy().astype(np.int64)

    def effective(self) -> Effective:
        import torch

        settings = {"threads": torch.get_num_threads(), "kv_cache": "static" if self.static_cache else "dynamic",
                    "torch_compile": self.compiled, "quantization": self.quantization, "decoding": "greedy",
                    "min_new_tokens=max_new_tokens": True, "torch": torch.__version__}
        if self.on_cuda:
            index = self.placement.index or 0
            return cuda_effective(self.precision, index, settings, torch.cuda.get_device_name(index))
        return cpu_effective(self.precision, settings)

    def device_memory_peak_mb(self) -> float | None:
        if not getattr(self, "device", "cpu").startswith("cuda"):
            return None
        import torch

        return torch.cuda.max_memory_allocated(torch.device(self.device)) / 2**20

    def close(self) -> None:
        self.model = None
        if getattr(self, "device", "cpu").startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

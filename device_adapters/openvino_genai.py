"""OpenVINO GenAI generation adapter: a Hugging Face LLM folder exported to OpenVINO IR, run on the CPU.

Export: optimum-intel's exporter (`main_export`, task text-generation-with-past, fp32 weights)
turns the folder into a stateful IR once, cached by the folder's sha256 and the tool versions;
the tokenizer/detokenizer IR is written beside it when the folder has a tokenizer (the pipeline
runs on token ids and needs none). int8 and int4 are NNCF weight-only compression
(nncf.compress_weights, data-free) of that fp32 IR, cached beside it: int8 per-channel
asymmetric, int4 asymmetric in groups (the largest of 128/64/32/16 dividing the hidden and
intermediate sizes; embeddings and lm_head stay int8, NNCF's backup precision). bf16 and fp32
are INFERENCE_PRECISION_HINT on the fp32 IR; fp32 always sets it (on AMX CPUs OpenVINO
otherwise runs bf16), and what the CPU compiled is read back.

Generation: GenAI's ContinuousBatchingPipeline, which is what LLMPipeline runs on the CPU, with
prefix caching disabled (a repeated prompt would otherwise skip its prefill) and a token budget
that prefills the whole batch in one step. LLMPipeline's streamer accepts batch size 1 only, so
the adapter drives the pipeline itself: add one request per row, step() until all finish, and
stamp clock() after each step for the tokens that step made readable. GenAI's own per-request
perf metrics (TTFT, TPOT) are kept beside the clock's: TokenTiming.meta["genai_ttft_ms"/
"genai_tpot_ms"] per row, and the last call's means in effective().settings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from hwbench.adapter.contract import AdapterOptions, Effective, Probe
from hwbench.adapter.generative import Clock, GenerativeAdapter
from hwbench.adapter.kit import atomic_build, cache_root, cpu_effective
from hwbench.adapter.tokens import TokenTiming
from hwbench.errors import AdapterUnavailable, UnsupportedPoint
from hwbench.host.isa import PrecisionSupport
from hwbench.models.llmspec import LlmSpec

INSTALL_HINT = "pip install 'hwbench[llm-openvino]'"
INT4_GROUP_SIZES = (128, 64, 32, 16)  # tried in order; NNCF's default is 128
_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32", "int4": "f32"}  # activations of weight-only int8/int4: f32
_FROM_OV = {"f32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16", "f16": "fp16", "float16": "fp16"}
_REQUIRED = (  # (import name, distribution) GenAI generation needs
    ("openvino", "openvino"),
    ("openvino_genai", "openvino-genai"),
    ("openvino_tokenizers", "openvino-tokenizers"),
    ("optimum.intel", "optimum-intel"),
    ("nncf", "nncf"),
)


def _dist_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _present(module: str) -> bool:
    """Importable without importing it (optimum.intel pulls in torch and transformers: seconds)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module blocked in sys.modules
        return False


def int4_group_size(hidden: int, intermediate: int | None) -> int | None:
    """The largest of INT4_GROUP_SIZES dividing every matmul's input width, or None (no grouping fits).

    NNCF refuses a group size that does not divide a weight's input channels (measured: the
    default 128 fails on intermediate_size 688)."""
    widths = [hidden] + ([intermediate] if intermediate else [])
    return next((g for g in INT4_GROUP_SIZES if all(w % g == 0 for w in widths)), None)


def _ov_precision(value: Any) -> str:
    """An OpenVINO element type (or its name) -> hwbench's precision name: f32 -> fp32."""
    name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return _FROM_OV.get(name, name)


class OpenVinoGenAIAdapter(GenerativeAdapter):
    """OpenVINO GenAI continuous-batching pipeline on the CPU over an optimum-intel export."""

    name = "openvino"
    device_kind = "cpu"
    precisions = ("fp32", "bf16", "int8", "int4")
    description = "OpenVINO GenAI over an optimum-intel export; int8/int4 weight-only via NNCF"

    def __init__(self, options: AdapterOptions | None = None) -> None:
        super().__init__(options)
        self._pipe: Any = None
        self._prefill: Any = None  # the same IR compiled alone, for prefill logits and the precision read-back
        self._llm: LlmSpec | None = None
        self._precision = ""
        self._batch_size = 0
        self._ir_dir: Path | None = None
        self._settings: dict[str, Any] = {}
        self._last: dict[str, Any] = {}
        self._request_id = 0

    # -- can it run --------------------------------------------------------------
    @classmethod
    def probe(cls) -> Probe:
        missing = [dist for module, dist in _REQUIRED if not _present(module)]
        if missing:
            return Probe.missing(f"generation with openvino needs {', '.join(missing)} (not installed)", INSTALL_HINT)
        versions = {dist: _dist_version(dist) or "?" for _, dist in _REQUIRED}
        genai, tok = versions["openvino-genai"], versions["openvino-tokenizers"]
        if genai.split(".")[:3] != tok.split(".")[:3]:
            return Probe.missing(f"openvino-tokenizers {tok} does not match openvino-genai {genai} "
                                 "(they must share a version)", INSTALL_HINT)
        try:
            import openvino as ov
            import openvino_genai  # noqa: F401

            devices = tuple(ov.Core().available_devices)
        except Exception as e:  # noqa: BLE001 - any failure is a probe result
            return Probe.missing(f"openvino-genai is not importable ({type(e).__name__}: {e})", INSTALL_HINT)
        if "CPU" not in devices:
            return Probe.missing(f"openvino reports no CPU device ({', '.join(devices) or 'none'})", INSTALL_HINT)
        return Probe(available=True, devices=("CPU",), versions=versions)

    def check(self, llm: LlmSpec, precision: str, batch_size: int, prompt_tokens: int, output_tokens: int) -> str | None:
        base = super().check(llm, precision, batch_size, prompt_tokens, output_tokens)
        if base:
            return base
        if output_tokens < 1:
            return f"output_tokens must be at least 1, got {output_tokens}"
        if precision == "int4" and int4_group_size(llm.hidden, self._intermediate(llm)) is None:
            return (f"int4 needs a group size dividing hidden {llm.hidden} and intermediate "
                    f"{self._intermediate(llm)}: none of {', '.join(map(str, INT4_GROUP_SIZES))} does")
        return None

    def precision_support(self, precision: str) -> PrecisionSupport:
        """The ISA rule (hwbench.host.isa); weight-only int8/int4 compute in f32, so they are native."""
        if precision in ("int8", "int4"):
            return PrecisionSupport(True, f"{precision} weight-only: weights decompressed to f32 for compute")
        return super().precision_support(precision)

    @staticmethod
    def _intermediate(llm: LlmSpec) -> int | None:
        try:
            value = json.loads((llm.path / "config.json").read_text()).get("intermediate_size")
        except (OSError, ValueError):
            return None
        return int(value) if value else None

    # -- export and compression (cached) -----------------------------------------------
    def _cache_dir(self, llm: LlmSpec) -> Path:
        versions = "-".join(v.replace(".", "_") for v in (_dist_version("openvino") or "?", _dist_version("optimum-intel") or "?"))
        return cache_root(self.options) / "openvino-genai" / f"{llm.name}-{llm.sha256[:16]}-{versions}"

    def _export_fp32(self, llm: LlmSpec) -> tuple[Path, str]:
        """The fp32 IR folder of the model (exported once), and 'hit' or 'miss'."""
        target = self._cache_dir(llm) / "fp32"
        if target.exists():
            return target, "hit"

        def build(staged: Path) -> None:
            from optimum.exporters.openvino import main_export
            from optimum.intel import OVConfig

            with contextlib.redirect_stdout(sys.stderr):  # the exporter logs on stdout; keep it clean
                main_export(str(llm.path), staged, task="text-generation-with-past", ov_config=OVConfig(dtype="fp32"),
                            convert_tokenizer=llm.has_tokenizer, local_files_only=True)
            if llm.has_tokenizer and not (staged / "openvino_tokenizer.xml").exists():
                self._convert_tokenizer(llm.path, staged)

        return atomic_build(target, build), "miss"

    @staticmethod
    def _convert_tokenizer(source: Path, staged: Path) -> None:
        import openvino as ov
        from openvino_tokenizers import convert_tokenizer
        from transformers import AutoTokenizer

        tokenizer, detokenizer = convert_tokenizer(AutoTokenizer.from_pretrained(str(source)), with_detokenizer=True)
        ov.save_model(tokenizer, str(staged / "openvino_tokenizer.xml"))
        ov.save_model(detokenizer, str(staged / "openvino_detokenizer.xml"))

    def _compressed(self, llm: LlmSpec, fp32_dir: Path, precision: str) -> tuple[Path, str, dict[str, Any]]:
        """The int8 or int4 weight-only IR folder (from the fp32 IR), hit/miss, and what was compressed."""
        import nncf

        group = int4_group_size(llm.hidden, self._intermediate(llm)) if precision == "int4" else None
        if precision == "int8":
            mode, label = nncf.CompressWeightsMode.INT8_ASYM, "int8_asym per-channel"
            kwargs: dict[str, Any] = {}
        else:
            mode, label = nncf.CompressWeightsMode.INT4_ASYM, f"int4_asym group {group}, embeddings and lm_head int8_asym"
            kwargs = {"group_size": group, "ratio": 1.0}
        info = {"weight_compression": f"nncf {nncf.__version__} compress_weights: {label}", "int4_group_size": group}
        target = fp32_dir.parent / (precision if group is None else f"{precision}-g{group}")
        if target.exists():
            return target, "hit", info

        def build(staged: Path) -> None:
            import openvino as ov

            shutil.copytree(fp32_dir, staged, ignore=shutil.ignore_patterns("openvino_model.*"))
            model = ov.Core().read_model(str(fp32_dir / "openvino_model.xml"))
            nncf.set_log_level(logging.ERROR)
            with contextlib.redirect_stdout(sys.stderr):  # NNCF draws tables and progress bars on stdout
                model = nncf.compress_weights(model, mode=mode, **kwargs)
            ov.save_model(model, str(staged / "openvino_model.xml"), compress_to_fp16=False)

        return atomic_build(target, build), "miss", info

    # -- prepare ---------------------------------------------------------------------------
    def _properties(self) -> dict[str, Any]:
        props: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _HINT[self._precision]}
        if self.options.threads > 0:
            props["INFERENCE_NUM_THREADS"] = self.options.threads
        return props

    def prepare(self, llm: LlmSpec, precision: str, batch_size: int, max_prompt_tokens: int, max_output_tokens: int) -> None:
        reason = self.check(llm, precision, batch_size, max_prompt_tokens, max_output_tokens)
        if reason:
            raise UnsupportedPoint(reason)
        probe = self.probe()
        if not probe.available:
            raise AdapterUnavailable(f"{probe.reason}; {probe.install_hint}")
        import openvino as ov
        import openvino_genai as genai

        self.close()
        self._llm, self._precision, self._batch_size = llm, precision, batch_size
        fp32_dir, export_cache = self._export_fp32(llm)
        settings: dict[str, Any] = {"export": "optimum-intel main_export, task text-generation-with-past, fp32 weights",
                                    "export_cache": export_cache, "ir_dir": str(fp32_dir)}
        ir_dir = fp32_dir
        if precision in ("int8", "int4"):
            ir_dir, cache, info = self._compressed(llm, fp32_dir, precision)
            settings.update(info, compression_cache=cache, ir_dir=str(ir_dir))
        self._ir_dir = ir_dir

        scheduler = genai.SchedulerConfig()
        scheduler.enable_prefix_caching = False  # a repeated prompt would skip its prefill (measured TTFT 2-3 ms)
        scheduler.max_num_seqs = max(batch_size, scheduler.max_num_seqs)
        # the whole batch's prompts prefill in one step: no chunked prefill spreading TTFT over steps
        scheduler.max_num_batched_tokens = max(scheduler.max_num_batched_tokens, batch_size * max_prompt_tokens)
        props = self._properties()
        self._pipe = genai.ContinuousBatchingPipeline(str(ir_dir), scheduler, "CPU", props)
        self._prefill = ov.Core().compile_model(str(ir_dir / "openvino_model.xml"), "CPU", props)
        readback = _ov_precision(self._prefill.get_property("INFERENCE_PRECISION_HINT"))
        support = self.precision_support(precision)
        note = support.note
        if _HINT[precision] != "f32" and readback != _FROM_OV[_HINT[precision]]:
            note += f"; the {_HINT[precision]} hint compiled {readback} (this CPU lists no such capability)"
        settings.update({
            "inference_precision_hint": props["INFERENCE_PRECISION_HINT"], "inference_precision_readback": readback,
            "precision_native": support.native, "precision_note": note,
            "prefix_caching": False, "max_num_seqs": scheduler.max_num_seqs,
            "max_num_batched_tokens": scheduler.max_num_batched_tokens,
            "pipeline": "openvino_genai.ContinuousBatchingPipeline, step() loop (LLMPipeline's CPU backend)",
            "tokenizer_ir": (ir_dir / "openvino_tokenizer.xml").exists(),
            "openvino_genai_version": _dist_version("openvino-genai"), "optimum_intel_version": _dist_version("optimum-intel"),
            "inference_num_threads": props.get("INFERENCE_NUM_THREADS", 0),
        })
        self._settings = settings
        # the first call is 3-6x slower (measured): warm up inside cold start, on a prompt of its own
        warm = np.full((batch_size, min(max_prompt_tokens, 8)), min(3, llm.vocab_size - 1), dtype=np.int64)
        self._run(warm, min(max_output_tokens, 2), None)

    # -- the system under test -------------------------------------------------------------
    def _run(self, prompt_ids: np.ndarray, n: int, clock: Clock | None) -> list[tuple[int, list[int], list[int], Any]]:
        """One request per row, stepped to the end: (start, tokens, stamps, GenAI perf metrics) per row."""
        import openvino as ov
        import openvino_genai as genai

        if self._pipe is None:
            raise AdapterUnavailable("generate() before prepare()")
        ids = np.ascontiguousarray(prompt_ids, dtype=np.int64)
        if ids.ndim != 2:
            raise ValueError(f"prompt_ids must be [batch, prompt], got shape {ids.shape}")
        config = genai.GenerationConfig()
        config.max_new_tokens = n
        config.min_new_tokens = n
        config.ignore_eos = True  # random weights: the requested length, EOS or not
        config.do_sample = False
        tick = clock or (lambda: 0)
        rows = [ids[i : i + 1] for i in range(ids.shape[0])]
        start = tick()
        handles = []
        for row in rows:
            self._request_id += 1
            handles.append(self._pipe.add_request(self._request_id, ov.Tensor(row), config))
        tokens: list[list[int]] = [[] for _ in rows]
        stamps: list[list[int]] = [[] for _ in rows]
        while self._pipe.has_non_finished_requests():
            self._pipe.step()
            now = tick()
            for i, handle in enumerate(handles):
                if handle.can_read():
                    for output in handle.read().values():
                        got = list(output.generated_ids)
                        tokens[i].extend(got)
                        stamps[i].extend([now] * len(got))
        return [(start, tokens[i], stamps[i], handles[i].get_perf_metrics()) for i in range(len(rows))]

    def generate(self, prompt_ids: np.ndarray, output_tokens: int, clock: Clock) -> list[TokenTiming]:
        results = self._run(prompt_ids, output_tokens, clock)
        timings = []
        for start, tokens, stamps, metrics in results:
            meta = {"genai_ttft_ms": float(metrics.get_ttft().mean), "genai_tpot_ms": float(metrics.get_tpot().mean)}
            ok = len(tokens) == output_tokens
            timings.append(TokenTiming(start_ns=start, token_ns=tuple(stamps), prompt_tokens=int(prompt_ids.shape[1]), ok=ok,
                                       error=None if ok else f"openvino produced {len(tokens)} of {output_tokens} tokens",
                                       meta=meta))
        self._last = self._cross_check(timings)
        return timings

    @staticmethod
    def _cross_check(timings: list[TokenTiming]) -> dict[str, Any]:
        """The last call's TTFT/TPOT means by the caller's clock and by GenAI's perf metrics (ms)."""
        def mean(values: list[float | None]) -> float | None:
            kept = [v for v in values if v is not None]
            return float(np.mean(kept)) if kept else None

        return {
            "clock_ttft_ms": mean([t.ttft_ns / 1e6 if t.ttft_ns is not None else None for t in timings]),
            "clock_tpot_ms": mean([t.tpot_ns / 1e6 if t.tpot_ns is not None else None for t in timings]),
            "genai_ttft_ms": mean([t.meta.get("genai_ttft_ms") for t in timings]),  # type: ignore[misc]
            "genai_tpot_ms": mean([t.meta.get("genai_tpot_ms") for t in timings]),  # type: ignore[misc]
        }

    # -- accuracy ----------------------------------------------------------------------------
    def prefill_logits(self, prompt_ids: np.ndarray) -> np.ndarray:
        """Last-position logits of the very IR that generates, compiled alone with the same hint."""
        if self._prefill is None:
            raise AdapterUnavailable("prefill_logits() before prepare()")
        ids = np.ascontiguousarray(prompt_ids, dtype=np.int64)
        batch, length = ids.shape
        names = {i.get_any_name() for i in self._prefill.inputs}
        feed: dict[str, np.ndarray] = {"input_ids": ids}
        if "attention_mask" in names:
            feed["attention_mask"] = np.ones_like(ids)
        if "position_ids" in names:
            feed["position_ids"] = np.ascontiguousarray(np.broadcast_to(np.arange(length, dtype=np.int64), (batch, length)))
        if "beam_idx" in names:
            feed["beam_idx"] = np.arange(batch, dtype=np.int32)
        request = self._prefill.create_infer_request()
        request.reset_state()  # stateful IR: the KV cache lives in the request
        result = request.infer(feed)
        return np.array(result[self._prefill.output("logits")][:, -1, :], dtype=np.float32)

    def greedy_tokens(self, prompt_ids: np.ndarray, n: int) -> np.ndarray:
        return np.asarray([tokens for _, tokens, _, _ in self._run(prompt_ids, n, None)], dtype=np.int64)

    # -- what ran ----------------------------------------------------------------------------
    def effective(self) -> Effective:
        """Weight-only int8/int4 report their weight precision; fp32/bf16 what the CPU compiled."""
        if self._pipe is None:
            raise RuntimeError("effective() before prepare()")
        readback = self._settings["inference_precision_readback"]
        precision = self._precision if self._precision in ("int8", "int4") else readback
        settings = dict(self._settings)
        settings.update(self._last)
        try:
            settings["kv_cache_bytes"] = int(self._pipe.get_metrics().kv_cache_size_in_bytes)
        except Exception:  # noqa: BLE001 - older GenAI lacks the field
            settings["kv_cache_bytes"] = None
        return cpu_effective(precision, settings)

    def close(self) -> None:
        self._pipe = None
        self._prefill = None
        self._last = {}

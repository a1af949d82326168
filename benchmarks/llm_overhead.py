"""LLM measuring overhead: TPOT as hwbench measures it, against bare loops and the runtime's own metrics.

A random-weight tiny Llama (hidden 256, 4 layers, 4 heads, 2 KV heads, vocab 32000: about
19M parameters, no tokenizer) is built in a temporary folder. In interleaved rounds, one process:

- openvino: the OpenVINO GenAI adapter's generate() with the clock (TPOT from its per-step
  stamps) against (a) GenAI's own perf metrics of the very same calls and (b) a bare
  LLMPipeline.generate loop on the same IR timed inline, its TPOT taken as
  (E2E of N tokens - E2E of 1 token) / (N - 1), medians of alternating calls;
- transformers: a bare model.generate loop timed the same way, against model.generate with a
  streamer stamping the clock at each token (the way a torch generation adapter keeps time);
  with --torch-adapter module:Class, that generative adapter's generate() as well.

Fresh random prompts every call; one thread per runtime (2 threads collapse on a busy host).
Target: every ratio within 2%. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hwbench.adapter.contract import AdapterOptions
from hwbench.models.llmspec import LlmSpec, spec_from_folder

PROMPT = 32
OUTPUT = 32
ROUNDS = 7
TARGET = 0.02


def build_llama(folder: Path) -> LlmSpec:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    LlamaForCausalLM(config).eval().save_pretrained(folder, safe_serialization=True)
    return spec_from_folder(folder, "llama-19m-bench", random_weights=True)


def tpot_by_difference_ms(e2e_n_ns: list[int], e2e_1_ns: list[int], n: int) -> float:
    return (statistics.median(e2e_n_ns) - statistics.median(e2e_1_ns)) / (n - 1) / 1e6


def paired_ratio(measured_ms: list[float], e2e_n_ns: list[int], e2e_1_ns: list[int], n: int) -> float:
    """The median over rounds of measured / bare, each round's bare TPOT from that round's two calls:
    robust to the slow drift of a shared host, which the ratio of medians is not."""
    return statistics.median(m / ((a - b) / (n - 1) / 1e6) for m, a, b in zip(measured_ms, e2e_n_ns, e2e_1_ns))


class Prompts:
    def __init__(self, vocab: int) -> None:
        self.rng, self.vocab = np.random.default_rng(0), vocab

    def __call__(self) -> np.ndarray:
        return self.rng.integers(3, self.vocab, size=(1, PROMPT), dtype=np.int64)


def openvino_rows(spec: LlmSpec, cache: str) -> dict[str, float]:
    import openvino as ov
    import openvino_genai as genai

    from device_adapters.openvino_genai import OpenVinoGenAIAdapter

    adapter = OpenVinoGenAIAdapter(AdapterOptions(cache_dir=cache, threads=1))
    adapter.prepare(spec, "fp32", 1, PROMPT, OUTPUT)
    ir = adapter.effective().settings["ir_dir"]
    scheduler = genai.SchedulerConfig()
    scheduler.enable_prefix_caching = False
    pipe = genai.LLMPipeline(ir, "CPU", scheduler_config=scheduler, INFERENCE_PRECISION_HINT="f32", INFERENCE_NUM_THREADS=1)

    def config(n: int):
        c = genai.GenerationConfig()
        c.max_new_tokens = c.min_new_tokens = n
        c.ignore_eos, c.do_sample = True, False
        return c

    def bare(ids: np.ndarray, n: int) -> int:
        inputs = genai.TokenizedInputs(ov.Tensor(ids), ov.Tensor(np.ones_like(ids)))
        t0 = time.perf_counter_ns()
        pipe.generate(inputs, config(n))
        return time.perf_counter_ns() - t0

    prompts = Prompts(spec.vocab_size)
    bare(prompts(), OUTPUT)  # the first call is slow
    hw_ms, genai_ms, bare_n, bare_1 = [], [], [], []
    for r in range(ROUNDS):
        t = adapter.generate(prompts(), OUTPUT, time.perf_counter_ns)[0]
        hw_ms.append(t.tpot_ns / 1e6)
        genai_ms.append(t.meta["genai_tpot_ms"])
        bare_n.append(bare(prompts(), OUTPUT))
        bare_1.append(bare(prompts(), 1))
        print(f"openvino round {r}: hwbench clock {hw_ms[-1]:.3f} ms | genai perf metrics {genai_ms[-1]:.3f} ms | "
              f"bare LLMPipeline E2E {bare_n[-1] / 1e6:.2f} ms ({OUTPUT} tok), {bare_1[-1] / 1e6:.2f} ms (1 tok)")
    adapter.close()
    return {"openvino_hwbench_tpot_ms": statistics.median(hw_ms), "openvino_genai_tpot_ms": statistics.median(genai_ms),
            "openvino_bare_tpot_ms": tpot_by_difference_ms(bare_n, bare_1, OUTPUT),
            "openvino_paired_ratio": paired_ratio(hw_ms, bare_n, bare_1, OUTPUT)}


def transformers_rows(spec: LlmSpec, torch_adapter: str | None, cache: str) -> dict[str, float]:
    import torch
    from transformers import LlamaForCausalLM
    from transformers.generation.streamers import BaseStreamer

    torch.set_num_threads(1)
    model = LlamaForCausalLM.from_pretrained(spec.path).eval()

    class Stamps(BaseStreamer):
        def __init__(self) -> None:
            self.ns: list[int] = []
            self.prompt_seen = False

        def put(self, value) -> None:  # the first put is the prompt
            if self.prompt_seen:
                self.ns.append(time.perf_counter_ns())
            self.prompt_seen = True

        def end(self) -> None:
            pass

    def run(ids: np.ndarray, n: int, streamer=None) -> int:
        x = torch.from_numpy(ids)
        t0 = time.perf_counter_ns()
        with torch.no_grad():
            model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n,
                           do_sample=False, pad_token_id=0, streamer=streamer)
        return time.perf_counter_ns() - t0

    adapter = None
    if torch_adapter:
        module, cls = torch_adapter.split(":")
        adapter = getattr(importlib.import_module(module), cls)(AdapterOptions(cache_dir=cache, threads=1))
        adapter.prepare(spec, "fp32", 1, PROMPT, OUTPUT)
    prompts = Prompts(spec.vocab_size)
    run(prompts(), OUTPUT)
    streamed, adapter_ms, bare_n, bare_1 = [], [], [], []
    for r in range(ROUNDS):
        s = Stamps()
        run(prompts(), OUTPUT, s)
        streamed.append((s.ns[-1] - s.ns[0]) / (len(s.ns) - 1) / 1e6)
        if adapter is not None:
            adapter_ms.append(adapter.generate(prompts(), OUTPUT, time.perf_counter_ns)[0].tpot_ns / 1e6)
        bare_n.append(run(prompts(), OUTPUT))
        bare_1.append(run(prompts(), 1))
        extra = f" | {torch_adapter} {adapter_ms[-1]:.3f} ms" if adapter_ms else ""
        print(f"transformers round {r}: streamer clock {streamed[-1]:.3f} ms{extra} | bare generate E2E "
              f"{bare_n[-1] / 1e6:.2f} ms ({OUTPUT} tok), {bare_1[-1] / 1e6:.2f} ms (1 tok)")
    out = {"transformers_streamer_tpot_ms": statistics.median(streamed),
           "transformers_bare_tpot_ms": tpot_by_difference_ms(bare_n, bare_1, OUTPUT),
           "transformers_paired_ratio": paired_ratio(streamed, bare_n, bare_1, OUTPUT)}
    if adapter_ms:
        out["torch_adapter_tpot_ms"] = statistics.median(adapter_ms)
        out["torch_adapter_paired_ratio"] = paired_ratio(adapter_ms, bare_n, bare_1, OUTPUT)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-adapter", default="", help="module:Class of a torch generative adapter to include")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = build_llama(Path(tmp) / "llama")
        figures = {**openvino_rows(spec, tmp), **transformers_rows(spec, args.torch_adapter or None, tmp)}
    ratios = {
        "openvino_hwbench_over_genai_metrics": figures["openvino_hwbench_tpot_ms"] / figures["openvino_genai_tpot_ms"],
        "openvino_hwbench_over_bare_pipeline": figures["openvino_hwbench_tpot_ms"] / figures["openvino_bare_tpot_ms"],
        "transformers_streamer_over_bare_generate": figures["transformers_streamer_tpot_ms"] / figures["transformers_bare_tpot_ms"],
    }
    if "torch_adapter_tpot_ms" in figures:
        ratios["torch_adapter_over_bare_generate"] = figures["torch_adapter_tpot_ms"] / figures["transformers_bare_tpot_ms"]
    paired = {k: figures.pop(k) for k in [k for k in figures if k.endswith("_paired_ratio")]}
    for name, value in {**ratios, **paired}.items():
        print(f"{name}: {value:.4f}")
    result = {
        "benchmark": "llm_overhead", "source": "measured", "model": "random Llama, hidden 256, 4 layers, vocab 32000",
        "prompt_tokens": PROMPT, "output_tokens": OUTPUT, "rounds": ROUNDS, "threads": 1,
        **{k: round(v, 4) for k, v in figures.items()}, "ratios": {k: round(v, 4) for k, v in ratios.items()},
        "paired_ratios": {k: round(v, 4) for k, v in paired.items()},
        "target": {"ratio_within": TARGET},
    }
    result["meets_target"] = bool(all(abs(v - 1) <= TARGET for v in ratios.values()))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""LLM measuring overhead: TPOT as hwbench measures it, against a bare loop and the runtime's own metrics.

A random-weight tiny Llama (hidden 256, 4 layers, 4 heads, 2 KV heads, vocab 32000: about
19M parameters, no tokenizer) is built in a temporary folder. One process, ROUNDS interleaved
rounds, the order of the arms alternating from round to round (A B C, then C B A) so that a slow
drift of the host loads every arm alike:

- transformers (the target): hwbench's own timed loop (hwbench.measure.generation.measure_generation,
  one call per round) on the torch generation adapter, TPOT per sequence from its streamer stamps,
  against a bare `model.generate` on the very same model object with the adapter's generation
  arguments and no streamer, timed inline: bare TPOT = (median E2E of N tokens - median E2E of
  1 token) / (N - 1), the N- and 1-token calls both in every round;
- openvino: the OpenVINO GenAI adapter's TPOT against GenAI's own perf metrics of the same calls
  and against a bare LLMPipeline.generate loop on the same IR, timed the same way.

Each ratio is a ratio of medians over rounds with a 95% bootstrap interval (rounds resampled
with replacement, 2000 times: the interval says how far the figure could move with the noise
seen). Fresh random prompts every call; one thread per runtime. Target: within 2%, met when the
ratio is, proven when its interval is too. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hwbench.adapter.contract import AdapterOptions
from hwbench.models.llmspec import LlmSpec, spec_from_folder

PROMPT = 32
OUTPUT = 32
ROUNDS = 101
BOOTSTRAP = 2000
TARGET = 0.02


def build_llama(folder: Path) -> LlmSpec:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    LlamaForCausalLM(config).eval().save_pretrained(folder, safe_serialization=True)
    return spec_from_folder(folder, "llama-19m-bench", random_weights=True)


def ratio_of_medians(measured_ms: np.ndarray, e2e_n_ns: np.ndarray, e2e_1_ns: np.ndarray, n: int) -> float:
    """median(measured TPOT) / bare TPOT, the bare TPOT by difference of the medians of N- and 1-token calls."""
    bare_ms = (np.median(e2e_n_ns) - np.median(e2e_1_ns)) / (n - 1) / 1e6
    return float(np.median(measured_ms) / bare_ms)


def bootstrap_interval(fn, *columns: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of fn(*columns) over rounds resampled with replacement (rows stay together)."""
    rng = np.random.default_rng(seed)
    n = len(columns[0])
    values = [fn(*(c[idx] for c in columns)) for idx in (rng.integers(0, n, n) for _ in range(BOOTSTRAP))]
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def interleaved(arms: list, rounds: int) -> None:
    """Call every arm once per round, in order on even rounds and reversed on odd ones."""
    for r in range(rounds):
        for arm in (arms if r % 2 == 0 else arms[::-1]):
            arm(r)


def summary(name: str, measured_ms: list[float], e2e_n: list[int], e2e_1: list[int]) -> dict[str, float]:
    cols = (np.asarray(measured_ms), np.asarray(e2e_n, dtype=np.float64), np.asarray(e2e_1, dtype=np.float64))
    ratio = ratio_of_medians(*cols, OUTPUT)
    lo, hi = bootstrap_interval(lambda a, b, c: ratio_of_medians(a, b, c, OUTPUT), *cols)
    bare = (np.median(cols[1]) - np.median(cols[2])) / (OUTPUT - 1) / 1e6
    return {f"{name}_tpot_ms": float(np.median(cols[0])), f"{name}_bare_tpot_ms": float(bare),
            f"{name}_over_bare": ratio, f"{name}_over_bare_ci_low": lo, f"{name}_over_bare_ci_high": hi}


class Prompts:
    def __init__(self, vocab: int) -> None:
        self.rng, self.vocab = np.random.default_rng(0), vocab

    def __call__(self) -> np.ndarray:
        return self.rng.integers(3, self.vocab, size=(1, PROMPT), dtype=np.int64)


def openvino_rows(spec: LlmSpec, cache: str, rounds: int) -> dict[str, float]:
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

    prompts = Prompts(spec.vocab_size)
    hw_ms: list[float] = []
    genai_ms: list[float] = []
    bare: dict[int, list[int]] = {OUTPUT: [], 1: []}

    def hwbench(r: int) -> None:
        t = adapter.generate(prompts(), OUTPUT, time.perf_counter_ns)[0]
        hw_ms.append(t.tpot_ns / 1e6)
        genai_ms.append(t.meta["genai_tpot_ms"])

    def bare_call(n: int):
        def run(r: int) -> None:
            inputs = genai.TokenizedInputs(ov.Tensor(prompts()), ov.Tensor(np.ones((1, PROMPT), dtype=np.int64)))
            cfg = config(n)
            t0 = time.perf_counter_ns()
            pipe.generate(inputs, cfg)
            bare[n].append(time.perf_counter_ns() - t0)
        return run

    interleaved([hwbench, bare_call(OUTPUT), bare_call(1)], 2)  # warm-up rounds, dropped
    hw_ms.clear(), genai_ms.clear(), bare[OUTPUT].clear(), bare[1].clear()
    interleaved([hwbench, bare_call(OUTPUT), bare_call(1)], rounds)
    adapter.close()
    out = summary("openvino_hwbench", hw_ms, bare[OUTPUT], bare[1])
    hw, ga = np.asarray(hw_ms), np.asarray(genai_ms)
    out["openvino_genai_tpot_ms"] = float(np.median(ga))
    out["openvino_hwbench_over_genai_metrics"] = float(np.median(hw) / np.median(ga))
    lo, hi = bootstrap_interval(lambda a, b: float(np.median(a) / np.median(b)), hw, ga)
    out["openvino_hwbench_over_genai_metrics_ci_low"], out["openvino_hwbench_over_genai_metrics_ci_high"] = lo, hi
    return out


def transformers_rows(spec: LlmSpec, cache: str, rounds: int) -> dict[str, float]:
    import torch

    from device_adapters.pytorch_gen import TorchGenerativeAdapter
    from hwbench.measure.generation import measure_generation
    from hwbench.measure.settings import GenerateSettings

    adapter = TorchGenerativeAdapter(AdapterOptions(cache_dir=cache, threads=1))
    adapter.prepare(spec, "fp32", 1, PROMPT, OUTPUT)
    model = adapter.model  # the very model object hwbench measures
    one_call = GenerateSettings(warmup_calls=0, min_calls=1, min_duration_s=1e-6, max_duration_s=600.0, max_rel_halfwidth=0.0)
    prompts = Prompts(spec.vocab_size)
    hw_ms: list[float] = []
    bare: dict[int, list[int]] = {OUTPUT: [], 1: []}

    def hwbench(r: int) -> None:  # hwbench's timed loop, one call
        m = measure_generation(adapter, spec.vocab_size, 1, PROMPT, OUTPUT, one_call, seed=1000 + r)
        hw_ms.extend(t.tpot_ns / 1e6 for c in m.calls for t in c)

    def bare_call(n: int):
        def run(r: int) -> None:  # the adapter's generate arguments (pytorch_gen._generate), no streamer
            x = torch.from_numpy(prompts())
            kwargs = dict(attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                          num_beams=1, use_cache=True, pad_token_id=adapter.pad, temperature=None, top_p=None, top_k=None)
            with torch.inference_mode():
                t0 = time.perf_counter_ns()
                model.generate(x, **kwargs)
                bare[n].append(time.perf_counter_ns() - t0)
        return run

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' notes on generation flags
        interleaved([hwbench, bare_call(OUTPUT), bare_call(1)], 2)  # warm-up rounds, dropped
        hw_ms.clear(), bare[OUTPUT].clear(), bare[1].clear()
        interleaved([hwbench, bare_call(OUTPUT), bare_call(1)], rounds)
    adapter.close()
    return summary("torch_hwbench", hw_ms, bare[OUTPUT], bare[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"interleaved rounds per runtime (default {ROUNDS})")
    parser.add_argument("--skip-openvino", action="store_true", help="the transformers comparison only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = build_llama(Path(tmp) / "llama")
        figures = transformers_rows(spec, tmp, args.rounds)
        if not args.skip_openvino:
            figures.update(openvino_rows(spec, tmp, args.rounds))
    ratios = [k for k in figures if k.endswith(("_over_bare", "_over_genai_metrics"))]
    for k in ratios:
        print(f"{k}: {figures[k]:.4f} (95% bootstrap interval {figures[k + '_ci_low']:.4f}-{figures[k + '_ci_high']:.4f})")
    result = {
        "benchmark": "llm_overhead", "source": "measured", "model": "random Llama, hidden 256, 4 layers, vocab 32000",
        "prompt_tokens": PROMPT, "output_tokens": OUTPUT, "rounds": args.rounds, "threads": 1, "bootstrap": BOOTSTRAP,
        **{k: round(v, 4) for k, v in figures.items()}, "target": {"ratio_within": TARGET},
        "meets_target": {k: abs(figures[k] - 1) <= TARGET for k in ratios},
        "interval_within_target": {k: 1 - TARGET <= figures[k + "_ci_low"] and figures[k + "_ci_high"] <= 1 + TARGET
                                   for k in ratios},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

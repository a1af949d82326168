"""The OpenVINO GenAI generation adapter on a tiny random Llama built here (real runtime, no mocks).

One module-scoped export (optimum-intel, the slow part) serves every test; int8 is NNCF
compression of that IR. The model: hidden 64, 2 layers, 4 heads, 2 KV heads, vocab 512, with
a byte-level BPE tokenizer trained on a few words, so the export writes the tokenizer IR too.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from hwbench.adapter.contract import AdapterOptions
from hwbench.models.llmspec import LlmSpec, spec_from_folder

pytest.importorskip("openvino_genai", reason="openvino-genai is not installed: pip install 'hwbench[llm-openvino]'")
pytest.importorskip("optimum.intel", reason="optimum-intel is not installed: pip install 'hwbench[llm-openvino]'")

from device_adapters.openvino_genai import OpenVinoGenAIAdapter, int4_group_size  # noqa: E402

VOCAB = 512
PROMPT = 16
OUT = 6


def build_tiny_llama(folder) -> None:
    """A seeded random Llama Hugging Face folder with a tokenizer: the smallest the export accepts well."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    LlamaForCausalLM(config).eval().save_pretrained(folder, safe_serialization=True)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 4, trainer)
    PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>").save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[LlmSpec, str]:
    folder = tmp_path_factory.mktemp("tiny-llama")
    build_tiny_llama(folder)
    cache = str(tmp_path_factory.mktemp("ov-genai-cache"))
    return spec_from_folder(folder, "tiny-llama", random_weights=True), cache


@pytest.fixture(scope="module")
def fp32(tiny: tuple[LlmSpec, str]) -> OpenVinoGenAIAdapter:
    spec, cache = tiny
    adapter = OpenVinoGenAIAdapter(AdapterOptions(cache_dir=cache, threads=1))
    adapter.prepare(spec, "fp32", 2, PROMPT, OUT)
    yield adapter
    adapter.close()


def _prompts(batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, VOCAB, size=(batch, PROMPT), dtype=np.int64)


def test_exact_length_and_monotone_stamps(fp32: OpenVinoGenAIAdapter) -> None:
    timings = fp32.generate(_prompts(2, 1), OUT, time.perf_counter_ns)
    assert len(timings) == 2
    for t in timings:
        assert t.ok and t.output_tokens == OUT and t.prompt_tokens == PROMPT
        assert t.start_ns < t.token_ns[0]
        assert all(b >= a for a, b in zip(t.token_ns, t.token_ns[1:]))
        assert t.token_ns[-1] > t.token_ns[0]  # one step per token: the last comes later than the first


def test_clock_agrees_with_genai_perf_metrics(fp32: OpenVinoGenAIAdapter) -> None:
    """Batch 1 (one request, no batching ambiguity): the clock's TTFT/TPOT against GenAI's own."""
    timings = fp32.generate(_prompts(1, 2), 12, time.perf_counter_ns)
    t = timings[0]
    ttft_ms, tpot_ms = t.ttft_ns / 1e6, t.tpot_ns / 1e6
    genai_ttft, genai_tpot = t.meta["genai_ttft_ms"], t.meta["genai_tpot_ms"]
    # the clock brackets the runtime's own timestamps from outside: within 1 ms, or 25% on a busy host
    assert abs(ttft_ms - genai_ttft) <= max(1.0, 0.25 * genai_ttft), (ttft_ms, genai_ttft)
    assert abs(tpot_ms - genai_tpot) <= max(0.5, 0.25 * genai_tpot), (tpot_ms, genai_tpot)
    settings = fp32.effective().settings
    assert settings["clock_ttft_ms"] == pytest.approx(ttft_ms)
    assert settings["genai_tpot_ms"] == pytest.approx(genai_tpot)


def test_fp32_settings_recorded(fp32: OpenVinoGenAIAdapter) -> None:
    eff = fp32.effective()
    assert eff.precision == "fp32" and eff.device_kind == "cpu"
    s = eff.settings
    assert s["inference_precision_hint"] == "f32" and s["inference_precision_readback"] == "fp32"
    assert s["prefix_caching"] is False and s["tokenizer_ir"] is True
    assert s["inference_num_threads"] == 1


def test_greedy_matches_transformers_fp32(tiny: tuple[LlmSpec, str], fp32: OpenVinoGenAIAdapter) -> None:
    import torch
    from transformers import LlamaForCausalLM

    spec, _ = tiny
    prompts = _prompts(2, 3)
    model = LlamaForCausalLM.from_pretrained(spec.path).eval()
    with torch.no_grad():
        ref = model.generate(torch.from_numpy(prompts), attention_mask=torch.ones_like(torch.from_numpy(prompts)),
                             max_new_tokens=OUT, min_new_tokens=OUT, do_sample=False, pad_token_id=0)
        ref_logits = model(torch.from_numpy(prompts)).logits[:, -1].numpy()
    expected = ref[:, PROMPT:].numpy()
    np.testing.assert_array_equal(fp32.greedy_tokens(prompts, OUT), expected)
    logits = fp32.prefill_logits(prompts)
    assert logits.shape == (2, VOCAB) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, ref_logits, atol=1e-3, rtol=1e-3)


def test_int8_effective_precision_and_cache_reuse(tiny: tuple[LlmSpec, str], fp32: OpenVinoGenAIAdapter) -> None:
    spec, cache = tiny
    adapter = OpenVinoGenAIAdapter(AdapterOptions(cache_dir=cache, threads=1))
    adapter.prepare(spec, "int8", 1, PROMPT, OUT)
    eff = adapter.effective()
    assert eff.precision == "int8"
    assert "int8_asym" in eff.settings["weight_compression"] and eff.settings["int4_group_size"] is None
    assert eff.settings["export_cache"] == "hit"  # the fp32 export the fp32 fixture made is reused
    assert eff.settings["compression_cache"] == "miss"
    assert adapter.generate(_prompts(1, 4), OUT, time.perf_counter_ns)[0].output_tokens == OUT
    adapter.close()
    again = OpenVinoGenAIAdapter(AdapterOptions(cache_dir=cache, threads=1))
    again.prepare(spec, "int8", 1, PROMPT, OUT)
    assert again.effective().settings["compression_cache"] == "hit"
    again.close()


def test_bf16_records_readback_and_isa(tiny: tuple[LlmSpec, str], fp32: OpenVinoGenAIAdapter) -> None:
    """bf16 is a hint: the effective precision is what the CPU compiled (f32 where it lacks bf16),
    and native/emulated comes from the host's ISA, whichever host this is."""
    from hwbench.host.isa import host_support

    spec, cache = tiny
    adapter = OpenVinoGenAIAdapter(AdapterOptions(cache_dir=cache, threads=1))
    adapter.prepare(spec, "bf16", 1, PROMPT, OUT)
    s = adapter.effective().settings
    assert s["inference_precision_hint"] == "bf16"
    assert adapter.effective().precision == s["inference_precision_readback"] in ("bf16", "fp32")
    assert s["precision_native"] == host_support("bf16").native
    if s["inference_precision_readback"] == "fp32":
        assert "compiled fp32" in s["precision_note"]
    adapter.close()


def test_int4_group_size_divides_the_widths() -> None:
    assert int4_group_size(576, 1536) == 64  # SmolLM2-135M's shape: 576 is not a multiple of 128
    assert int4_group_size(256, 688) == 16
    assert int4_group_size(64, 128) == 64
    assert int4_group_size(60, 100) is None


def test_check_refuses_bad_points(tiny: tuple[LlmSpec, str]) -> None:
    spec, cache = tiny
    adapter = OpenVinoGenAIAdapter(AdapterOptions(cache_dir=cache))
    assert "fp16" in adapter.check(spec, "fp16", 1, PROMPT, OUT)
    assert "context" in adapter.check(spec, "fp32", 1, 120, 20)
    assert "output_tokens" in adapter.check(spec, "fp32", 1, PROMPT, 0)
    assert adapter.check(spec, "int4", 1, PROMPT, OUT) is None


@pytest.mark.parametrize("module, dist", [("openvino_genai", "openvino-genai"), ("openvino_tokenizers", "openvino-tokenizers"),
                                          ("optimum.intel", "optimum-intel")])
def test_probe_names_the_missing_package(monkeypatch: pytest.MonkeyPatch, module: str, dist: str) -> None:
    assert OpenVinoGenAIAdapter.probe().available
    monkeypatch.setitem(sys.modules, module, None)  # import and find_spec now fail, as when not installed
    probe = OpenVinoGenAIAdapter.probe()
    assert not probe.available
    assert dist in probe.reason and probe.install_hint == "pip install 'hwbench[llm-openvino]'"

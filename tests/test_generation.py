"""The generate workload: statistics on synthetic TokenTimings, the timed loop on a fake adapter,
the torch generation adapter on llama-tiny (exact length, one clock), the CLI end to end and bad input.

Everything but the last tests is in-process and fast; llama-tiny builds once per session into the
private cache (tests/conftest.py) and takes seconds to generate with."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from hwbench.adapter import AdapterOptions
from hwbench.adapter import registry
from hwbench.adapter.tokens import TokenTiming
from hwbench.measure.generation import STOP_MINIMUMS, STOP_TIGHT, STOP_TIME_CAP, measure_generation, random_prompts
from hwbench.measure.gentrial import greedy_agreement
from hwbench.measure.genstats import call_phases_ns, call_rates, mean_ci_rel_halfwidth, summarize_generation
from hwbench.measure.settings import GenerateSettings

MS = 1_000_000


def _seq(start_ms: float, ttft_ms: float, gap_ms: float, n: int, prompt: int = 10) -> TokenTiming:
    first = int((start_ms + ttft_ms) * MS)
    return TokenTiming(start_ns=int(start_ms * MS), token_ns=tuple(first + int(i * gap_ms * MS) for i in range(n)),
                       prompt_tokens=prompt)


def test_summary_follows_vllm_definitions_on_synthetic_timings() -> None:
    # 4 calls of 2 sequences each; TTFT 20 ms, then 5 tokens 4 ms apart: TPOT 4 ms, E2E 36 ms
    calls = [[_seq(100 * c, 20, 4, 5), _seq(100 * c, 20, 4, 5)] for c in range(4)]
    out = summarize_generation(calls, wall_s=0.4)
    assert out["n_samples"] == 8
    assert out["ttft_p50_ms"] == pytest.approx(20) and out["ttft_p99_ms"] == pytest.approx(20)
    assert out["tpot_p50_ms"] == pytest.approx(4) and out["itl_p99_ms"] == pytest.approx(4)
    assert out["e2e_p50_ms"] == pytest.approx(36)
    assert out["output_tokens_per_s"] == pytest.approx(8 * 5 / 0.4)
    assert out["total_tokens_per_s"] == pytest.approx(8 * 15 / 0.4)
    assert out["output_tokens_per_s_per_seq"] == pytest.approx(5 / 0.036)
    assert out["prefill_tokens_per_s"] == pytest.approx(2 * 10 / 0.020)  # batch x prompt / TTFT
    assert out["decode_tokens_per_s"] == pytest.approx(2 * 4 / 0.016)  # batch x (n - 1) / first-to-last
    assert "p99" in out["unresolved_percentiles"]  # 8 sequences cannot bound a p99


def test_tpot_differs_from_mean_itl_when_gaps_vary_and_percentiles_have_intervals() -> None:
    rng = np.random.default_rng(3)
    calls = []
    for c in range(400):
        gaps = rng.exponential(5.0, size=9)
        t0 = c * 1000.0
        first = t0 + 30 + rng.exponential(5.0)
        stamps = (first, *(first + np.cumsum(gaps)))
        calls.append([TokenTiming(int(t0 * MS), tuple(int(s * MS) for s in stamps), 16)])
    out = summarize_generation(calls, wall_s=400.0)
    tpots = np.array([(c[0].token_ns[-1] - c[0].token_ns[0]) / 9 / MS for c in calls])
    assert out["tpot_p50_ms"] == pytest.approx(np.percentile(tpots, 50))
    assert out["tpot_p50_ci_low_ms"] <= out["tpot_p50_ms"] <= out["tpot_p50_ci_high_ms"]
    assert out["ttft_p99_ci_low_ms"] is not None and out["ttft_p99_ci_high_ms"] is not None  # 400 >= 368
    # pooled ITL spreads wider than per-sequence TPOT (a mean of 9 gaps): its p99 is higher
    assert out["itl_p99_ms"] > out["tpot_p99_ms"]


def test_call_rates_ignore_failed_sequences() -> None:
    ok = _seq(0, 10, 2, 3, prompt=8)
    bad = TokenTiming(0, (), 8, ok=False, error="x")
    assert call_rates([ok, bad]) == (pytest.approx(800.0), pytest.approx(2 / 0.004))
    assert call_rates([bad]) == (None, None)


def test_greedy_agreement_is_the_common_prefix_share() -> None:
    ref = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    cand = np.array([[1, 2, 9, 4], [5, 6, 7, 8]])  # row 0 diverges at token 2: 2/4, row 1: 4/4
    assert greedy_agreement(ref, cand) == pytest.approx(0.75)


class _FakeGen:
    """A generative adapter whose calls take no time: counts calls and records prompts."""

    def __init__(self) -> None:
        self.prompts: list[np.ndarray] = []

    def generate(self, prompt_ids, output_tokens, clock):  # type: ignore[no-untyped-def]
        self.prompts.append(prompt_ids)
        start = clock()
        return [TokenTiming(start, tuple(clock() for _ in range(output_tokens)), prompt_ids.shape[1])
                for _ in range(prompt_ids.shape[0])]


def test_loop_warms_up_reaches_both_minimums_and_uses_fresh_prompts() -> None:
    fake = _FakeGen()
    s = GenerateSettings(warmup_calls=2, min_calls=5, min_duration_s=0.05, max_duration_s=5.0, max_rel_halfwidth=0.0)
    m = measure_generation(fake, vocab_size=100, batch_size=3, prompt_tokens=7, output_tokens=4, settings=s)  # type: ignore[arg-type]
    assert m.stop_reason == STOP_MINIMUMS and len(m.calls) >= 5 and m.wall_s >= 0.05
    assert len(fake.prompts) == len(m.calls) + 2 and m.warmup_calls == 2
    assert all(len(c) == 3 and c[0].output_tokens == 4 for c in m.calls)
    firsts = {p.tobytes() for p in fake.prompts}
    assert len(firsts) == len(fake.prompts)  # no prompt repeats (prefix caches)
    assert all(p.min() >= 3 and p.max() < 100 for p in fake.prompts)


class _ScriptedGen:
    """A generative adapter returning synthetic timings: TTFT ~ 100 ms and TPOT ~ 10 ms, each times
    (1 + cv * a standard normal), seeded; the loop stops on these stamps, not on the wall clock."""

    def __init__(self, cv: float, seed: int = 0) -> None:
        self.cv, self.rng, self.calls = cv, np.random.default_rng(seed), 0

    def generate(self, prompt_ids, output_tokens, clock):  # type: ignore[no-untyped-def]
        self.calls += 1
        ttft = 100.0 * max(0.05, 1 + self.cv * self.rng.standard_normal())
        tpot = 10.0 * max(0.05, 1 + self.cv * self.rng.standard_normal())
        return [_seq(0, ttft, tpot, output_tokens, prompt_ids.shape[1]) for _ in range(prompt_ids.shape[0])]


def test_call_phases_are_the_batch_ttft_and_mean_gap() -> None:
    assert call_phases_ns([_seq(0, 20, 4, 5), _seq(0, 22, 4, 5)]) == (22 * MS, pytest.approx(4 * MS))
    assert call_phases_ns([_seq(0, 20, 4, 1)]) == (20 * MS, None)


def test_mean_interval_covers_the_true_mean_95_percent_of_the_time_by_simulation() -> None:
    rng = np.random.default_rng(11)
    for n in (3, 8):
        hits = 0
        sims = 4000
        for _ in range(sims):
            x = rng.normal(10.0, 1.0, size=n)
            half = mean_ci_rel_halfwidth(list(x)) * x.mean()
            hits += abs(x.mean() - 10.0) <= half
        assert 0.93 <= hits / sims <= 0.97, (n, hits / sims)
    assert mean_ci_rel_halfwidth([5.0]) is None and mean_ci_rel_halfwidth([4.0, 4.0]) == 0.0


def test_loop_stops_at_min_calls_when_steady_and_runs_on_when_noisy() -> None:
    s = GenerateSettings(warmup_calls=0, min_calls=3, min_duration_s=0.0001, max_duration_s=30.0, max_rel_halfwidth=0.05)
    steady = measure_generation(_ScriptedGen(cv=0.005), 100, 1, 4, 8, s)  # type: ignore[arg-type]
    assert steady.stop_reason == STOP_TIGHT and len(steady.calls) == 3
    assert 0 < steady.rel_halfwidths["ttft"] <= 0.05 and 0 < steady.rel_halfwidths["tpot"] <= 0.05
    noisy = measure_generation(_ScriptedGen(cv=0.2), 100, 1, 4, 8, s)  # type: ignore[arg-type]
    # a t-interval of +-5% at a 20% spread needs about (2 x 0.2 / 0.05)^2 = 64 calls
    assert noisy.stop_reason == STOP_TIGHT and 30 <= len(noisy.calls) <= 150
    assert noisy.rel_halfwidths["ttft"] <= 0.05 and noisy.rel_halfwidths["tpot"] <= 0.05


def test_loop_stops_at_the_time_cap() -> None:
    s = GenerateSettings(warmup_calls=0, min_calls=10**9, min_duration_s=0.01, max_duration_s=0.05)
    m = measure_generation(_FakeGen(), 100, 1, 4, 2, s)  # type: ignore[arg-type]
    assert m.stop_reason == STOP_TIME_CAP and 0.05 <= m.wall_s < 2.0


def test_missing_generative_module_probes_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.GENERATIVE, "openvino", "device_adapters.no_such_module:X")
    p = registry.probe_generative("openvino")
    assert not p.available and "device_adapters.no_such_module" in p.reason
    with pytest.raises(Exception, match="no generative adapter"):
        registry.probe_generative("ort-trt")


# -- llama-tiny on torch ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from hwbench.models.zoo.llama import resolve_llm

    return resolve_llm("llama-tiny", tmp_path_factory.getbasetemp() / "hwbench-cache")


def test_llama_tiny_is_a_cached_hf_folder_with_the_listed_parameter_count(tiny) -> None:  # type: ignore[no-untyped-def]
    from hwbench.models.zoo.llama import BY_NAME, list_llms, resolve_llm

    assert (tiny.path / "config.json").is_file() and list(tiny.path.glob("*.safetensors"))
    assert tiny.random_weights and tiny.builtin and not tiny.has_tokenizer
    assert tiny.parameters == BY_NAME["llama-tiny"].shape.param_count()
    again = resolve_llm("llama-tiny", tiny.path.parents[1])
    assert again.sha256 == tiny.sha256 and again.path == tiny.path  # the cache entry is reused
    listed = {m["name"]: m for m in list_llms()}
    assert listed["llama-135m"]["params"] == 134_515_008  # SmolLM2-135M's count for this shape (tied embeddings)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_torch_generates_exactly_the_requested_tokens_on_one_clock(tiny, precision: str) -> None:  # type: ignore[no-untyped-def]
    cls = registry.load_generative("torch")
    a = cls(AdapterOptions(threads=1))
    assert a.check(tiny, precision, 2, 12, 6) is None
    a.prepare(tiny, precision, 2, 12, 6)
    try:
        ids = random_prompts(tiny.vocab_size, 2, 12, seed=1)
        import time

        before = time.perf_counter_ns()
        out = a.generate(ids, 6, time.perf_counter_ns)
        after = time.perf_counter_ns()
        assert len(out) == 2 and all(t.output_tokens == 6 and t.prompt_tokens == 12 for t in out)
        t = out[0]
        assert before <= t.start_ns < t.token_ns[0] and list(t.token_ns) == sorted(t.token_ns) and t.token_ns[-1] <= after
        assert a.greedy_tokens(ids, 5).shape == (2, 5)
        assert a.prefill_logits(ids).shape == (2, tiny.vocab_size)
        eff = a.effective()
        assert eff.precision == precision and eff.settings["threads"] == 1 and eff.settings["kv_cache"] == "dynamic"
    finally:
        a.close()


def test_torch_check_refuses_what_it_cannot_run(tiny) -> None:  # type: ignore[no-untyped-def]
    a = registry.load_generative("torch")(AdapterOptions())
    assert "context" in a.check(tiny, "fp32", 1, tiny.context_tokens, 1)
    assert "CUDA only" in a.check(tiny, "fp16", 1, 8, 8)
    assert "does not support" in a.check(tiny, "fp8", 1, 8, 8)


def test_torch_cuda_path_or_the_probes_reason(tiny) -> None:  # type: ignore[no-untyped-def]
    import torch

    a = registry.load_generative("torch")(AdapterOptions(device="cuda", threads=1))
    reason = a.check(tiny, "fp32", 1, 8, 4)
    if not torch.cuda.is_available():
        assert reason and "CUDA" in reason
        pytest.skip(f"no GPU: {reason}")
    assert reason is None
    a.prepare(tiny, "fp32", 1, 8, 4)
    import time

    out = a.generate(random_prompts(tiny.vocab_size, 1, 8, 0), 4, time.perf_counter_ns)
    assert out[0].output_tokens == 4 and a.effective().device_kind == "cuda" and a.device_memory_peak_mb() > 0
    a.close()


# -- the CLI ------------------------------------------------------------------------------


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from hwbench.cli import main

    monkeypatch.setattr(sys, "argv", ["hwbench", *args])
    with pytest.raises(SystemExit) as e:
        main()
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


@pytest.mark.parametrize("args, message", [
    (("--prompt-tokens", "600", "--output-tokens", "8"), "exceed llama-tiny's context of 512 tokens"),
    (("--prompt-tokens", "8", "--output-tokens", "0"), "--output-tokens: 0 tokens; give at least 1"),
])
def test_bad_generate_input_is_one_line(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                        capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str) -> None:
    code, _, err = _main(monkeypatch, capsys, "profile", "llama-tiny", "--workload", "generate", *args,
                         "--adapter", "torch", "--out", str(tmp_path), "--quick")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("hwbench: error:") and message in lines[0], err


def test_model_folder_without_config_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    folder = tmp_path / "my-llm"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    code, _, err = _main(monkeypatch, capsys, "profile", str(folder), "--workload", "generate", "--adapter", "torch",
                         "--out", str(tmp_path / "out"), "--quick")
    assert code == 2 and err.strip() == f"hwbench: error: {folder}: no config.json in the model folder"


def test_prompt_tokens_without_generate_is_refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _main(monkeypatch, capsys, "profile", "mlp-tiny", "--prompt-tokens", "8")
    assert code == 2 and "--prompt-tokens goes with --workload generate" in err


def test_cli_generate_end_to_end_json(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess

    env = dict(os.environ, HWBENCH_CACHE=str(tiny.path.parents[1]), COLUMNS="200")
    res = subprocess.run([sys.executable, "-m", "hwbench", "profile", "llama-tiny", "--workload", "generate",
                          "--prompt-tokens", "8", "--output-tokens", "4", "--batch", "2,1", "--precision", "fp32",
                          "--adapter", "torch", "--threads", "1", "--quick", "--no-accuracy", "--out", str(tmp_path),
                          "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    first, rec = sorted(json.loads(res.stdout)["records"], key=lambda r: r["batch_size"])
    assert first["status"] == "ok" and rec["status"] == "ok" and rec["workload"] == "generate", rec["error"]
    # both points ran in one worker on one loaded model, batch 1 first
    assert json.loads(rec["settings"])["group"]["prepared_by"] == first["trial_id"]
    assert rec["prompt_tokens"] == 8 and rec["output_tokens"] == 4 and rec["batch_size"] == 2
    assert rec["prompt_source"] == "random token ids" and rec["random_weights"] is True
    assert 0 < rec["ttft_p50_ms"] <= rec["e2e_p50_ms"] and rec["tpot_p50_ms"] > 0
    assert rec["output_tokens_per_s"] > 0 and rec["n_samples"] % 2 == 0
    assert rec["kv_cache_mb"] == pytest.approx(2 * 2 * 2 * 16 * 12 * 2 * 4 / 2**20)
    assert rec["peak_rss_mb"] > 0 and json.loads(rec["settings"])["kv_cache"] == "dynamic"


def test_an_llm_without_generate_says_how_to_profile_it() -> None:
    from hwbench.errors import ModelError
    from hwbench.models import resolve

    with pytest.raises(ModelError, match="llama-135m is a generative LLM: profile it with --workload generate"):
        resolve("llama-135m")


def test_generate_summary_table_names_token_metrics() -> None:
    from hwbench.cli.genview import render_generate

    rec = {"status": "ok", "model": "m", "adapter": "torch", "precision": "fp32", "batch_size": 1, "prompt_tokens": 8,
           "output_tokens": 4, "ttft_p50_ms": 1.0, "tpot_p50_ms": 2.0, "output_tokens_per_s": 100.0, "invalid_reasons": [],
           "warnings": [], "accuracy_ok": None, "valid": True, "power_method": "none", "random_weights": True,
           "price_usd_per_hour": 3.6}
    table, *notes = render_generate([rec])
    assert [c.header for c in table.columns][5:9] == ["TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms", "TPOT p99 ms"]
    assert list(table.columns[12].cells) == ["10.0"]  # $3.6/h at 100 tokens/s: $10 per 1M output tokens
    assert any("random weights" in n for n in notes)


def test_a_generate_trial_in_process_fills_the_record_and_checks_accuracy(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from hwbench.measure.gentrial import compute_llm_reference, run_generate_trial
    from hwbench.measure.settings import AccuracySettings, SweepConfig
    from hwbench.measure.trial import Trial, TrialContext

    cfg = SweepConfig(models=("llama-tiny",), workload="generate", threads=1, generate=GenerateSettings.quick(),
                      accuracy=AccuracySettings(min_items=4))
    npz = tmp_path / "ref.npz"
    compute_llm_reference(tiny, [8], [2], cfg.generate.greedy_tokens, cfg.accuracy.seed, npz, "", threads=1, sequences=4)
    ctx = TrialContext(run_id="r", config=cfg, cpu_model="cpu", hostname="h", cache_dir="", reference_npz=str(npz))
    trial = Trial("llama-tiny", "torch", "int8", 2, "generate", "generate", prompt_tokens=8, output_tokens=4)
    rec, samples = run_generate_trial(trial, tiny, ctx)
    assert rec.status == "ok", rec.error
    assert rec.trial_id.endswith("__p8__o4__generate") and rec.workload == "generate" and rec.model_sha256 == tiny.sha256
    assert rec.n_samples == 2 * json.loads(rec.settings)["calls"] == 2 * len(samples)
    assert rec.accuracy_ok is not None and rec.acc_cosine > 0.9 and rec.acc_greedy_tokens == cfg.generate.greedy_tokens
    assert 0.0 <= rec.acc_greedy_agreement <= 1.0 and json.loads(rec.settings)["accuracy"]["sequences"] == 4
    assert rec.latency_p50_ms >= rec.e2e_p50_ms * 0.99  # a call lasts as long as its longest sequence
    ref_trial = Trial("llama-tiny", "torch", "fp32", 2, "generate", "generate", prompt_tokens=8, output_tokens=4)
    assert run_generate_trial(ref_trial, tiny, ctx)[0].accuracy_ok is None  # the reference itself is not compared


def test_group_trials_groups_reusable_adapters_by_precision_smallest_first() -> None:
    from hwbench.measure.gentrial import group_trials
    from hwbench.measure.trial import Trial

    def t(adapter: str, precision: str, batch: int, prompt: int) -> Trial:
        return Trial("m", adapter, precision, batch, "generate", "generate", prompt_tokens=prompt, output_tokens=4)

    todo = [t("torch", "fp32", 4, 8), t("torch", "int8", 1, 8), t("openvino", "fp32", 1, 8), t("torch", "fp32", 1, 64),
            t("torch", "fp32", 1, 8), t("openvino", "fp32", 2, 8)]
    groups = group_trials(todo, lambda a: a == "torch")
    assert [[(x.adapter, x.precision, x.batch_size, x.prompt_tokens) for x in g] for g in groups] == [
        [("torch", "fp32", 1, 8), ("torch", "fp32", 4, 8), ("torch", "fp32", 1, 64)],
        [("torch", "int8", 1, 8)], [("openvino", "fp32", 1, 8)], [("openvino", "fp32", 2, 8)]]


def test_a_group_prepares_once_and_reuses_an_identical_accuracy_check(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from hwbench.measure.gentrial import compute_llm_reference, run_generate_trials
    from hwbench.measure.settings import AccuracySettings, SweepConfig
    from hwbench.measure.trial import Trial, TrialContext

    gen = GenerateSettings(warmup_calls=1, min_calls=2, min_duration_s=0.05, max_duration_s=5.0, greedy_tokens=4,
                           accuracy_prompt_tokens=8)
    cfg = SweepConfig(models=("llama-tiny",), workload="generate", threads=1, generate=gen,
                      accuracy=AccuracySettings(min_items=4))
    npz = tmp_path / "ref.npz"
    compute_llm_reference(tiny, [8], [1, 2], gen.greedy_tokens, cfg.accuracy.seed, npz, "", threads=1, sequences=4)
    ctx = TrialContext(run_id="r", config=cfg, cpu_model="cpu", hostname="h", cache_dir="", reference_npz=str(npz))
    trials = [Trial("llama-tiny", "torch", "int8", b, "generate", "generate", prompt_tokens=p, output_tokens=4)
              for b, p in ((1, 8), (2, 8), (1, 12))]
    recs = [r for r, _ in run_generate_trials(trials, tiny, ctx)]
    assert [r.status for r in recs] == ["ok"] * 3, [r.error for r in recs]
    settings = [json.loads(r.settings) for r in recs]
    assert "group" not in settings[0] and settings[1]["group"]["prepared_by"] == trials[0].trial_id
    assert settings[2]["group"]["process_ran_before"] == [trials[0].trial_id, trials[1].trial_id]
    assert recs[0].cold_start_s == recs[2].cold_start_s > 0  # one prepare for the group
    # b1 at prompts 8 and 12 run the same 8-token accuracy prompts: measured once, the same figures
    assert settings[2]["accuracy"]["reused_from"] == trials[0].trial_id and "reused_from" not in settings[1]["accuracy"]
    assert recs[2].acc_cosine == recs[0].acc_cosine and recs[1].acc_cosine is not None
    assert settings[1]["accuracy"]["batch_size"] == 2 and settings[1]["accuracy"]["sequences"] == 4
    assert all(s["stop_rule"]["max_rel_halfwidth"] == gen.max_rel_halfwidth for s in settings)

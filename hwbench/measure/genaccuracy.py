"""The generation accuracy check: each precision against fp32 torch on the same prompts.

The reference job (one per model, hwbench.measure.worker's JOB_LLM_REFERENCE) writes, for each
accuracy prompt length, the prompts themselves, fp32 torch's next-token logits after each and the
first N greedy tokens of the first ones. It runs once per prompt length, not once per batch size:
fp32 logits do not depend on the batch they were computed in beyond rounding (the candidates'
may: dynamic int8 quantizes activations per call, so each candidate runs the prompts in batches
of its own trial's size). The prefill logits of accuracy.min_items sequences (32: one flip is
0.97, as for classifiers), their cosine and tie-aware top-1 agreement (hwbench.measure.accuracy,
the classifiers' rules) gate the point; the greedy continuation's agreement over the first N tokens
(the common prefix's share) is recorded beside them but does not gate: on random weights
near-tied logits make one early flip change every later token.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hwbench.adapter import AdapterOptions
from hwbench.adapter import registry
from hwbench.fsutil import atomic_write
from hwbench.measure.settings import SweepConfig
from hwbench.models.llmspec import LlmSpec
from hwbench.results.schema import TrialRecord, settings_json

if TYPE_CHECKING:
    from hwbench.adapter.generative import GenerativeAdapter
    from hwbench.measure.trial import Trial, TrialContext

REFERENCE_ADAPTER = "torch"
REFERENCE_PRECISION = "fp32"
REFERENCE_BATCH = 8  # rows per reference forward pass (fp32: the batch does not change the logits beyond rounding)
GREEDY_SEQUENCES = 8  # greedy continuations compared per point; logits: accuracy.min_items rows


def is_reference(trial: "Trial") -> bool:
    return trial.adapter == REFERENCE_ADAPTER and trial.precision == REFERENCE_PRECISION


def accuracy_prompt_tokens(prompt_tokens: int, cfg: SweepConfig) -> int:
    return max(1, min(prompt_tokens, cfg.generate.accuracy_prompt_tokens))


def whole_batches(rows: int, batch_size: int) -> int:
    """`rows` rounded up to whole batches: the rows a candidate at this batch size compares."""
    return max(1, math.ceil(rows / batch_size)) * batch_size


def reference_key(prompt_tokens: int, what: str) -> str:
    return f"p{prompt_tokens}_{what}"


def compute_llm_reference(spec: LlmSpec, prompt_lengths: list[int], batch_sizes: list[int], greedy_tokens: int,
                          seed: int, out_npz: Path, cache_dir: str, threads: int = 0, sequences: int = 32) -> None:
    """fp32 torch prompts, prefill logits and greedy tokens for every accuracy prompt length, no pickle.

    Rows cover every candidate's whole batches (32 sequences at batch 3 compare 33 rows)."""
    from hwbench.measure.generation import random_prompts

    rows = max(whole_batches(sequences, b) for b in batch_sizes)
    greedy_rows = max(whole_batches(GREEDY_SEQUENCES, b) for b in batch_sizes)
    cls = registry.load_generative(REFERENCE_ADAPTER)
    adapter = cls(AdapterOptions(cache_dir=cache_dir, threads=threads))
    adapter.prepare(spec, REFERENCE_PRECISION, REFERENCE_BATCH, max(prompt_lengths), greedy_tokens)
    arrays: dict[str, Any] = {}
    for p in sorted(set(prompt_lengths)):
        ids = random_prompts(spec.vocab_size, max(rows, greedy_rows), p, seed + p)
        chunks = range(0, len(ids), REFERENCE_BATCH)
        arrays[reference_key(p, "ids")] = ids
        arrays[reference_key(p, "logits")] = np.concatenate(
            [adapter.prefill_logits(ids[i:i + REFERENCE_BATCH]).astype(np.float32) for i in chunks])
        arrays[reference_key(p, "greedy")] = np.concatenate(
            [adapter.greedy_tokens(ids[i:min(i + REFERENCE_BATCH, greedy_rows)], greedy_tokens)
             for i in range(0, greedy_rows, REFERENCE_BATCH)])
    adapter.close()
    atomic_write(out_npz, lambda fh: np.savez(fh, **arrays))


def greedy_agreement(ref: np.ndarray, cand: np.ndarray) -> float:
    """Mean over rows of the common prefix's length / N: 1.0 when every greedy token matches."""
    ref, cand = np.asarray(ref), np.asarray(cand)
    n = ref.shape[1]
    same = ref == cand
    prefix = np.where(same.all(axis=1), n, np.argmin(same, axis=1))
    return float(np.mean(prefix / n))


def measure_accuracy(adapter: "GenerativeAdapter", batch_size: int, prompt_tokens: int, cfg: SweepConfig,
                     reference_npz: str) -> dict[str, Any] | None:
    """The record's accuracy columns and settings entry for one (batch, accuracy prompt) point, None
    when the reference lacks it. Deterministic for a prepared model: a group's trials share it."""
    from hwbench.measure.accuracy import compare_outputs

    n = cfg.generate.greedy_tokens
    b = batch_size
    with np.load(reference_npz, allow_pickle=False) as ref:
        keys = [reference_key(prompt_tokens, w) for w in ("ids", "logits", "greedy")]
        if any(k not in ref for k in keys):
            return None
        ids, logits, greedy = (ref[k] for k in keys)
    rows, greedy_rows = whole_batches(cfg.accuracy.min_items, b), whole_batches(GREEDY_SEQUENCES, b)
    if rows > len(ids) or greedy_rows > len(greedy) or greedy.shape[1] != n:
        return None
    refs = [logits[i:i + b] for i in range(0, rows, b)]
    cands = [adapter.prefill_logits(ids[i:i + b]) for i in range(0, rows, b)]
    cand_greedy = np.concatenate([adapter.greedy_tokens(ids[i:i + b], n) for i in range(0, greedy_rows, b)])
    result = compare_outputs(refs, cands, "classification", cfg.accuracy)
    return {
        "columns": {"accuracy_ok": bool(result.ok), "acc_max_abs_err": result.max_abs_err,
                    "acc_mean_rel_err": result.mean_rel_err, "acc_cosine": result.cosine,
                    "acc_top1_agreement": result.top1_agreement,
                    "acc_greedy_agreement": greedy_agreement(greedy[:greedy_rows], cand_greedy), "acc_greedy_tokens": n},
        "settings": {"reasons": list(result.reasons), "notes": list(result.notes), "prompt_tokens": prompt_tokens,
                     "sequences": rows, "greedy_sequences": greedy_rows, "batch_size": b,
                     "reference": f"{REFERENCE_ADAPTER} {REFERENCE_PRECISION}",
                     "top1_agreement_tie_aware": result.top1_agreement_tie_aware},
    }


def apply_accuracy(rec: TrialRecord, acc: dict[str, Any], reused_from: str | None = None) -> None:
    """Copy a measure_accuracy result onto the record (reused_from: the trial of the group that measured it)."""
    for k, v in acc["columns"].items():
        setattr(rec, k, v)
    settings = json.loads(rec.settings)
    settings["accuracy"] = {**acc["settings"], **({"reused_from": reused_from} if reused_from else {})}
    rec.settings = settings_json(settings)


def reference_job(runner: Any, spec: LlmSpec, trials: list["Trial"]) -> dict[str, Any] | None:
    """The fp32 torch reference job for `spec`'s trials (None when torch cannot run here)."""
    from hwbench.measure.worker import JOB_LLM_REFERENCE
    from hwbench.results.store import safe_name

    if not runner._probe(REFERENCE_ADAPTER).available:
        runner.notes.append("generation accuracy not checked: the fp32 reference needs the torch generation adapter")
        return None
    cfg = runner.config
    lengths = sorted({accuracy_prompt_tokens(t.prompt_tokens, cfg) for t in trials})
    batches = sorted({t.batch_size for t in trials})
    out = runner.run_dir / "reference" / f"{safe_name(spec.name)}-{spec.sha256[:16]}-generate.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    return {"kind": JOB_LLM_REFERENCE, "workload": "generate", "model_spec": spec.to_json(), "prompt_lengths": lengths,
            "batch_sizes": batches, "greedy_tokens": cfg.generate.greedy_tokens, "seed": cfg.accuracy.seed,
            "out_npz": str(out), "sequences": cfg.accuracy.min_items,
            "cache_dir": str(runner._cache_dir()), "threads": cfg.threads}


def reference_for(ctx: "TrialContext", trial: "Trial") -> str | None:
    """The reference file a candidate trial is checked against, or None (disabled, the reference itself, none)."""
    if not ctx.config.accuracy.enabled or is_reference(trial) or not ctx.reference_npz:
        return None
    return ctx.reference_npz

"""Output drift of a candidate precision against the fp32 reference, and the pass/fail verdict.

The reference is the fp32 ONNX Runtime run of the same model on the same generated
inputs; the candidate is an adapter's outputs at the precision under test. Metrics,
all computed in float64 per output and then reduced to the worst output:

  max_abs_err     max |ref - cand| over every element. Scale-dependent, so reported, not judged.
  mean_rel_err    mean |ref - cand| / (mean |ref| + eps): the average error relative to the
                  average magnitude of the reference. Unlike a per-element |a-b|/|a| it does not
                  blow up on reference values near zero (ReLU outputs, logits around 0). Worst output.
  cosine          cosine similarity of the flattened outputs (1.0 = same direction). Worst output.
  top1_agreement  classifiers only: the share of rows whose argmax over the last axis agrees,
                  pooled over every row of every array (so a caller may pass one array per batch).

A point is ok when cosine >= min_cosine, mean_rel_err <= max_mean_rel_err and, for
classifiers, the tie-aware top-1 agreement >= min_top1_agreement; otherwise each failed
threshold is named in `reasons`. Non-finite candidate values and shape mismatches fail
outright.

Tie-aware top-1: a row whose argmax differs still agrees when the reference's logits for
the two classes differ by less than TOP1_TIE_FRACTION of that row's logit standard
deviation. Random-weight classifiers have near-tied top classes by construction: measured
here, ResNet-50 fp16 on OpenVINO (cosine 0.9999999) flipped one row of eight whose top two
logits differed by 0.0017 with a logit std of 2.6; at that scale one bf16 rounding step is
0.016. Such a flip says nothing about the precision, so it is reported (top1_agreement
stays strict, and `notes` names it) but not held against the point.

A saturating int8 kernel (u8 x s8 pairs clamped to int16 on x86 without VNNI) is caught by
mean_rel_err: emulated on mlp-tiny it reaches 0.11 against 0.04 exact, while cosine stays at
0.992 (tests/test_int8_saturation.py).

`outputs_in_batches` (hwbench.adapter.kit, re-exported here) lets an adapter compiled for one static batch size produce outputs
for any number of rows, so the accuracy check runs the very artefact that was timed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwbench.adapter.kit import outputs_in_batches  # noqa: F401 - moved to the adapter kit; kept importable here
from hwbench.measure.settings import AccuracySettings

EPS = 1e-12
TOP1_TIE_FRACTION = 0.01  # of the reference row's logit std: about one bf16 step at typical logit scales


@dataclass(frozen=True)
class AccuracyResult:
    """Drift metrics of one candidate against the reference; None where not computable."""

    ok: bool
    max_abs_err: float | None
    mean_rel_err: float | None
    cosine: float | None
    top1_agreement: float | None  # strict argmax agreement; None unless task == "classification"
    reasons: list[str] = field(default_factory=list)  # each failed threshold, named
    top1_agreement_tie_aware: float | None = None  # what the verdict uses (near-ties count as agreement)
    notes: list[str] = field(default_factory=list)  # informational: flips excused as near-ties


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na = float(np.linalg.norm(a))
    nb = float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0  # both all-zero: identical
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def _top1_counts(ref: np.ndarray, cand: np.ndarray) -> tuple[int, int, list[float]]:
    """(rows whose argmax over the last axis agrees, rows, reference margins / std of near-tie flips)."""
    if ref.ndim == 0:
        return int(np.array_equal(ref, cand)), 1, []
    ref2 = ref.reshape(-1, ref.shape[-1])
    r = np.argmax(ref2, axis=-1)
    c = np.argmax(cand.reshape(-1, cand.shape[-1]), axis=-1)
    ties: list[float] = []
    for i in np.flatnonzero(r != c):
        std = float(ref2[i].std())
        margin = float(ref2[i, r[i]] - ref2[i, c[i]])
        if std > 0 and margin < TOP1_TIE_FRACTION * std:
            ties.append(margin / std)
    return int(np.count_nonzero(r == c)), int(r.size), ties


def _failed(reasons: list[str]) -> AccuracyResult:
    return AccuracyResult(False, None, None, None, None, reasons)


def compare_outputs(
    reference: list[np.ndarray],
    candidate: list[np.ndarray],
    task: str,
    settings: AccuracySettings,
) -> AccuracyResult:
    """Compare candidate outputs with the reference's, output by output, and judge the drift."""
    if len(reference) != len(candidate):
        return _failed([f"candidate has {len(candidate)} outputs, reference has {len(reference)}"])
    if not reference:
        return _failed(["no outputs to compare"])
    max_abs = 0.0
    rel = 0.0
    cos = 1.0
    agree = rows = 0
    ties: list[float] = []
    for k, (ref_raw, cand_raw) in enumerate(zip(reference, candidate)):
        ref = np.asarray(ref_raw, dtype=np.float64)
        cand = np.asarray(cand_raw, dtype=np.float64)
        if ref.shape != cand.shape:
            return _failed([f"output {k}: candidate shape {cand.shape} != reference shape {ref.shape}"])
        if not np.all(np.isfinite(cand)):
            bad = int(np.size(cand) - np.count_nonzero(np.isfinite(cand)))
            return _failed([f"output {k}: {bad} non-finite values (nan/inf) in the candidate"])
        if ref.size == 0:
            continue
        diff = np.abs(ref - cand)
        max_abs = max(max_abs, float(diff.max()))
        rel = max(rel, float(diff.mean() / (np.abs(ref).mean() + EPS)))
        cos = min(cos, _cosine(ref.ravel(), cand.ravel()))
        if task == "classification":
            a, n, t = _top1_counts(ref, cand)
            agree, rows = agree + a, rows + n
            ties += t

    classifier = task == "classification" and rows > 0
    top1 = agree / rows if classifier else None
    top1_tie = (agree + len(ties)) / rows if classifier else None
    reasons: list[str] = []
    notes: list[str] = []
    if cos < settings.min_cosine:
        reasons.append(f"cosine {cos:.5f} < min_cosine {settings.min_cosine}")
    if rel > settings.max_mean_rel_err:
        reasons.append(f"mean_rel_err {rel:.4g} > max_mean_rel_err {settings.max_mean_rel_err}")
    if top1_tie is not None and top1_tie < settings.min_top1_agreement:
        reasons.append(
            f"top1_agreement {top1_tie:.3f} (near-ties counted as agreement; strict {top1:.3f}) "
            f"< min_top1_agreement {settings.min_top1_agreement}"
        )
    if ties:
        worst = max(ties)
        notes.append(
            f"{len(ties)} of {rows} top-1 flips were near-ties (reference margin at most {worst:.2%} of the "
            f"row's logit std, under {TOP1_TIE_FRACTION:.0%}) and were not counted against the point"
        )
    return AccuracyResult(not reasons, max_abs, rel, cos, top1, reasons, top1_tie, notes)

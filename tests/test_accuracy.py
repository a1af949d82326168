"""Drift metrics against hand-computed cases, the verdict's thresholds, and batch slicing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hwbench.measure.accuracy import compare_outputs, outputs_in_batches
from hwbench.measure.settings import AccuracySettings

DEFAULTS = AccuracySettings()


def test_hand_computed_metrics() -> None:
    ref = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    cand = np.array([[1.0, 2.5], [3.0, 4.0]], dtype=np.float32)
    r = compare_outputs([ref], [cand], "classification", DEFAULTS)
    assert r.max_abs_err == pytest.approx(0.5)
    assert r.mean_rel_err == pytest.approx(0.125 / 2.5)  # mean |diff| / mean |ref|
    assert r.cosine == pytest.approx(31.0 / math.sqrt(30.0 * 32.25))
    assert r.top1_agreement == 1.0
    assert r.ok and r.reasons == []


def test_identical_outputs_are_perfect() -> None:
    ref = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    r = compare_outputs([ref], [ref.copy()], "classification", DEFAULTS)
    assert (r.max_abs_err, r.mean_rel_err, r.top1_agreement) == (0.0, 0.0, 1.0)
    assert r.cosine == pytest.approx(1.0)
    assert r.ok


def test_top1_is_pooled_over_rows_of_every_array() -> None:
    # one array per batch of one row, as a caller with batch size 1 passes them
    refs = [np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]]), np.array([[3.0, 0.0]])]
    cands = [np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]]), np.array([[3.0, 0.0]])]
    r = compare_outputs(refs, cands, "classification", AccuracySettings(min_cosine=-1.0, max_mean_rel_err=10.0))
    assert r.top1_agreement == pytest.approx(0.75)
    assert not r.ok and any("top1_agreement" in x for x in r.reasons)


def test_near_tie_flips_are_reported_but_not_held_against_the_point() -> None:
    # row 0: top two logits 3.000 and 2.999 (margin 0.001, row std about 1.4): a tie at any low precision
    ref = np.array([[3.0, 2.999, 0.0, -1.0], [0.0, 3.0, 1.0, -1.0]])
    cand = np.array([[2.999, 3.0, 0.0, -1.0], [0.0, 3.0, 1.0, -1.0]])
    r = compare_outputs([ref], [cand], "classification", DEFAULTS)
    assert r.top1_agreement == 0.5 and r.top1_agreement_tie_aware == 1.0
    assert r.ok and r.reasons == []
    assert r.notes and "near-ties" in r.notes[0]
    decisive = np.array([[1.0, 0.0, 3.0, -1.0], [0.0, 3.0, 1.0, -1.0]])  # picks a class 3.0 below: a real flip
    d = compare_outputs([ref], [decisive], "classification", AccuracySettings(min_cosine=0.0, max_mean_rel_err=1.0))
    assert d.top1_agreement == d.top1_agreement_tie_aware == 0.5
    assert not d.ok and "strict 0.500" in d.reasons[0] and d.notes == []


def test_top1_only_for_classifiers() -> None:
    ref = np.ones((2, 3))
    assert compare_outputs([ref], [ref], "encoder", DEFAULTS).top1_agreement is None


def test_worst_output_is_reported() -> None:
    good = np.arange(1.0, 9.0).reshape(2, 4)
    bad_ref = np.arange(1.0, 9.0).reshape(2, 4)
    bad_cand = bad_ref.copy()
    bad_cand[0, 0] = -20.0
    r = compare_outputs([good, bad_ref], [good, bad_cand], "generic", DEFAULTS)
    assert r.max_abs_err == pytest.approx(21.0)
    assert r.mean_rel_err == pytest.approx((21.0 / 8) / 4.5)
    assert r.cosine < 0.99 and not r.ok


def test_relative_error_survives_zero_reference_values() -> None:
    ref = np.zeros((2, 8))
    ref[:, 0] = 10.0  # mostly exact zeros, as after a ReLU
    cand = ref + 1e-4
    r = compare_outputs([ref], [cand], "generic", DEFAULTS)
    assert r.mean_rel_err == pytest.approx(1e-4 / (10.0 / 8))
    assert r.ok


def test_noise_and_garbage_fail_with_named_thresholds() -> None:
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((16, 100)).astype(np.float32)
    noisy = ref + rng.standard_normal(ref.shape).astype(np.float32) * 0.5
    r = compare_outputs([ref], [noisy], "classification", DEFAULTS)
    assert not r.ok
    assert any("cosine" in x for x in r.reasons)
    assert any("mean_rel_err" in x for x in r.reasons)
    garbage = rng.standard_normal(ref.shape).astype(np.float32)
    g = compare_outputs([ref], [garbage], "classification", DEFAULTS)
    assert not g.ok and len(g.reasons) == 3  # cosine, relative error and top-1 all fail
    assert g.top1_agreement is not None and g.top1_agreement < 0.5


def test_small_drift_passes_default_thresholds() -> None:
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((8, 1000)).astype(np.float32)
    cand = ref * (1 + rng.standard_normal(ref.shape).astype(np.float32) * 1e-3)  # bf16-like rounding
    assert compare_outputs([ref], [cand], "generic", DEFAULTS).ok


def test_non_finite_and_shape_mismatch_fail_outright() -> None:
    ref = np.ones((2, 3), dtype=np.float32)
    nan = ref.copy()
    nan[1, 2] = np.nan
    r = compare_outputs([ref], [nan], "generic", DEFAULTS)
    assert not r.ok and "non-finite" in r.reasons[0] and r.cosine is None
    s = compare_outputs([ref], [np.ones((3, 2))], "generic", DEFAULTS)
    assert not s.ok and "shape" in s.reasons[0]
    c = compare_outputs([ref, ref], [ref], "generic", DEFAULTS)
    assert not c.ok and "outputs" in c.reasons[0]


def test_cosine_edge_cases() -> None:
    zeros = np.zeros((1, 4))
    assert compare_outputs([zeros], [zeros], "generic", DEFAULTS).cosine == 1.0
    assert compare_outputs([zeros + 1], [zeros], "generic", DEFAULTS).cosine == 0.0
    assert compare_outputs([zeros + 1], [zeros - 1], "generic", DEFAULTS).cosine == pytest.approx(-1.0)


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, (3, 5), elements=st.floats(-1e3, 1e3, allow_nan=False)),
    st.floats(0.1, 100.0),
)
def test_cosine_ignores_positive_scale(ref: np.ndarray, scale: float) -> None:
    assume(np.abs(ref).mean() > 1e-3)
    r = compare_outputs([ref], [ref * scale], "generic", DEFAULTS)
    assert r.cosine == pytest.approx(1.0, abs=1e-9)
    assert r.mean_rel_err == pytest.approx(abs(scale - 1.0), rel=1e-6, abs=1e-9)


def test_outputs_in_batches_pads_and_trims() -> None:
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    seen: list[int] = []

    def infer(chunk: dict[str, np.ndarray]) -> list[np.ndarray]:
        seen.append(chunk["x"].shape[0])
        return [chunk["x"] * 2, chunk["x"].sum(axis=1, keepdims=True)]

    out = outputs_in_batches(infer, {"x": x}, 2)
    assert seen == [2, 2, 2]  # the last slice of one row was padded to two
    np.testing.assert_array_equal(out[0], x * 2)
    np.testing.assert_array_equal(out[1], x.sum(axis=1, keepdims=True))
    with pytest.raises(ValueError):
        outputs_in_batches(infer, {"x": x, "y": x[:3]}, 2)

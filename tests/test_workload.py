"""Input generation (hwbench.models.workload): dtypes, shapes, value ranges, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwbench.errors import UsageError
from hwbench.models.spec import InputSpec, ModelSpec
from hwbench.models.workload import DEFAULT_VOCAB, make_calibration_set, make_inputs


def _spec(*inputs: InputSpec, vocab: int | None = 30522) -> ModelSpec:
    return ModelSpec(name="m", onnx_path=Path("m.onnx"), sha256="0" * 64, inputs=inputs, outputs=("y",), vocab_size=vocab)


BERT = _spec(
    InputSpec("input_ids", "int64", (-1, 128), "token_ids"),
    InputSpec("attention_mask", "int64", (-1, 128), "mask"),
    InputSpec("token_type_ids", "int64", (-1, 128), "token_types"),
)
IMAGE = _spec(InputSpec("pixel_values", "float32", (-1, 3, 32, 32)), vocab=None)


def test_bert_inputs_dtypes_shapes_and_ranges() -> None:
    feed = make_inputs(BERT, 8)
    assert list(feed) == ["input_ids", "attention_mask", "token_type_ids"]
    for name, arr in feed.items():
        assert arr.dtype == np.int64 and arr.shape == (8, 128) and arr.flags.c_contiguous, name
    ids = feed["input_ids"]
    assert ids.min() >= 0 and ids.max() < 30522 and len(np.unique(ids)) > 500  # spread over the vocab
    assert (feed["attention_mask"] == 1).all() and (feed["token_type_ids"] == 0).all()


def test_float_data_is_standard_normal() -> None:
    x = make_inputs(IMAGE, 16)["pixel_values"]
    assert x.dtype == np.float32 and x.shape == (16, 3, 32, 32) and x.flags.c_contiguous
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1.0) < 0.02


def test_deterministic_per_seed_and_independent_per_input() -> None:
    a, b, c = make_inputs(BERT, 4, seed=0), make_inputs(BERT, 4, seed=0), make_inputs(BERT, 4, seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["input_ids"], c["input_ids"])
    # adding an input leaves the others' values unchanged
    wider = _spec(*IMAGE.inputs, InputSpec("extra", "float32", (-1, 5)), vocab=None)
    assert np.array_equal(make_inputs(IMAGE, 2)["pixel_values"], make_inputs(wider, 2)["pixel_values"])


def test_calibration_set_is_deterministic_and_disjoint_from_measurement() -> None:
    cal = make_calibration_set(IMAGE, 2, n=3)
    assert len(cal) == 3 and all(c["pixel_values"].shape == (2, 3, 32, 32) for c in cal)
    again = make_calibration_set(IMAGE, 2, n=3)
    assert all(np.array_equal(x["pixel_values"], y["pixel_values"]) for x, y in zip(cal, again))
    timed = make_inputs(IMAGE, 2, seed=1)["pixel_values"]
    batches = [c["pixel_values"] for c in cal]
    assert not any(np.array_equal(timed, b) for b in batches)
    assert not np.array_equal(batches[0], batches[1])


def test_narrow_dtypes_and_missing_vocab() -> None:
    spec = _spec(
        InputSpec("ids", "int8", (-1, 64), "token_ids"),
        InputSpec("ids_wide", "int32", (-1, 64), "token_ids"),
        InputSpec("pad_mask", "bool", (-1, 64), "mask"),
        InputSpec("flags", "bool", (-1, 64), "data"),
        InputSpec("half", "float16", (-1, 7), "data"),
        vocab=None,
    )
    feed = make_inputs(spec, 32)
    assert feed["ids"].dtype == np.int8 and 0 <= feed["ids"].min() and feed["ids"].max() <= 127
    assert feed["ids_wide"].dtype == np.int32 and feed["ids_wide"].max() < DEFAULT_VOCAB
    assert feed["pad_mask"].dtype == np.bool_ and feed["pad_mask"].all()
    assert feed["flags"].dtype == np.bool_ and 0 < feed["flags"].mean() < 1
    assert feed["half"].dtype == np.float16 and feed["half"].shape == (32, 7)


@pytest.mark.parametrize("batch", [0, -1, 1.5, True])
def test_bad_batch_sizes_raise(batch: object) -> None:
    with pytest.raises(UsageError):
        make_inputs(IMAGE, batch)  # type: ignore[arg-type]


def test_bad_seed_count_and_unresolved_dims_raise() -> None:
    with pytest.raises(UsageError):
        make_inputs(IMAGE, 1, seed=-1)
    with pytest.raises(UsageError):
        make_calibration_set(IMAGE, 1, n=0)
    with pytest.raises(UsageError, match="unresolved"):
        make_inputs(_spec(InputSpec("x", "float32", (-1, -1))), 1)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 4),
    tail=st.lists(st.integers(1, 5), max_size=3),
    dtype=st.sampled_from(["float32", "float16", "int64", "int32", "uint8", "bool"]),
    vocab=st.integers(1, 300),
    seed=st.integers(0, 2**32),
)
def test_any_input_gets_its_exact_shape_dtype_and_range(batch: int, tail: list[int], dtype: str, vocab: int, seed: int) -> None:
    kind = "token_ids" if dtype.startswith(("int", "uint")) else "data"
    spec = _spec(InputSpec("x", dtype, (-1, *tail), kind), vocab=vocab)
    x = make_inputs(spec, batch, seed=seed)["x"]
    assert x.dtype == np.dtype(dtype) and x.shape == (batch, *tail) and x.flags.c_contiguous
    if kind == "token_ids":
        assert x.size == 0 or (0 <= x.min() and x.max() < vocab)
    assert np.array_equal(x, make_inputs(spec, batch, seed=seed)["x"])

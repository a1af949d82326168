"""The workload: input batches built before timing starts (LoadGen's sample library).

Arrays are C-contiguous, of each input's exact dtype, and a pure function of
(model inputs, batch size, seed): every input draws from its own stream, keyed by
the seed and a stable hash of its name, so adding an input never changes another's
values. By kind (hwbench.models.onnx_io.classify):
  data         float: standard normal; bool: fair coin; integer: uniform in [0, vocab)
  token_ids    uniform in [0, vocab_size) (capped by the dtype's range)
  mask         ones: every position attends
  token_types  zeros: one segment
Calibration batches come from a separate stream, so int8 calibration never sees the
batches that are later timed and checked.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from hwbench.errors import UsageError
from hwbench.models.spec import InputSpec, ModelSpec

DEFAULT_VOCAB = 1000  # token-id range when a spec carries no vocab size
_MEASURE_STREAM, _CALIBRATION_STREAM = 0, 1


def _array(spec: InputSpec, shape: tuple[int, ...], vocab_size: int, rng: np.random.Generator) -> np.ndarray:
    dtype = np.dtype(spec.dtype)
    if spec.kind == "mask":
        return np.ones(shape, dtype=dtype)
    if spec.kind == "token_types":
        return np.zeros(shape, dtype=dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        high = min(vocab_size, int(np.iinfo(dtype).max) + 1)
        return rng.integers(0, high, size=shape, dtype=dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
    raise UsageError(f"input {spec.name!r} has dtype {spec.dtype}, which hwbench cannot generate")


def _batch(
    inputs: Sequence[InputSpec], vocab_size: int | None, batch_size: int, entropy: tuple[int, ...]
) -> dict[str, np.ndarray]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch size must be a positive integer, got {batch_size!r}")
    if any(isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in entropy):
        raise UsageError(f"seed must be a non-negative integer, got {entropy[1]!r}")
    vocab = vocab_size or DEFAULT_VOCAB
    out: dict[str, np.ndarray] = {}
    for spec in inputs:
        shape = spec.with_batch(batch_size)
        if any(d < 1 for d in shape):
            raise UsageError(f"input {spec.name!r} has an unresolved dim in {shape}; resolve the model first")
        rng = np.random.default_rng(np.random.SeedSequence([*entropy, zlib.crc32(spec.name.encode())]))
        out[spec.name] = np.ascontiguousarray(_array(spec, shape, vocab, rng))
    return out


def make_inputs(spec: ModelSpec, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One batch for every model input, deterministic for (spec inputs, batch_size, seed)."""
    return _batch(spec.inputs, spec.vocab_size, batch_size, (_MEASURE_STREAM, seed))


def make_calibration_set(spec: ModelSpec, batch_size: int, n: int, seed: int = 1) -> list[dict[str, np.ndarray]]:
    """`n` batches for int8 calibration, drawn from a stream disjoint from make_inputs'."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UsageError(f"calibration set size must be a positive integer, got {n!r}")
    return [_batch(spec.inputs, spec.vocab_size, batch_size, (_CALIBRATION_STREAM, seed, i)) for i in range(n)]

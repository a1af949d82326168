"""Arrow tables of records as one pandas DataFrame that costs bytes per value held, not per cell.

A store of a million records has some hundred columns, most of them empty for most records (the
server, generation and endpoint columns of an inference record, say). Converted naively, each empty
numeric column is 8 MB of NaN and each list column a million small NumPy arrays. `lean_frame` gives
the DataFrame `pa.concat_tables(parts).to_pandas()` would (same columns, dtypes and values) at a
fraction of the memory:

  * a column with no value at all is built once per kind and shared: every empty numeric column is
    a view of one NaN Series (float64, as pandas shows an integer column with nulls), and every
    empty boolean or list column a view of one all-None object Series, set column by column so
    that pandas' copy-on-write knows of the sharing and copies a column the first time it is
    written to; every empty text column wraps one all-null Arrow string array (immutable: a
    write replaces it). The sharing is never visible;
  * text columns may come dictionary-encoded (as the consolidated store file and, for the load,
    the run folders are read). A low-cardinality one (model, adapter, host, run_id...: at most
    SHARE_MAX distinct values per row) becomes one Python str per distinct value, shared by its rows:
    8 bytes a row instead of Arrow's 8-byte offset plus the text. It keeps the dtype pandas gives a
    text column (pandas 3's `str`, in its python-storage form, same missing value; pandas 2's
    object), so fillna, where, +, comparisons and groupby behave exactly as on `to_pandas()`'s
    column: no categorical, whose new-value assignments raise. Any other text column is decoded
    alone, just before pandas takes it, so only one column is ever held twice;
  * a list column (invalid_reasons, warnings...) holds one NumPy array per distinct list, shared by the
    rows that have it, instead of one per row (nobody mutates a record's reasons in place);
  * the rest converts as `to_pandas(split_blocks=True, self_destruct=True)` does, freeing each Arrow
    column as it goes, so the peak is about the frame, not the frame plus the tables.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_SEP = "\x1f"  # joins a list's items into one dictionary key: a unit separator never appears in a reason
SHARE_MAX = 0.05  # a dictionary-encoded text column with at most this many distinct values per row shares its strings


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _as_objects(t: pa.DataType) -> bool:
    """A type pandas shows as an object column of None when it holds no value (booleans, lists)."""
    return pa.types.is_boolean(t) or pa.types.is_list(t) or pa.types.is_large_list(t)


def empty_column(t: pa.DataType, n: int, shared: dict[str, pa.Array]) -> pa.Array:
    """An all-null column of `t` and length `n`, from `shared` (built once per kind) where pandas keeps it as is."""
    if _numeric(t) or _as_objects(t):  # an object column: a stand-in, replaced by the shared None Series
        if "nan" not in shared:  # no validity bitmap: to_pandas takes the NaN buffer without a copy
            shared["nan"] = pa.Array.from_buffers(pa.float64(), n, [None, pa.py_buffer(np.full(n, np.nan))])
        return shared["nan"]
    if _text(t):
        if "str" not in shared:
            shared["str"] = pa.nulls(n, pa.large_string())  # pandas' str dtype wraps it without a copy
        return shared["str"]
    return pa.nulls(n, t)


def _chunks(parts: Sequence[pa.Table], name: str, t: pa.DataType) -> pa.ChunkedArray:
    """Column `name` across `parts` as one chunked array of `t` (a part without it: nulls; dictionaries decoded)."""
    out = []
    for p in parts:
        if name not in p.column_names:
            out.append(pa.nulls(p.num_rows, t))
            continue
        col = p[name]
        out.extend(col.cast(t).chunks if not col.type.equals(t) else col.chunks)
    return pa.chunked_array(out, t)


def _text_chunks(parts: Sequence[pa.Table], name: str) -> list[pa.Array]:
    """Text column `name` across `parts` as its chunks, each as it came (dictionary-encoded or not), nulls for a
    part without it."""
    out: list[pa.Array] = []
    for p in parts:
        out.extend(p[name].chunks if name in p.column_names else [pa.nulls(p.num_rows, pa.large_string())])
    return out


def _list_objects(col: pa.ChunkedArray) -> np.ndarray:
    """A list<string> column as an object array of NumPy arrays, one array per distinct list."""
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    n = len(arr)
    out = np.empty(n, dtype=object)
    if n == 0:
        return out
    valid = pc.is_valid(arr).to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(arr).fill_null(0)
    if pc.max(lengths).as_py() == 0:  # every list empty (the usual case for warnings): one shared empty array
        out[:] = [np.array([], dtype=object)]
        out[~valid] = None
        return out
    keys = pc.binary_join(arr, _SEP).fill_null("")
    # an empty list and [""] would share a key: tell them apart by length
    keys = pc.binary_join_element_wise(pc.cast(lengths, pa.string()), keys, _SEP)
    codes = pc.dictionary_encode(keys).indices.to_numpy(zero_copy_only=False)
    first = np.unique(codes, return_index=True)[1]
    uniques = np.empty(len(first), dtype=object)
    for code, row in enumerate(first):
        items = arr[int(row)].as_py()
        uniques[code] = np.array(items if items is not None else [], dtype=object)
    out[:] = uniques[codes]
    out[~valid] = None
    return out


@functools.cache
def _text_dtype() -> Any:
    """The dtype a column of shared Python strings takes: the one `to_pandas` gives a text column in this
    pandas (pandas 3's str, as its python-storage twin with the same missing value; object before it), or
    None where that is neither (then text columns are decoded by Arrow as before)."""
    got = pa.array(["x", None], pa.large_string()).to_pandas().dtype
    if got == np.dtype(object):
        return np.dtype(object)
    if isinstance(got, pd.StringDtype) and getattr(got, "storage", "") == "pyarrow":
        try:
            return pd.StringDtype("python", na_value=got.na_value)
        except TypeError:  # a pandas without the na_value keyword
            return None
    return None


def _shared_text(chunks: list[pa.Array], n: int) -> Any:
    """A text column's `chunks` (dictionary-encoded, or with no value) as pandas values holding one Python str
    per distinct value, shared by the rows that have it; None when the column is not low-cardinality
    dictionary text (then Arrow decodes it)."""
    dtype = _text_dtype()
    if dtype is None or not chunks:
        return None
    coded = [pa.types.is_dictionary(c.type) for c in chunks]
    if not all(d or c.null_count == len(c) for d, c in zip(coded, chunks)):
        return None
    if sum(len(c.dictionary) for d, c in zip(coded, chunks) if d) > max(1.0, SHARE_MAX * n):
        return None
    missing = None if dtype == np.dtype(object) else dtype.na_value
    slot: dict[str, int] = {}  # each distinct value's place in `values`, across chunks (each has its own dictionary)
    codes = []
    for d, c in zip(coded, chunks):
        if not d or c.null_count == len(c):
            codes.append(np.zeros(len(c), dtype=np.int32))
            continue
        local = np.array([0 if v is None else slot.setdefault(v, len(slot) + 1) for v in c.dictionary.to_pylist()]
                         + [0], dtype=np.int32)  # a chunk's dictionary index -> its value's slot; null -> 0
        idx = c.indices if pa.types.is_int32(c.indices.type) else c.indices.cast(pa.int32())
        codes.append(local[(pc.fill_null(idx, len(c.dictionary)) if idx.null_count else idx).to_numpy()])
    values = np.empty(len(slot) + 1, dtype=object)
    values[:] = [missing, *slot]
    out = values[codes[0] if len(codes) == 1 else np.concatenate(codes)]  # one str object per value, shared
    if dtype == np.dtype(object):
        return out
    cls = dtype.construct_array_type()
    try:  # every value is one of the dictionary's str or the missing value: the per-row check is not needed
        return cls._simple_new(out, dtype)
    except (AttributeError, TypeError):  # a private pandas API: another pandas may lack or reshape it
        return cls._from_sequence(out, dtype=dtype)


def _is_empty(parts: Sequence[pa.Table], name: str) -> bool:
    return all(name not in p.column_names or p[name].null_count == p.num_rows for p in parts)


def _drop(parts: list[pa.Table], names: Iterable[str]) -> None:
    """Drop `names` from every part in place: the list holds the only references, so their buffers go."""
    names = set(names)
    for i, p in enumerate(parts):
        gone = [n for n in p.column_names if n in names]
        if gone:
            parts[i] = p.drop_columns(gone)


def lean_frame(parts: list[pa.Table] | pa.Table, schema: pa.Schema, empty: Iterable[str] = ()) -> pd.DataFrame:
    """`parts` (tables with `schema`'s columns, some maybe missing or dictionary-encoded) as one DataFrame
    with `schema`'s columns in its order. `empty` names columns known to hold no value; any other empty
    column is found by its null count, which Arrow keeps, so finding it costs nothing. A list given is
    emptied as its columns are converted (pass the only reference to keep the peak low)."""
    if isinstance(parts, pa.Table):
        parts = [parts]
    n = sum(p.num_rows for p in parts)
    empty = set(empty) | {f.name for f in schema if _is_empty(parts, f.name)}
    _drop(parts, empty)
    shared: dict[str, pa.Array] = {}
    later = [f for f in schema if f.name not in empty and (_text(f.type) or pa.types.is_list(f.type))]
    deferred = {f.name for f in later}
    cols, now = [], []
    for f in schema:
        if f.name in empty:
            cols.append(empty_column(f.type, n, shared))
        elif f.name in deferred:  # a stand-in, replaced below one column at a time
            cols.append(empty_column(pa.float64(), n, shared))
        else:
            cols.append(_chunks(parts, f.name, f.type))
            now.append(f.name)
    first = pa.table(cols, names=schema.names)
    del cols, shared
    _drop(parts, now)
    df = first.to_pandas(split_blocks=True, self_destruct=True)
    del first
    for kind, fill, dtype in ((_numeric, np.nan, np.float64), (_as_objects, None, object)):
        if any(kind(f.type) for f in schema if f.name in empty):
            one = pd.Series(np.full(n, fill, dtype=dtype), index=df.index)  # one array; each column a view pandas tracks
            for f in schema:
                if f.name in empty and kind(f.type):
                    df[f.name] = one  # copy-on-write: a write to one column copies it, never reaching the others
    for f in later:
        col = _text_chunks(parts, f.name) if _text(f.type) else _chunks(parts, f.name, f.type)
        _drop(parts, [f.name])
        if pa.types.is_list(f.type):
            df[f.name] = _list_objects(col)
        else:
            shared_text = _shared_text(col, n)
            df[f.name] = shared_text if shared_text is not None else pa.chunked_array(
                [c.cast(pa.large_string()) for c in col], pa.large_string()).to_pandas().array
        del col  # each column replaces its stand-in's block alone: no consolidation, no copy of the others
    parts.clear()
    return df

"""The sweep file's value types: strict pydantic field types whose failures are one-line messages.

Each type (Int, Num, Text, Choice, PerCore, the adapter and model names, durations, counts) checks one
value and, when it is wrong, says what was expected and what came instead ("expected a positive
integer, got a string '8'"), so hwbench.measure.sweepfile can report every problem of a file at once
with its location. Shared by the sweep file and the `hwbench profile` flags that set the same keys.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, PlainValidator, Strict, ValidationError, ValidationInfo, WrapValidator
from pydantic_core import PydanticCustomError

from hwbench.adapter import registry

MAX_BATCH = 65536
DAY_S = 86400.0
CORES_FACTOR = 4  # threads, concurrency and OpenVINO streams: at most this many per logical CPU


def _kind(value: Any) -> str:
    """The TOML name of a value's type, for messages."""
    for typ, name in ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),
                      (list, "an array"), (Mapping, "a table"), (datetime, "a date-time"), (date, "a date"),
                      (time, "a time")):
        if isinstance(value, typ):
            return name
    return type(value).__name__


def _key(key: Any) -> str:
    """A key as a location: bare when TOML would write it bare, else quoted (never a raw newline)."""
    k = str(key)
    return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else json.dumps(k)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(message: str, at: str | None = None) -> PydanticCustomError:
    """Our own wording for a problem; `at` moves it to a sibling key (a cross-check names the key it bounds)."""
    return PydanticCustomError("hwbench", "{message}", {"message": message, **({"at": at} if at else {})})


def _suggest(key: str, known: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- field types: pydantic constraints, our wording ---------------------------------------


def _expected(what: str) -> WrapValidator:
    """'expected <what>, got ...' for any failure of the wrapped strict type or its bounds."""
    def wrap(value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(value)
        except ValidationError as e:
            wrong_type = e.errors()[0]["type"].endswith("_type")
            raise _fail(f"expected {what}, got {_kind(value) + ' ' if wrong_type else ''}{_show(value)}") from None
    return WrapValidator(wrap)


def Int(lo: int, hi: int, what: str) -> Any:
    return Annotated[int, Strict(), Field(ge=lo, le=hi), _expected(what)]


def Num(what: str, **bounds: float) -> Any:
    """A finite float (a TOML integer is taken as one) within `bounds` (gt, ge, lt, le)."""
    return Annotated[float, Strict(), Field(allow_inf_nan=False, **bounds), _expected(what)]


Bool = Annotated[bool, Strict(), _expected("true or false")]


def _cores() -> int:
    return os.cpu_count() or 1


def PerCore(what: str, lo: int = 0) -> Any:
    """An integer from `lo` to CORES_FACTOR x this machine's logical CPUs (read when validating)."""
    def check(value: Any) -> int:
        cap = CORES_FACTOR * _cores()
        text = f"{what} to {cap} ({CORES_FACTOR} x {_cores()} CPUs)"
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(f"expected {text}, got {_kind(value)} {_show(value)}")
        if not lo <= value <= cap:
            raise _fail(f"expected {text}, got {value}")
        return value
    return Annotated[int, PlainValidator(check)]


def _text(value: Any, max_len: int = 200, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise _fail(f"expected a string, got {_kind(value)} {_show(value)}")
    if not allow_empty and not value.strip():
        raise _fail("expected a non-empty string")
    if len(value) > max_len:
        raise _fail(f"expected at most {max_len} characters, got {len(value)}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise _fail(f"control characters are not allowed, got {_show(value)}")
    return value


def Text(max_len: int = 200, allow_empty: bool = False) -> Any:
    return Annotated[str, PlainValidator(lambda v: _text(v, max_len, allow_empty))]


def Choice(allowed: tuple[str, ...], what: str) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _fail(f"expected a {what} name (a string), got {_kind(value)} {_show(value)}")
        name = value.strip().lower()
        if name not in allowed:
            raise _fail(f"unknown {what} {_show(value)}{_suggest(name, allowed)}; choose from {', '.join(allowed)}")
        return name
    return Annotated[str, PlainValidator(check)]


def _adapter(value: Any) -> str:
    known = registry.names()
    if not isinstance(value, str):
        raise _fail(f"expected an adapter name (a string), got {_kind(value)} {_show(value)}")
    if value in known:
        return value
    hint = ""
    if any(c in value for c in ":/\\") or value.endswith(".py"):
        hint = "; adapters come only from the built-in registry and installed entry points, never from a path"
    raise _fail(f"unknown adapter {_show(value)}{_suggest(value, known)}; known: {', '.join(known)}{hint}")


def _model(value: Any, info: ValidationInfo) -> str:
    name = _text(value, max_len=4096).strip()
    base_dir = (info.context or {}).get("base_dir")
    relative = not (Path(name).is_absolute() or name.startswith("~"))
    if (name.lower().endswith(".onnx") or "/" in name) and base_dir is not None and relative:
        name = str(Path(base_dir) / name)
    return name


def _memory_limit(value: float) -> float:
    if 0 < value < 64:
        raise _fail(f"expected 0 (the default) or at least 64 MB (a worker needs more to start), got {_show(value)}")
    return value


def _list(item: Any) -> Any:
    """A non-empty array; the config keeps it as a de-duplicated tuple."""
    return Annotated[list[item], Field(min_length=1)]


DURATION = Num("a duration in seconds above 0 and up to one day (86400)", gt=0.0, le=DAY_S)
DURATION_OR_ZERO = Num("a duration in seconds from 0 up to one day (86400)", ge=0.0, le=DAY_S)
USD_PER_HOUR = Num("a price in USD per hour above 0 and up to 10000", gt=0.0, le=10000.0)
BATCH = Int(1, MAX_BATCH, f"a positive integer up to {MAX_BATCH}")
COUNT = Int(1, 10**12, "a positive integer")
COUNT_OR_ZERO = Int(0, 10**12, "an integer >= 0")
PERCENT = Num("a percentage from 0 to 100", ge=0.0, le=100.0)


def _dim_name(value: Any) -> str:
    try:
        return _text(value, max_len=128)
    except PydanticCustomError as e:
        raise _fail(f"dimension name: {(e.context or {})['message']}") from None


DIM_NAME = Annotated[str, PlainValidator(_dim_name)]

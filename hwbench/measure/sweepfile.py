"""Sweep files: a TOML description of a sweep, validated as a whole into a SweepConfig.

Every problem in a file is collected with its location (``measure.min_iters``,
``batch_sizes[2]``) and reported at once in one ConfigError, so a user fixes a
file in one pass. Unknown keys get a close-match suggestion. Adapters are names
from the registry only (never a path or a ``module:Class``). Building the config
reads the file and nothing else: no model is resolved, no adapter imported.

Relative ``.onnx`` paths in ``models`` are taken relative to the sweep file's folder.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import tomllib
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from hwbench.adapter import registry
from hwbench.errors import ConfigError
from hwbench.precision import ALL, SCENARIOS
from hwbench.measure.settings import AccuracySettings, MeasureSettings, SweepConfig

MAX_FILE_BYTES = 1 << 20
MAX_BATCH = 65536
MAX_DIM = 1 << 20  # as hwbench.models accepts
DAY_S = 86400.0
MAX_PROCESSES = 64  # fresh worker processes per trial (--processes)
_MISSING = object()

# Names people type that are close to, but not, a key: suggested, never accepted.
_ALIASES = {
    "model": "models", "adapter": "adapters", "precision": "precisions", "batch": "batch_sizes",
    "batches": "batch_sizes", "batch_size": "batch_sizes", "scenario": "scenarios", "instance": "instance_type",
    "timeout": "trial_timeout_s", "timeout_s": "trial_timeout_s", "duration": "measure.min_duration_s",
    "memory_limit": "memory_limit_mb", "tdp": "tdp_w",
}


class SweepFileError(ConfigError):
    """A sweep file with problems; `problems` holds one 'location: what is wrong' per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        if len(problems) == 1:
            text = f"{source}: {problems[0]}"
        else:
            text = f"{source} has {len(problems)} problems:\n" + "\n".join(f"  {source}: {p}" for p in problems)
        super().__init__(text)


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


Check = Callable[[Any], tuple[Any, str | None]]  # value -> (converted value, problem or None)


def integer(lo: int, hi: int, what: str = "an integer") -> Check:
    def check(v: Any) -> tuple[Any, str | None]:
        if isinstance(v, bool) or not isinstance(v, int):
            return v, f"expected {what}, got {_kind(v)} {_show(v)}"
        if not lo <= v <= hi:
            return v, f"expected {what}, got {v}"
        return v, None
    return check


def number(lo: float, hi: float, what: str, lo_open: bool = False, hi_open: bool = False) -> Check:
    def check(v: Any) -> tuple[Any, str | None]:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return v, f"expected {what}, got {_kind(v)} {_show(v)}"
        f = float(v)
        if not math.isfinite(f) or f < lo or f > hi or (lo_open and f <= lo) or (hi_open and f >= hi):
            return v, f"expected {what}, got {_show(v)}"
        return f, None
    return check


def text(max_len: int = 200, allow_empty: bool = False) -> Check:
    def check(v: Any) -> tuple[Any, str | None]:
        if not isinstance(v, str):
            return v, f"expected a string, got {_kind(v)} {_show(v)}"
        if not allow_empty and not v.strip():
            return v, "expected a non-empty string"
        if len(v) > max_len:
            return v, f"expected at most {max_len} characters, got {len(v)}"
        if any(ord(c) < 32 or ord(c) == 127 for c in v):
            return v, f"control characters are not allowed, got {_show(v)}"
        return v, None
    return check


USD_PER_HOUR = number(0.0, 10000.0, "a price in USD per hour above 0 and up to 10000", lo_open=True)  # flag and key alike


def boolean(v: Any) -> tuple[Any, str | None]:
    if not isinstance(v, bool):
        return v, f"expected true or false, got {_kind(v)} {_show(v)}"
    return v, None


def choice(allowed: tuple[str, ...], what: str) -> Check:
    def check(v: Any) -> tuple[Any, str | None]:
        if not isinstance(v, str):
            return v, f"expected a {what} name (a string), got {_kind(v)} {_show(v)}"
        name = v.strip().lower()
        if name in allowed:
            return name, None
        return v, f"unknown {what} {_show(v)}{_suggest(name, allowed)}; choose from {', '.join(allowed)}"
    return check


def _suggest(key: str, known: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


DURATION = number(0.0, DAY_S, "a duration in seconds above 0 and up to one day (86400)", lo_open=True)
DURATION_OR_ZERO = number(0.0, DAY_S, "a duration in seconds from 0 up to one day (86400)")
BATCH = integer(1, MAX_BATCH, f"a positive integer up to {MAX_BATCH}")
COUNT = integer(1, 10**12, "a positive integer")
COUNT_OR_ZERO = integer(0, 10**12, "an integer >= 0")

MEASURE: dict[str, Check] = {
    "warmup_s": DURATION_OR_ZERO,
    "warmup_min_iters": COUNT_OR_ZERO,
    "min_duration_s": DURATION,
    "min_iters": COUNT,
    "max_iters": COUNT,
    "max_duration_s": DURATION,
    "target_p50_rel_halfwidth": number(0.0, 1.0, "a relative half-width above 0 and below 1 (e.g. 0.01 for +-1%)",
                                       lo_open=True, hi_open=True),
    "max_cv": number(0.0, 10.0, "a coefficient of variation above 0 and up to 10 (1000%)", lo_open=True),
    "min_samples_for_p99": COUNT,
    "max_steal_pct": number(0.0, 100.0, "a percentage from 0 to 100"),
    "max_other_cpu_pct": number(0.0, 100.0, "a percentage from 0 to 100"),
}

ACCURACY: dict[str, Check] = {
    "enabled": boolean,
    "min_cosine": number(-1.0, 1.0, "a cosine similarity from -1 to 1"),
    "min_top1_agreement": number(0.0, 1.0, "a share from 0 to 1"),
    "max_mean_rel_err": number(0.0, 1e6, "a relative error >= 0"),
    "min_items": BATCH,
    "seed": integer(0, 2**32 - 1, "an integer from 0 to 4294967295"),
}


class _Reader:
    """Collects every problem while converting a parsed TOML document."""

    def __init__(self, base_dir: Path | None) -> None:
        self.problems: list[str] = []
        self.base_dir = base_dir

    def add(self, loc: str, msg: str) -> None:
        self.problems.append(f"{loc}: {msg}")

    def value(self, loc: str, v: Any, check: Check) -> Any:
        out, problem = check(v)
        if problem:
            self.add(loc, problem)
            return _MISSING
        return out

    def array(self, loc: str, v: Any, item: Check) -> Any:
        if not isinstance(v, list):
            self.add(loc, f"expected an array, e.g. [...], got {_kind(v)} {_show(v)}")
            return _MISSING
        if not v:
            self.add(loc, "expected a non-empty array (leave the key out for the default)")
            return _MISSING
        items = [self.value(f"{loc}[{i}]", x, item) for i, x in enumerate(v)]
        if any(x is _MISSING for x in items):
            return _MISSING
        return tuple(dict.fromkeys(items))

    def table(self, loc: str, v: Any, fields: dict[str, Check]) -> dict[str, Any] | None:
        if not isinstance(v, Mapping):
            self.add(loc, f"expected a table ([{loc}]), got {_kind(v)} {_show(v)}")
            return None
        out: dict[str, Any] = {}
        for key, raw in v.items():
            where = f"{loc}.{_key(key)}"
            if key not in fields:
                self.add(where, _unknown(str(key), list(fields)))
                continue
            conv = self.value(where, raw, fields[key])
            if conv is not _MISSING:
                out[key] = conv
        return out

    def model(self, v: Any) -> tuple[Any, str | None]:
        v, problem = text(max_len=4096)(v)
        if problem:
            return v, problem
        name = v.strip()
        relative = not (Path(name).is_absolute() or name.startswith("~"))
        if (name.lower().endswith(".onnx") or "/" in name) and self.base_dir is not None and relative:
            name = str(self.base_dir / name)
        return name, None

    @staticmethod
    def adapter(v: Any) -> tuple[Any, str | None]:
        known = registry.names()
        if not isinstance(v, str):
            return v, f"expected an adapter name (a string), got {_kind(v)} {_show(v)}"
        if v in known:
            return v, None
        hint = ""
        if any(c in v for c in ":/\\") or v.endswith(".py"):
            hint = "; adapters come only from the built-in registry and installed entry points, never from a path"
        return v, f"unknown adapter {_show(v)}{_suggest(v, known)}; known: {', '.join(known)}{hint}"

    def dims(self, loc: str, v: Any) -> Any:
        if not isinstance(v, Mapping):
            self.add(loc, f"expected a table of NAME = positive integer, got {_kind(v)} {_show(v)}")
            return _MISSING
        out = {}
        for key, raw in v.items():
            where = f"{loc}.{_key(key)}"
            _, problem = text(max_len=128)(key)
            if problem:
                self.add(where, f"dimension name: {problem}")
                continue
            conv = self.value(where, raw, integer(1, MAX_DIM, f"a positive integer up to {MAX_DIM}"))
            if conv is not _MISSING:
                out[str(key)] = conv
        return out if len(out) == len(v) else _MISSING


def _top_fields(r: _Reader) -> dict[str, Callable[[str, Any], Any]]:
    def scalar(check: Check) -> Callable[[str, Any], Any]:
        return lambda loc, v: r.value(loc, v, check)

    return {
        "models": lambda loc, v: r.array(loc, v, r.model),
        "adapters": lambda loc, v: r.array(loc, v, r.adapter),
        "precisions": lambda loc, v: r.array(loc, v, choice(ALL, "precision")),
        "batch_sizes": lambda loc, v: r.array(loc, v, BATCH),
        "scenarios": lambda loc, v: r.array(loc, v, choice(SCENARIOS, "scenario")),
        "instance_type": scalar(text()),
        "dims": r.dims,
        "trial_timeout_s": scalar(DURATION),
        "threads": scalar(integer(0, 4096, "an integer from 0 (runtime default) to 4096")),
        "device": scalar(text(allow_empty=True)),
        "concurrency": scalar(integer(0, 4096, "an integer from 0 (tuned) to 4096")),
        "tdp_w": scalar(number(0.0, 5000.0, "a power in watts above 0 and up to 5000", lo_open=True)),
        "usd_per_hour": scalar(USD_PER_HOUR),
        "price_note": scalar(text()),
        "memory_limit_mb": scalar(_memory_limit),
        "idle_power_s": scalar(number(0.0, 3600.0, "a duration in seconds from 0 (off) up to 3600")),
        "allow_emulated": scalar(boolean),
        "processes": scalar(integer(1, MAX_PROCESSES, f"an integer from 1 to {MAX_PROCESSES}")),
    }


def _memory_limit(v: Any) -> tuple[Any, str | None]:
    out, problem = number(0.0, 16.0 * 2**20, "a size in MB from 0 (the default) up to 16 TiB")(v)
    if problem is None and 0 < out < 64:
        return v, f"expected 0 (the default) or at least 64 MB (a worker needs more to start), got {_show(v)}"
    return out, problem


def _unknown_top(key: str, known: list[str]) -> str:
    if key in MEASURE or key in ACCURACY:
        table = "measure" if key in MEASURE else "accuracy"
        return f"unknown key (did you mean {key} under [{table}]?)"
    if key in _ALIASES:
        return f"unknown key (did you mean {_ALIASES[key]!r}?)"
    return _unknown(key, known)


def _unknown(key: str, known: list[str]) -> str:
    hint = _suggest(key, known)
    return f"unknown key{hint}" if hint else f"unknown key; known: {', '.join(known)}"


def _cross_checks(r: _Reader, top: dict[str, Any], measure: dict[str, Any]) -> None:
    """Problems that need two valid values: each bound against its partner (defaults fill gaps)."""
    m = dataclasses.replace(MeasureSettings(), **measure)
    if "min_iters" in measure or "max_iters" in measure:
        if m.min_iters > m.max_iters:
            r.add("measure.min_iters", f"{m.min_iters} is above measure.max_iters ({m.max_iters})")
    if "min_duration_s" in measure or "max_duration_s" in measure:
        if m.min_duration_s > m.max_duration_s:
            r.add("measure.min_duration_s", f"{m.min_duration_s:g} s is above measure.max_duration_s ({m.max_duration_s:g} s)")
    timeout = top.get("trial_timeout_s", SweepConfig.trial_timeout_s)
    if ("trial_timeout_s" in top or "min_duration_s" in measure or "warmup_s" in measure) and (
        m.warmup_s + m.min_duration_s >= timeout
    ):
        r.add("trial_timeout_s", f"{timeout:g} s leaves no time to measure: warm-up {m.warmup_s:g} s plus "
              f"measure.min_duration_s {m.min_duration_s:g} s already reach it")


def parse_sweep(data: Any, source: str = "sweep file", base_dir: Path | None = None) -> SweepConfig:
    """A parsed TOML document -> SweepConfig; SweepFileError (a ConfigError) lists every problem."""
    r = _Reader(base_dir)
    if not isinstance(data, Mapping):
        raise SweepFileError(source, [f"top level: expected a table, got {_kind(data)}"])
    fields = _top_fields(r)
    known = [*fields, "measure", "accuracy"]
    top: dict[str, Any] = {}
    measure: dict[str, Any] = {}
    accuracy: dict[str, Any] = {}
    for key, raw in data.items():
        if key == "measure":
            measure = r.table("measure", raw, MEASURE) or {}
        elif key == "accuracy":
            accuracy = r.table("accuracy", raw, ACCURACY) or {}
        elif key in fields:
            conv = fields[key](key, raw)
            if conv is not _MISSING:
                top[key] = conv
        else:
            r.add(_key(key), _unknown_top(str(key), known))
    _cross_checks(r, top, measure)
    if r.problems:
        raise SweepFileError(source, r.problems)
    return SweepConfig(measure=MeasureSettings(**measure), accuracy=AccuracySettings(**accuracy), **top)


def load_sweep(path: Path) -> SweepConfig:
    """Read and validate a sweep file. ConfigError with one line for an unreadable file,
    or with every problem listed for a file that parses."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"sweep file {source} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"sweep file {source} is a directory, not a file") from None
    except OSError as e:
        raise ConfigError(f"cannot read sweep file {source}: {e.strerror or e}") from e
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"sweep file {source} is larger than {MAX_FILE_BYTES // 1024} KiB: not a sweep file")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"sweep file {source} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"sweep file {source} is not valid TOML: {e}") from e
    return parse_sweep(doc, source, base_dir=path.resolve().parent)


# -- writing ----------------------------------------------------------------------------


def _toml_str(s: str) -> str:
    out = []
    for c in s:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif ord(c) < 32 or ord(c) == 127:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to a sweep file")


def dump_sweep(config: SweepConfig) -> str:
    """A sweep file that loads back to `config` (unset optional values are left out)."""
    lines = ["# hwbench sweep file (written by hwbench)"]
    for f in dataclasses.fields(SweepConfig):
        v = getattr(config, f.name)
        if f.name in ("measure", "accuracy", "dims") or v is None or (f.name == "adapters" and not v):
            continue
        lines.append(f"{f.name} = {_toml_value(v)}")
    if config.dims:
        lines += ["", "[dims]"] + [f"{_toml_str(k)} = {v}" for k, v in config.dims.items()]
    for name in ("measure", "accuracy"):
        lines += ["", f"[{name}]"]
        section = getattr(config, name)
        lines += [f"{f.name} = {_toml_value(getattr(section, f.name))}" for f in dataclasses.fields(section)]
    return "\n".join(lines) + "\n"

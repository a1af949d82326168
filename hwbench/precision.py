"""The precisions hwbench knows, and parsing of user lists of them."""

from __future__ import annotations

from hwbench.errors import UsageError

FP32 = "fp32"
TF32 = "tf32"
FP16 = "fp16"
BF16 = "bf16"
INT8 = "int8"
FP8 = "fp8"
INT4 = "int4"  # weight-only, for LLMs (generate workload); no classifier adapter offers it

ALL: tuple[str, ...] = (FP32, TF32, FP16, BF16, INT8, FP8, INT4)

SCENARIOS: tuple[str, ...] = ("single-stream", "offline", "server")


def parse_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """Split 'a,b' into a de-duplicated list, refusing names not in `allowed`."""
    items = [p.strip().lower() for p in text.split(",") if p.strip()]
    if not items:
        raise UsageError(f"empty {what} list")
    bad = [p for p in items if p not in allowed]
    if bad:
        raise UsageError(f"unknown {what} {', '.join(bad)!s}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def parse_batches(text: str) -> list[int]:
    """Parse '1,8,32' into positive ints."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise UsageError(f"batch size {part!r} is not an integer") from None
        if value <= 0:
            raise UsageError(f"batch size must be positive, got {value}")
        if value > 65536:
            raise UsageError(f"batch size {value} is absurd (limit 65536)")
        out.append(value)
    if not out:
        raise UsageError("empty batch size list")
    return list(dict.fromkeys(out))

"""The one JSON cleaner: values as JSON can hold them (every layer may import it, like errors)."""

from __future__ import annotations

import math
from typing import Any


def json_safe(value: Any) -> Any:
    """Make a value JSON-safe: NaN/inf become null, numpy scalars become Python ones, tuples lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

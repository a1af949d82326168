"""Reading a versioned hwbench JSON export (the frontier file, the plan file): one set of refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hwbench.errors import ResultsError


def read_export(path: Path | str, kind: str, what: str, max_version: int) -> tuple[Path, dict[str, Any], int]:
    """(path, document, schema version) of an export of `kind`; ResultsError for a missing, unreadable or
    foreign file, or a schema newer than `max_version`. `what` names it in messages ("frontier", "plan")."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{what} file {p} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{what} file {p} is unreadable: {e}") from e
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise ResultsError(f"{p} is not an hwbench {what} export (kind is not {kind!r})")
    version = doc.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise ResultsError(f"{p} has no valid schema_version")
    if version > max_version:
        raise ResultsError(f"{p} is {what} schema {version}; this hwbench reads up to {max_version}: upgrade")
    return p, doc, version

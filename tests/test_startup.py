"""`hwbench --help` stays cheap: the CLI's import and help rendering load no numeric or vendor library.

Not a timing test (the machine may be busy): it checks which modules a fresh interpreter holds
after rendering the help of the root command and of every subcommand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


HEAVY = ("numpy", "pandas", "pyarrow", "scipy", "torch", "onnx", "onnxruntime", "openvino", "psutil")

# Renders each help page in-process, then prints the heavy top-level modules that got imported.
_SCRIPT = """
import json, sys
{pre}
from hwbench.cli import app
for args in (["--help"], *([c, "--help"] for c in sys.argv[1:])):
    try:
        app(args, standalone_mode=False)
    except SystemExit:
        pass
heavy = {heavy!r}
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""

COMMANDS = ("devices", "models", "profile", "frontier", "prices", "compare", "fleet")


def _loaded(pre: str = "") -> list[str]:
    res = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(pre=pre, heavy=HEAVY), *COMMANDS],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "100"},
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_help_imports_no_heavy_library() -> None:
    assert _loaded() == []


def test_the_check_sees_a_heavy_import() -> None:
    """The probe itself works: a library imported before the CLI is reported."""
    assert _loaded("import numpy") == ["numpy"]

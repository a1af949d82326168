"""`hwbench models`: the built-in reference models."""

from __future__ import annotations


from hwbench.cli.common import console, print_json, Table
from hwbench.cli.options import JsonFlag, epilog

COMMAND = dict(epilog=epilog("hwbench models", "hwbench models --json", "hwbench profile --help   # then measure on what is listed"))


def models(json_out: JsonFlag = False) -> None:
    """List the built-in reference models (random weights, built locally; no downloads)."""
    from hwbench.models import list_builtin
    from hwbench.models.zoo.llama import list_llms

    items = list_builtin() + list_llms()  # LLMs: `hwbench profile NAME --workload generate`
    if json_out:
        print_json(items)
        return
    table = Table(title="Built-in models (a path to an .onnx file works too; for LLMs, a Hugging Face folder)")
    for col in ("name", "family", "task", "params", "inputs", "description"):
        table.add_column(col)
    for m in items:
        inputs = "; ".join(f"{i['name']} {i['dtype']}{list(i['shape'])}" for i in m["inputs"])
        if m.get("workload") == "generate":
            inputs += f" (--workload generate; context {m['dims']['context_tokens']})"
        table.add_row(m["name"], m["family"], m["task"], f"{m['params'] / 1e6:.2f} M", inputs, m["description"])
    console.print(table)

"""`hwbench devices` lists the generative (LLM) adapters and the endpoint clients beside the
classifier adapters, each with whether it can run here and, where not, its probe's reason."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hwbench.adapter import registry
from hwbench.cli import app


def _json(res) -> dict:  # type: ignore[no-untyped-def]
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_devices_json_lists_generative_and_endpoint_adapters_with_reasons() -> None:
    data = _json(CliRunner().invoke(app, ["devices", "--json"]))
    gen = {a["name"]: a for a in data["generative_adapters"]}
    ends = {a["name"]: a for a in data["endpoint_adapters"]}
    assert set(gen) == set(registry.GENERATIVE) and {"torch", "openvino"} <= set(gen)
    assert set(ends) == set(registry.ENDPOINTS) and "openai" in ends
    for a in [*gen.values(), *ends.values()]:
        assert isinstance(a["available"], bool) and a["source"] == "builtin"
        assert a["available"] == registry_probe(a["name"], a in gen.values()).available
        if not a["available"]:
            assert a["reason"], a["name"]
        else:
            assert a["devices"], a["name"]
    assert "torch" in {a["name"] for a in data["adapters"]}  # the classifier table is unchanged beside them


def registry_probe(name: str, generative: bool):  # type: ignore[no-untyped-def]
    return registry.probe_generative(name) if generative else registry.probe_endpoint(name)


def test_an_unimportable_generative_or_endpoint_adapter_is_listed_unavailable_with_why(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.GENERATIVE, "openvino", "device_adapters.no_such_genai:X")
    monkeypatch.setitem(registry.ENDPOINTS, "openai", "device_adapters.no_such_http:Y")
    data = _json(CliRunner().invoke(app, ["devices", "--json"]))
    ov = next(a for a in data["generative_adapters"] if a["name"] == "openvino")
    oa = next(a for a in data["endpoint_adapters"] if a["name"] == "openai")
    assert ov["available"] is False and "device_adapters.no_such_genai" in ov["reason"]
    assert oa["available"] is False and "no_such_http" in oa["reason"]
    res = CliRunner().invoke(app, ["devices"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "Generative adapters" in res.stdout and "Endpoint adapters" in res.stdout
    assert "no_such_genai" in res.stdout and "no_such_http" in res.stdout

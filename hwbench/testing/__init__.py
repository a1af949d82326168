"""hwbench.testing: the conformance kit every adapter, built-in or third-party, runs to prove the
adapter contract (hwbench.adapter.contract).

    from hwbench.testing import AdapterConformance

    class TestMyAdapter(AdapterConformance):
        adapter_cls = MyAdapter

It needs pytest. Nothing in hwbench's core imports it (an import-linter contract in pyproject.toml).
"""

from hwbench.testing.conformance import AdapterConformance

__all__ = ["AdapterConformance"]

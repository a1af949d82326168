"""The adapter layer: the contract every device adapter implements, the name -> class registry,
and the threaded runner adapters share for the offline scenario.

`from hwbench.adapter import Adapter, AdapterOptions, Effective, Probe, ConcurrentRunner` is the plugin
API (third-party adapters rely on it); the contract itself lives in hwbench.adapter.contract.
"""

from hwbench.adapter.contract import Adapter, AdapterOptions, ConcurrentRunner, Effective, Probe

__all__ = ["Adapter", "AdapterOptions", "ConcurrentRunner", "Effective", "Probe"]

"""The adapter runs hwbench's conformance kit: every check of the contract is a test of this class."""

from hwbench.testing import AdapterConformance
from hwbench_onnxref import OnnxRefAdapter


class TestOnnxRef(AdapterConformance):
    adapter_cls = OnnxRefAdapter

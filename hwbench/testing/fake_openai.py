"""A fast fake OpenAI-compatible server on 127.0.0.1, for the client's own limits and its faults.

It is NOT a serving engine: it answers instantly (or after the delays it is given) with one
word per token, so a test or benchmark measures the client, never a model. It speaks enough
HTTP/1.1 for keep-alive clients: Content-Length request bodies, chunked streaming responses.

Faults are chosen per request by the requested model's name, so one server covers every case:

    "fault:slow-first"  the first token after slow_first_s
    "fault:stall"       two tokens, then silence for stall_s (longer than a client's read timeout)
    "fault:disconnect"  two tokens, then the connection is closed mid-stream
    "fault:429"         HTTP 429 with a JSON error body; "fault:500" likewise
    "fault:malformed"   a data frame that is not JSON, after one good token
    "fault:garbage"     a 200 whose body is not server-sent events at all
    "fault:redirect"    a 302 to another host
    "fault:no-done"     the stream ends without the [DONE] frame
    "fault:short"       half the requested tokens, then a normal end (finish_reason "length")
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass


@dataclass
class FakeConfig:
    """How the fake behaves for requests without a fault."""

    ttft_s: float = 0.0  # before the first token
    itl_s: float = 0.0  # between tokens
    slow_first_s: float = 0.5
    stall_s: float = 5.0
    default_tokens: int = 16
    usage_in_stream: bool = True  # a final usage chunk when stream_options.include_usage is set


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeOpenAIServer:
    """Run the fake in a background thread: `with FakeOpenAIServer() as srv: srv.base_url`."""

    def __init__(self, config: FakeConfig | None = None, port: int = 0) -> None:
        self.config = config or FakeConfig()
        self.port = port or _free_port()
        self.requests = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._frames: dict[tuple[bool, str, int], bytes] = {}  # instant answers' token frames, built once
        self.event_loop = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> "FakeOpenAIServer":
        self._thread = threading.Thread(target=self._run, name="fake-openai", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake OpenAI server did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        from hwbench.measure.endpoint_load import loop_factory

        factory, self.event_loop = loop_factory()  # uvloop when installed: the server must not be the bottleneck
        loop = factory()
        self._loop = loop
        self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=1024))
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            loop.close()

    # -- HTTP ----------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                self.requests += 1
                keep = await self._respond(method, path, body, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the peer may already be gone
                pass

    @staticmethod
    def _head(status: str, headers: dict[str, str]) -> bytes:
        return (f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()

    async def _plain(self, writer: asyncio.StreamWriter, status: str, payload: bytes, ctype: str = "application/json",
                     extra: dict[str, str] | None = None) -> bool:
        writer.write(self._head(status, {"Content-Type": ctype, "Content-Length": str(len(payload)), **(extra or {})}) + payload)
        await writer.drain()
        return True

    async def _respond(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        if method == "GET" and path.rstrip("/").endswith("/models"):
            return await self._plain(writer, "200 OK", json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}).encode())
        if method != "POST" or not (path.endswith("/chat/completions") or path.endswith("/completions")):
            return await self._plain(writer, "404 Not Found", b'{"error": {"message": "not found"}}')
        try:
            req = json.loads(body or b"{}")
        except json.JSONDecodeError:
            return await self._plain(writer, "400 Bad Request", b'{"error": {"message": "body is not JSON"}}')
        chat = path.endswith("/chat/completions")
        model = str(req.get("model", "fake"))
        fault = model.split(":", 1)[1] if model.startswith("fault:") else ""
        n = int(req.get("max_tokens") or req.get("max_completion_tokens") or self.config.default_tokens)
        prompt_tokens = self._prompt_tokens(req, chat)
        if fault in ("429", "500"):
            status = "429 Too Many Requests" if fault == "429" else "500 Internal Server Error"
            return await self._plain(writer, status, json.dumps({"error": {"message": f"injected {fault}"}}).encode())
        if fault == "redirect":
            return await self._plain(writer, "302 Found", b"", extra={"Location": "http://192.0.2.1/v1/completions"})
        if fault == "garbage":
            return await self._plain(writer, "200 OK", b"<html>this is not an event stream</html>", ctype="text/html")
        if not req.get("stream"):
            await asyncio.sleep(self.config.ttft_s + self.config.itl_s * max(n - 1, 0))
            text = "tok " * n
            choice = {"index": 0, "finish_reason": "length",
                      **({"message": {"role": "assistant", "content": text}} if chat else {"text": text})}
            doc = {"id": "fake-1", "object": "chat.completion" if chat else "text_completion", "model": model,
                   "choices": [choice], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n,
                                                  "total_tokens": prompt_tokens + n}}
            return await self._plain(writer, "200 OK", json.dumps(doc).encode())
        return await self._stream(writer, chat, model, fault, n, prompt_tokens, req)

    @staticmethod
    def _prompt_tokens(req: dict, chat: bool) -> int:
        if chat:
            text = " ".join(str(m.get("content", "")) for m in req.get("messages", []) if isinstance(m, dict))
        else:
            p = req.get("prompt", "")
            text = " ".join(map(str, p)) if isinstance(p, list) else str(p)
        return len(text.split())

    async def _stream(self, writer: asyncio.StreamWriter, chat: bool, model: str, fault: str, n: int,
                      prompt_tokens: int, req: dict) -> bool:
        writer.write(self._head("200 OK", {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}))

        async def send(data: bytes) -> None:
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()

        def frame(text: str | None, finish: str | None = None) -> bytes:
            delta = ({"delta": {"content": text}} if text is not None else {"delta": {}}) if chat else {"text": text or ""}
            doc = {"id": "fake-1", "object": "chat.completion.chunk" if chat else "text_completion", "model": model,
                   "choices": [{"index": 0, "finish_reason": finish, **delta}]}
            return b"data: " + json.dumps(doc).encode() + b"\n\n"

        sent = n // 2 if fault == "short" else n
        if not fault and not self.config.ttft_s and not self.config.itl_s:  # instant: one write, frames built once
            key = (chat, model, n)
            body = self._frames.get(key)
            if body is None:
                body = b"".join(_chunk(frame("tok ")) for _ in range(n)) + _chunk(frame(None, "length"))
                if len(self._frames) < 1024:
                    self._frames[key] = body
            tail = [_chunk(b"data: [DONE]\n\n"), b"0\r\n\r\n"]
            if self.config.usage_in_stream and (req.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
                tail.insert(0, _chunk(b"data: " + json.dumps({"id": "fake-1", "choices": [], "usage": usage}).encode() + b"\n\n"))
            writer.write(body + b"".join(tail))
            await writer.drain()
            return True
        await asyncio.sleep(self.config.slow_first_s if fault == "slow-first" else self.config.ttft_s)
        for i in range(sent):
            if i and self.config.itl_s:
                await asyncio.sleep(self.config.itl_s)
            if fault == "malformed" and i == 1:
                await send(b"data: {this is not json\n\n")
                continue
            if fault in ("stall", "disconnect") and i == 2:
                if fault == "stall":
                    await asyncio.sleep(self.config.stall_s)
                writer.transport.abort()  # mid-stream: no final chunk, no [DONE]
                return False
            await send(frame("tok "))
        await send(frame(None, "length"))
        if self.config.usage_in_stream and (req.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": sent, "total_tokens": prompt_tokens + sent}
            await send(b"data: " + json.dumps({"id": "fake-1", "choices": [], "usage": usage}).encode() + b"\n\n")
        if fault != "no-done":
            await send(b"data: [DONE]\n\n")
        await send(b"")  # the terminating zero-length chunk
        return True


def _chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk (an empty one ends the body)."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def wait_until_serving(base_url: str, timeout_s: float = 30.0) -> None:
    """Poll GET {base_url}/models until it answers 200 (for servers started as a subprocess)."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as r:  # noqa: S310 - loopback only
                if r.status == 200:
                    return
        except OSError as e:
            last = str(e)
        time.sleep(0.2)
    raise RuntimeError(f"{base_url} did not answer /models within {timeout_s:g} s ({last})")


def main(argv: list[str] | None = None) -> None:
    """`python -m hwbench.testing.fake_openai --port P [--ttft-s S --itl-s S --tokens N]`: serve until killed."""
    import argparse

    ap = argparse.ArgumentParser(description="A fast fake OpenAI-compatible server on 127.0.0.1 (for tests and benchmarks).")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ttft-s", type=float, default=0.0)
    ap.add_argument("--itl-s", type=float, default=0.0)
    ap.add_argument("--tokens", type=int, default=16)
    args = ap.parse_args(argv)
    srv = FakeOpenAIServer(FakeConfig(ttft_s=args.ttft_s, itl_s=args.itl_s, default_tokens=args.tokens), port=args.port)
    srv.start()
    print(srv.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()

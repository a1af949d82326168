"""One HTTP exchange with an OpenAI-compatible endpoint, as captured, and its reading afterwards.

The client (device_adapters.openai_http) does the least it can while a load point is being
measured: it stamps each network read as it returns and keeps the bytes (an Exchange). Everything
else -- splitting server-sent events, decoding each chunk's JSON, the `usage` cross-check,
token counting, the error text -- is done by settle(), after the point, from the stored
(timestamp_ns, bytes) reads. The stamps are the same ones the read loop would have used: every
event whose line ended in a read is stamped with that read's return time (events that arrived
in one read arrived together). Deferring the parsing moved about a third of the client's CPU per
streamed request out of the measurement window (benchmarks/http_client.py).

An Exchange pickles, so a client process can log it the moment the request ends
(hwbench.measure.endpoint_spread) and its parent can settle it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hwbench.adapter.tokens import TokenTiming

ERROR_BODY_CHARS = 200
TOKENS = "{tokens}"  # in Exchange.fault: replaced by the count of tokens received before the fault


@dataclass(slots=True)
class Exchange:
    """What came back for one request, unparsed."""

    start_ns: int
    scheduled_ns: int | None
    api: str  # "chat" | "completions"
    stream: bool
    reads: list[tuple[int, bytes]] = field(default_factory=list)  # (stamp when the read returned, its bytes)
    status: int = 0  # HTTP status; 0 when none arrived
    location: str | None = None  # a redirect's target
    content_type: str = ""
    content_encoding: str = ""
    head: bytes = b""  # the start of a body that was not the expected one (an error page, garbage)
    fault: str | None = None  # a transport failure's reason, TOKENS standing for the tokens received so far


def _text_of(api: str, doc: dict[str, Any]) -> str:
    out = []
    for choice in doc.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        if api == "chat":
            delta = choice.get("delta") or {}
            piece = delta.get("content") if isinstance(delta, dict) else None
        else:
            piece = choice.get("text")
        if isinstance(piece, str) and piece:
            out.append(piece)
    return "".join(out)


def _finish_of(doc: dict[str, Any]) -> str | None:
    for choice in doc.get("choices") or []:
        if isinstance(choice, dict) and choice.get("finish_reason"):
            return str(choice["finish_reason"])
    return None


class _Reading:
    """The parse state of one exchange: stamps, usage, finish reason."""

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex
        self.stamps: list[int] = []
        self.meta: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.finish: str | None = None
        self.chars = 0
        self.done = False

    def result(self, error: str | None) -> TokenTiming:
        usage, stamps, meta = self.usage, self.stamps, self.meta
        counted = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if isinstance(counted, int) and counted != len(stamps):
            meta["chunks"] = len(stamps)
        if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
            meta["prompt_tokens_reported"] = usage["prompt_tokens"]
        meta["finish_reason"] = self.finish
        meta["chars"] = self.chars
        return TokenTiming(start_ns=self.ex.start_ns, token_ns=tuple(stamps),
                           prompt_tokens=int(meta.get("prompt_tokens_reported", 0)), ok=error is None, error=error,
                           scheduled_ns=self.ex.scheduled_ns, meta=meta,
                           counted_tokens=counted if isinstance(counted, int) and counted >= len(stamps) else None)

    def event(self, data: bytes, now: int) -> str | None:
        """One `data:` payload; the reason the exchange failed, or None."""
        if data == b"[DONE]":
            self.done = True
            return None
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return f"malformed SSE frame after {len(self.stamps)} token(s): {data[:60]!r}"
        if not isinstance(doc, dict):
            return f"malformed SSE frame after {len(self.stamps)} token(s): not a JSON object"
        if "error" in doc:
            return f"server error in stream after {len(self.stamps)} token(s): {str(doc['error'])[:ERROR_BODY_CHARS]}"
        text = _text_of(self.ex.api, doc)
        if text:
            self.stamps.append(now)
            self.chars += len(text)
        self.finish = _finish_of(doc) or self.finish
        if isinstance(doc.get("usage"), dict):
            self.usage = doc["usage"]
        return None

    def events(self) -> str | None:
        """Every event of the stored reads, in order, until [DONE] or the first bad one."""
        buf = b""
        reads = self.ex.reads
        for k, (now, piece) in enumerate(reads):
            lines = (buf + piece).split(b"\n")
            buf = lines.pop()  # an unfinished line waits for the next read
            if k == len(reads) - 1 and self.ex.fault is None:
                lines.append(buf)  # the body ended: a last line the server did not end still counts
            for raw in lines:
                if not raw.startswith(b"data:"):
                    continue  # comments, event names, keep-alives, blank separators
                why = self.event(raw[5:].strip(), now)
                if why or self.done:
                    return why
        return None


def _head_text(head: bytes) -> str:
    return " ".join(head.decode("utf-8", "replace")[:ERROR_BODY_CHARS].split())


def settle(ex: Exchange) -> TokenTiming:
    """The TokenTiming of a captured exchange: stamps per token-carrying event, or the failure's reason."""
    r = _Reading(ex)
    if 300 <= ex.status < 400:
        return r.result(f"HTTP {ex.status}: redirect to {ex.location or '?'!r} refused")
    if ex.status and ex.status != 200:
        return r.result(f"HTTP {ex.status}: {_head_text(ex.head)}")
    if ex.content_encoding and ex.content_encoding.lower() != "identity":
        return r.result(f"compressed response (Content-Encoding {ex.content_encoding!r}) though none was requested")
    if ex.status == 200 and not ex.stream and ex.fault is None:
        return _settle_plain(r)
    if ex.status == 200 and "text/event-stream" not in ex.content_type:
        return r.result(f"not an event stream (content-type {ex.content_type!r}): {_head_text(ex.head)[:80]}")
    why = r.events()
    if why:
        return r.result(why)
    if ex.fault is not None:
        return r.result(ex.fault.replace(TOKENS, str(len(r.stamps))))
    if not r.stamps:
        return r.result("the stream carried no tokens")
    if r.finish is None:
        return r.result(f"stream ended without a finish_reason after {len(r.stamps)} token(s): cut off by the server")
    if not r.done:
        r.meta["warning"] = "stream ended without [DONE]"
    return r.result(None)


def _settle_plain(r: _Reading) -> TokenTiming:
    """A non-streamed answer: one stamp, when the whole body had arrived."""
    ex = r.ex
    if not ex.reads:
        return r.result("the response carried no body")
    now, body = ex.reads[-1]
    r.stamps.append(now)
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return r.result(f"malformed response: not JSON: {_head_text(body)[:60]!r}")
    if not isinstance(doc, dict):
        return r.result("malformed response: not a JSON object")
    r.usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else None
    r.finish = _finish_of(doc)
    choices = [c for c in doc.get("choices") or [] if isinstance(c, dict)]
    message = [(c.get("message") or {}).get("content") if ex.api == "chat" and isinstance(c.get("message") or {}, dict)
               else c.get("text") for c in choices]
    r.chars = sum(len(m) for m in message if isinstance(m, str))
    if not r.chars:
        return r.result("the response carried no text")
    return r.result(None if r.finish else "response without a finish_reason")

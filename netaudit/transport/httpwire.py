"""A minimal HTTP/1.1 client for probes: one request per connection, a deadline, a size cap, raw headers kept.

Probes need exact status lines, header presence (or absence, as with `Server`) and bodies, which
general-purpose clients normalise away, and the scanner avoids a dependency for three GET requests.
A reply is hostile until read: lines, header count, header values and the body are all bounded
(netaudit/core/caps.py), and no Accept-Encoding is sent, so a compressed body is never inflated.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from netaudit.core.caps import HEADER_VALUE_MAX, HEADERS_MAX, HTTP_BODY_MAX, clip
from netaudit.core.faults import sent
from netaudit.transport.safety import check_http

MAX_BODY = HTTP_BODY_MAX
LINE_MAX = 16 * 1024  # one status or header line; asyncio's reader refuses longer ones


class HttpError(ValueError):
    """The bytes are not an HTTP/1.x reply netaudit will read."""


@dataclass
class HttpReply:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def summary(self) -> str:
        return f"{self.status} {self.reason}, Content-Type {self.header('content-type') or '-'}, {len(self.body)}-byte body"


async def request(host: str, port: int, method: str, path: str, timeout: float,
                  headers: dict[str, str] | None = None, body: bytes = b"") -> HttpReply | None:
    """None when the peer does not answer with HTTP within the deadline. Every request passes the safety
    check first: only reads leave (netaudit/transport/safety.py)."""
    check_http(method, path, body)
    sent(f"HTTP {method} {path}")
    try:
        return await asyncio.wait_for(_request(host, port, method, path, headers or {}, body), timeout)
    except (asyncio.TimeoutError, ConnectionError, OSError, ValueError, asyncio.IncompleteReadError):
        return None


async def _request(host: str, port: int, method: str, path: str, headers: dict[str, str], body: bytes) -> HttpReply:
    reader, writer = await asyncio.open_connection(host, port, limit=LINE_MAX)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "User-Agent: netaudit", "Connection: close",
                 *(f"{k}: {v}" for k, v in headers.items())]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return await read_reply(reader, method)
    finally:
        writer.close()


async def _line(reader: asyncio.StreamReader) -> str:
    try:
        return (await reader.readline()).decode("latin-1").rstrip("\r\n")
    except (asyncio.LimitOverrunError, ValueError):
        raise HttpError(f"a line longer than {LINE_MAX} bytes") from None


async def read_reply(reader: asyncio.StreamReader, method: str = "GET") -> HttpReply:
    """Status line, at most HEADERS_MAX headers (values clipped), and at most MAX_BODY bytes of body.
    Raises HttpError for anything that is not such a reply; a closed connection ends the body."""
    status_line = await _line(reader)
    version, _, rest = status_line.partition(" ")
    if not version.startswith("HTTP/"):
        raise HttpError("not HTTP")
    code, _, reason = rest.partition(" ")
    if not (code.isascii() and code.isdigit() and len(code) == 3):
        raise HttpError(f"status code {clip(code, 20)!r}")
    reply = HttpReply(int(code), clip(reason))
    for _ in range(HEADERS_MAX + 1):
        line = await _line(reader)
        if not line:
            break
        key, _, value = line.partition(":")
        reply.headers[clip(key.strip().lower(), HEADER_VALUE_MAX)] = clip(value.strip(), HEADER_VALUE_MAX)
    else:
        raise HttpError(f"more than {HEADERS_MAX} header lines")
    length = reply.header("content-length")
    if length is not None:
        if not (length.isascii() and length.isdigit()):
            raise HttpError(f"Content-Length {length!r}")
        try:
            reply.body = await reader.readexactly(min(int(length), MAX_BODY))
        except asyncio.IncompleteReadError as exc:
            raise HttpError(f"body ended after {len(exc.partial)} of {length} bytes") from None
    elif method != "HEAD":
        reply.body = await reader.read(MAX_BODY)
    return reply

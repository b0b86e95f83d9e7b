"""A minimal HTTP/1.1 client for probes: one request per connection, a deadline, a size cap, raw headers kept.

Probes need exact status lines, header presence (or absence, as with `Server`) and bodies, which
general-purpose clients normalise away, and the scanner avoids a dependency for three GET requests.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

MAX_BODY = 1 << 20


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
    """None when the peer does not answer with HTTP within the deadline."""
    try:
        return await asyncio.wait_for(_request(host, port, method, path, headers or {}, body), timeout)
    except (asyncio.TimeoutError, ConnectionError, OSError, ValueError, asyncio.IncompleteReadError):
        return None


async def _request(host: str, port: int, method: str, path: str, headers: dict[str, str], body: bytes) -> HttpReply:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "User-Agent: netaudit", "Connection: close",
                 *(f"{k}: {v}" for k, v in headers.items())]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        status_line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/"):
            raise ValueError("not HTTP")
        code, _, reason = rest.partition(" ")
        reply = HttpReply(int(code), reason)
        while True:
            line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
            if not line:
                break
            key, _, value = line.partition(":")
            reply.headers[key.strip().lower()] = value.strip()
        length = reply.header("content-length")
        if length is not None:
            reply.body = await reader.readexactly(min(int(length), MAX_BODY))
        elif method != "HEAD":
            reply.body = await reader.read(MAX_BODY)
        return reply
    finally:
        writer.close()

"""What protocol answers on an open port, from the first bytes each side sends.

gRPC C-core servers (tf.distribute.Server, TF Serving, grpcio) send an HTTP/2 SETTINGS frame as soon as
the TCP connection is up (measured on tensorflow-cpu 2.21.0, docs/wire-facts.md §5; nmap's NULL-probe
`match grpc`, https://github.com/nmap/nmap/blob/db4aefdd/nmap-service-probes#L1438). Other servers wait
for the client: an HTTP/2 prior-knowledge preface then tells h2c, HTTP/1.x and silence apart, and a TLS
handshake on a fresh connection tells TLS apart. Nothing here is specific to TensorFlow.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from functools import cache

from netaudit.core.caps import clip
from netaudit.core.deadlines import deadlines
from netaudit.transport.h2c import H2cConnection
from netaudit.transport.h2wire import CLIENT_SETTINGS, FRAME_HEADER, FRAME_MAX, PREFACE, SETTINGS, frame, frame_header

READ_SIZE = 4096


@dataclass
class Sniff:
    protocol: str  # h2 | http | tls | banner | silent
    evidence: list[str] = field(default_factory=list)
    banner: bytes = b""
    http_status: str | None = None
    tls: dict | None = None
    tries: int = 1  # connections it took (more than one on a lossy link)
    # An h2 port's connection, kept open for the gRPC probes (whoever takes the Sniff closes it).
    connection: H2cConnection | None = None


def is_h2_settings(data: bytes) -> bool:
    """An HTTP/2 frame header for SETTINGS on stream 0 with a length that is a multiple of 6."""
    if len(data) < FRAME_HEADER:
        return False
    length, kind, _, stream = frame_header(data)
    return kind == SETTINGS and stream == 0 and length % 6 == 0 and length <= FRAME_MAX


def printable(data: bytes, limit: int = 80) -> str:
    return repr(data[:limit])[2:-1] + ("…" if len(data) > limit else "")


async def _read(reader: asyncio.StreamReader, wait: float) -> bytes | None:
    """Bytes the peer sent within `wait` seconds; b"" when it closed, None when it stayed silent."""
    try:
        return await asyncio.wait_for(reader.read(READ_SIZE), wait)
    except asyncio.TimeoutError:
        return None
    except (ConnectionError, OSError):
        return b""


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except (asyncio.TimeoutError, ConnectionError, OSError, ssl.SSLError):
        pass


def _classify_reply(data: bytes, sent: str) -> Sniff | None:
    if is_h2_settings(data):
        settings = frame_header(data)[0] // 6
        return Sniff("h2", [f"{sent}: server sent an HTTP/2 SETTINGS frame ({settings} settings)"])
    if data.startswith(b"HTTP/"):
        status = clip(data.split(b"\r\n", 1)[0].decode("latin-1"))
        return Sniff("http", [f"{sent}: server answered HTTP/1.x {status!r}"], http_status=status)
    return None


@cache
def _handshake_context() -> ssl.SSLContext:
    """One context for every handshake of the scan: it holds no per-connection state, and building one per
    handshake was 3% of a scan's CPU on thousands of plaintext TF endpoints (bench/scale.py)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


@cache
def _client_hello() -> bytes:
    """The ClientHello the handshake context sends, captured once through memory BIOs, so answers_tls can send
    it over a plain socket."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = _handshake_context().wrap_bio(incoming, outgoing, server_side=False)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


async def answers_tls(host: str, port: int, timeout: float) -> bool:
    """Whether the first bytes the port sends after a ClientHello are a TLS record (a ServerHello or an
    alert). A plain socket and one read: on a port already seen speaking plaintext this is almost always
    no (a gRPC server sent its SETTINGS before reading anything, an HTTP server an error page), and the
    full handshake (tls_handshake) costs several times more CPU on each of thousands of endpoints."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (asyncio.TimeoutError, OSError):
        return False
    try:
        writer.write(_client_hello())
        first = b""
        while len(first) < 2 and (more := await asyncio.wait_for(reader.read(2 - len(first)), timeout)):
            first += more
        return len(first) == 2 and first[0] in (0x15, 0x16) and first[1] == 0x03
    except (asyncio.TimeoutError, ConnectionError, OSError):
        return False
    finally:
        writer.close()


async def tls_handshake(host: str, port: int, timeout: float) -> Sniff | None:
    """A TLS handshake without a client certificate. A TLS alert still proves TLS (a server that
    demands a certificate in TLS 1.2 aborts the handshake with one)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=_handshake_context(), server_hostname=None), timeout)
    except ssl.SSLError as exc:
        if "ALERT" in (exc.reason or ""):
            return Sniff("tls", [f"TLS handshake aborted by the server with an alert: {exc.reason}"],
                         tls={"version": None, "alpn": None, "cipher": None, "handshake_alert": exc.reason})
        return None
    except (asyncio.TimeoutError, ConnectionError, OSError):
        return None
    ssl_obj: ssl.SSLObject = writer.get_extra_info("ssl_object")
    info = {"version": ssl_obj.version(), "alpn": ssl_obj.selected_alpn_protocol(),
            "cipher": ssl_obj.cipher()[0] if ssl_obj.cipher() else None}
    await _close(writer)
    return Sniff("tls", [f"TLS handshake completed: {info['version']}, ALPN {info['alpn'] or 'none'}"], tls=info)


async def _http_get(host: str, port: int, timeout: float) -> Sniff | None:
    """Some HTTP/1.x servers answer the HTTP/2 preface with a bare error page; a plain GET settles it."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (asyncio.TimeoutError, OSError):
        return None
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: netaudit\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        reply = await _read(reader, timeout)
    except (ConnectionError, OSError):
        reply = None
    finally:
        await _close(writer)
    return _classify_reply(reply, "after HTTP/1.1 GET /") if reply else None


async def _connect(host: str, port: int, timeout: float, retries: int) -> tuple[asyncio.StreamReader,
                                                                                asyncio.StreamWriter, int]:
    """A connection within the deadline, or after up to `retries` longer ones when it timed out (a lost
    SYN); a refusal is final. Returns how many tries it took."""
    *early, last = deadlines(timeout, retries)
    for attempt, wait in enumerate(early, 1):
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait)
            return reader, writer, attempt
        except asyncio.TimeoutError:
            pass
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), last)
    return reader, writer, len(early) + 1


async def sniff(host: str, port: int, timeout: float, banner_wait: float = 0.5, retries: int = 0) -> Sniff:
    """Classify one open port. Each step has its own deadline; the whole costs at most a few of them."""
    try:
        reader, writer, tries = await _connect(host, port, timeout, retries)
    except (asyncio.TimeoutError, OSError) as exc:
        return Sniff("silent", [f"connection failed during fingerprinting: {exc!r}"])
    found = await _classify(host, port, reader, writer, timeout, banner_wait, retries)
    found.tries = tries
    if tries > 1:
        found.evidence.insert(0, f"fingerprint connection took {tries} tries (slow link)")
    return found


def _keep(found: Sniff, host: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
          received: bytes, preface_sent: bool) -> Sniff:
    """An h2 answer keeps its connection for the gRPC probes: the calls ride on it instead of a new
    connection (the server's bytes read so far are its first frames)."""
    if found.protocol == "h2":
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        found.connection = H2cConnection(reader, writer, authority, received, preface_sent)
    return found


async def _classify(host: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    timeout: float, banner_wait: float, retries: int) -> Sniff:
    # A gRPC server's SETTINGS frame lost twice on a lossy link arrives after two retransmission timeouts:
    # silence after the preface is waited out for `retries` more deadlines before it counts as silence.
    reply_wait = timeout * (retries + 1)
    reply: bytes | None = None
    closed_early = ""
    found: Sniff | None = None
    try:
        first = await _read(reader, banner_wait)
        if first:
            found = _classify_reply(first, "on connect")
            if found:
                found = _keep(found, host, port, reader, writer, first, preface_sent=False)
                return found
            return Sniff("banner", [f"on connect: server sent {len(first)} bytes: {printable(first)}"],
                         banner=first)
        if first == b"":
            closed_early = "server closed the connection without sending anything"
        else:
            writer.write(PREFACE + frame(SETTINGS, 0, 0, CLIENT_SETTINGS))
            await writer.drain()
            reply = await _read(reader, reply_wait)
            if reply:
                found = _classify_reply(reply, "after HTTP/2 preface")
                if found:
                    found = _keep(found, host, port, reader, writer, reply, preface_sent=True)
                    return found
    except (ConnectionError, OSError):
        closed_early = "connection reset during fingerprinting"
    finally:
        if found is None or found.connection is None:
            await _close(writer)
    tls, http = await asyncio.gather(tls_handshake(host, port, timeout), _http_get(host, port, timeout))
    if tls:
        return tls
    if http:
        return http
    if closed_early:
        return Sniff("silent", [closed_early])
    if reply:
        return Sniff("banner", [f"after HTTP/2 preface: server sent {len(reply)} bytes: {printable(reply)}"],
                     banner=reply)
    return Sniff("silent", [f"accepted the connection but sent nothing, neither on connect nor after an HTTP/2 "
                            f"preface ({banner_wait + reply_wait:g}s); no TLS handshake; no reply to HTTP/1.1 GET"])

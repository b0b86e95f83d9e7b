"""Run the gRPC probes through a local relay, on the scanner's own terms: TLS, and a cap on what a server sends.

grpcio always verifies the server certificate, so it cannot talk to an endpoint whose certificate is
expired, self-signed or for another name, which are exactly the endpoints a scanner must still identify.
The relay listens on 127.0.0.1 (a port of our own), and for each connection grpcio makes it opens a TLS
connection to the target with verification off, ALPN h2 and, when given, the client identity. The
certificate itself is judged separately (probes/transport/tls.py).

The relay also caps what the server sends: a server that floods HTTP/2 frames (SETTINGS, PING,
WINDOW_UPDATE) can wedge grpcio's poller so that even call deadlines stop firing (grpcio 1.85, measured
with lab/hostile.py's settings-ping-flood). It cuts any connection whose server sent more than
INBOUND_MAX bytes, and grpcio then sees an ordinary connection loss. Plaintext gRPC does not come here:
the scanner's own HTTP/2 client reads it under the same cap (netaudit/transport/h2c.py).
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from netaudit.core.caps import RELAY_INBOUND_MAX as INBOUND_MAX

COPY_CHUNK = 65536


def client_context(client_cert: Path | None = None, client_key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    if client_cert:
        ctx.load_cert_chain(client_cert, client_key)
    return ctx


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, errors: list[str] | None = None,
                limit: int | None = None) -> None:
    """Copy until either side closes, or `limit` bytes were copied. On the server side (`errors` given) a
    close before the server sent a single byte is recorded: in TLS 1.3 a server that rejects the client
    certificate says so only after the handshake, and Python's asyncio reports its alert as a plain end
    of stream."""
    copied = 0
    try:
        while data := await reader.read(COPY_CHUNK):
            copied += len(data)
            if limit is not None and copied > limit:
                if errors is not None:
                    errors.append(f"connection cut: the server sent more than {limit:,} bytes")
                break
            writer.write(data)
            await writer.drain()
        if errors is not None and not copied:
            errors.append("the server closed the TLS connection after the handshake without sending anything "
                          "(how a TLS 1.3 server rejects a client certificate)")
    except (ConnectionError, OSError, ssl.SSLError) as exc:
        if errors is not None:
            errors.append(f"TLS connection closed by the server: {exc!r}")
    finally:
        writer.close()


class TlsRelay:
    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, timeout: float):
        self.host, self.port, self.ctx, self.timeout = host, port, ctx, timeout
        self.server: asyncio.Server | None = None
        self.errors: list[str] = []
        self.tasks: set[asyncio.Task] = set()

    async def _handle(self, local_reader: asyncio.StreamReader, local_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self._relay(local_reader, local_writer)
        except asyncio.CancelledError:
            local_writer.close()
        finally:
            self.tasks.discard(task)

    async def _relay(self, local_reader: asyncio.StreamReader, local_writer: asyncio.StreamWriter) -> None:
        try:
            remote_reader, remote_writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=self.ctx,
                                        server_hostname=None), self.timeout)
        except (asyncio.TimeoutError, ConnectionError, OSError, ssl.SSLError) as exc:
            self.errors.append(f"TLS connection to {self.host}:{self.port} failed: {exc!r}")
            local_writer.close()
            return
        remote = asyncio.ensure_future(_pipe(remote_reader, local_writer, self.errors, INBOUND_MAX))
        local = asyncio.ensure_future(_pipe(local_reader, remote_writer))
        try:
            await asyncio.wait((remote, local), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not local.done():  # the server closed or was cut off: grpcio's side goes down with it
                remote_writer.close()
            for pipe in (remote, local):
                pipe.cancel()
            await asyncio.gather(remote, local, return_exceptions=True)

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

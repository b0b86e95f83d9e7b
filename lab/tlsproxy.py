"""A TLS-terminating TCP proxy for the lab: `python -m netaudit.lab.tlsproxy --listen P --backend H:P …`.

tf.distribute.Server cannot do TLS itself, so the lab puts it behind proxies that present the
certificates a scanner must judge: expired, self-signed, for another name, without ALPN (like stunnel),
serving plaintext and TLS on the same port (--dual), or accepting TLS 1.0 and 1.1 (--legacy). Binds 127.0.0.1 only.

One asyncio thread does all the TLS, through memory BIOs. A relay that reads an SSLSocket in one thread
while another thread writes it races inside OpenSSL (one SSL object used by two threads) and corrupted
this proxy's heap during a CI scan (python/cpython#143756, #151508).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import warnings

TLS_HANDSHAKE = 0x16
SETUP_SECONDS = 10  # first bytes, TLS handshake and backend connect, or the connection is dropped
CHUNK = 65536


def report(_loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """A reset or a failed backend connect is one line in the lab log: scanners cause them all the time."""
    print(f"connection not served: {context.get('exception') or context.get('message')!r}", file=sys.stderr,
          flush=True)


class TLSLink:
    """The server side of one TLS connection, driven through memory BIOs. asyncio's own TLS transport
    drops the alert OpenSSL writes when a handshake fails, and a scanner's TLS detection (nmap's
    SSLSessionReq probe) reads that alert as the sign of a TLS server; here every byte OpenSSL writes
    is sent."""

    def __init__(self, ctx: ssl.SSLContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 first: bytes):
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.incoming.write(first)
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.reader, self.writer = reader, writer

    async def _flush(self) -> None:
        if data := self.outgoing.read():
            self.writer.write(data)
            await self.writer.drain()

    async def _feed(self) -> None:
        if data := await self.reader.read(CHUNK):
            self.incoming.write(data)
        else:
            self.incoming.write_eof()

    async def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                await self._feed()
            except ssl.SSLError:
                await self._flush()  # the alert
                raise
        await self._flush()

    async def read(self, size: int = CHUNK) -> bytes:
        """Application data, or b"" once the client closed (with close_notify or without)."""
        while True:
            try:
                data = self.tls.read(size)
            except ssl.SSLWantReadError:
                await self._flush()
                await self._feed()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            await self._flush()
            return data

    def write(self, data: bytes) -> None:
        self.tls.write(data)  # a memory BIO takes everything: no want-write
        self.writer.write(self.outgoing.read())

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


async def pipe(source, sink) -> None:
    """One direction; its end closes the other side too, as neither TF nor gRPC half-closes."""
    try:
        while data := await source.read(CHUNK):
            sink.write(data)
            await sink.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        sink.close()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, backend: tuple[str, int],
                 ctx: ssl.SSLContext, dual: bool) -> None:
    source: TLSLink | asyncio.StreamReader = reader
    sink: TLSLink | asyncio.StreamWriter = writer
    try:
        async with asyncio.timeout(SETUP_SECONDS):
            first = await reader.read(CHUNK)
            if not first:
                writer.close()
                return
            if not dual or first[0] == TLS_HANDSHAKE:
                source = sink = TLSLink(ctx, reader, writer, first)
                await source.handshake()
                first = b""
            upstream_reader, upstream = await asyncio.open_connection(*backend)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        if not isinstance(exc, ssl.SSLError):  # a failed handshake is what a scanner's TLS check causes
            report(asyncio.get_running_loop(), {"exception": exc})
        writer.close()
        return
    if first:  # --dual's plaintext: what was read to tell it from TLS goes on first
        upstream.write(first)
    await asyncio.gather(pipe(source, upstream), pipe(upstream_reader, sink))


async def serve(port: int, backend: tuple[str, int], ctx: ssl.SSLContext, dual: bool) -> None:
    asyncio.get_running_loop().set_exception_handler(report)
    server = await asyncio.start_server(lambda r, w: handle(r, w, backend, ctx, dual), "127.0.0.1", port)
    print(f"READY tlsproxy {port} -> {backend[0]}:{backend[1]}", flush=True)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--backend", required=True, help="host:port of the plaintext server behind")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--no-alpn", action="store_true", help="negotiate no ALPN, as stunnel does")
    parser.add_argument("--dual", action="store_true", help="also accept plaintext on the same port")
    parser.add_argument("--legacy", action="store_true", help="also accept TLS 1.0 and 1.1 (deprecated, RFC 8996)")
    args = parser.parse_args()
    host, _, port = args.backend.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    if not args.no_alpn:
        ctx.set_alpn_protocols(["h2"])
    if args.legacy:
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated is the point of this variant
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    asyncio.run(serve(args.listen, (host, int(port)), ctx, args.dual))


if __name__ == "__main__":
    main()

"""A TLS-terminating TCP proxy for the lab: `python -m netaudit.lab.tlsproxy --listen P --backend H:P …`.

tf.distribute.Server cannot do TLS itself, so the lab puts it behind proxies that present the
certificates a scanner must judge: expired, self-signed, for another name, without ALPN (like stunnel),
serving plaintext and TLS on the same port (--dual), or accepting TLS 1.0 and 1.1 (--legacy). Binds 127.0.0.1 only.

One asyncio thread does all the TLS. A relay that reads an SSLSocket in one thread while another thread
writes it races inside OpenSSL (one SSL object used by two threads) and corrupted this proxy's heap
during a CI scan (python/cpython#143756, #151508).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import ssl
import sys
import warnings

TLS_HANDSHAKE = 0x16
SETUP_SECONDS = 10  # first byte, TLS handshake and backend connect, or the connection is dropped


def report(_loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """A failed handshake or a reset is one line in the lab log: scanners send such connections all the time."""
    print(f"connection not served: {context.get('exception') or context.get('message')!r}", file=sys.stderr,
          flush=True)


async def first_byte(conn: socket.socket) -> bytes:
    """Peek, so that a --dual proxy can hand the same bytes to TLS or to the backend."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    loop.add_reader(conn, lambda: readable.done() or readable.set_result(None))
    try:
        await readable
    finally:
        loop.remove_reader(conn)
    return conn.recv(1, socket.MSG_PEEK)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One direction; its end closes the other side too, as neither TF nor gRPC half-closes."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def handle(conn: socket.socket, backend: tuple[str, int], ctx: ssl.SSLContext, dual: bool) -> None:
    loop = asyncio.get_running_loop()
    client: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(SETUP_SECONDS):
            first = await first_byte(conn)
            if not first:
                conn.close()
                return
            reader = asyncio.StreamReader()
            protocol = asyncio.StreamReaderProtocol(reader)
            tls = ctx if not dual or first[0] == TLS_HANDSHAKE else None
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, conn, ssl=tls)
            client = asyncio.StreamWriter(transport, protocol, reader, loop)
            upstream_reader, upstream = await asyncio.open_connection(*backend)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        report(loop, {"exception": exc})
        if client is None:
            conn.close()
        else:
            client.close()
        return
    await asyncio.gather(pipe(reader, upstream), pipe(upstream_reader, client))


async def serve(listener: socket.socket, backend: tuple[str, int], ctx: ssl.SSLContext, dual: bool) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(report)
    listener.setblocking(False)
    connections: set[asyncio.Task] = set()
    while True:
        try:
            conn, _ = await loop.sock_accept(listener)
        except OSError as exc:
            # A client that reset before accept, or no descriptor left under load: that connection fails,
            # the proxy (one lab endpoint) stays up for the rest of the scan.
            report(loop, {"exception": exc})
            await asyncio.sleep(0.05)
            continue
        task = asyncio.create_task(handle(conn, backend, ctx, dual))
        connections.add(task)
        task.add_done_callback(connections.discard)


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
    listener = socket.create_server(("127.0.0.1", args.listen))
    print(f"READY tlsproxy {args.listen} -> {args.backend}", flush=True)
    asyncio.run(serve(listener, (host, int(port)), ctx, args.dual))


if __name__ == "__main__":
    main()

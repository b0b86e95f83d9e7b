"""A TLS-terminating TCP proxy for the lab: `python -m netaudit.lab.tlsproxy --listen P --backend H:P …`.

tf.distribute.Server cannot do TLS itself, so the lab puts it behind proxies that present the
certificates a scanner must judge: expired, self-signed, for another name, without ALPN (like stunnel),
serving plaintext and TLS on the same port (--dual), or accepting TLS 1.0 and 1.1 (--legacy). Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
import threading
import time
import warnings

TLS_HANDSHAKE = 0x16


def relay(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def handle(conn: socket.socket, backend: tuple[str, int], ctx: ssl.SSLContext, dual: bool) -> None:
    try:
        conn.settimeout(10)
        first = conn.recv(1, socket.MSG_PEEK)
        client: socket.socket = conn
        if first and (not dual or first[0] == TLS_HANDSHAKE):
            client = ctx.wrap_socket(conn, server_side=True)
        client.settimeout(None)
        upstream = socket.create_connection(backend, timeout=10)
        upstream.settimeout(None)
    except (OSError, ssl.SSLError):
        conn.close()
        return
    threading.Thread(target=relay, args=(client, upstream), daemon=True).start()
    relay(upstream, client)
    client.close()
    upstream.close()


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
    while True:
        conn = None
        try:
            conn, _ = listener.accept()
            threading.Thread(target=handle, args=(conn, (host, int(port)), ctx, args.dual), daemon=True).start()
        except (OSError, RuntimeError) as exc:
            # A client that reset before accept, no descriptor or thread left under load: that connection
            # fails, the proxy (one lab endpoint) stays up for the rest of the scan.
            print(f"connection not served: {exc!r}", file=sys.stderr, flush=True)
            if conn is not None:
                conn.close()
            time.sleep(0.05)


if __name__ == "__main__":
    main()

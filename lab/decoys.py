"""Services that look a little like TF servers on the wire and must never be reported as one.

Run as one process by the lab: `python -m netaudit.lab.decoys --ports '{"grpc": 41001, …}' --dir DIR`.
Each binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import http.server
import json
import socket
import socketserver
import ssl
import threading
import time
from concurrent import futures
from pathlib import Path

BANNER = b"220 decoy.lab ESMTP Postfix (Debian/GNU)\r\n"
LOCALHOST = "127.0.0.1"


def write_self_signed(directory: Path, name: str = "decoy.lab") -> tuple[Path, Path]:
    from netaudit.lab.certs import LabCA

    return LabCA(directory / "decoy-ca").issue(name, name, sans=(name,), self_signed=True)


class JsonHandler(http.server.BaseHTTPRequestHandler):
    server_version = "nginx/1.22.1"
    sys_version = ""

    def do_GET(self) -> None:
        body = json.dumps({"error": "not found", "path": self.path}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class ThreadingHTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve_http(port: int, tls: tuple[Path, Path] | None = None) -> None:
    server = ThreadingHTTPServer((LOCALHOST, port), JsonHandler)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        ctx.set_alpn_protocols(["http/1.1"])
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def serve_raw(port: int, greeting: bytes | None) -> None:
    """A TCP service that sends `greeting` on connect (a banner) or nothing at all (silent), and holds on."""
    listener = socket.create_server((LOCALHOST, port), reuse_port=False)

    def hold(conn: socket.socket) -> None:
        with conn:
            if greeting:
                conn.sendall(greeting)
            conn.settimeout(30)
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                pass

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=hold, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def serve_grpc(port: int):
    """An ordinary grpcio server with the standard health and reflection services."""
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    names = (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    server.add_insecure_port(f"{LOCALHOST}:{port}")
    server.start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ports", required=True, help='JSON {"grpc": port, "http": …, "tls": …, "banner": …, "silent": …}')
    parser.add_argument("--dir", required=True, type=Path, help="where the TLS decoy's certificate goes")
    args = parser.parse_args()
    ports = json.loads(args.ports)
    keep = []
    for kind, port in ports.items():
        if kind == "grpc":
            keep.append(serve_grpc(port))
        elif kind == "http":
            serve_http(port)
        elif kind == "tls":
            serve_http(port, write_self_signed(args.dir))
        elif kind == "banner":
            serve_raw(port, BANNER)
        elif kind == "silent":
            serve_raw(port, None)
        else:
            parser.error(f"unknown decoy {kind!r}")
    print("READY decoys", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()

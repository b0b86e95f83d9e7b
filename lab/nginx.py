"""Debian's nginx as the mTLS gRPC proxy in front of a tf.distribute.Server (which cannot do TLS itself).

With `ssl_verify_client on` nginx completes the TLS handshake without a client certificate and then
answers the request with HTTP 400, so the certificate is required at the HTTP layer, not in the handshake.
With `optional` it asks for one and lets clients without one through.
"""

from __future__ import annotations

from pathlib import Path

from netaudit.lab.processes import LabProcess, spawn

CONFIG = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{servers}}}
"""
SERVER = """\
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {ca};
        ssl_verify_client {verify};
        location / {{ grpc_pass grpc://{backend}; }}
    }}
"""


def start_nginx_mtls(directory: Path, ports: dict[str, int], backend: str, server: tuple[Path, Path],
                     ca: Path) -> LabProcess:
    """One nginx with a server per `ssl_verify_client` value in `ports` ("on": required, "optional":
    requested but not required)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "nginx.conf"
    servers = "".join(SERVER.format(port=port, cert=server[0], key=server[1], ca=ca, verify=verify, backend=backend)
                      for verify, port in ports.items())
    config.write_text(CONFIG.format(dir=directory, servers=servers))
    return spawn("nginx-mtls", ["nginx", "-c", str(config), "-p", str(directory), "-e", str(directory / "error.log")],
                 directory.parent, ready_marker=f"port:{max(ports.values())}")

"""Hostile servers: honeypots and tarpits that try to crash, stall, bloat or spoof a scanner.

Run as one process by the lab: `python -m netaudit.lab.hostile --ports '{"tarpit": 41001, …}' --tarpits
'[41100, …]' --dir DIR`. Every server binds 127.0.0.1 only and each case is one entry of CASES. The
tests scan all of them beside the lab's real TF servers (tests/test_hostile.py), bench/hostile.py
measures the same runs, and `netaudit lab up --hostile` adds them to the loopback lab.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gzip
import json
import os
import re
import resource
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from netaudit.lab.base import Lab, LabEndpoint
from netaudit.lab.processes import free_ports, module_argv, spawn
from netaudit.transport.h2wire import EMPTY_SETTINGS, MAX_CONCURRENT_STREAMS, PING, SETTINGS, WINDOW_UPDATE, frame

LOCALHOST = "127.0.0.1"
# Every string a hostile server controls carries this: it retitles (OSC 0), clears (ED 2J), recolours,
# forges a line (CR LF), and reverses the reading order (RLO, LRI/PDI), and holds DEL and a C1 CSI.
SPOOF = "\x1b]0;pwned\x07\x1b[2J\x1b[31mFAKE\x1b[0m\r\nOK \u202eevil\u202c \u2066x\u2069 \x7f\x9b1m"
TF_PREFIX = "/tensorflow."
LEADER_DETAILS = "Unable to find a context_id"
PARSE_ERROR = "Unable to parse request"

# case -> (what it does, the kind a scan should report). Kinds are what an honest scanner can say;
# "any" marks cases whose whole point is that the scan survives them.
CASES: dict[str, tuple[str, str]] = {
    "tarpit": ("accepts and never sends or closes", "unknown"),
    "drip": ("answers any bytes with an HTTP reply, one byte every 0.2 s, forever", "any"),
    "h2-frame-flood": ("HTTP/2 SETTINGS, then an endless stream of WINDOW_UPDATE and unknown frames", "any"),
    "settings-ping-flood": ("HTTP/2 SETTINGS and PING frames without end", "any"),
    "reset-mid-rpc": ("speaks HTTP/2 until a request's HEADERS arrive, then resets the TCP connection", "any"),
    "grpc-oversized": ("a TF-like server whose GetStatus is 120,000 devices (11 MiB)", "any"),
    "grpc-invalid-protobuf": ("a TF-like server whose GetStatus is not protobuf (wire type 7)", "any"),
    "grpc-wrong-message": ("a TF-like server whose GetStatus is valid protobuf of another message", "any"),
    "grpc-spoof-devices": ("a TF-like server with 800 devices whose names hold escape sequences", "tf-server"),
    "grpc-gzip-bomb": ("a TF-like server whose gzip-compressed GetStatus expands 1000x, to 16 MiB", "any"),
    "grpc-modelserver-spoof": ("a ModelServer-like server: escape sequences and thousands of versions and "
                               "signatures", "modelserver-grpc"),
    "grpc-reflection-spoof": ("health and reflection: 10,000 service names with escape sequences", "grpc"),
    "rest-modelserver-spoof": ("a TF Serving REST look-alike: metrics naming 5,000 models with escape "
                               "sequences, JSON nested 100,000 deep, endless versions", "modelserver-rest"),
    "http-spoof": ("HTTP status line and headers with escape sequences and bidi overrides", "http"),
    "http-endless-body": ("an HTTP reply whose body never ends", "http"),
    "http-endless-header": ("an HTTP reply whose first header line never ends", "any"),
    "http-many-headers": ("an HTTP reply with an endless number of header lines", "any"),
    "http-gzip-bomb": ("an HTTP reply with a gzip body that expands 1000x", "http"),
    "banner-spoof": ("a banner made of escape sequences and bidi overrides", "unknown"),
    "tls-garbage": ("answers a ClientHello with random bytes behind a TLS record header", "any"),
    "tls-stall": ("reads the ClientHello, sends 6 bytes of a ServerHello, then stalls", "any"),
    "tls-spoof-subject": ("TLS with a certificate whose subject holds escape sequences", "tls"),
}


# ---- HTTP/2 frames, raw (netaudit/transport/h2wire.py builds them) ------------------------------------

UNKNOWN_FRAME = 0xEE  # a frame type no RFC defines: a client must ignore it (RFC 9113 §4.1)
FLOOD = b"".join(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)) + frame(UNKNOWN_FRAME, 0, 0, b"x" * 32)
                 for _ in range(256))
PING_FLOOD = b"".join(frame(SETTINGS, 0, 0, struct.pack(">HI", MAX_CONCURRENT_STREAMS, 100))
                      + frame(PING, 0, 0, b"pingpong") for _ in range(256))


async def _hold(reader: asyncio.StreamReader) -> None:
    """Read and drop whatever the client sends until it goes away."""
    while await reader.read(65536):
        pass


async def tarpit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _hold(reader)


async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1)
    reply = b"HTTP/1.1 200 OK\r\nServer: drip\r\nX-Drip: " + b"d" * 10_000_000
    for byte in reply:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.2)


async def _flood(writer: asyncio.StreamWriter, chunk: bytes) -> None:
    writer.write(EMPTY_SETTINGS)
    while True:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0.005)  # a flood, but one that leaves the shared CI cores to the scan


async def h2_frame_flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _flood(writer, FLOOD)


async def settings_ping_flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _flood(writer, PING_FLOOD)


async def reset_mid_rpc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(EMPTY_SETTINGS)
    data = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return
        data += chunk
        if b"/tensorflow" in data or b"/grpc" in data:  # the HEADERS of the first call
            break
        data = data[-64:]
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# ---- HTTP/1.x ------------------------------------------------------------------------------------

async def _request_line(reader: asyncio.StreamReader) -> tuple[str, str] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    return (parts[0], parts[1]) if len(parts) >= 2 else None


def http_reply(status: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("utf-8") + body


async def _serve_http(reader, writer, respond) -> None:
    request = await _request_line(reader)
    if request is None:
        return
    await respond(writer, *request)
    await writer.drain()


async def http_spoof(reader, writer) -> None:
    async def respond(w, method, path):
        w.write(http_reply(f"404 {SPOOF}", [("Server", SPOOF), ("Content-Type", SPOOF), ("X-Long", "v" * 100_000)],
                           SPOOF.encode()))
    await _serve_http(reader, writer, respond)


async def http_endless_body(reader, writer) -> None:
    async def respond(w, method, path):
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        block = b"endless " * 8192
        while True:
            w.write(block)
            await w.drain()
    await _serve_http(reader, writer, respond)


async def http_endless_header(reader, writer) -> None:
    async def respond(w, method, path):
        w.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        while True:
            w.write(b"h" * 65536)
            await w.drain()
    await _serve_http(reader, writer, respond)


async def http_many_headers(reader, writer) -> None:
    async def respond(w, method, path):
        w.write(b"HTTP/1.1 200 OK\r\n")
        n = 0
        while True:
            w.write(b"".join(f"X-{n + i}: {SPOOF!r}\r\n".encode() for i in range(512)))
            n += 512
            await w.drain()
    await _serve_http(reader, writer, respond)


@functools.cache
def gzip_bomb() -> bytes:
    return gzip.compress(b"\0" * (64 << 20), 9)  # 64 MiB of zeros in ~64 KiB


async def http_gzip_bomb(reader, writer) -> None:
    async def respond(w, method, path):
        w.write(http_reply("200 OK", [("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
                           gzip_bomb()))
    await _serve_http(reader, writer, respond)


# The TF Serving REST look-alike: identified by its exact error body, then hostile in everything after.
SPOOF_NAMES = [f"model-{i}-{SPOOF}" if i % 2 else f"m{i}" for i in range(5000)]


@functools.cache
def rest_bodies() -> dict[str, bytes]:
    """Metrics, a model's versions and its metadata: the last two under the 256 KiB body cap, so they parse
    and the caps, not the reader, have to bound them; the metrics page is cut by the reader."""
    metrics = "".join(f':tensorflow:serving:request_count{{model_name="{name}",status="OK"}} 1\n'
                      for name in SPOOF_NAMES)
    versions = {"model_version_status": [
        {"version": str(v), "state": SPOOF, "status": {"error_code": SPOOF, "error_message": SPOOF}}
        for v in range(1, 301)]}
    tensors = {f"in-{i}-{SPOOF}": {"dtype": SPOOF, "tensor_shape": {"dim": [{"size": "1"}] * 5}, "name": SPOOF}
               for i in range(12)}
    defs = {f"sig-{i}-{SPOOF}": {"method_name": SPOOF, "inputs": tensors, "outputs": tensors} for i in range(12)}
    metadata = {"model_spec": {"version": "1"}, "metadata": {"signature_def": {"signature_def": defs}}}
    return {"metrics": metrics.encode(), "versions": json.dumps(versions).encode(),
            "metadata": json.dumps(metadata).encode()}


DEEP_JSON = b"[" * 100_000


async def rest_modelserver_spoof(reader, writer) -> None:
    async def respond(w, method, path):
        json_type = [("Content-Type", "application/json")]
        name = unquote(path[len("/v1/models/"):]) if path.startswith("/v1/models/") else ""
        if name.endswith(":predict"):
            w.write(http_reply("400 Bad Request", json_type,
                               b'{"error": "JSON Parse error: The document is empty"}'))
        elif name.startswith("netaudit-probe-"):
            body = json.dumps({"error": f"Could not find any versions of model {name}"}).encode()
            w.write(http_reply("404 Not Found", json_type, body))
        elif path == "/monitoring/prometheus/metrics":
            w.write(http_reply("200 OK", [("Content-Type", "text/plain")], rest_bodies()["metrics"]))
        elif name.endswith("/metadata"):
            w.write(http_reply("200 OK", json_type, rest_bodies()["metadata"]))
        elif name == "m0":
            w.write(http_reply("200 OK", json_type, DEEP_JSON))
        elif name:
            w.write(http_reply("200 OK", json_type, rest_bodies()["versions"]))
        else:
            w.write(http_reply("404 Not Found", [("Content-Type", "text/html")], b"<HTML></HTML>\n"))
    await _serve_http(reader, writer, respond)


async def banner_spoof(reader, writer) -> None:
    writer.write(("SSH-2.0-" + SPOOF + "\r\n").encode())
    await writer.drain()
    await _hold(reader)


# ---- TLS -----------------------------------------------------------------------------------------

async def tls_garbage(reader, writer) -> None:
    if not await reader.read(1):
        return
    writer.write(b"\x16\x03\x03\x40\x00" + os.urandom(16384) + os.urandom(4096))
    await writer.drain()
    await _hold(reader)


async def tls_stall(reader, writer) -> None:
    if not await reader.read(5):
        return
    writer.write(b"\x16\x03\x03\x00\x7a\x02")  # a ServerHello record header and its type, then nothing
    await writer.drain()
    await _hold(reader)


# ---- gRPC, with grpcio's asyncio server and raw bytes --------------------------------------------

def _device(name: str, kind: str = "CPU") -> bytes:
    from netaudit.transport import protowire

    return protowire.field(1, protowire.field(1, name) + protowire.field(2, kind) + protowire.field(4, 1 << 30)
                           + protowire.field(7, SPOOF))


@functools.cache
def tf_status_bodies() -> dict[str, bytes]:
    """GetStatus replies of the TF-like cases."""
    from netaudit.transport import protowire

    plain = _device("/job:worker/replica:0/task:0/device:CPU:0")
    spoof = b"".join(_device(f"/job:{SPOOF}/replica:0/task:0/device:{SPOOF}:{i}", SPOOF) for i in range(800))
    return {
        "grpc-oversized": plain * 120_000,
        "grpc-invalid-protobuf": b"\x0f\xff\xff" + plain,
        # A ModelVersionStatus list: field 1 holds messages, but not DeviceAttributes.
        "grpc-wrong-message": protowire.field(1, protowire.field(1, 3) + protowire.field(2, 30)) * 3,
        "grpc-spoof-devices": spoof,
        "grpc-gzip-bomb": protowire.field(1, b"\0" * (16 << 20)),
    }


def _tf_behaviour(method: str, status_body: bytes) -> tuple[str, str, bytes]:
    """(code, details, body) of a TF-like server: the TF signatures exactly, GetStatus hostile."""
    if method.endswith("WorkerService/GetStatus"):
        return "OK", "", status_body
    if method.endswith("EagerService/KeepAlive"):
        return "ABORTED", f"{LEADER_DETAILS} {SPOOF}", b""
    if method.endswith("CoordinationService/Heartbeat"):
        return "INTERNAL", "Coordination service is not enabled.", b""
    if method.endswith("ProfilerService/Monitor"):
        return "UNIMPLEMENTED", "unimplemented.", b""
    return "INTERNAL", PARSE_ERROR, b""


@functools.cache
def _model_status() -> bytes:
    from netaudit.transport import protowire

    return b"".join(protowire.field(1, protowire.field(1, v) + protowire.field(2, 30)
                                    + protowire.field(3, protowire.field(1, 0) + protowire.field(2, SPOOF)))
                    for v in range(1, 1001))


@functools.cache
def _model_metadata() -> bytes:
    from netaudit.transport import protowire as pw

    tensor = pw.field(1, SPOOF) + pw.field(2, 1) + pw.field(3, b"".join(pw.field(2, pw.field(1, 1)) for _ in range(50)))
    side = b"".join(pw.field(1, pw.field(1, f"t{i}-{SPOOF}") + pw.field(2, tensor)) for i in range(20))
    sig = pw.field(1, side) + pw.field(2, side) + pw.field(3, SPOOF)
    defs = b"".join(pw.field(1, pw.field(1, f"sig{i}-{SPOOF}") + pw.field(2, sig)) for i in range(16))
    any_value = pw.field(1, "type.googleapis.com/tensorflow.serving.SignatureDefMap") + pw.field(2, defs)
    return pw.field(1, pw.field(1, SPOOF) + pw.field(2, pw.field(1, 1))) + \
        pw.field(2, pw.field(1, "signature_def") + pw.field(2, any_value))


def _modelserver_behaviour(method: str, request: bytes, bodies: dict[str, bytes]) -> tuple[str, str, bytes]:
    from netaudit.transport import protowire

    if method.endswith("ModelService/GetModelStatus") or method.endswith("PredictionService/GetModelMetadata"):
        if not request:
            return "INVALID_ARGUMENT", "Missing ModelSpec", b""
        name = protowire.decode(request).message(1).str(1)
        if name.startswith("netaudit-probe-"):
            return "NOT_FOUND", f"Could not find any versions of model {name}", b""
        return "OK", "", bodies["status" if method.endswith("GetModelStatus") else "metadata"]
    if method.endswith("HandleReloadConfigRequest"):
        return "INVALID_ARGUMENT", "ServerModelConfig type not supported by HandleReloadConfigRequest", b""
    if method.endswith("PredictionService/Predict"):
        return "INVALID_ARGUMENT", "Missing ModelSpec", b""
    if method.endswith("ProfilerService/Monitor"):
        return "UNIMPLEMENTED", "unimplemented.", b""
    return "UNIMPLEMENTED", "", b""


def reflection_listing() -> bytes:
    from netaudit.transport import protowire

    services = b"".join(protowire.field(1, protowire.field(1, f"svc{i}.{SPOOF}")) for i in range(10_000))
    return protowire.field(6, services)


async def start_grpc(case: str, port: int):
    import grpc
    import grpc.aio

    status_bodies = tf_status_bodies() if case.startswith("grpc-") and case != "grpc-modelserver-spoof" else {}
    model_bodies = {"status": _model_status(), "metadata": _model_metadata()} \
        if case == "grpc-modelserver-spoof" else {}
    listing = reflection_listing() if case == "grpc-reflection-spoof" else b""

    def unary(method: str):
        async def handle(request: bytes, context):
            if case == "grpc-modelserver-spoof":
                code, details, body = _modelserver_behaviour(method, request, model_bodies)
            elif case == "grpc-reflection-spoof":
                code, details, body = ("OK", "", b"\x08\x01") if method.endswith("Health/Check") else \
                    ("UNIMPLEMENTED", "", b"")
            else:
                code, details, body = _tf_behaviour(method, status_bodies.get(case, b""))
            if case == "grpc-gzip-bomb":
                context.set_compression(grpc.Compression.Gzip)
            if code != "OK":
                await context.abort(getattr(grpc.StatusCode, code), details)
            return body
        return grpc.unary_unary_rpc_method_handler(handle)

    def reflection():
        async def handle(requests, context):
            async for _ in requests:
                yield listing
        return grpc.stream_stream_rpc_method_handler(handle)

    class Handler(grpc.GenericRpcHandler):
        def service(self, details):
            method = details.method
            if case == "grpc-reflection-spoof" and "ServerReflection" in method:
                return reflection()
            if case == "grpc-reflection-spoof" and "Health" not in method:
                return None
            return unary(method)

    server = grpc.aio.server(options=[("grpc.max_send_message_length", -1)])
    server.add_generic_rpc_handlers((Handler(),))
    server.add_insecure_port(f"{LOCALHOST}:{port}")
    await server.start()
    return server


async def start_tls_subject(port: int, directory: Path) -> asyncio.base_events.Server:
    import ssl

    from netaudit.lab.certs import LabCA

    cert, key = LabCA(directory / "hostile-ca").issue("hostile", "\x1b]0;pwn\x07\u202eCN\x1b[2J", self_signed=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    return await asyncio.start_server(tarpit, LOCALHOST, port, ssl=ctx)


RAW = {"tarpit": tarpit, "drip": drip, "h2-frame-flood": h2_frame_flood, "settings-ping-flood": settings_ping_flood,
       "reset-mid-rpc": reset_mid_rpc, "http-spoof": http_spoof, "http-endless-body": http_endless_body,
       "http-endless-header": http_endless_header, "http-many-headers": http_many_headers,
       "http-gzip-bomb": http_gzip_bomb, "rest-modelserver-spoof": rest_modelserver_spoof,
       "banner-spoof": banner_spoof, "tls-garbage": tls_garbage, "tls-stall": tls_stall}


async def serve(ports: dict[str, int], tarpits: list[int], directory: Path) -> None:
    keep = []
    for case, port in ports.items():
        if case in RAW:
            keep.append(await asyncio.start_server(RAW[case], LOCALHOST, port, limit=1 << 20))
        elif case.startswith("grpc-"):
            keep.append(await start_grpc(case, port))
        elif case == "tls-spoof-subject":
            keep.append(await start_tls_subject(port, directory))
        else:
            raise SystemExit(f"unknown hostile case {case!r}")
    for port in tarpits:
        keep.append(await asyncio.start_server(tarpit, LOCALHOST, port, backlog=64))
    print(f"READY hostile: {len(ports)} cases, {len(tarpits)} tarpit ports", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ports", required=True, help='JSON {"case": port, …} (cases: see CASES)')
    parser.add_argument("--tarpits", default="[]", help="JSON list of extra tarpit ports")
    parser.add_argument("--dir", required=True, type=Path, help="where the spoofing certificate goes")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(serve(json.loads(args.ports), json.loads(args.tarpits), args.dir))


# ---- in the lab ----------------------------------------------------------------------------------

def plan_hostile(lab: Lab, tarpits: int = 0, cases: tuple[str, ...] = tuple(CASES)) -> None:
    """Add the hostile process and its endpoints to `lab` (kind: what a scan should report, or "any")."""
    taken = {e.port for e in lab.endpoints}
    picked = [port for port in free_ports(len(cases) + tarpits + len(taken)) if port not in taken]
    ports = dict(zip(cases, picked, strict=False))
    extra = picked[len(cases):len(cases) + tarpits]
    lab.processes.append(spawn("hostile", module_argv("netaudit.lab.hostile", "--ports", json.dumps(ports),
                                                      "--tarpits", json.dumps(extra), "--dir", str(lab.dir)), lab.dir))
    lab.endpoints += [LabEndpoint(f"hostile/{case}", LOCALHOST, port, CASES[case][1], "hostile",
                                  facts={"hostile": CASES[case][0]}) for case, port in ports.items()]
    lab.endpoints += [LabEndpoint(f"hostile/tarpit-{i}", LOCALHOST, port, "unknown", "hostile",
                                  facts={"hostile": CASES["tarpit"][0]}) for i, port in enumerate(extra)]


class HostileLab(Lab):
    """Only the hostile servers (plus `tarpits` extra tarpit ports), for a test or benchmark that scans them
    beside a lab that is already up."""

    kind = "hostile"

    def __init__(self, state_dir: Path | None = None, tarpits: int = 0, cases: tuple[str, ...] = tuple(CASES)):
        super().__init__(state_dir)
        self.tarpits = tarpits
        self.cases = cases

    def _plan(self, deadline: float) -> None:
        plan_hostile(self, self.tarpits, self.cases)


@dataclass
class Measured:
    """One scan run in a child process: wall time, the child's peak RSS, exit code and output size."""

    seconds: float
    peak_rss_mb: float
    returncode: int
    stderr: str


RUSAGE_WRAPPER = """\
import resource, subprocess, sys
try:
    code = subprocess.run(sys.argv[2:], timeout=float(sys.argv[1])).returncode
except subprocess.TimeoutExpired:  # run() killed and reaped the child: its peak RSS still counts
    code = -9
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)
"""


def measured_run(argv: list[str], stdin: str = "", timeout: float = 900) -> Measured:
    """`argv` under a wrapper process whose only child it is, so RUSAGE_CHILDREN's peak RSS is its own.
    After `timeout` seconds the child is killed (exit -9) and what it used so far is reported."""
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", RUSAGE_WRAPPER, f"{timeout:g}", *argv], input=stdin,
                         capture_output=True, text=True, timeout=timeout + 60)
    seconds = time.monotonic() - started
    match = re.search(r"(\d+) (-?\d+)\s*$", run.stdout)
    if not match:
        raise RuntimeError(f"the measured run did not report: {run.stdout[-500:]!r} {run.stderr[-2000:]!r}")
    return Measured(seconds, int(match[1]) / 1024, int(match[2]), run.stderr)


def measured_scan(targets: list[str], output: Path, *options: str, timeout: float = 900) -> Measured:
    """`netaudit scan` of `targets` (fed on stdin) writing JSON to `output`, measured by measured_run."""
    return measured_run([sys.executable, "-m", "netaudit", "scan", "-", "--no-history", "--format", "json",
                         "-o", str(output), *options], "\n".join(targets), timeout)


if __name__ == "__main__":
    main()

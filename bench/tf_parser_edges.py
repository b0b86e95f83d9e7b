"""Maintainer experiment: do tensorflow-cpu releases disagree on protobuf parser edge cases? (not run by CI)

Issue 15 asks for the exact minor release of every server; on a plain server 2.12-2.17 answer every safe
RPC alike (docs/versions-and-advisories.md). Their wheels bundle the same protobuf (3.21.9) and the same
gRPC C-core, so a request body that only some parsers accept would be the one wire difference left. This
script sends such bodies to the four methods the scanner already calls and prints, per release, which bodies
parse (the handler's usual answer) and which do not (INTERNAL "Unable to parse request").

Why every body is read-only: it sets only field numbers that none of the request messages knows in any
measured release (read from the descriptors compiled into 2.12.1 ... 2.21.0: GetStatusRequest has no
field, KeepAliveRequest 1, HeartbeatRequest 3 and 4, MonitorRequest 1-3), so a body either fails to parse
before any handler runs or reaches the handler as the empty request plus unknown fields, which is what the
scanner already sends. Every call goes through netaudit's RpcSession, so netaudit/transport/safety.py checks it.

    .venv/bin/python bench/tf_parser_edges.py 2.12.1 2.17.1 [--keep] [--json out.json]

It installs each release into bench/.tf-venvs/ like bench/tf_release_matrix.py (reused with --keep) and
starts one plain tf.distribute.Server per release on a loopback port it picked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tf_release_matrix import TF_TASK, VENVS, install

from netaudit.transport import protowire
from netaudit.lab.processes import LabError, free_port, spawn, stop, wait_ready
from netaudit.transport.rpc import RpcSession

METHODS = ("/tensorflow.WorkerService/GetStatus", "/tensorflow.eager.EagerService/KeepAlive",
           "/tensorflow.CoordinationService/Heartbeat", "/tensorflow.ProfilerService/Monitor")
UNKNOWN = 5  # no request message above has a field 5 in 2.12-2.21
TOP = (1 << 29) - 1  # the largest field number protobuf allows


def tag(number: int, wire_type: int) -> bytes:
    return protowire.encode_varint(number << 3 | wire_type)


def groups(depth: int) -> bytes:
    return tag(UNKNOWN, 3) * depth + tag(UNKNOWN, 4) * depth


# name -> body; each sets only unknown field numbers (see the module docstring).
EDGES = {
    "empty": b"",
    "unknown string, invalid UTF-8": tag(UNKNOWN, 2) + b"\x02\xff\xfe",
    "varint of 10 bytes, value past 64 bits": tag(UNKNOWN, 0) + b"\xff" * 9 + b"\x7f",
    "varint of 11 bytes": tag(UNKNOWN, 0) + b"\xff" * 10 + b"\x01",
    "tag in 5 bytes (non-canonical)": b"\xa8\x80\x80\x80\x00" + b"\x01",
    "tag in 6 bytes": b"\xa8\x80\x80\x80\x80\x00" + b"\x01",
    "field number 0, varint": b"\x00\x01",
    "field number 0, length 0": b"\x02\x00",
    "field number 2^29-1": tag(TOP, 0) + b"\x01",
    "field number 2^29": tag(1 << 29, 0) + b"\x01",
    "wire type 6": tag(UNKNOWN, 6) + b"\x01",
    "wire type 7": tag(UNKNOWN, 7) + b"\x01",
    "end group without start": tag(UNKNOWN, 4),
    "start group without end": tag(UNKNOWN, 3),
    "group ended by another field's end": tag(UNKNOWN, 3) + tag(UNKNOWN + 1, 4),
    "group nested 31 deep": groups(31),
    "group nested 32 deep": groups(32),
    "group nested 99 deep": groups(99),
    "group nested 100 deep": groups(100),
    "group nested 101 deep": groups(101),
    "length 2^31-1, no data": tag(UNKNOWN, 2) + protowire.encode_varint((1 << 31) - 1),
    "length 2^32-1, no data": tag(UNKNOWN, 2) + protowire.encode_varint((1 << 32) - 1),
    "length past the end by 1": tag(UNKNOWN, 2) + b"\x02\x00",
    "fixed64 cut short": tag(UNKNOWN, 1) + b"\x00" * 7,
    "fixed32 cut short": tag(UNKNOWN, 5) + b"\x00" * 3,
    "valid field then a zero byte": tag(UNKNOWN, 0) + b"\x01\x00",
}


async def probe(port: int) -> dict[str, dict[str, str]]:
    session = RpcSession(f"127.0.0.1:{port}", timeout=5.0)
    try:
        if not await session.ready():
            raise LabError(f"no gRPC channel to 127.0.0.1:{port}")
        answers: dict[str, dict[str, str]] = {}
        for name, body in EDGES.items():
            answers[name] = {}
            for method in METHODS:
                reply = await session.unary(method, body, note=name)
                answers[name][method] = f"{reply.code} {reply.details[:60]}".strip()
        return answers
    finally:
        await session.close()


def measure(version: str, keep: bool) -> dict[str, dict[str, str]]:
    python, _ = install(version, keep)
    try:
        with tempfile.TemporaryDirectory(dir=VENVS) as work:
            port = free_port()
            cluster = json.dumps({"worker": [f"localhost:{port}"]})
            procs = [spawn("plain-0", [str(python), str(TF_TASK), "--cluster", cluster, "--job", "worker",
                                       "--task", "0", "--mode", "server"], Path(work))]
            try:
                wait_ready(procs, time.monotonic() + 300)
                return asyncio.run(probe(port))
            finally:
                stop(procs)
    finally:
        if not keep:
            shutil.rmtree(python.parent.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("versions", nargs="+", help="tensorflow-cpu versions, e.g. 2.12.1 2.17.1")
    parser.add_argument("--keep", action="store_true", help="keep the venvs in bench/.tf-venvs and reuse them")
    parser.add_argument("--json", type=Path, help="also write every answer to this file")
    args = parser.parse_args()
    VENVS.mkdir(parents=True, exist_ok=True)
    results = {}
    for version in args.versions:
        print(f"tensorflow-cpu {version}: measuring …", file=sys.stderr, flush=True)
        results[version] = measure(version, args.keep)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    for name in EDGES:
        rows = {m: {v: results[v][name][m] for v in results} for m in METHODS}
        alike = all(len(set(per.values())) == 1 for per in rows.values())
        print(f"{name}: {'same in every release' if alike else 'DIFFERS'}")
        for method, per in rows.items():
            answers = sorted(set(per.values()))
            text = answers[0] if len(answers) == 1 else "; ".join(
                f"{a} ({', '.join(v for v in per if per[v] == a)})" for a in answers)
            print(f"    {method.rsplit('/', 1)[1]}: {text}")


if __name__ == "__main__":
    main()

"""Benchmark: what each part of a TF endpoint's fingerprint costs the server and the scanner, next to what
nmap -sT's connect costs them, in one run against one real tf.distribute.Server on a loopback port.

Every row is done N times (64 at once) and divided: the server's CPU seconds (/proc/PID/stat) and this
process's (the scanner side, netaudit's own code paths: netaudit/transport/h2c.py for the calls, netaudit/transport/sniff.py for
the TLS check). "TCP connect + close" is what `nmap -sT` makes a server do for one port. With thousands
of endpoints on shared cores, the server's column is a floor under any scanner that asks these questions.

    python bench/fingerprint_cost.py [-n 2000]

Needs the lab extra (tensorflow). Leaves nothing behind.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netaudit.transport.h2c import H2cConnection  # noqa: E402
from netaudit.lab.processes import free_port  # noqa: E402
from netaudit.probes.tf_runtime import grpc as tf_runtime  # noqa: E402
from netaudit.transport.sniff import answers_tls, tls_handshake  # noqa: E402
from netaudit.transport.safety import MALFORMED, check_call  # noqa: E402

SIGNATURES = [(sig.method, sig.request) for sig in tf_runtime.SIGNATURES]
MARKERS = [(m, MALFORMED) for m in ("/tensorflow.CoordinationService/PollForError",
                                    "/tensorflow.ProfilerService/StopContinuousProfiling")]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


async def connect_only(port: int) -> None:
    _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    writer.close()


async def calls(port: int, requests: list[tuple[str, bytes]]) -> None:
    connection = await H2cConnection.open("127.0.0.1", port, f"127.0.0.1:{port}", 5)
    try:
        for method, request in requests:
            check_call(method, request)
        await asyncio.gather(*(connection.call(m, r, 5) for m, r in requests))
    finally:
        await connection.close()


async def repeat(work: Callable[[], Awaitable[object]], times: int) -> None:
    slots = asyncio.Semaphore(64)

    async def one() -> None:
        async with slots:
            await work()
    await asyncio.gather(*(one() for _ in range(times)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="times each row is done")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "netaudit.lab.tf_task", "--cluster",
                               f'{{"worker": ["localhost:{port}"]}}', "--job", "worker", "--task", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    rows: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("TCP connect + close (nmap -sT's probe)", lambda: connect_only(port)),
        ("HTTP/2 connection, no call", lambda: calls(port, [])),
        ("+ GetStatus", lambda: calls(port, SIGNATURES[:1])),
        ("+ the 5 signature calls", lambda: calls(port, SIGNATURES)),
        ("+ 5 signature calls and 2 markers", lambda: calls(port, SIGNATURES + MARKERS)),
        ("TLS check: ClientHello over a plain socket", lambda: answers_tls("127.0.0.1", port, 5)),
        ("TLS check: full handshake attempt (before)", lambda: tls_handshake("127.0.0.1", port, 5)),
    ]
    try:
        if not server.stdout or not server.stdout.readline().startswith("READY"):
            sys.exit("the TF server did not start")
        print(f"per endpoint, {args.n} times each, one tf.distribute.Server on 127.0.0.1:{port}")
        print(f"{'':44} {'server CPU':>10} {'scanner CPU':>11}")
        for name, work in rows:
            server_before, mine_before = cpu_seconds(server.pid), time.process_time()
            asyncio.run(repeat(work, args.n))
            time.sleep(0.3)  # the server finishes closing what it was sent
            print(f"{name:44} {1000 * (cpu_seconds(server.pid) - server_before) / args.n:>8.3f}ms "
                  f"{1000 * (time.process_time() - mine_before) / args.n:>9.3f}ms", flush=True)
    finally:
        server.kill()
        server.wait(10)


if __name__ == "__main__":
    main()

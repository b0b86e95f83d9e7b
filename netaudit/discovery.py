"""Discovery: which (address, port) pairs accept a TCP connection.

The `connect` engine needs no privileges. It runs a fixed pool of workers over a lazy probe iterator,
so memory stays flat however large the sweep, and it reports only what it saw: a completed handshake
is `open`, a RST is `closed`, and anything else (timeouts, ICMP errors) is `undetermined` with the
reason, because a connect() scanner cannot tell a firewall drop from a lost packet.
"""

from __future__ import annotations

import asyncio
import errno
import resource
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from .targets import TargetBlock

LINGER_RST = struct.pack("ii", 1, 0)


@dataclass
class PortResult:
    host: str
    port: int
    state: str
    reason: str
    block: TargetBlock
    rtt_ms: float | None = None
    attempts: int = 1


@dataclass
class DiscoveryStats:
    probes: int = 0
    retried: int = 0
    states: Counter = field(default_factory=Counter)
    seconds: float = 0.0


class RateLimiter:
    """Spaces connection starts evenly at `rate` per second (0 = unlimited)."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_slot = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self.next_slot)
        self.next_slot = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


def raise_fd_limit(wanted: int) -> int:
    """Concurrency is bounded by open files; lift the soft limit as far as allowed and report it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted + 256)) if hard != resource.RLIM_INFINITY else max(soft, wanted + 256)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(1, min(wanted, soft - 128))


async def _connect_once(host: str, port: int, timeout: float) -> tuple[str, str, float | None]:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        return "open", "syn-ack", (time.perf_counter() - started) * 1000
    except ConnectionRefusedError:
        return "closed", "conn-refused (RST)", (time.perf_counter() - started) * 1000
    except TimeoutError:
        return "undetermined", f"no reply within {timeout:g}s", None
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "error")
        return "undetermined", f"{name}: {exc.strerror}", None
    finally:
        sock.close()


async def connect_scan(probes: Iterable[tuple[str, int, TargetBlock]], *, concurrency: int = 512,
                       rate: float = 0, timeout: float = 2.0, retries: int = 1,
                       on_result: Callable[[PortResult], None]) -> DiscoveryStats:
    """TCP connect scan; every result goes to `on_result` as soon as it is known."""
    stats = DiscoveryStats()
    limiter = RateLimiter(rate)
    source: Iterator[tuple[str, int, TargetBlock]] = iter(probes)
    started = time.perf_counter()

    async def worker() -> None:
        for host, port, block in source:
            attempts = 0
            while True:
                attempts += 1
                await limiter.wait()
                state, reason, rtt = await _connect_once(host, port, timeout)
                if state != "undetermined" or attempts > retries:
                    break
            if attempts > 1:
                stats.retried += 1
            stats.probes += 1
            stats.states[state] += 1
            on_result(PortResult(host, port, state, reason, block, rtt, attempts))

    workers = raise_fd_limit(concurrency)
    await asyncio.gather(*(worker() for _ in range(workers)))
    stats.seconds = time.perf_counter() - started
    return stats

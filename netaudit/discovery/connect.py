"""The connect engine: TCP connect() to every probed pair, with no privileges.

It runs a fixed pool of non-blocking connects over a lazy probe iterator, so memory stays flat however
large the sweep, and it reports only what it saw: a completed handshake is `open`, a RST is `closed`, and
anything else (timeouts, ICMP errors) is `undetermined` with the reason, because a connect() scanner
cannot tell a firewall drop from a lost packet (the syn engine can).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import multiprocessing
import os
import resource
import select
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Iterator

from netaudit.discovery.base import DiscoveryOptions, DiscoveryStats, Emit, Found, PortResult, Progress, emitter
from netaudit.targets.parse import TargetBlock, TargetSet

LINGER_RST = struct.pack("ii", 1, 0)
MAX_SWEEP_PROCESSES = 4
PROCESS_THRESHOLD = 4096  # below this, forking costs more than it saves


def raise_fd_limit(wanted: int) -> int:
    """Concurrency is bounded by open files; lift the soft limit as far as allowed and report it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted + 256 if hard == resource.RLIM_INFINITY else min(hard, wanted + 256)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(1, min(wanted, soft - 128))


class ConnectSweep:
    """A non-blocking connect() loop on epoll, run in a thread (or a forked process) of its own.

    Python's per-connection cost decides the speed of a sweep; asyncio futures and timeout contexts cost
    more than the syscalls, so the sweep drives sockets directly and hands results back in batches.
    """

    def __init__(self, probes: Iterator[tuple[str, int, TargetBlock]], opts: DiscoveryOptions, emit: Emit,
                 stop: threading.Event):
        self.source = probes
        self.report_all = opts.report_all
        self.done = 0
        self.concurrency = opts.concurrency
        self.interval = 1.0 / opts.rate if opts.rate > 0 else 0.0
        self.timeout = opts.timeout
        self.retries = opts.retries
        self.emit = emit
        self.stop = stop
        self.epoll = select.epoll()
        self.inflight: dict[int, tuple[socket.socket, str, int, TargetBlock, float, int]] = {}
        self.expiry: deque[tuple[float, int, socket.socket]] = deque()
        self.retry: deque[tuple[str, int, TargetBlock, int]] = deque()
        self.batch: list[PortResult] = []
        self.stats = DiscoveryStats()
        self.next_slot = 0.0

    def _finish(self, host: str, port: int, block: TargetBlock, state: str, reason: str, rtt: float | None,
                attempts: int, note: str = "") -> None:
        if state == "undetermined" and reason == "no-response" and attempts <= self.retries:
            self.retry.append((host, port, block, attempts + 1))
            return
        self.stats.probes += 1
        self.stats.retried += attempts > 1
        self.done += 1
        self.stats.record(PortResult(host, port, state, reason, block, rtt, attempts, note), self.report_all,
                          self.batch)

    def _start(self, host: str, port: int, block: TargetBlock, attempts: int) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        started = time.perf_counter()
        err = sock.connect_ex((host, port))
        if err == errno.EINPROGRESS:
            fd = sock.fileno()
            self.inflight[fd] = (sock, host, port, block, started, attempts)
            self.expiry.append((started + self.timeout, fd, sock))
            self.epoll.register(fd, select.EPOLLOUT)
            return
        self._settle(sock, host, port, block, started, attempts, err)

    def _settle(self, sock: socket.socket, host: str, port: int, block: TargetBlock, started: float,
                attempts: int, err: int) -> None:
        rtt = (time.perf_counter() - started) * 1000
        if err == 0:
            if len(self.stats.sources) < 4:
                self.stats.sources.add(sock.getsockname()[0])
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            self._finish(host, port, block, "open", "syn-ack", rtt, attempts)
        elif err == errno.ECONNREFUSED:
            self._finish(host, port, block, "closed", "reset", rtt, attempts, "connect() refused (ECONNREFUSED)")
        else:
            self._finish(host, port, block, "undetermined", errno.errorcode.get(err, "error"), None, attempts,
                         os.strerror(err))
        sock.close()

    def _next(self) -> tuple[str, int, TargetBlock, int] | None:
        if self.retry:
            return self.retry.popleft()
        item = next(self.source, None)
        return None if item is None else (*item, 1)

    def run(self) -> DiscoveryStats:
        started = time.perf_counter()
        pending = None
        exhausted = False
        last_emit = started
        try:
            while not self.stop.is_set():
                now = time.perf_counter()
                while len(self.inflight) < self.concurrency:
                    pending = pending or self._next()
                    if pending is None:
                        exhausted = True
                        break
                    if self.interval:
                        if now < self.next_slot:
                            break
                        self.next_slot = max(now, self.next_slot) + self.interval
                    self._start(*pending)
                    pending = None
                    exhausted = False
                if exhausted and not self.inflight and not self.retry:
                    break
                waits = [0.05]
                if self.expiry:
                    waits.append(self.expiry[0][0] - now)
                if pending is not None and self.interval:
                    waits.append(self.next_slot - now)
                for fd, _ in self.epoll.poll(max(0.0, min(waits)) if self.inflight or pending else 0):
                    sock, host, port, block, t0, attempts = self.inflight.pop(fd)
                    self.epoll.unregister(fd)
                    self._settle(sock, host, port, block, t0, attempts, sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
                now = time.perf_counter()
                while self.expiry and self.expiry[0][0] <= now:
                    _, fd, sock = self.expiry.popleft()
                    entry = self.inflight.get(fd)
                    if entry is None or entry[0] is not sock:
                        continue
                    del self.inflight[fd]
                    self.epoll.unregister(fd)
                    sock.close()
                    self._finish(entry[1], entry[2], entry[3], "undetermined", "no-response", None, entry[5],
                                 f"no reply within {self.timeout:g}s")
                if self.done and (now - last_emit > 0.05 or len(self.batch) > 2048):
                    self.emit(self.done, self.batch)
                    self.batch, self.done, last_emit = [], 0, now
        finally:
            for sock, *_ in self.inflight.values():
                sock.close()
            self.epoll.close()
            if self.done:
                self.emit(self.done, self.batch)
        self.stats.seconds = time.perf_counter() - started
        return self.stats


def _child_sweep(targets: TargetSet, share: int, shares: int, opts: DiscoveryOptions, conn: Connection) -> None:
    """One forked worker's part of a large sweep: every `shares`-th probe, results sent back compactly."""
    index = {id(block): i for i, block in enumerate(targets.blocks)}

    def emit(done: int, batch: list[PortResult]) -> None:
        conn.send((done, [(r.host, r.port, index[id(r.block)], r.state, r.reason, r.rtt_ms, r.attempts, r.note)
                          for r in batch]))

    stats = ConnectSweep(itertools.islice(targets.probes(), share, None, shares), opts, emit, threading.Event()).run()
    conn.send(stats)
    conn.close()


async def _sweep_in_processes(targets: TargetSet, workers: int, opts: DiscoveryOptions, emit: Emit) -> DiscoveryStats:
    """Python spends as long in the kernel as in itself per connect(); forked workers use every core.

    The fork happens before any gRPC channel exists, and the children only touch sockets and epoll.
    """
    ctx = multiprocessing.get_context("fork")
    share = replace(opts, concurrency=max(1, opts.concurrency // workers), rate=opts.rate / workers)
    procs, pipes = [], []
    for index in range(workers):
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child_sweep, daemon=True, args=(targets, index, workers, share, child_end))
        proc.start()
        child_end.close()
        procs.append(proc)
        pipes.append(parent_end)

    def drain(conn: Connection) -> DiscoveryStats:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                raise RuntimeError("a discovery worker process died") from None
            if isinstance(message, DiscoveryStats):
                return message
            done, records = message
            emit(done, [PortResult(h, p, st, why, targets.blocks[b], rtt, n, note)
                        for h, p, b, st, why, rtt, n, note in records])

    try:
        parts = await asyncio.gather(*(asyncio.to_thread(drain, conn) for conn in pipes))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join(1)
        for conn in pipes:
            conn.close()
    total = DiscoveryStats()
    for part in parts:
        total.add(part)
    return total


async def discover(targets: TargetSet, opts: DiscoveryOptions, on_result: Found, on_progress: Progress) -> DiscoveryStats:
    """Open ports, and every port of a host:port target (or all with `report_all`), reach `on_result` on
    the event loop as soon as their batch lands; `on_progress` gets counts."""
    emit = emitter(on_result, on_progress)
    opts = replace(opts, concurrency=raise_fd_limit(opts.concurrency))
    # A worker of scan --workers sweeps with its share of the cores (on two cores, two workers fork none).
    processes = min((os.cpu_count() or 1) // (targets.worker[1] if targets.worker else 1), MAX_SWEEP_PROCESSES)
    started = time.perf_counter()
    if processes > 1 and targets.probe_count() >= PROCESS_THRESHOLD:
        stats = await _sweep_in_processes(targets, processes, opts, emit)
    else:
        stop = threading.Event()
        try:
            stats = await asyncio.to_thread(ConnectSweep(targets.probes(), opts, emit, stop).run)
        finally:
            stop.set()
    stats.seconds = time.perf_counter() - started
    return stats



"""Discovery: which (address, port) pairs accept a TCP connection.

The `connect` engine needs no privileges. It runs a fixed pool of workers over a lazy probe iterator,
so memory stays flat however large the sweep, and it reports only what it saw: a completed handshake
is `open`, a RST is `closed`, and anything else (timeouts, ICMP errors) is `undetermined` with the
reason, because a connect() scanner cannot tell a firewall drop from a lost packet.

Every engine reports a result for every probed pair: listed ones (open ports, and every port of a target
that names one host) reach the scan one by one, the rest are folded into a StateSummary, so the firewall's
verdict on a swept range is kept without listing each closed port.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import multiprocessing
import os
import random
import resource
import select
import socket
import struct
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Awaitable, Callable, Iterator

from netaudit.discovery.portstates import Reply, StateSummary
from netaudit.targets.parse import TargetBlock, TargetSet

LINGER_RST = struct.pack("ii", 1, 0)
MAX_SWEEP_PROCESSES = 4
PROCESS_THRESHOLD = 4096  # below this, forking costs more than it saves


@dataclass
class PortResult:
    """`reason` is a short token shared by the engines (syn-ack, reset, no-response, admin-prohibited,
    EHOSTUNREACH, …); `note` says more for the evidence; `ttl` and `responder` (the source of an ICMP
    error, when it is not the target) tell who answered, where the engine sees the reply packet."""

    host: str
    port: int
    state: str
    reason: str
    block: TargetBlock
    rtt_ms: float | None = None
    attempts: int = 1
    note: str = ""
    ttl: int | None = None
    responder: str | None = None

    @property
    def reply(self) -> Reply:
        return Reply(self.state, self.reason, self.ttl, self.responder)


Emit = Callable[[int, list[PortResult]], None]


@dataclass
class DiscoveryStats:
    probes: int = 0
    retried: int = 0
    states: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    sources: set[str] = field(default_factory=set)  # local addresses connections left from
    summary: StateSummary = field(default_factory=StateSummary)  # every probed pair not handed on as a result

    def record(self, result: PortResult, report_all: bool, batch: list[PortResult]) -> None:
        """Count a final result; hand it on when it is listed, else fold it into the summary."""
        self.states[result.state] += 1
        if result.state == "open" or report_all or result.block.listed:
            batch.append(result)
        else:
            self.summary.add(result.host, result.port, result.reply)

    def add(self, other: DiscoveryStats) -> None:
        self.probes += other.probes
        self.retried += other.retried
        self.states.update(other.states)
        self.sources |= other.sources
        self.summary.merge(other.summary)


def source_address(host: str) -> str:
    """The kernel's own choice of source address for this destination. Connecting a UDP socket sends
    nothing; it only looks up the route."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))
        return probe.getsockname()[0]


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


class _Sweep:
    """A non-blocking connect() loop on epoll.

    Python's per-connection cost decides the speed of a sweep; asyncio futures and timeout contexts cost
    more than the syscalls, so the sweep drives sockets directly and hands results back in batches.
    """

    def __init__(self, probes: Iterator[tuple[str, int, TargetBlock]], concurrency: int, rate: float,
                 timeout: float, retries: int, report_all: bool, emit: Emit, stop: threading.Event):
        self.source = probes
        self.report_all = report_all
        self.done = 0
        self.concurrency = concurrency
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.timeout = timeout
        self.retries = retries
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


def _emitter(on_result: Callable[[PortResult], None], on_progress: Callable[[int], None]) -> Emit:
    """Hand batches from a sweep thread to the event loop, where the scan's callbacks run."""
    loop = asyncio.get_running_loop()

    def deliver(done: int, batch: list[PortResult]) -> None:
        for found in batch:
            on_result(found)
        on_progress(done)

    return lambda done, batch: loop.call_soon_threadsafe(deliver, done, batch)


def _child_sweep(targets: TargetSet, share: int, shares: int, concurrency: int, rate: float, timeout: float,
                 retries: int, report_all: bool, conn: Connection) -> None:
    """One forked worker's part of a large sweep: every `shares`-th probe, results sent back compactly."""
    index = {id(block): i for i, block in enumerate(targets.blocks)}

    def emit(done: int, batch: list[PortResult]) -> None:
        conn.send((done, [(r.host, r.port, index[id(r.block)], r.state, r.reason, r.rtt_ms, r.attempts, r.note)
                          for r in batch]))

    stats = _Sweep(itertools.islice(targets.probes(), share, None, shares), concurrency, rate, timeout, retries,
                   report_all, emit, threading.Event()).run()
    conn.send(stats)
    conn.close()


async def _sweep_in_processes(targets: TargetSet, workers: int, concurrency: int, rate: float, timeout: float,
                              retries: int, report_all: bool, emit: Emit) -> DiscoveryStats:
    """Python spends as long in the kernel as in itself per connect(); forked workers use every core.

    The fork happens before any gRPC channel exists, and the children only touch sockets and epoll.
    """
    ctx = multiprocessing.get_context("fork")
    procs, pipes = [], []
    for share in range(workers):
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child_sweep, daemon=True,
                           args=(targets, share, workers, max(1, concurrency // workers), rate / workers,
                                 timeout, retries, report_all, child_end))
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


async def connect_scan(targets: TargetSet, *, concurrency: int = 512, rate: float = 0, timeout: float = 2.0,
                       retries: int = 1, report_all: bool = False, on_result: Callable[[PortResult], None],
                       on_progress: Callable[[int], None] = lambda done: None) -> DiscoveryStats:
    """TCP connect scan. Open ports, and every port of a host:port target (or all with `report_all`),
    reach `on_result` on the event loop as soon as their batch lands; `on_progress` gets counts."""
    emit = _emitter(on_result, on_progress)
    concurrency = raise_fd_limit(concurrency)
    # A worker of scan --workers sweeps with its share of the cores (on two cores, two workers fork none).
    processes = min((os.cpu_count() or 1) // (targets.worker[1] if targets.worker else 1), MAX_SWEEP_PROCESSES)
    started = time.perf_counter()
    if processes > 1 and targets.probe_count() >= PROCESS_THRESHOLD:
        stats = await _sweep_in_processes(targets, processes, concurrency, rate, timeout, retries, report_all,
                                          emit)
    else:
        stop = threading.Event()
        try:
            stats = await asyncio.to_thread(
                _Sweep(targets.probes(), concurrency, rate, timeout, retries, report_all, emit, stop).run)
        finally:
            stop.set()
    stats.seconds = time.perf_counter() - started
    return stats


# nmap's port states -> netaudit's (open, closed, filtered, undetermined); "open|filtered" and "unfiltered"
# do not say enough.
NMAP_STATES = {"open": "open", "closed": "closed", "filtered": "filtered"}
# nmap -sT's word for a RST, and its ICMP reason names, in the engines' shared vocabulary.
NMAP_REASONS = {"conn-refused": "reset", "port-unreach": "port-unreach", "host-unreach": "host-unreach",
                "net-unreach": "net-unreach", "admin-prohibited": "admin-prohibited",
                "host-prohibited": "host-prohibited", "net-prohibited": "net-prohibited"}
NMAP_MIN_RATE = 1000


class NmapXmlError(ValueError):
    """nmap's XML output could not be read (nmap's -sV fields carry what servers sent)."""


@dataclass(frozen=True)
class NmapPort:
    host: str
    port: int
    state: str  # nmap's own: open, closed, filtered, open|filtered, unfiltered, …
    reason: str  # syn-ack, reset, conn-refused, no-response, admin-prohibited, …
    ttl: int | None = None
    responder: str | None = None  # reason_ip: the ICMP error came from this address, not the target
    service: tuple[tuple[str, str], ...] = ()


def parse_nmap_xml(xml: str | bytes) -> tuple[list[NmapPort], dict[str, tuple[str, str]]]:
    """Every listed port, and per host the (state, reason) of the ports nmap folded into <extraports>.
    Parsed from the XML directly: python-nmap's dict drops `reason_ttl`, `reason_ip`, the service `tunnel`
    and `method` (python-nmap 0.7.1's nmap/nmap.py, https://pypi.org/project/python-nmap/0.7.1/;
    docs/wire-facts.md §7)."""
    import xml.etree.ElementTree as ET

    try:
        return _parse_nmap_xml(ET.fromstring(xml))
    except (ET.ParseError, ValueError, TypeError, AttributeError) as exc:
        raise NmapXmlError(f"unreadable nmap XML: {exc}") from None


def _parse_nmap_xml(root) -> tuple[list[NmapPort], dict[str, tuple[str, str]]]:
    rows, extra = [], {}
    for host in root.iter("host"):
        address = next((a.get("addr") for a in host.iter("address") if a.get("addrtype") in ("ipv4", "ipv6")), None)
        folded = host.find("ports/extraports")
        if folded is not None:
            reasons = [r.get("reason", "") for r in folded.iter("extrareasons")]
            extra[address] = (folded.get("state"), reasons[0] if len(reasons) == 1 else "among extraports")
        for port in host.iter("port"):
            state = port.find("state")
            service = port.find("service")
            ttl = state.get("reason_ttl")
            rows.append(NmapPort(address, int(port.get("portid")), state.get("state"), state.get("reason", ""),
                                 int(ttl) if ttl and ttl.isdigit() else None, state.get("reason_ip"),
                                 tuple(service.attrib.items()) if service is not None else ()))
    return rows, extra


async def nmap_scan(targets: TargetSet, *, timeout: float = 2.0, retries: int = 1, rate: float = 0,
                    report_all: bool = False, on_result: Callable[[PortResult], None],
                    on_progress: Callable[[int], None] = lambda done: None) -> DiscoveryStats:
    """Discovery by the nmap binary through python-nmap: -sS with CAP_NET_RAW, else -sT; one run per port set."""
    import nmap

    stats = DiscoveryStats()
    started = time.perf_counter()
    groups: dict[tuple[int, ...], list[TargetBlock]] = {}
    for block in targets.blocks:
        groups.setdefault(block.ports or targets.ports, []).append(block)
    # -sS needs raw sockets (as the evidence says, ENGINES); nmap assumes an unprivileged user has none
    # unless told --privileged.
    technique = ("-sS" + ("" if os.geteuid() == 0 else " --privileged")) if raw_sockets_allowed() else "-sT"
    for ports, blocks in groups.items():
        by_address = {str(addr): block for block in blocks for addr in block.addresses()}
        # -T4 adapts its timeouts to the measured RTT; --min-rate keeps it from crawling when a firewall
        # drops most probes (15 s instead of 1.6 s for a /26 x 12 ports in the segmented lab).
        arguments = (f"{technique} -n -Pn -T4 --reason --max-retries {retries} "
                     + (f"--max-rate {rate:g}" if rate else f"--min-rate {NMAP_MIN_RATE}"))
        scanner = nmap.PortScanner()
        hosts = " ".join(str(net) for block in blocks for net in block.networks)
        await asyncio.to_thread(scanner.scan, hosts=hosts, ports=",".join(map(str, ports)), arguments=arguments)
        rows, extra = parse_nmap_xml(scanner.get_nmap_last_output())
        listed = {(row.host, row.port): row for row in rows}
        batch: list[PortResult] = []
        for host, block in by_address.items():
            for port in ports:
                row = listed.get((host, port))
                if row is None:
                    nmap_state, reason = extra.get(host, (None, "no result"))
                    row = NmapPort(host, port, nmap_state or "no result", reason)
                state = NMAP_STATES.get(row.state, "undetermined")
                tunnel = dict(row.service).get("tunnel")
                stats.record(PortResult(host, port, state, NMAP_REASONS.get(row.reason, row.reason), block,
                                        note=f"nmap {technique} said {row.state}: {row.reason}"
                                        + (f"; service tunnel={tunnel}" if tunnel else ""),
                                        ttl=row.ttl, responder=row.responder if row.responder != host else None),
                             report_all, batch)
        for found in batch:
            on_result(found)
        stats.probes += len(by_address) * len(ports)
        on_progress(len(by_address) * len(ports))
    stats.seconds = time.perf_counter() - started
    return stats


SynReply = tuple[str, int, str, str, int, str | None]


def _syn_reply(packet: bytes, sport: int) -> SynReply | None:
    """(target host, target port, state, reason, reply TTL, responder) from a raw IPv4 packet answering one
    of our SYNs. The responder is the source of an ICMP error when that is not the target: a router or
    firewall on the way."""
    if len(packet) < 20:
        return None
    ihl = (packet[0] & 0x0F) * 4
    proto = packet[9]
    ttl = packet[8]
    source = socket.inet_ntoa(packet[12:16])
    body = packet[ihl:]
    if proto == socket.IPPROTO_TCP and len(body) >= 14:
        src_port, dst_port = struct.unpack("!HH", body[:4])
        flags = body[13]
        if dst_port != sport:
            return None
        if flags & 0x12 == 0x12:
            return source, src_port, "open", "syn-ack", ttl, None
        if flags & 0x04:
            return source, src_port, "closed", "reset", ttl, None
        return None
    if proto == socket.IPPROTO_ICMP and len(body) >= 8 + 20 + 4 and body[0] == 3:
        inner = body[8:]
        inner_ihl = (inner[0] & 0x0F) * 4
        if inner[9] != socket.IPPROTO_TCP or len(inner) < inner_ihl + 4:
            return None
        inner_sport, inner_dport = struct.unpack("!HH", inner[inner_ihl:inner_ihl + 4])
        if inner_sport != sport:
            return None
        target = socket.inet_ntoa(inner[16:20])
        return (target, inner_dport, "filtered", ICMP_UNREACHABLE.get(body[1], f"icmp-unreach code {body[1]}"), ttl,
                source if source != target else None)


# ICMP destination-unreachable codes a firewall sends (RFC 792, RFC 1812).
ICMP_UNREACHABLE = {1: "host-unreach", 2: "proto-unreach", 3: "port-unreach", 9: "net-prohibited",
                    10: "host-prohibited", 13: "admin-prohibited"}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn_packet(template: bytearray, src: str, dst: str, sport: int, dport: int) -> bytes:
    """The template SYN (IPv4 header + TCP header with options) for this source, target and port."""
    packet = bytearray(template)
    ihl = (packet[0] & 0x0F) * 4
    packet[12:16], packet[16:20] = socket.inet_aton(src), socket.inet_aton(dst)
    packet[10:12] = b"\0\0"
    packet[10:12] = _checksum(bytes(packet[:ihl])).to_bytes(2, "big")
    tcp = packet[ihl:]
    struct.pack_into("!HHI", tcp, 0, sport, dport, random.getrandbits(32))
    tcp[16:18] = b"\0\0"
    pseudo = packet[12:20] + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp[16:18] = _checksum(bytes(pseudo + tcp)).to_bytes(2, "big")
    packet[ihl:] = tcp
    return bytes(packet)


def _syn_sweep(targets: TargetSet, timeout: float, retries: int, rate: float, report_all: bool,
               emit: Emit, stop: threading.Event) -> DiscoveryStats:
    """Rounds of raw SYNs built with scapy: send every unanswered probe, then listen until the deadline.
    A SYN-ACK is open (the kernel answers it with a RST, as for nmap -sS), a RST closed, an ICMP
    unreachable or silence filtered, each with its evidence."""
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    from scapy.layers.inet import IP, TCP

    # scapy builds the SYN once; per probe only addresses, ports, sequence and checksums are patched,
    # because building a scapy packet costs about a millisecond and a sweep sends tens of thousands.
    template = bytearray(bytes(IP(src="0.0.0.0", dst="0.0.0.0", ttl=64) /
                               TCP(sport=0, dport=0, flags="S", window=1024, options=[("MSS", 1460)])))
    stats = DiscoveryStats()
    sources: dict[str, str] = {}

    def source_for(host: str) -> str:
        """scapy's route table misses local and policy routes: ask the kernel, once per /24."""
        prefix = host.rsplit(".", 1)[0]
        if prefix not in sources:
            sources[prefix] = source_address(host)
            stats.sources.add(sources[prefix])
        return sources[prefix]

    sport = random.randint(40000, 60000)
    send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    listeners = [socket.socket(socket.AF_INET, socket.SOCK_RAW, proto) for proto in (socket.IPPROTO_TCP,
                                                                                     socket.IPPROTO_ICMP)]
    for sock in listeners:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    poller = select.epoll()
    for sock in listeners:
        poller.register(sock.fileno(), select.EPOLLIN)
    pending: dict[tuple[str, int], TargetBlock] = {}
    for host, port, block in targets.probes():
        if ":" in host:
            raise ValueError("--engine syn scans IPv4 only; use --engine connect for IPv6")
        pending[(host, port)] = block
    started = time.perf_counter()
    batch: list[PortResult] = []
    done = sent = 0
    attempts = 0

    def drain(until: float) -> None:
        nonlocal done
        while True:
            wait = until - time.perf_counter()
            for fd, _ in poller.poll(max(0.0, min(wait, 0.05))):
                sock = next(s for s in listeners if s.fileno() == fd)
                while True:
                    try:
                        packet = sock.recv(65535)
                    except BlockingIOError:
                        break
                    reply = _syn_reply(packet, sport)
                    if reply is None or (reply[0], reply[1]) not in pending:
                        continue
                    host, port, state, reason, ttl, responder = reply
                    block = pending.pop((host, port))
                    stats.retried += attempts > 1
                    done += 1
                    stats.record(PortResult(host, port, state, reason, block, None, attempts, ttl=ttl,
                                            responder=responder), report_all, batch)
            if batch or done:
                emit(done, list(batch))
                batch.clear()
                done = 0
            if wait <= 0 or not pending or stop.is_set():
                return

    try:
        while pending and attempts <= retries and not stop.is_set():
            attempts += 1
            interval = 1.0 / rate if rate else 0.0
            for host, port in list(pending):
                if stop.is_set():
                    break
                try:
                    send.sendto(syn_packet(template, source_for(host), host, sport, port), (host, 0))
                except OSError:
                    pass  # unroutable: stays pending, ends as filtered with no response
                sent += 1
                if interval:
                    drain(time.perf_counter() + interval)
                elif sent % 128 == 0:
                    drain(time.perf_counter())  # keep the receive buffer from overflowing mid-sweep
            drain(time.perf_counter() + timeout)
        for (host, port), block in pending.items():
            stats.record(PortResult(host, port, "filtered", "no-response", block, None, attempts,
                                    f"no response to {attempts} SYN(s)"), report_all, batch)
        emit(len(pending), batch)
    finally:
        poller.close()
        send.close()
        for sock in listeners:
            sock.close()
    stats.probes = targets.probe_count()
    stats.seconds = time.perf_counter() - started
    return stats


async def syn_scan(targets: TargetSet, *, timeout: float = 2.0, retries: int = 1, rate: float = 0,
                   report_all: bool = False, on_result: Callable[[PortResult], None],
                   on_progress: Callable[[int], None] = lambda done: None) -> DiscoveryStats:
    """Discovery with raw SYN packets (root): tells closed (RST) from filtered (silence, ICMP unreachable)."""
    emit = _emitter(on_result, on_progress)
    stop = threading.Event()
    try:
        return await asyncio.to_thread(_syn_sweep, targets, timeout, retries, rate, report_all, emit, stop)
    finally:
        stop.set()


@dataclass(frozen=True)
class DiscoveryOptions:
    timeout: float = 2.0
    retries: int = 1
    rate: float = 0
    concurrency: int = 512
    report_all: bool = False


Runner = Callable[[TargetSet, DiscoveryOptions, Callable[[PortResult], None], Callable[[int], None]],
                  Awaitable[DiscoveryStats]]


@dataclass(frozen=True)
class Engine:
    name: str
    says: str | Callable[[], str]  # what one probe puts on the wire, for the evidence (decided when it runs)
    sees_packets: bool  # sees the reply itself (TTL, ICMP source), not only what connect() returned
    run: Runner

    @property
    def sends(self) -> str:
        return self.says() if callable(self.says) else self.says


ENGINES: dict[str, Engine] = {e.name: e for e in (
    Engine("connect", "TCP connect()", False,
           lambda t, o, found, done: connect_scan(t, concurrency=o.concurrency, rate=o.rate, timeout=o.timeout,
                                                  retries=o.retries, report_all=o.report_all, on_result=found,
                                                  on_progress=done)),
    Engine("syn", "raw SYN", True,
           lambda t, o, found, done: syn_scan(t, timeout=o.timeout, retries=o.retries, rate=o.rate,
                                              report_all=o.report_all, on_result=found, on_progress=done)),
    Engine("nmap", lambda: "nmap -sS SYN" if raw_sockets_allowed() else "nmap -sT connect()", True,
           lambda t, o, found, done: nmap_scan(t, timeout=o.timeout, retries=o.retries, rate=o.rate,
                                               report_all=o.report_all, on_result=found, on_progress=done)),
)}


def raw_sockets_allowed() -> bool:
    """Whether this process may open raw sockets: CAP_NET_RAW, not the uid, decides. Root in a container
    usually lacks it, and an unprivileged user granted it (setcap, a pod's capabilities.add) has it."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
    except PermissionError:
        return False
    except OSError:
        return False  # no raw IPv4 sockets in this kernel or sandbox at all
    return True


def default_engine(targets: TargetSet) -> tuple[str, str]:
    """nmap's convention: a SYN scan when privileged, a connect scan otherwise. Raw SYNs tell a firewall's
    drop (filtered) from its reset (closed) and name the ICMP reason, which connect() cannot."""
    if targets.has_ipv6():
        return "connect", "IPv6 targets: TCP connect() scan (the SYN engine is IPv4 only)"
    if not raw_sockets_allowed():
        return "connect", ("no CAP_NET_RAW: TCP connect() scan (--engine syn needs the capability to send raw "
                           "packets)")
    return "syn", "CAP_NET_RAW on IPv4: raw SYN scan, as nmap -sS (--engine connect to override)"

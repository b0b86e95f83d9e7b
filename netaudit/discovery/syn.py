"""The syn engine: raw SYN packets (CAP_NET_RAW, IPv4), as nmap -sS.

A SYN-ACK is open (the kernel answers it with a RST, so no connection is made), a RST closed, an ICMP
unreachable or silence filtered, each with its evidence: the reason, the reply's TTL and, for an ICMP
error, who sent it. That is what tells a firewall's drop from its reset, which connect() cannot.
"""

from __future__ import annotations

import asyncio
import logging
import random
import select
import socket
import struct
import threading
import time

from netaudit.discovery.base import (DiscoveryOptions, DiscoveryStats, Emit, Found, PortResult, Progress, emitter,
                                     source_address)
from netaudit.targets.parse import TargetBlock, TargetSet

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


class SynSweep:
    """Rounds of raw SYNs: send one to every unanswered probe, then listen until the deadline; up to
    1 + retries rounds. Shaped as the connect engine's ConnectSweep: built with the options, run in a
    thread of its own, results handed back in batches through `emit`."""

    def __init__(self, targets: TargetSet, opts: DiscoveryOptions, emit: Emit, stop: threading.Event):
        self.pending: dict[tuple[str, int], TargetBlock] = {}
        for host, port, block in targets.probes():
            if ":" in host:
                raise ValueError("--engine syn scans IPv4 only; use --engine connect for IPv6")
            self.pending[(host, port)] = block
        self.probes = targets.probe_count()
        self.report_all = opts.report_all
        self.timeout = opts.timeout
        self.retries = opts.retries
        self.interval = 1.0 / opts.rate if opts.rate else 0.0
        self.emit = emit
        self.stop = stop
        self.stats = DiscoveryStats()
        self.batch: list[PortResult] = []
        self.done = 0
        self.sent = 0
        self.attempts = 0  # the round being sent: a reply to it is the probe's attempt-th SYN
        self.sport = random.randint(40000, 60000)
        self.sources: dict[str, str] = {}

    def _source_for(self, host: str) -> str:
        """scapy's route table misses local and policy routes: ask the kernel, once per /24."""
        prefix = host.rsplit(".", 1)[0]
        if prefix not in self.sources:
            self.sources[prefix] = source_address(host)
            self.stats.sources.add(self.sources[prefix])
        return self.sources[prefix]

    def _settle(self, packet: bytes) -> None:
        reply = _syn_reply(packet, self.sport)
        if reply is None or (reply[0], reply[1]) not in self.pending:
            return
        host, port, state, reason, ttl, responder = reply
        block = self.pending.pop((host, port))
        self.stats.retried += self.attempts > 1
        self.done += 1
        self.stats.record(PortResult(host, port, state, reason, block, None, self.attempts, ttl=ttl,
                                     responder=responder), self.report_all, self.batch)

    def _drain(self, until: float) -> None:
        """Read replies until `until` (or until nothing is pending), handing each batch on."""
        while True:
            wait = until - time.perf_counter()
            for fd, _ in self.poller.poll(max(0.0, min(wait, 0.05))):
                sock = next(s for s in self.listeners if s.fileno() == fd)
                while True:
                    try:
                        packet = sock.recv(65535)
                    except BlockingIOError:
                        break
                    self._settle(packet)
            if self.batch or self.done:
                self.emit(self.done, list(self.batch))
                self.batch.clear()
                self.done = 0
            if wait <= 0 or not self.pending or self.stop.is_set():
                return

    def _send_round(self, template: bytearray) -> None:
        for host, port in list(self.pending):
            if self.stop.is_set():
                break
            try:
                self.send.sendto(syn_packet(template, self._source_for(host), host, self.sport, port), (host, 0))
            except OSError:
                pass  # unroutable: stays pending, ends as filtered with no response
            self.sent += 1
            if self.interval:
                self._drain(time.perf_counter() + self.interval)
            elif self.sent % 128 == 0:
                self._drain(time.perf_counter())  # keep the receive buffer from overflowing mid-sweep

    def run(self) -> DiscoveryStats:
        template = _syn_template()
        started = time.perf_counter()
        self.send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.listeners = [socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
                          for proto in (socket.IPPROTO_TCP, socket.IPPROTO_ICMP)]
        self.poller = select.epoll()
        try:
            for sock in self.listeners:
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
                self.poller.register(sock.fileno(), select.EPOLLIN)
            while self.pending and self.attempts <= self.retries and not self.stop.is_set():
                self.attempts += 1
                self._send_round(template)
                self._drain(time.perf_counter() + self.timeout)
            for (host, port), block in self.pending.items():
                self.stats.record(PortResult(host, port, "filtered", "no-response", block, None, self.attempts,
                                             f"no response to {self.attempts} SYN(s)"), self.report_all, self.batch)
            self.emit(len(self.pending), self.batch)
        finally:
            self.poller.close()
            self.send.close()
            for sock in self.listeners:
                sock.close()
        self.stats.probes = self.probes
        self.stats.seconds = time.perf_counter() - started
        return self.stats


def _syn_template() -> bytearray:
    """scapy builds the SYN once; per probe only addresses, ports, sequence and checksums are patched,
    because building a scapy packet costs about a millisecond and a sweep sends tens of thousands."""
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    from scapy.layers.inet import IP, TCP

    return bytearray(bytes(IP(src="0.0.0.0", dst="0.0.0.0", ttl=64) /
                           TCP(sport=0, dport=0, flags="S", window=1024, options=[("MSS", 1460)])))


async def discover(targets: TargetSet, opts: DiscoveryOptions, on_result: Found, on_progress: Progress) -> DiscoveryStats:
    """Tells closed (RST) from filtered (silence, ICMP unreachable); listed results reach `on_result` on
    the event loop batch by batch, counts reach `on_progress`."""
    emit = emitter(on_result, on_progress)
    stop = threading.Event()
    try:
        return await asyncio.to_thread(lambda: SynSweep(targets, opts, emit, stop).run())
    finally:
        stop.set()

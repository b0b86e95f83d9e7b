"""The nmap engine: the nmap binary through python-nmap, -sS with CAP_NET_RAW, else -sT; one run per
port set. Its XML is read by netaudit's one nmap XML reader (netaudit/targets/nmap_xml.py), which keeps
what python-nmap's dict drops: the reply's TTL, who sent an ICMP error, the service tunnel."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from netaudit.discovery.base import (DiscoveryOptions, DiscoveryStats, Found, PortResult, Progress,
                                     raw_sockets_allowed)
from netaudit.targets.nmap_xml import NmapXmlError, XmlPort, read_nmap_xml
from netaudit.targets.parse import TargetBlock, TargetSet

# nmap's port states -> netaudit's (open, closed, filtered, undetermined); "open|filtered" and "unfiltered"
# do not say enough.
NMAP_STATES = {"open": "open", "closed": "closed", "filtered": "filtered"}
# nmap -sT's word for a RST, and its ICMP reason names, in the engines' shared vocabulary.
NMAP_REASONS = {"conn-refused": "reset", "port-unreach": "port-unreach", "host-unreach": "host-unreach",
                "net-unreach": "net-unreach", "admin-prohibited": "admin-prohibited",
                "host-prohibited": "host-prohibited", "net-prohibited": "net-prohibited"}
NMAP_MIN_RATE = 1000


@dataclass(frozen=True)
class NmapPort:
    host: str | None
    port: int
    state: str  # nmap's own: open, closed, filtered, open|filtered, unfiltered, …
    reason: str  # syn-ack, reset, conn-refused, no-response, admin-prohibited, …
    ttl: int | None = None
    responder: str | None = None  # reason_ip: the ICMP error came from this address, not the target
    service: tuple[tuple[str, str], ...] = ()


def parse_nmap_xml(xml: str | bytes) -> tuple[list[NmapPort], dict[str | None, tuple[str | None, str]]]:
    """Every listed port, and per host the (state, reason) of the ports nmap folded into <extraports>.
    A port nmap wrote without a number or a state means the output is not nmap's: NmapXmlError."""
    try:
        run = read_nmap_xml(xml)
        rows = [_row(host.address, port) for host in run.hosts for port in host.ports]
    except (ValueError, TypeError) as exc:  # NmapXmlError is a ValueError
        raise NmapXmlError(f"unreadable nmap XML: {exc}") from None
    return rows, {host.address: host.extraports for host in run.hosts if host.extraports is not None}


def _row(address: str | None, port: XmlPort) -> NmapPort:
    if not port.has_state:
        raise ValueError(f"<port portid={port.portid!r}> has no <state>")
    return NmapPort(address, int(port.portid), port.state, port.reason, port.ttl, port.responder, port.service)


async def discover(targets: TargetSet, opts: DiscoveryOptions, on_result: Found, on_progress: Progress) -> DiscoveryStats:
    """One nmap run per port set; its rows, and the ports it folded, become a result for every probed pair."""
    import nmap

    stats = DiscoveryStats()
    started = time.perf_counter()
    groups: dict[tuple[int, ...], list[TargetBlock]] = {}
    for block in targets.blocks:
        groups.setdefault(block.ports or targets.ports, []).append(block)
    # -sS needs raw sockets (as the evidence says, engines.ENGINES); nmap assumes an unprivileged user has none
    # unless told --privileged.
    technique = ("-sS" + ("" if os.geteuid() == 0 else " --privileged")) if raw_sockets_allowed() else "-sT"
    for ports, blocks in groups.items():
        by_address = {str(addr): block for block in blocks for addr in block.addresses()}
        # -T4 adapts its timeouts to the measured RTT; --min-rate keeps it from crawling when a firewall
        # drops most probes (15 s instead of 1.6 s for a /26 x 12 ports in the segmented lab).
        arguments = (f"{technique} -n -Pn -T4 --reason --max-retries {opts.retries} "
                     + (f"--max-rate {opts.rate:g}" if opts.rate else f"--min-rate {NMAP_MIN_RATE}"))
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
                             opts.report_all, batch)
        for found in batch:
            on_result(found)
        stats.probes += len(by_address) * len(ports)
        on_progress(len(by_address) * len(ports))
    stats.seconds = time.perf_counter() - started
    return stats

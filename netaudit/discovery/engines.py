"""The discovery engines, one table: which (address, port) pairs accept a TCP connection, found by TCP
connect() (netaudit/discovery/connect.py), raw SYN packets (syn.py) or the nmap binary (nmap.py).

`scan --engine`'s choices, the scanner, and the policy's reading of who answered (only an engine that
sees the reply packets knows its TTL and the source of an ICMP error) all read this table. It imports
no engine: `netaudit --help` reads it, and an engine's module is loaded when it runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from netaudit.discovery.base import DiscoveryOptions, DiscoveryStats, Found, PortResult, Progress, raw_sockets_allowed

if TYPE_CHECKING:
    from netaudit.targets.parse import TargetSet

# Discovery's face to the stages above: the scanner and the CLI import from here.
__all__ = ["ENGINES", "DiscoveryOptions", "Engine", "PortResult", "default_engine", "raw_sockets_allowed"]


@dataclass(frozen=True)
class Engine:
    name: str
    says: str | Callable[[], str]  # what one probe puts on the wire, for the evidence (decided when it runs)
    sees_packets: bool  # sees the reply itself (TTL, ICMP source), not only what connect() returned
    module: str  # its module, whose discover(targets, opts, on_result, on_progress) runs it

    @property
    def sends(self) -> str:
        return self.says() if callable(self.says) else self.says

    async def run(self, targets: TargetSet, opts: DiscoveryOptions, on_result: Found,
                  on_progress: Progress) -> DiscoveryStats:
        return await importlib.import_module(self.module).discover(targets, opts, on_result, on_progress)


ENGINES: dict[str, Engine] = {e.name: e for e in (
    Engine("connect", "TCP connect()", False, "netaudit.discovery.connect"),
    Engine("syn", "raw SYN", True, "netaudit.discovery.syn"),
    Engine("nmap", lambda: "nmap -sS SYN" if raw_sockets_allowed() else "nmap -sT connect()", True,
           "netaudit.discovery.nmap"),
)}


def default_engine(targets: TargetSet) -> tuple[str, str]:
    """nmap's convention: a SYN scan when privileged, a connect scan otherwise. Raw SYNs tell a firewall's
    drop (filtered) from its reset (closed) and name the ICMP reason, which connect() cannot."""
    if targets.has_ipv6():
        return "connect", "IPv6 targets: TCP connect() scan (the SYN engine is IPv4 only)"
    if not raw_sockets_allowed():
        return "connect", ("no CAP_NET_RAW: TCP connect() scan (--engine syn needs the capability to send raw "
                           "packets)")
    return "syn", "CAP_NET_RAW on IPv4: raw SYN scan, as nmap -sS (--engine connect to override)"

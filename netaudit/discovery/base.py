"""What every discovery engine shares: the result of one probed (address, port), the options an engine
is given, the counts it returns, and the hand-off of results from a sweep thread to the event loop.

Every engine reports a result for every probed pair: listed ones (open ports, and every port of a target
that names one host) reach the scan one by one, the rest are folded into a StateSummary, so the firewall's
verdict on a swept range is kept without listing each closed port.
"""

from __future__ import annotations

import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from netaudit.discovery.portstates import Reply, StateSummary

if TYPE_CHECKING:
    from netaudit.targets.parse import TargetBlock


@dataclass(frozen=True)
class DiscoveryOptions:
    timeout: float = 2.0
    retries: int = 1
    rate: float = 0
    concurrency: int = 512
    report_all: bool = False


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


# A sweep's hand-off: how many probes finished since the last call, and the results to list among them.
Emit = Callable[[int, list[PortResult]], None]
Found = Callable[[PortResult], None]
Progress = Callable[[int], None]


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


def emitter(on_result: Found, on_progress: Progress) -> Emit:
    """Hand batches from a sweep thread to the event loop, where the scan's callbacks run."""
    import asyncio  # loaded already wherever a loop runs; this module is read by `--help` too

    loop = asyncio.get_running_loop()

    def deliver(done: int, batch: list[PortResult]) -> None:
        for found in batch:
            on_result(found)
        on_progress(done)

    return lambda done, batch: loop.call_soon_threadsafe(deliver, done, batch)


def source_address(host: str) -> str:
    """The kernel's own choice of source address for this destination. Connecting a UDP socket sends
    nothing; it only looks up the route."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))
        return probe.getsockname()[0]


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

"""What discovery saw on every probed (host, port) that the result does not list as an endpoint.

A sweep of a /16 over twelve ports probes 786,432 pairs, nearly all closed or filtered. Listing each
would bloat the result; dropping them loses the firewall's verdict, and a report could then not tell
"the firewall reset it" from "this vantage never probed it". So the pairs are folded into groups that
share a state and a reply (state, reason, TTL, who sent the reply), each holding its ports and its
addresses as CIDR blocks. Addresses arrive mostly in order, so each group is a short list of ranges.
"""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class RangeSet:
    """Sorted, disjoint, non-adjacent [first, last] integer ranges."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)

    def add(self, first: int, last: int | None = None) -> None:
        last = first if last is None else last
        # Fast path: addresses of a sweep arrive in increasing order.
        if self.ends and self.ends[-1] + 1 >= first >= self.starts[-1]:
            self.ends[-1] = max(self.ends[-1], last)
            return
        index = bisect.bisect_left(self.ends, first - 1)
        merge_to = index
        while merge_to < len(self.starts) and self.starts[merge_to] <= last + 1:
            first = min(first, self.starts[merge_to])
            last = max(last, self.ends[merge_to])
            merge_to += 1
        self.starts[index:merge_to] = [first]
        self.ends[index:merge_to] = [last]

    def __contains__(self, value: int) -> bool:
        index = bisect.bisect_left(self.ends, value)
        return index < len(self.starts) and self.starts[index] <= value

    def ranges(self) -> Iterator[tuple[int, int]]:
        return zip(self.starts, self.ends)

    def __len__(self) -> int:
        return sum(e - s + 1 for s, e in self.ranges())


@dataclass(frozen=True)
class Reply:
    """What came back for a probe, as the report's cells show it."""

    state: str  # closed | filtered | undetermined (open ports are always listed as endpoints)
    reason: str  # reset, admin-prohibited, no-response, EHOSTUNREACH, …
    ttl: int | None = None  # of the reply, when the engine sees packets
    responder: str | None = None  # who sent the reply, when not the target itself (an ICMP error's source)

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "ttl": self.ttl, "responder": self.responder}


class StateSummary:
    """Unlisted probe results, grouped by reply, then by port, as address ranges."""

    def __init__(self) -> None:
        self.groups: dict[tuple[Reply, int, int], RangeSet] = {}  # (reply, ip version, port) -> addresses

    def add(self, host: str, port: int, reply: Reply) -> None:
        address = ipaddress.ip_address(host)
        self.groups.setdefault((reply, address.version, port), RangeSet()).add(int(address))

    def merge(self, other: StateSummary) -> None:
        for key, ranges in other.groups.items():
            mine = self.groups.setdefault(key, RangeSet())
            for first, last in ranges.ranges():
                mine.add(first, last)

    def __len__(self) -> int:
        return sum(len(r) for r in self.groups.values())

    def to_json(self) -> list[dict[str, Any]]:
        """Groups whose ports share the same address set are written once, with all their ports."""
        by_reply: dict[tuple[Reply, int, tuple[tuple[int, int], ...]], list[int]] = {}
        for (reply, version, port), ranges in self.groups.items():
            by_reply.setdefault((reply, version, tuple(ranges.ranges())), []).append(port)
        out = []
        for (reply, version, ranges), ports in by_reply.items():
            make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
            hosts = [str(net) for first, last in ranges
                     for net in ipaddress.summarize_address_range(make(first), make(last))]
            out.append({**reply.to_dict(), "ports": sorted(ports), "hosts": hosts,
                        "count": len(ports) * sum(last - first + 1 for first, last in ranges)})
        return sorted(out, key=lambda g: (g["state"], g["reason"], g["ports"], g["hosts"]))


def merge_groups(parts: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The port_states of one scan run in parts (scan --workers), as one process writes them. A part's
    hosts are scattered over the range by the hash that split the work, so its groups are fragments: a
    /16 one process writes as one CIDR would be thousands of them per part if the lists were joined."""
    summary = StateSummary()
    for groups in parts:
        for group in groups:
            reply = Reply(group["state"], group["reason"], group.get("ttl"), group.get("responder"))
            for net in map(ipaddress.ip_network, group["hosts"]):
                for port in group["ports"]:
                    summary.groups.setdefault((reply, net.version, port), RangeSet()).add(
                        int(net.network_address), int(net.broadcast_address))
    return summary.to_json()


def lookup(groups: list[dict[str, Any]], host: str, port: int) -> dict[str, Any] | None:
    """The group of a result's `port_states` that holds (host, port), if that pair was probed."""
    address = ipaddress.ip_address(host)
    for group in groups:
        if port in group["ports"] and any(address in ipaddress.ip_network(net) for net in group["hosts"]):
            return group
    return None


def target_ttls(listed: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, int]:
    """Per host, the TTL its own SYN-ACKs arrive with (from (host, details) pairs of listed endpoints): the
    yardstick for telling a firewall's reply apart from the target's."""
    out: dict[str, int] = {}
    for host, details in listed:
        seen = details.get("discovery") or {}
        if seen.get("reason") == "syn-ack" and seen.get("ttl") is not None:
            out[host] = min(out.get(host, 255), seen["ttl"])
    return out


# The initial TTLs stacks use (Linux/macOS 64, Windows 128, network gear 255): hops = initial - seen.
INITIAL_TTLS = (64, 128, 255)


def received(reason: str, responder: str | None) -> str:
    """What came back, in words."""
    words = {"syn-ack": "SYN-ACK", "reset": "RST", "no-response": "no reply"}.get(reason)
    if words is None:
        words = f"ICMP {reason}" if "unreach" in reason or "prohibited" in reason else reason
    return words + (f" from {responder}" if responder else "")


def answered_by(reason: str, ttl: int | None, responder: str | None, target_ttl: int | None,
                sees_packets: bool = True, local: frozenset[str] = frozenset()) -> str:
    """Who sent the reply: the target, or a firewall or router on the way. An ICMP error names its sender;
    a RST forged by a firewall arrives with fewer hops spent (a higher TTL) than the target's own SYN-ACK.
    `local` holds this machine's source addresses: an ICMP error from one of them is the kernel's own."""
    if reason == "no-response":
        return "nobody: no reply (dropped on the way, or no host there)"
    if responder in local:
        return f"this machine ({responder}): no neighbour answered for the target on its link (no host there)"
    if responder:
        return f"{responder}, not the target: a router or firewall on the way"
    if not sees_packets or ttl is None:
        return "not known: this engine does not see the reply packet (--engine syn does)"
    if target_ttl is not None and ttl > target_ttl:
        return (f"a device {_hops(ttl - target_ttl)} before the target: a firewall on the way (TTL {ttl}; the "
                f"target's own SYN-ACK arrives with TTL {target_ttl})")
    if target_ttl is not None and ttl == target_ttl:
        return f"the target (TTL {ttl}, as its own SYN-ACK)"
    hops = min(i for i in INITIAL_TTLS if i >= ttl) - ttl
    if hops == 0:
        return (f"the next hop itself (TTL {ttl} arrived unspent): for a target beyond this link, a router or "
                "firewall answered in its name")
    return f"a host {_hops(hops)} away (TTL {ttl}); no SYN-ACK from the target to compare with"


def _hops(count: int) -> str:
    return f"{count} hop" + ("s" if count != 1 else "")

"""The data model shared by every stage: what a scan saw (endpoints) and what it means (findings)."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

# The one home of each of these tables; the published schemas (netaudit/data/schemas) repeat them for
# other tools, and tests/test_registry.py holds the two equal.
State = Literal["open", "closed", "filtered", "undetermined"]
Kind = str  # a kind some family declares (core.registry.kinds()): no list of kinds lives in code
Transport = Literal["plaintext", "tls", "mtls", "unknown"]
TRANSPORTS: tuple[str, ...] = get_args(Transport)

SEVERITIES = ("info", "low", "medium", "high", "critical")  # least severe first: severity_rank is the index
SCHEMA = "netaudit/scan-v1"


def shallow(obj) -> dict[str, Any]:
    """A dataclass as a dict without dataclasses.asdict's deep copy: outputs only read it, and a report with
    20,000 findings renders seconds faster."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def endpoint_order(host: str, port: int) -> tuple[int, int, int]:
    """The one order of endpoints everywhere (scan, stream, shards, report): IPv4 before IPv6, then by
    address and port. Raw addresses of two families cannot be compared, so a dual-stack merge sorted them
    with a TypeError."""
    address = ipaddress.ip_address(host)
    return address.version, int(address), port


def vantage_name(data: dict[str, Any]) -> str:
    """What every output calls a result's vantage: its name, a report's vantages joined, or "-"."""
    return data.get("vantage") or ",".join(s["vantage"] for s in data.get("scans", [])) or "-"


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@dataclass
class Endpoint:
    host: str
    port: int
    state: State
    kind: Kind | None = None
    transport: Transport | None = None
    authenticated: bool | None = None
    services: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return shallow(self)


@dataclass
class Finding:
    rule: str
    severity: str
    host: str
    port: int
    title: str
    evidence: list[str]
    remediation: str
    references: list[str]
    compliance: dict[str, list[str]] = field(default_factory=dict)
    cvss_vector: str | None = None
    cvss_score: float | None = None
    context: str | None = None  # why the severity is what it is, when a report knew where it was reachable from

    @property
    def id(self) -> str:
        """Stable across runs: the same rule on the same endpoint always gets the same id."""
        return hashlib.sha256(f"{self.rule}|{self.host}|{self.port}".encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **shallow(self)}


@dataclass
class ScanResult:
    vantage: str | None
    started: str
    finished: str | None = None
    complete: bool = False
    endpoints: list[Endpoint] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    # Every probed pair not listed in `endpoints`, grouped by reply (portstates.StateSummary.to_json).
    port_states: list[dict[str, Any]] = field(default_factory=list)
    # With scan --policy: the policy, this vantage's segment, and what it expects but could not reach.
    policy: dict[str, Any] | None = None
    segment: str | None = None
    expected_unreachable: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "schema": SCHEMA,
            "vantage": self.vantage,
            "started": self.started,
            "finished": self.finished,
            "complete": self.complete,
            "endpoints": [e.to_dict() for e in self.endpoints],
            "findings": [f.to_dict() for f in self.findings],
            "stats": self.stats,
            "options": self.options,
            "port_states": self.port_states,
        }
        if self.policy is not None:
            data.update(policy=self.policy, segment=self.segment, expected_unreachable=self.expected_unreachable)
        return data

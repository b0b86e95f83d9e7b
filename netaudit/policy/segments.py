"""The policy file: network segments with a trust level, and who may reach which kind of TF endpoint; and
its verdicts, as policy/reachability.py's VantagePolicy asks for them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from netaudit.assess.rules import FROM_KIND, policy_rule
from netaudit.assess.scoring import scores, with_context
from netaudit.core import registry
from netaudit.core.errors import UsageError
from netaudit.core.files import read_toml
from netaudit.core.model import Finding
from netaudit.core.registry import TRUST_LEVELS
from netaudit.core.validate import check_keys, nearest
from netaudit.policy.reachability import ScanView, base_row, firewall_seen, verdict
from netaudit.targets.parse import IPNetwork

REQUIREMENTS = ("tls", "mtls")


@dataclass(frozen=True)
class Segment:
    name: str
    cidrs: tuple[IPNetwork, ...]
    trust: str


@dataclass(frozen=True)
class Allow:
    kinds: tuple[str, ...]
    sources: tuple[str, ...]
    require: tuple[str, ...] = ()

    def permits(self, kind: str, segment: str) -> bool:
        return kind in self.kinds and segment in self.sources

    def unmet(self, transport: str | None) -> list[str]:
        """Requirements this transport does not meet (mtls also satisfies tls)."""
        have = {"mtls": {"tls", "mtls"}, "tls": {"tls"}}.get(transport or "", set())
        return [r for r in self.require if r not in have]


@dataclass(frozen=True)
class Policy:
    segments: dict[str, Segment]
    allows: tuple[Allow, ...]

    def segment_of(self, address: str) -> Segment | None:
        ip = ipaddress.ip_address(address)
        for segment in self.segments.values():
            if any(ip in net for net in segment.cidrs):
                return segment
        return None

    def rules_for(self, kind: str, segment: str) -> list[Allow]:
        return [a for a in self.allows if a.permits(kind, segment)]

    def to_dict(self) -> dict:
        return {"segments": {s.name: {"cidrs": [str(c) for c in s.cidrs], "trust": s.trust}
                             for s in self.segments.values()},
                "allow": [{"kinds": list(a.kinds), "from": list(a.sources), "require": list(a.require)}
                          for a in self.allows]}

    def locate(self, targets, named: str | None) -> tuple[str, str | None, str | None]:
        """Without a name the vantage is the segment that holds the address this machine sends from (the
        kernel's route choice; nothing is sent)."""
        from netaudit.discovery.base import source_address

        if named in self.segments:
            return named, named, None
        first = next(iter(targets.blocks[0].addresses()))
        try:
            source = source_address(str(first))
        except OSError as exc:
            return named or "unknown", None, f"no route to {first} ({exc.strerror}): the vantage's segment is unknown"
        segment = self.segment_of(source)
        if segment is None:
            return named or "unknown", None, (f"the source address {source} is in no segment of the policy: the "
                                              f"vantage is {named or 'unknown'}, and its reachability cannot be judged")
        return named or segment.name, segment.name, None

    def place(self, scan: dict[str, Any]) -> tuple[str, str | None]:
        """The named vantage, else the segment scan --policy recorded, else the one holding a source address."""
        name = scan.get("vantage")
        if name in self.segments:
            return name, name
        if scan.get("segment") in self.segments:
            return name or scan["segment"], scan["segment"]
        for source in scan.get("stats", {}).get("source_addresses", []):
            segment = self.segment_of(source)
            if segment:
                return name or segment.name, segment.name
        return name or "(unnamed)", None

    def row(self, vantage: str, segment: str | None, view: ScanView, ep: dict[str, Any],
            kind: str | None) -> dict[str, Any]:
        """A vantage in no segment judges nothing (allowed None)."""
        cell = base_row(vantage, segment, view, ep, kind)
        allowed = bool(cell["kind"] and self.rules_for(cell["kind"], segment)) if segment else None
        return {**cell, "allowed": allowed, "verdict": verdict(cell["state"], allowed)}

    def trust_context(self, finding: Finding, rows: list[dict[str, Any]]) -> None:
        """The finding's context from the segments that reached its endpoint."""
        reached = sorted({r["segment"] for r in rows if r["segment"] and r["state"] == "open"
                          and (r["host"], r["port"]) == (finding.host, finding.port)})
        with_context(finding, [self.segments[s] for s in reached])

    def policy_findings(self, rows: list[dict[str, Any]], endpoints: dict[tuple[str, int], dict[str, Any]]
                        ) -> list[Finding]:
        """A finding for each open cell the policy does not allow, or allows only with TLS/mTLS it lacks."""
        return [f for r in rows if (f := self._finding(r, endpoints[(r["host"], r["port"])], rows))]

    def _finding(self, r: dict[str, Any], ep: dict[str, Any], rows: list[dict[str, Any]]) -> Finding | None:
        declared = registry.kind(ep.get("kind"))
        if r["state"] != "open" or declared is None or not declared.sensitive or r["segment"] is None:
            return None
        segment = self.segments[r["segment"]]
        address = f"{r['host']}:{r['port']}"
        allowed_from = sorted({s for a in self.allows if ep["kind"] in a.kinds for s in a.sources})
        fields = {"kind": ep["kind"], "address": address, "port": r["port"], "segment": segment.name,
                  "trust": segment.trust, "cidrs": ", ".join(map(str, segment.cidrs)),
                  "allowed": ", ".join(allowed_from) or "none", "transport": r["transport"]}
        evidence = [f"vantage {r['vantage']} (segment {segment.name}, {segment.trust}): {r['evidence']}",
                    f"probe result: {ep['kind']}, transport {ep.get('transport')}, authenticated "
                    f"{ep.get('authenticated')}", firewall_seen(rows, r["host"], r["port"])]
        permits = self.rules_for(ep["kind"], segment.name)
        if not permits:
            rule = policy_rule("not-allowed")
        else:
            unmet = min((a.unmet(r["transport"]) for a in permits), key=len)
            if not unmet:
                return None
            rule = policy_rule("requirement-unmet")
            fields["required"] = " and ".join(unmet)
        severity = declared.policy_severity[segment.trust] if rule.severity == FROM_KIND else rule.severity
        vector = declared.policy_cvss if rule.cvss == FROM_KIND else rule.cvss
        if vector and segment.trust == "trusted" and "/MAV:" not in vector:
            vector += "/MAV:A"
        return Finding(rule=f"{rule.id}@{segment.name}", severity=severity, host=r["host"], port=r["port"],
                       title=rule.title.format(**fields), evidence=evidence,
                       remediation=rule.remediation.format(**fields), references=list(rule.references),
                       compliance=rule.compliance, cvss_vector=vector, cvss_score=scores(vector)[1] if vector else None,
                       context=f"seen from {segment.name} ({segment.trust})")


def _list(value, what: str, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"policy {path}: {what} must be a list of strings")
    return tuple(value)


def load_policy(path: str) -> Policy:
    data = read_toml(path, "policy")
    check_keys(data, {"segments", "allow"}, f"policy {path}", "top level")
    if not isinstance(data.get("segments", {}), dict) or not isinstance(data.get("allow", []), list):
        raise UsageError(f"policy {path}: segments must be tables ([segments.NAME]) and allow a list ([[allow]])")
    segments = {}
    for name, entry in (data.get("segments") or {}).items():
        if not isinstance(entry, dict):
            raise UsageError(f"policy {path}: [segments.{name}] must be a table")
        check_keys(entry, {"cidrs", "trust"}, f"policy {path}", f"segments.{name}")
        if not entry.get("cidrs"):
            raise UsageError(f"policy {path}: segments.{name}: no cidrs: the segment would hold no address")
        trust = entry.get("trust", "untrusted")
        if trust not in TRUST_LEVELS:
            raise UsageError(f"policy {path}: segment {name!r} trust {trust!r} is not one of {', '.join(TRUST_LEVELS)}")
        try:
            cidrs = tuple(ipaddress.ip_network(c, strict=False) for c in _list(entry.get("cidrs", []), "cidrs", path))
        except ValueError as exc:
            raise UsageError(f"policy {path}: segment {name!r}: {exc}") from None
        segments[name] = Segment(name, cidrs, trust)
    if not segments:
        raise UsageError(f"policy {path} defines no [segments.NAME]")
    allows = []
    for index, entry in enumerate(data.get("allow") or [], 1):
        if not isinstance(entry, dict):
            raise UsageError(f"policy {path}: allow #{index} must be a table")
        check_keys(entry, {"kinds", "from", "require"}, f"policy {path}", f"allow #{index}")
        if not entry.get("kinds") or not entry.get("from"):
            raise UsageError(f"policy {path}: allow #{index} needs kinds and from")
        kinds = _list(entry.get("kinds", []), f"allow #{index} kinds", path)
        sources = _list(entry.get("from", []), f"allow #{index} from", path)
        require = _list(entry.get("require", []), f"allow #{index} require", path)
        for kind in kinds:
            if registry.kind(kind) is None:
                raise UsageError(f"policy {path}: allow #{index}: unknown kind {kind!r}"
                                 f"{nearest(kind, registry.kinds())} (known: {', '.join(registry.kinds())})")
        for source in sources:
            if source not in segments:
                raise UsageError(f"policy {path}: allow #{index}: unknown segment {source!r}{nearest(source, segments)}")
        for req in require:
            if req not in REQUIREMENTS:
                raise UsageError(f"policy {path}: allow #{index}: require {req!r} is not one of tls, mtls")
        allows.append(Allow(kinds, sources, require))
    return Policy(segments, tuple(allows))

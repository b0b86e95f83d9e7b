"""Merge scans taken from several vantages, hold them against the policy, and produce the report data:
the reachability matrix, the findings of every scan plus the reachability the policy does not allow,
and what the policy expects to be reachable but was not."""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from typing import Any

from .advice import build_advice
from .errors import UsageError
from .files import read_json
from .model import SCHEMA, Finding, severity_rank
from .policy import Policy
from .scoring import scores, with_context

REPORT_SCHEMA = "netaudit/report-v1"
TF_KINDS = ("tf-server", "modelserver-grpc", "modelserver-rest")


@dataclass
class Report:
    scans: list[dict[str, Any]]
    endpoints: list[dict[str, Any]]
    reachability: list[dict[str, Any]]
    findings: list[Finding]
    expected_unreachable: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = True
    generated: str = ""
    policy: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {"schema": REPORT_SCHEMA, "generated": self.generated, "complete": self.complete,
                "scans": self.scans, "policy": self.policy, "endpoints": self.endpoints,
                "reachability": self.reachability, "findings": [f.to_dict() for f in self.findings],
                "expected_unreachable": self.expected_unreachable}
        data["advice"] = build_advice(data)
        return data



@cache
def policy_rules() -> dict[str, Any]:
    return tomllib.loads(resources.files("netaudit").joinpath("data/policy_rules.toml").read_text())


def load_scan(path: str) -> dict[str, Any]:
    data = read_json(path, "scan result")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UsageError(f"{path} is not a netaudit scan result (schema {SCHEMA!r} expected)")
    data["_path"] = path
    return data


def load_scan_or_report(path: str) -> dict[str, Any]:
    """A --baseline file: a scan result or a merged report."""
    data = read_json(path, "baseline")
    if not isinstance(data, dict) or data.get("schema") not in (SCHEMA, REPORT_SCHEMA):
        raise UsageError(f"baseline {path} is not a netaudit scan result or report")
    return data


def _vantage(scan: dict[str, Any], policy: Policy | None) -> tuple[str, str | None]:
    """(vantage name, policy segment): the named vantage, else the segment holding the scan's source address."""
    name = scan.get("vantage")
    if policy is None:
        return name or "(unnamed)", None
    if name in policy.segments:
        return name, name
    for source in scan.get("stats", {}).get("source_addresses", []):
        segment = policy.segment_of(source)
        if segment:
            return name or segment.name, segment.name
    return name or "(unnamed)", None


def _finding_from_dict(data: dict[str, Any]) -> Finding:
    return Finding(**{k: data[k] for k in ("rule", "severity", "host", "port", "title", "evidence", "remediation",
                                           "references")}, compliance=data.get("compliance", {}),
                   cvss_vector=data.get("cvss_vector"), cvss_score=data.get("cvss_score"))


def _kind_of(views: list[dict[str, Any]]) -> dict[str, Any]:
    """The most telling view of an endpoint across vantages: an open, fingerprinted one if any."""
    return max(views, key=lambda e: (e["state"] == "open", e.get("kind") in TF_KINDS, e.get("kind") is not None))


def build_report(scans: list[dict[str, Any]], policy: Policy | None) -> Report:
    vantages = [(_vantage(scan, policy), scan) for scan in scans]
    views: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for _, scan in vantages:
        for ep in scan["endpoints"]:
            views.setdefault((ep["host"], ep["port"]), []).append(ep)
    # The matrix covers services that exist: endpoints some vantage found open.
    endpoints = [_kind_of(v) for key, v in sorted(views.items(), key=lambda kv: (ipaddress.ip_address(kv[0][0]), kv[0][1]))
                 if any(e["state"] == "open" for e in v)]
    reachability = []
    for (name, segment), scan in vantages:
        seen = {(e["host"], e["port"]): e for e in scan["endpoints"]}
        for ep in endpoints:
            mine = seen.get((ep["host"], ep["port"]))
            reachability.append({"vantage": name, "segment": segment, "host": ep["host"], "port": ep["port"],
                                 "state": mine["state"] if mine else "undetermined",
                                 "kind": ep.get("kind"), "transport": (mine or {}).get("transport"),
                                 "evidence": (mine["evidence"][0] if mine and mine["evidence"] else
                                              "not in this vantage's results")})
    findings: dict[str, Finding] = {}
    for _, scan in vantages:
        for data in scan["findings"]:
            finding = _finding_from_dict(data)
            findings.setdefault(finding.id, finding)
    expected_unreachable = []
    if policy is not None:
        for row in reachability:
            row["allowed"] = bool(row["segment"] and row["kind"] and policy.rules_for(row["kind"], row["segment"])) \
                if row["segment"] else None
        for finding in findings.values():
            reached = sorted({r["segment"] for r in reachability if r["segment"] and r["state"] == "open"
                              and (r["host"], r["port"]) == (finding.host, finding.port)})
            with_context(finding, {policy.segments[s].trust for s in reached}, reached)
        for finding in _policy_findings(reachability, endpoints, policy):
            findings.setdefault(finding.id, finding)
        expected_unreachable = _expected_unreachable(reachability, endpoints, policy)
    ordered = sorted(findings.values(), key=lambda f: (-severity_rank(f.severity), f.host, f.port, f.rule))
    return Report(scans=[{"path": s["_path"], "vantage": name, "segment": seg, "started": s["started"],
                          "complete": s["complete"]} for (name, seg), s in vantages],
                  endpoints=endpoints, reachability=reachability, findings=ordered,
                  expected_unreachable=expected_unreachable, complete=all(s["complete"] for s in scans),
                  generated=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  policy=policy.to_dict() if policy else None)


def _firewall_seen(reachability: list[dict[str, Any]], host: str, port: int) -> str:
    others = [f"{r['vantage']}: {r['state']}" for r in reachability if (r["host"], r["port"]) == (host, port)]
    return "state from every vantage: " + ", ".join(others)


def _policy_findings(reachability, endpoints, policy: Policy) -> list[Finding]:
    by_key = {(e["host"], e["port"]): e for e in endpoints}
    rules = policy_rules()
    out = []
    for row in reachability:
        ep = by_key[(row["host"], row["port"])]
        if row["state"] != "open" or ep.get("kind") not in TF_KINDS or row["segment"] is None:
            continue
        segment = policy.segments[row["segment"]]
        address = f"{row['host']}:{row['port']}"
        allowed_from = sorted({s for a in policy.allows if ep["kind"] in a.kinds for s in a.sources})
        fields = {"kind": ep["kind"], "address": address, "port": row["port"], "segment": segment.name,
                  "trust": segment.trust, "cidrs": ", ".join(map(str, segment.cidrs)),
                  "allowed": ", ".join(allowed_from) or "none", "transport": row["transport"]}
        evidence = [f"vantage {row['vantage']} (segment {segment.name}, {segment.trust}): {row['evidence']}",
                    f"probe result: {ep['kind']}, transport {ep.get('transport')}, authenticated "
                    f"{ep.get('authenticated')}", _firewall_seen(reachability, row["host"], row["port"])]
        permits = policy.rules_for(ep["kind"], segment.name)
        if not permits:
            rule = rules["unexpected-reachability"]
            severity = rule["severity"][segment.trust][ep["kind"]]
        else:
            unmet = min((a.unmet(row["transport"]) for a in permits), key=len)
            if not unmet:
                continue
            rule = rules["transport-requirement"]
            severity = rule["severity"]
            fields["required"] = " and ".join(unmet)
        vector = rule["cvss"][ep["kind"]] if isinstance(rule["cvss"], dict) else rule["cvss"]
        if segment.trust == "trusted" and "/MAV:" not in vector:
            vector += "/MAV:A"
        out.append(Finding(rule=rule["rule"] + f"@{segment.name}", severity=severity, host=row["host"],
                           port=row["port"], title=rule["title"].format(**fields), evidence=evidence,
                           remediation=rule["remediation"].format(**fields), references=rule["references"],
                           compliance=rule["compliance"], cvss_vector=vector, cvss_score=scores(vector)[1],
                           context=f"seen from {segment.name} ({segment.trust})"))
    return out


def _expected_unreachable(reachability, endpoints, policy: Policy) -> list[dict[str, Any]]:
    by_key = {(e["host"], e["port"]): e for e in endpoints}
    out = []
    for row in reachability:
        ep = by_key[(row["host"], row["port"])]
        if row["segment"] and ep.get("kind") in TF_KINDS and row["state"] != "open" \
                and policy.rules_for(ep["kind"], row["segment"]):
            out.append({"vantage": row["vantage"], "segment": row["segment"], "host": row["host"],
                        "port": row["port"], "kind": ep["kind"], "state": row["state"], "evidence": row["evidence"]})
    return out

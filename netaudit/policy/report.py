"""Merge scans taken from several vantages, hold them against the policy, and produce the report data:
the reachability matrix, the findings of every scan plus the reachability the policy does not allow,
and what the policy expects to be reachable but was not."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from netaudit.core.errors import UsageError
from netaudit.core import registry
from netaudit.policy.reachability import ScanView, VantagePolicy, expected_unreachable, row
from netaudit.core.model import Finding, endpoint_order, severity_rank
from netaudit.discovery.portstates import merge_groups

REPORT_SCHEMA = "netaudit/report-v1"
SUMMED_STATS = ("probes", "retried", "probe_retried", "probe_errors")


def merge_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The stats of one scan run in parts (shards, workers): counts add up, discovery took as long as its
    slowest part, source addresses are unioned, and the first part that stopped early says why."""
    merged = dict(parts[0]) if parts else {}
    for key in SUMMED_STATS:
        if any(key in part for part in parts):
            merged[key] = sum(part.get(key, 0) for part in parts)
    states: Counter = Counter()
    for part in parts:
        states.update(part.get("states", {}))
    merged["states"] = dict(states)
    merged["source_addresses"] = sorted({a for part in parts for a in part.get("source_addresses", [])})
    if any("discovery_seconds" in part for part in parts):
        merged["discovery_seconds"] = max(part.get("discovery_seconds", 0) for part in parts)
    merged.pop("incomplete_reason", None)
    if reason := next((part["incomplete_reason"] for part in parts if part.get("incomplete_reason")), None):
        merged["incomplete_reason"] = reason
    return merged


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
        return data  # the advice is the outputs' (outputs.render.as_dict)



def _vantage(scan: dict[str, Any], policy: VantagePolicy | None) -> tuple[str, str | None]:
    """(vantage name, policy segment)."""
    if policy is None:
        return scan.get("vantage") or "(unnamed)", None
    return policy.place(scan)


def _finding_from_dict(data: dict[str, Any]) -> Finding:
    return Finding(**{k: data[k] for k in ("rule", "severity", "host", "port", "title", "evidence", "remediation",
                                           "references")}, compliance=data.get("compliance", {}),
                   cvss_vector=data.get("cvss_vector"), cvss_score=data.get("cvss_score"))


def _kind_of(views: list[dict[str, Any]]) -> dict[str, Any]:
    """The most telling view of an endpoint across vantages: an open, fingerprinted one if any."""
    return max(views, key=lambda e: (e["state"] == "open", e.get("kind") in registry.sensitive_kinds(),
                                   e.get("kind") is not None))


def _shard_key(scan: dict[str, Any]) -> tuple | None:
    """Scans that are shards of one sweep from one vantage share this key."""
    options = scan.get("options", {})
    shard = options.get("shard")
    if not shard:
        return None
    return (scan.get("vantage"), tuple(sorted(options.get("targets", []))), tuple(options.get("ports", [])),
            shard["count"])


def merge_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """What one scan run in parts says as a whole, for shards (scan --shard, merged by report) and workers
    (scan --workers) alike: stats added up, port_states regrouped into the groups one scan writes, finished
    when the last part did, complete when every part did."""
    return {"stats": merge_stats([p.get("stats") or {} for p in parts]),
            "port_states": merge_groups(p.get("port_states") or [] for p in parts),
            "finished": max((p.get("finished") or "" for p in parts), default="") or None,
            "complete": bool(parts) and all(p.get("complete") for p in parts)}


def merge_shards(scans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shard results (scan --shard K/N) of one vantage and one sweep become one scan: endpoints, findings
    and port_states unioned. It is complete only when all N shards are there and each finished; the
    missing ones are named in `shards`."""
    out: list[dict[str, Any]] = []
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for scan in scans:
        key = _shard_key(scan)
        if key is None:
            out.append(scan)
        elif key in groups:
            groups[key].append(scan)
        else:
            groups[key] = [scan]
            out.append(scan)  # placeholder, replaced below in the same place
    for key, parts in groups.items():
        count = key[3]
        indices = [p["options"]["shard"]["index"] for p in parts]
        duplicate = sorted({i for i in indices if indices.count(i) > 1})
        if duplicate:
            raise UsageError(f"shard {duplicate[0]}/{count} of vantage {key[0] or '(unnamed)'} is given twice: "
                             + ", ".join(p["_path"] for p in parts if p["options"]["shard"]["index"] == duplicate[0]))
        placeholder = parts[0]
        parts.sort(key=lambda p: p["options"]["shard"]["index"])
        missing = sorted(set(range(1, count + 1)) - set(indices))
        unfinished = [p["options"]["shard"]["index"] for p in parts if not p["complete"]]
        endpoints: dict[tuple[str, int], dict[str, Any]] = {}
        findings: dict[str, dict[str, Any]] = {}
        for part in parts:
            for ep in part["endpoints"]:
                endpoints.setdefault((ep["host"], ep["port"]), ep)
            for finding in part["findings"]:
                findings.setdefault(finding["id"], finding)
        first = parts[0]
        whole = merge_parts(parts)
        merged = {**first, "_path": ", ".join(p["_path"] for p in parts),
                  "started": min(p["started"] for p in parts),
                  "finished": whole["finished"],
                  "complete": not missing and whole["complete"],
                  "endpoints": sorted(endpoints.values(), key=lambda e: endpoint_order(e["host"], e["port"])),
                  "findings": list(findings.values()),
                  "port_states": whole["port_states"],
                  "stats": whole["stats"],
                  "options": {**first["options"], "shard": None},
                  "shards": {"count": count, "present": sorted(indices), "missing": missing, "unfinished": unfinished}}
        out[next(i for i, scan in enumerate(out) if scan is placeholder)] = merged
    return out


def build_report(scans: list[dict[str, Any]], policy: VantagePolicy | None) -> Report:
    scans = merge_shards(scans)
    vantages = [(_vantage(scan, policy), scan) for scan in scans]
    views: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for _, scan in vantages:
        for ep in scan["endpoints"]:
            views.setdefault((ep["host"], ep["port"]), []).append(ep)
    # The matrix covers services that exist: endpoints some vantage found open.
    endpoints = [_kind_of(v) for key, v in sorted(views.items(), key=lambda kv: endpoint_order(*kv[0]))
                 if any(e["state"] == "open" for e in v)]
    reachability = []
    for (name, segment), scan in vantages:
        view = ScanView(scan)
        reachability += [row(name, segment, view, ep, policy) for ep in endpoints]
    findings: dict[str, Finding] = {}
    for _, scan in vantages:
        for data in scan["findings"]:
            finding = _finding_from_dict(data)
            findings.setdefault(finding.id, finding)
    unreachable = []
    if policy is not None:
        for finding in findings.values():
            policy.trust_context(finding, reachability)
        by_key = {(e["host"], e["port"]): e for e in endpoints}
        for finding in policy.policy_findings(reachability, by_key):
            findings[finding.id] = finding
        unreachable = expected_unreachable(reachability)
    ordered = sorted(findings.values(), key=lambda f: (-severity_rank(f.severity), f.host, f.port, f.rule))
    return Report(scans=[{"path": s["_path"], "vantage": name, "segment": seg, "started": s["started"],
                          "complete": s["complete"], **({"shards": s["shards"]} if "shards" in s else {})}
                         for (name, seg), s in vantages],
                  endpoints=endpoints, reachability=reachability, findings=ordered,
                  expected_unreachable=unreachable, complete=all(s["complete"] for s in scans),
                  generated=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  policy=policy.to_dict() if policy else None)

"""Reachability against the policy: for each (vantage, endpoint) what the scan saw, who answered, what the
policy says of it, and the findings that follow. One scan (`scan --policy`) and a merge of many
(`report`) use the same code, so a pre-deployment check and the full report never disagree.
"""

from __future__ import annotations

from typing import Any, Protocol

from netaudit.core import registry
from netaudit.core.model import Finding
from netaudit.discovery.engines import ENGINES
from netaudit.discovery.portstates import answered_by, lookup, received, target_ttls


class VantagePolicy(Protocol):
    """What a scan and a report ask of a policy. Two kinds answer: network segments with trust levels
    (policy/segments.py) and a cluster's NetworkPolicies (policy/k8s_policy.py). A vantage's `segment`
    is the policy's name for where it stands: a segment, or a pod, namespace, node or address."""

    def to_dict(self) -> dict[str, Any]:
        """The policy as the result records it."""

    def locate(self, targets, named: str | None) -> tuple[str, str | None, str | None]:
        """For `scan --policy`: (vantage, its segment, what to tell the user)."""

    def place(self, scan: dict[str, Any]) -> tuple[str, str | None]:
        """For `report`: (vantage, segment) of a scan result being merged."""

    def row(self, vantage: str, segment: str | None, view: ScanView, ep: dict[str, Any],
            kind: str | None) -> dict[str, Any]:
        """One matrix cell, with `allowed` and `verdict` as the policy judges it."""

    def policy_findings(self, rows: list[dict[str, Any]], endpoints: dict[tuple[str, int], dict[str, Any]]
                        ) -> list[Finding]:
        """The findings the judged cells give."""

    def trust_context(self, finding: Finding, rows: list[dict[str, Any]]) -> None:
        """Set a rule finding's context from where its endpoint was reached."""


# A cell's verdict, for the matrix legend. Without a policy (or for a vantage in no segment) an open cell
# is just `open` and a closed or filtered one `blocked`.
VERDICTS = {
    "open-not-allowed": "open, and the policy does not allow it (a finding)",
    "open-allowed": "open, and the policy allows it",
    "open": "open (no policy, or the vantage is in no policy segment)",
    "blocked": "closed or filtered, as the policy wants",
    "expected-unreachable": "the policy allows it, but it was closed or filtered",
    "unknown": "undetermined, or not probed from this vantage",
    "intent-unknown": "the policy cannot decide it (a NetworkPolicy verdict of unknown; the row says why)",
}


class ScanView:
    """What one scan result says about any (host, port): listed, folded into port_states, or not probed."""

    def __init__(self, scan: dict[str, Any]):
        self.scan = scan
        self.listed = {(e["host"], e["port"]): e for e in scan["endpoints"]}
        self.groups = scan.get("port_states")
        engine = scan.get("options", {}).get("engine") or scan.get("stats", {}).get("engine")
        self.sees_packets = engine in ENGINES and ENGINES[engine].sees_packets
        self.ttls = target_ttls((e["host"], e.get("details", {})) for e in scan["endpoints"])
        self.local = frozenset(scan.get("stats", {}).get("source_addresses", []))

    def cell(self, host: str, port: int) -> dict[str, Any]:
        """state, reason, what was sent and received, who answered, and one evidence sentence."""
        ep = self.listed.get((host, port))
        if ep is not None:
            seen = ep.get("details", {}).get("discovery")
            if seen is None:  # a result from before port_states: only its evidence line
                return {"state": ep["state"], "reason": None, "transport": ep.get("transport"),
                        "evidence": ep["evidence"][0] if ep["evidence"] else ep["state"]}
            return self._cell(host, port, ep["state"], seen["reason"], seen.get("ttl"), seen.get("responder"),
                              seen.get("sent"), ep.get("transport"), seen.get("answered_by"))
        group = lookup(self.groups or [], host, port)
        if group is not None:
            return self._cell(host, port, group["state"], group["reason"], group.get("ttl"), group.get("responder"),
                              None, None)
        why = ("not probed: this vantage's scan did not include it" if self.scan.get("complete", True) else
               "not probed: this vantage's scan did not finish") if self.groups is not None else \
            "not in this vantage's results (a result without port_states lists open ports only)"
        return {"state": "undetermined", "reason": "not-probed", "transport": None, "evidence": why}

    def _cell(self, host: str, port: int, state: str, reason: str, ttl: int | None, responder: str | None,
              sent: str | None, transport: str | None, who: str | None = None) -> dict[str, Any]:
        """`who`: who answered, as the scan judged it with all of the host's SYN-ACKs and its own source
        addresses in hand; a scan judged by the Assessor endpoint by endpoint sees only this one here."""
        engine = ENGINES.get(self.scan.get("options", {}).get("engine", ""))
        sent = sent or (engine.sends if engine else "probe")
        got = received(reason, responder)
        who = who or answered_by(reason, ttl, responder, self.ttls.get(host), self.sees_packets, self.local)
        return {"state": state, "reason": reason, "transport": transport, "sent": sent, "received": got,
                "ttl": ttl, "answered_by": who,
                "evidence": f"{sent} to {host}:{port}: {got}" + (f", TTL {ttl}" if ttl is not None else "")
                            + f"; answered by {who}"}


def verdict(state: str, allowed: bool | None) -> str:
    if state == "open":
        return "open" if allowed is None else ("open-allowed" if allowed else "open-not-allowed")
    if state in ("closed", "filtered"):
        return "expected-unreachable" if allowed else "blocked"
    return "unknown"


def base_row(vantage: str, segment: str | None, view: ScanView, ep: dict[str, Any], kind: str | None
             ) -> dict[str, Any]:
    """A matrix cell before any policy has judged it."""
    return {"vantage": vantage, "segment": segment, "host": ep["host"], "port": ep["port"],
            "kind": kind or ep.get("kind"), **view.cell(ep["host"], ep["port"])}


def row(vantage: str, segment: str | None, view: ScanView, ep: dict[str, Any], policy: VantagePolicy | None,
        kind: str | None = None) -> dict[str, Any]:
    """One matrix cell. `kind` is the endpoint's kind as the report knows it (from any vantage)."""
    if policy is not None:
        return policy.row(vantage, segment, view, ep, kind)
    cell = base_row(vantage, segment, view, ep, kind)
    return {**cell, "allowed": None, "verdict": verdict(cell["state"], None)}


def firewall_seen(rows: list[dict[str, Any]], host: str, port: int) -> str:
    """One evidence line: the endpoint's state from every vantage."""
    others = [f"{r['vantage']}: {r['state']}" + (f" ({r['reason']})" if r.get("reason") and r["state"] != "open"
                                                  else "")
              for r in rows if (r["host"], r["port"]) == (host, port)]
    return "state from every vantage: " + ", ".join(others)


def expected_unreachable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: r[k] for k in ("vantage", "segment", "host", "port", "kind", "state", "reason", "evidence")}
            for r in rows if r["verdict"] == "expected-unreachable" and r["kind"] in registry.sensitive_kinds()]


def _ports_named(scan: dict[str, Any]) -> bool:
    from netaudit.targets.parse import named_port_sets

    spec = scan.get("options", {}).get("ports_spec") or "tf"
    return not any(part.strip() in named_port_sets() for part in spec.split(","))


def assess_scan(scan: dict[str, Any], vantage: str, segment: str | None, policy: VantagePolicy) -> tuple[
        list[dict[str, Any]], list[Finding], list[dict[str, Any]]]:
    """One vantage against the policy: its matrix rows, the policy findings, and what it expects but could
    not reach. A port this vantage could not reach was never fingerprinted, so its kind is the one usually
    served there (said so in the row). That holds only for ports the user named (host:port targets, or a
    --ports list without a named set): a named set such as `tf` probes ports where nothing is expected."""
    view = ScanView(scan)
    named = _ports_named(scan)
    rows = []
    for ep in scan["endpoints"]:
        kind = ep.get("kind")
        if ep["state"] != "open":
            kind = registry.usual_kind(ep["port"]) if named or (ep.get("details", {}).get("discovery") or {}).get(
                "port_named") else None
        rows.append(row(vantage, segment, view, ep, policy, kind))
        if ep["state"] != "open" and kind:
            rows[-1]["kind_source"] = f"usual kind of port {ep['port']} (not reachable, so not fingerprinted)"
    endpoints = {(e["host"], e["port"]): e for e in scan["endpoints"]}
    return rows, policy.policy_findings(rows, endpoints), expected_unreachable(rows)

"""The one place a finished endpoint is judged: the rules' findings and, when the scan has a policy and knows
its vantage's segment, the verdicts that policy gives it.

The scanner hands every endpoint through here before any writer sees it, so the JSON, JSON lines, HTML,
SARIF and JUnit outputs and a `scan --workers` run cannot disagree on a finding: there is no second place
that assesses. `report` judges many vantages at once and uses the same reachability code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netaudit.assess.rules import assess
from netaudit.core.model import Endpoint, Finding, ScanResult
from netaudit.policy.reachability import VantagePolicy, assess_scan


@dataclass
class Assessed:
    """An endpoint as the writers take it: its facts, as a dict and as the object, and what follows from
    them. `unreachable` is what the policy expected this vantage to reach here but could not."""

    endpoint: Endpoint
    data: dict[str, Any]
    findings: list[Finding]
    unreachable: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """The endpoint line of a scan stream (netaudit/results/stream.py)."""
        return {"type": "endpoint", "endpoint": self.data, "findings": [f.to_dict() for f in self.findings]}


@dataclass
class Assessor:
    policy: VantagePolicy | None = None  # network segments or a cluster's NetworkPolicies
    segment: str | None = None  # the vantage's segment of the policy; None: in none, so nothing is judged

    def begin(self, result: ScanResult) -> None:
        """Record the policy the result is judged by, before its first endpoint is written."""
        if self.policy is not None:
            result.policy, result.segment = self.policy.to_dict(), self.segment

    def assess(self, endpoint: Endpoint, result: ScanResult) -> Assessed:
        findings = assess([endpoint])
        data = endpoint.to_dict()
        unreachable: list[dict[str, Any]] = []
        if self.policy is not None and self.segment is not None:
            scan = {"endpoints": [data], "options": result.options, "stats": result.stats}
            rows, found, unreachable = assess_scan(scan, result.vantage, self.segment, self.policy)
            for finding in findings:
                self.policy.trust_context(finding, rows)
            findings += found
        return Assessed(endpoint, data, findings, unreachable)

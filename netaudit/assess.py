"""Assessment: endpoint facts in, findings out. The rules are data (data/rules.toml), not branches."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from .model import Endpoint, Finding
from .scoring import scores


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    when: dict[str, Any]
    title: str
    remediation: str
    references: tuple[str, ...]
    compliance: dict[str, list[str]]
    cvss: str | None = None
    evidence_from: str | None = None  # a dotted path to a list of dicts in details, one evidence line each
    evidence_line: str = ""

    def matches(self, ep: Endpoint) -> bool:
        for key, want in self.when.items():
            if key == "service":
                ok = want in ep.services
            elif key == "detail_prefix":
                ok = all(str(ep.details.get(k, "")).startswith(v) for k, v in want.items())
            elif key == "detail_present":
                ok = all(detail(ep.details, k) for k in want)
            elif key in ("detail_true", "detail_false"):
                ok = all(detail(ep.details, k) is (key == "detail_true") for k in want)
            elif key == "detail_any":
                ok = all(set(detail(ep.details, k) or ()) & set(v) for k, v in want.items())
            elif isinstance(want, list):
                ok = getattr(ep, key) in want
            else:
                ok = getattr(ep, key) == want
            if not ok:
                return False
        return True

    def finding(self, ep: Endpoint) -> Finding:
        fields = {"address": ep.address, "host": ep.host, "port": ep.port, "details": ep.details}
        extra = [self.evidence_line.format(**item) for item in detail(ep.details, self.evidence_from) or ()] \
            if self.evidence_from else []
        return Finding(rule=self.id, severity=self.severity, host=ep.host, port=ep.port,
                       title=self.title.format(**fields), evidence=list(ep.evidence) + extra,
                       remediation=self.remediation.format(**fields), references=list(self.references),
                       compliance=self.compliance, cvss_vector=self.cvss,
                       cvss_score=scores(self.cvss)[0] if self.cvss else None)


def detail(details: dict[str, Any], dotted: str) -> Any:
    """details["tls"]["certificate"]["expired"] for "tls.certificate.expired"; None when any step is missing."""
    value: Any = details
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


@cache
def load_rules() -> tuple[Rule, ...]:
    data = tomllib.loads(resources.files("netaudit").joinpath("data/rules.toml").read_text())
    return tuple(Rule(r["id"], r["severity"], r["when"], r["title"], r["remediation"],
                      tuple(r.get("references", ())), r.get("compliance", {}), r.get("cvss"), r.get("evidence_from"),
                      r.get("evidence_line", "")) for r in data["rule"])


def assess(endpoints: list[Endpoint]) -> list[Finding]:
    return [rule.finding(ep) for ep in endpoints if ep.state == "open" for rule in load_rules() if rule.matches(ep)]

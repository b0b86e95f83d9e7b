"""Assessment: endpoint facts in, findings out. The rules are data, in one format: each family's rules in
its declaration (probes/*/family.toml) and the policy's rules in data/policy_rules.toml. Every rule is checked
when it loads, so a misspelt key, severity, kind, family, fact or CVSS vector is an error naming the rule,
not a surprise at the end of a scan.

A rule's `when` is a table of conditions that must all hold:
- `kind`, `transport`, `authenticated`: the endpoint's own fields (a list means any of them);
- `family`: the family that declares the endpoint's kind; `sensitive`: whether that kind is one whose
  exposure the policy judges; `service`: a service among the endpoint's services;
- a fact declared by a family (a dotted path into details): equal to the value (or any of a list), or
  `{ present = true|false }`, or for a list fact `{ any = [...] }` (shares an item);
- `policy` (policy rules only): the cell's verdict, `not-allowed` or `requirement-unmet`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from netaudit.core import registry
from netaudit.core.model import SEVERITIES, Endpoint, Finding
from netaudit.core.registry import ENDPOINT_FIELDS, RegistryError, check_cvss, check_why
from netaudit.assess.scoring import scores

RULE_KEYS = {"id", "severity", "when", "title", "why", "remediation", "references", "compliance", "cvss", "scope",
             "evidence_from", "evidence_line"}
POLICY_VERDICTS = ("not-allowed", "requirement-unmet")
FROM_KIND = "from-kind"


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
    scope: str = "endpoint"  # endpoint: judged on each endpoint; policy: on each reachability cell
    evidence_from: str | None = None  # a dotted path to a list of dicts in details, one evidence line each
    evidence_line: str = ""
    source: str = ""
    why: str = ""  # one line: why the evidence proves the title (the text and HTML outputs print it)

    def matches(self, ep: Endpoint) -> bool:
        declared = registry.kind(ep.kind)
        for key, want in self.when.items():
            if key in ("kind", "transport", "authenticated"):
                ok = getattr(ep, key) in want if isinstance(want, list) else getattr(ep, key) == want
            elif key == "service":
                ok = want in ep.services
            elif key == "family":
                ok = declared is not None and declared.family == want
            elif key == "sensitive":
                ok = bool(declared and declared.sensitive) == want
            else:
                ok = _fact_holds(detail(ep.details, key), want)
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


def _fact_holds(value: Any, want: Any) -> bool:
    if isinstance(want, dict):
        if "present" in want:
            return bool(value) == want["present"]
        return bool(set(value or ()) & set(want["any"]))
    if isinstance(want, list):
        return value in want
    return value == want


def detail(details: dict[str, Any], dotted: str) -> Any:
    """details["tls"]["certificate"]["expired"] for "tls.certificate.expired"; None when any step is missing."""
    value: Any = details
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _check_value(rule: str, key: str, declared: Any, want: Any) -> None:
    """The condition's value fits the declared type of what it tests."""
    where = f"rule {rule!r}: when.{key}"
    values = want if isinstance(want, list) else [want]
    if isinstance(want, dict):
        if set(want) == {"present"} and isinstance(want["present"], bool):
            return
        if set(want) == {"any"} and declared == "list" and isinstance(want["any"], list):
            return
        raise RegistryError(f"{where}: expected {{ present = true|false }}" + (" or { any = [...] }"
                                                                             if declared == "list" else ""))
    if declared == "bool" and not all(isinstance(v, bool) for v in values):
        raise RegistryError(f"{where}: expected true or false")
    if declared == "int" and not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise RegistryError(f"{where}: expected a number")
    if declared == "str" and not all(isinstance(v, str) for v in values):
        raise RegistryError(f"{where}: expected a string")
    if declared in ("list", "table"):
        raise RegistryError(f"{where}: a {declared} fact takes {{ present = … }}" + (" or { any = [...] }"
                                                                                   if declared == "list" else ""))
    if isinstance(declared, list) and not all(v in declared for v in values):
        raise RegistryError(f"{where}: {want!r} is not one of {', '.join(declared)}")


def _rule(data: dict[str, Any], source: str) -> Rule:
    rule_id = data.get("id") if isinstance(data.get("id"), str) else "?"
    unknown = sorted(set(data) - RULE_KEYS)
    if unknown:
        raise RegistryError(f"rule {rule_id!r} ({source}): unknown key {unknown[0]!r}")
    for key in ("id", "severity", "title", "remediation"):
        if not isinstance(data.get(key), str):
            raise RegistryError(f"rule {rule_id!r} ({source}): {key!r} is missing or not a string")
    check_why(data, f"({source})")
    scope = data.get("scope", "endpoint")
    if scope not in ("endpoint", "policy"):
        raise RegistryError(f"rule {rule_id!r}: scope {scope!r} is not endpoint or policy")
    severity, cvss = data["severity"], data.get("cvss")
    if severity not in SEVERITIES and not (scope == "policy" and severity == FROM_KIND):
        raise RegistryError(f"rule {rule_id!r}: severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    if cvss is not None and not (scope == "policy" and cvss == FROM_KIND):
        check_cvss(cvss, f"rule {rule_id!r}")
    when = data.get("when")
    if not isinstance(when, dict) or not when:
        raise RegistryError(f"rule {rule_id!r}: `when` must be a table with at least one condition")
    facts = registry.facts()
    families = {f.name for f in registry.families()}
    for key, want in when.items():
        if key == "policy":
            if scope != "policy" or want not in POLICY_VERDICTS:
                raise RegistryError(f"rule {rule_id!r}: when.policy is for policy rules, one of "
                                    f"{', '.join(POLICY_VERDICTS)}")
        elif key == "kind":
            for name in want if isinstance(want, list) else [want]:
                if registry.kind(name) is None:
                    raise RegistryError(f"rule {rule_id!r}: kind {name!r} is not declared by any family")
        elif key == "family":
            if want not in families:
                raise RegistryError(f"rule {rule_id!r}: family {want!r} is not declared")
        elif key in ENDPOINT_FIELDS:
            _check_value(rule_id, key, ENDPOINT_FIELDS[key], want)
        elif key in facts:
            _check_value(rule_id, key, facts[key], want)
        else:
            raise RegistryError(f"rule {rule_id!r}: when.{key} is neither an endpoint field "
                                f"({', '.join(sorted(ENDPOINT_FIELDS))}) nor a fact a family declares")
    return Rule(data["id"], severity, when, data["title"], data["remediation"], tuple(data.get("references", ())),
                data.get("compliance", {}), cvss, scope, data.get("evidence_from"), data.get("evidence_line", ""),
                source, data["why"])


def parse_rules(entries: list[dict[str, Any]], source: str) -> tuple[Rule, ...]:
    return tuple(_rule(entry, source) for entry in entries)


@cache
def load_rules() -> tuple[Rule, ...]:
    """Every family's rules and the policy's, checked; rule ids unique."""
    policy = tomllib.loads(resources.files("netaudit").joinpath("data/policy_rules.toml").read_text())
    rules = [rule for family in registry.families() for rule in parse_rules(list(family.rules), family.source)]
    rules += parse_rules(policy.get("rule", []), "data/policy_rules.toml")
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise RegistryError(f"rule id {rule.id!r} is used twice")
        seen.add(rule.id)
    return tuple(rules)


def why(rule_id: str) -> str | None:
    """The declared why-line of the rule a finding names; a policy finding's rule id carries its segment
    (policy-unexpected-reachability@corp). None for a rule this netaudit does not know (a result written by
    another release)."""
    base = rule_id.split("@", 1)[0]
    return next((r.why for r in load_rules() if r.id == base), None)


def policy_rule(verdict: str) -> Rule:
    return next(r for r in load_rules() if r.scope == "policy" and r.when.get("policy") == verdict)


def assess(endpoints: list[Endpoint]) -> list[Finding]:
    from netaudit.assess.k8s_identity import identity_findings

    rules = [r for r in load_rules() if r.scope == "endpoint"]
    found = [rule.finding(ep) for ep in endpoints if ep.state == "open" for rule in rules if rule.matches(ep)]
    return found + identity_findings(endpoints)  # a rule compares a fact with a value, this two facts

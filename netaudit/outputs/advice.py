"""Isolation advice generated for what was found: ready-to-apply firewall snippets per exposed group.

The snippets come from templates in report_templates/advice/; this module only works out the facts
they need (ports, hosts, which source ranges the policy allows and which reached the servers anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from netaudit.core import registry
from netaudit.core.model import severity_rank
from netaudit.core.registry import Advice
from netaudit.results.spool import briefs

PLACEHOLDER = "TRUSTED_CIDR"


PLATFORM_TITLES = {"gcp": "GCP VPC firewall rules", "aws": "AWS security group rules", "azure": "Azure NSG rules",
                   "kubernetes": "Kubernetes NetworkPolicy", "nftables": "nftables on the hosts",
                   "ssl_config": "TF Serving ssl_config_file with client_verify"}


@dataclass
class Group:
    spec: Advice
    ports: list[int] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)
    denied: list[str] = field(default_factory=list)
    grpc_port: int = 8500
    severity: str = "none"  # the highest severity among the findings on the group's endpoints
    at_severity: int = 0  # how many findings have it

    def __getattr__(self, name: str):
        return getattr(self.spec, name)

    @property
    def ports_text(self) -> str:
        return ", ".join(f"{p}/tcp" for p in self.ports)

    @property
    def gcp_rules(self) -> str:
        return ",".join(f"tcp:{p}" for p in self.ports)


def _groups(data: dict[str, Any]) -> list[Group]:
    """The groups with an open endpoint, the one that fixes the most severe findings first (then the one
    that fixes more of them): a reader who applies the first snippet closes the worst exposure."""
    policy = data.get("policy") or {}
    findings: dict[tuple[str, int], list[str]] = {}
    for f in briefs(data["findings"]):
        findings.setdefault((f["host"], f["port"]), []).append(f["severity"])
    segments = policy.get("segments", {})
    specs = registry.advice_groups()
    exposed: list[list[tuple[str, int, str]]] = [[] for _ in specs]  # (host, port, kind): one pass, few fields
    for e in data["endpoints"]:
        if e["state"] == "open":
            for index, spec in enumerate(specs):
                if e.get("kind") in spec.kinds:
                    exposed[index].append((e["host"], e["port"], e["kind"]))
    groups = []
    for spec, found in zip(specs, exposed, strict=True):
        if not found:
            continue
        group = Group(spec, ports=sorted({port for _, port, _ in found}), hosts=sorted({host for host, _, _ in found}))
        grpc = [port for _, port, kind in found if registry.kind(kind).uri_scheme == "grpc"]
        group.grpc_port = grpc[0] if grpc else 8500
        allowed_segments = {s for rule in policy.get("allow", []) if set(rule["kinds"]) & set(spec.kinds)
                            for s in rule["from"]}
        group.allowed = sorted({c for s in allowed_segments for c in segments[s]["cidrs"]}) or [PLACEHOLDER]
        reached = {r["segment"] for r in data.get("reachability", []) if r["state"] == "open" and r["segment"]
                   and r["kind"] in spec.kinds}
        group.denied = sorted({c for s in reached - allowed_segments for c in segments.get(s, {}).get("cidrs", ())})
        severities = [s for host, port, _ in found for s in findings.get((host, port), ())]
        if severities:
            group.severity = max(severities, key=severity_rank)
            group.at_severity = severities.count(group.severity)
        groups.append(group)
    return sorted(groups, key=lambda g: (-severity_rank(g.severity) if g.at_severity else 1, -g.at_severity))


def build_advice(data: dict[str, Any]) -> list[dict[str, str]]:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    folder = resources.files("netaudit.report_templates").joinpath("advice")
    env = Environment(loader=FileSystemLoader(str(folder)), autoescape=False, undefined=StrictUndefined,
                      keep_trailing_newline=True)
    advice = []
    for group in _groups(data):
        for platform in group.platforms:
            advice.append({"group": group.name, "label": group.label, "platform": platform, "severity": group.severity,
                           "title": f"{PLATFORM_TITLES[platform]} for {group.label} ({group.ports_text})",
                           "snippet": env.get_template(f"{platform}.j2").render(g=group)})
    return advice

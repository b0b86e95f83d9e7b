"""Isolation advice generated for what was found: ready-to-apply firewall snippets per exposed group.

The snippets come from templates in report_templates/advice/; this module only works out the facts
they need (ports, hosts, which source ranges the policy allows and which reached the servers anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from netaudit.core import registry
from netaudit.core.registry import Advice

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

    def __getattr__(self, name: str):
        return getattr(self.spec, name)

    @property
    def ports_text(self) -> str:
        return ", ".join(f"{p}/tcp" for p in self.ports)

    @property
    def gcp_rules(self) -> str:
        return ",".join(f"tcp:{p}" for p in self.ports)


def _groups(data: dict[str, Any]) -> list[Group]:
    policy = data.get("policy") or {}
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
        groups.append(group)
    return groups


def build_advice(data: dict[str, Any]) -> list[dict[str, str]]:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    folder = resources.files("netaudit.report_templates").joinpath("advice")
    env = Environment(loader=FileSystemLoader(str(folder)), autoescape=False, undefined=StrictUndefined,
                      keep_trailing_newline=True)
    advice = []
    for group in _groups(data):
        for platform in group.platforms:
            advice.append({"group": group.name, "label": group.label, "platform": platform,
                           "title": f"{PLATFORM_TITLES[platform]} for {group.label} ({group.ports_text})",
                           "snippet": env.get_template(f"{platform}.j2").render(g=group)})
    return advice

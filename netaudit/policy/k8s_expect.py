"""`netaudit k8s expect`: what a cluster's NetworkPolicies intend for its TF workloads, before any scan.

For every TF workload pod (targets/k8s.py), every port it serves and every source, the NetworkPolicy
engine (policy/netpol.py) answers allowed, denied or unknown. The checks in data/k8s_rules.toml turn the
cells into findings. Nothing is sent: this is the pre-deployment check, and it also takes manifests that are
not deployed yet (their pods are derived the way the operators make them).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from netaudit.core.errors import UsageError
from netaudit.policy.netpol import ExternalAddress, Source, UnlabeledPod, verdict
from netaudit.targets.k8s import KSERVE_LABEL, Workload, planned_pods, routing_services, workloads
from netaudit.targets.k8s_snapshot import Snapshot, read_documents, snapshot_from_documents

SCHEMA = "netaudit/k8s-expect-v1"
EVERYWHERE = "0.0.0.0/0"
CHECK_KEYS = {"id", "severity", "title", "remediation", "references"}


@dataclass(frozen=True)
class Check:
    id: str
    severity: str
    title: str
    remediation: str
    references: tuple[str, ...]


def checks() -> dict[str, Check]:
    from netaudit.core.model import SEVERITIES

    data = tomllib.loads(resources.files("netaudit").joinpath("data/k8s_rules.toml").read_text())
    out = {}
    for entry in data.get("check", []):
        if set(entry) != CHECK_KEYS or entry["severity"] not in SEVERITIES:
            raise ValueError(f"data/k8s_rules.toml: check {entry.get('id')!r} needs exactly {sorted(CHECK_KEYS)} "
                             "and a known severity")
        out[entry["id"]] = Check(entry["id"], entry["severity"], entry["title"], entry["remediation"],
                                 tuple(entry["references"]))
    return out


def load(paths: list[str]) -> Snapshot:
    """Snapshots and manifests together: a TFJob, Deployment or InferenceService whose pods the files do not
    hold gets the pods it would make. No file: the live API."""
    if not paths:
        from netaudit.targets.k8s_live import live_snapshot

        return live_snapshot()
    documents = [doc for path in paths for doc in read_documents(path)]
    objects = [item for doc in documents for item in (doc.get("items", []) if isinstance(doc, dict) and
                                                       str(doc.get("kind", "")).endswith("List") else [doc])]
    owners = set()  # (namespace, owner kind, owner name) of the pods the files hold: deployed workloads
    for doc in objects:
        meta = doc.get("metadata") if isinstance(doc, dict) and doc.get("kind") == "Pod" else None
        if isinstance(meta, dict):
            for ref in meta.get("ownerReferences") or []:
                if isinstance(ref, dict) and isinstance(ref.get("name"), str):
                    owners.add((meta.get("namespace") or "default", ref.get("kind"), ref["name"]))
            labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
            if isinstance(labels.get(KSERVE_LABEL), str):  # a predictor's pods belong to a ReplicaSet of Knative's
                owners.add((meta.get("namespace") or "default", "InferenceService", labels[KSERVE_LABEL]))
    derived = []
    for pod in planned_pods(objects):
        namespace, ref = pod["metadata"]["namespace"], pod["metadata"]["ownerReferences"][0]
        if not any(ns == namespace and _owns(ref["kind"], ref["name"], kind, name) for ns, kind, name in owners):
            derived.append(pod)
    return snapshot_from_documents([*objects, *derived], ", ".join(paths))


def _owns(planned_kind: str, planned: str, kind: str | None, name: str) -> bool:
    """Whether a pod owned by (kind, name) is one of the planned workload's: the same owner, or for a
    Deployment its ReplicaSet `<deployment>-<pod-template-hash>` (apps/v1 names it so)."""
    if kind == planned_kind and name == planned:
        return True
    return planned_kind == "Deployment" and kind == "ReplicaSet" and \
        re.fullmatch(rf"{re.escape(planned)}-[a-z0-9]{{1,10}}", name) is not None


def parse_source(text: str, snapshot: Snapshot) -> tuple[Source, dict[str, Any]]:
    """`NS`, `NS/POD` or an address or CIDR outside the cluster."""
    try:
        ipaddress.ip_network(text)
    except ValueError:
        pass
    else:
        return ExternalAddress(text), {"cidr": text}
    namespace, _, pod = text.partition("/")
    if pod:
        return snapshot.pod(namespace, pod), {"namespace": namespace, "pod": pod}
    if namespace not in snapshot.namespaces:
        raise UsageError(f"--from {text}: no namespace {namespace!r} in the snapshot "
                         f"(namespaces: {', '.join(sorted(snapshot.namespaces)) or 'none'})")
    return UnlabeledPod(namespace), {"namespace": namespace, "labels": {}}


def default_sources(snapshot: Snapshot) -> list[tuple[Source, dict[str, Any]]]:
    out: list[tuple[Source, dict[str, Any]]] = [(UnlabeledPod(ns), {"namespace": ns, "labels": {}})
                                                for ns in sorted(snapshot.namespaces)]
    return out + [(ExternalAddress(EVERYWHERE), {"cidr": EVERYWHERE})]


def _finding(check: Check, target: str, port: int, evidence: list[str], **words: Any) -> dict[str, Any]:
    return {"id": hashlib.sha256(f"{check.id}|{target}|{port}".encode()).hexdigest()[:16], "rule": check.id,
            "severity": check.severity, "target": target, "port": port,
            "title": check.title.format(port=port, **words), "evidence": evidence,
            "remediation": check.remediation.format(**words), "references": list(check.references)}


def expect(snapshot: Snapshot, sources: list[tuple[Source, dict[str, Any]]]) -> dict[str, Any]:
    found = workloads(snapshot)
    table = checks()
    cells, findings = [], []
    for work in found:
        pod = work.pod
        target = {"namespace": pod.namespace, "pod": pod.name, "kind": work.role,
                  **({"ip": str(pod.ips[0])} if pod.ips else {})}
        words = {"role": work.role, "pod": pod.key, "namespace": pod.namespace}
        not_isolated = []
        for port in work.ports:
            row = []
            for source, shown in sources:
                v = verdict(snapshot, source, pod, port)
                cell = {"from": shown, "to": {**target, "port": port}, "verdict": v.value, "rules": list(v.rules),
                        "reason": v.reason}
                row.append(cell)
            cells += row
            # Whether any ingress policy selects the pod, asked from outside the cluster whatever the chosen
            # sources: an outside address has no egress policy of its own, so only the pod's ingress decides.
            probe = verdict(snapshot, ExternalAddress(EVERYWHERE), pod, port)
            isolated = not (probe.value == "allowed" and not probe.rules)
            if not isolated:
                not_isolated.append((port, probe.reason))
            findings += _port_findings(table, work, port, row, words, isolated)
        if not_isolated:  # one finding per pod: no policy selects it, whatever the port
            findings.append(_finding(table["k8s-tf-pod-not-isolated"], pod.key, not_isolated[0][0],
                                     [not_isolated[0][1]], ports=", ".join(str(p) for p, _ in not_isolated),
                                     **words))
        findings += _service_findings(table, snapshot, work, words)
    return {"schema": SCHEMA, "workloads": len(found), "cells": cells, "findings": findings,
            "complete": True}


def _port_findings(table: dict[str, Check], work: Workload, port: int, row: list[dict[str, Any]],
                   words: dict[str, Any], isolated: bool) -> list[dict[str, Any]]:
    """An allow rule that opens the port to everyone (only where a policy isolates the pod: otherwise the
    pod's own finding says it), and KServe's undeclared gRPC port reachable by pod IP."""
    out = []
    outside = next((c for c in row if c["from"].get("cidr") == EVERYWHERE), None)
    pods = [c for c in row if "namespace" in c["from"] and "pod" not in c["from"]]
    open_to_all = outside is not None and outside["verdict"] == "allowed"
    if isolated and (open_to_all or (pods and all(c["verdict"] == "allowed" and c["rules"] for c in pods))):
        cell = outside if open_to_all else pods[0]
        whom = EVERYWHERE if open_to_all else "every namespace"
        out.append(_finding(table["k8s-tf-port-open-to-all"], work.pod.key, port, [cell["reason"]],
                            rules=", ".join(cell["rules"]), whom=whom, **words))
    if work.role == "kserve" and port == 9000:
        reachable = [c for c in row if c["verdict"] == "allowed"]
        if reachable:
            whom = ", ".join(c["from"].get("cidr") or c["from"]["namespace"] for c in reachable)
            out.append(_finding(table["k8s-kserve-grpc-by-pod-ip"], work.pod.key, port,
                                [c["reason"] for c in reachable][:5], whom=whom, **words))
    return out


def _service_findings(table: dict[str, Check], snapshot: Snapshot, work: Workload,
                      words: dict[str, Any]) -> list[dict[str, Any]]:
    if work.role != "tfjob":
        return []
    return [_finding(table["k8s-tf-server-node-exposed"], work.pod.key, port.node_port or port.port,
                     [f"Service {service.key} type {service.type} selects {work.pod.key} "
                      f"(selector {dict(service.selector)})"], service=service.key, type=service.type, **words)
            for service in routing_services(snapshot, work.pod) if service.type in ("NodePort", "LoadBalancer")
            for port in service.ports[:1]]


def to_text(data: dict[str, Any]) -> str:
    from netaudit.core.textsafe import terminal_lines

    lines = [f"netaudit k8s expect: {data['workloads']} TF workloads, {len(data['cells'])} cells"]
    width = max((len(_where(c["from"])) for c in data["cells"]), default=4)
    for cell in data["cells"]:
        to = cell["to"]
        lines.append(f"  {_where(cell['from']):<{width}}  ->  {to['namespace']}/{to['pod']}:{to['port']} "
                     f"({to['kind']})  {cell['verdict'].upper():8} {', '.join(cell['rules']) or '-'}")
    lines += ["", f"FINDINGS ({len(data['findings'])})"]
    for f in data["findings"]:
        lines.append(f"  {f['severity'].upper():8}  {f['title']}  [{f['rule']}]")
    return terminal_lines("\n".join(lines)) + "\n"


def _where(source: dict[str, Any]) -> str:
    if "cidr" in source:
        return source["cidr"]
    return f"{source['namespace']}/{source['pod']}" if "pod" in source else f"{source['namespace']}/(any pod)"

"""A TF server against its pod: the job and task it reports, against its pod's TF_CONFIG and replica labels.

Why: a `k8s:` target carries who the cluster says is at the address (details.k8s, targets/k8s.py). The TF
runtime probe reads who actually answers: the job and task in its device names (details.job, details.task).
They must agree. Kubeflow's training operator sets both the TF_CONFIG task (`task.type`, `task.index`) and the
`training.kubeflow.org/replica-type` and `-index` labels from the same replica (training-operator
release-1.9, pkg/controller.v1/tensorflow/tensorflow.go and pkg/controller.v1/common/pod.go), so a server that
says otherwise is not the replica the job, its Services and its NetworkPolicies think it is. The words are
data (data/k8s_identity_rules.toml).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from netaudit.core.model import Endpoint, Finding
from netaudit.core.registry import RegistryError, check_data_rules, data_rules


@dataclass(frozen=True)
class MismatchRule:
    id: str
    severity: str
    title: str
    remediation: str
    references: tuple[str, ...]
    compliance: dict[str, list[str]]
    why: str


@cache
def mismatch_rule() -> MismatchRule:
    where = "data/k8s_identity_rules.toml"
    rules = check_data_rules(data_rules(where), where)
    if len(rules) != 1:
        raise RegistryError(f"{where}: needs exactly one [[rule]], has {len(rules)}")
    rule = rules[0]
    return MismatchRule(rule["id"], rule["severity"], rule["title"], rule["remediation"],
                        tuple(rule.get("references", ())), rule.get("compliance", {}), rule["why"])


def _claims(k8s: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(what says it, job, task) for each of the pod's own statements of its replica."""
    out = []
    for source, claim in (("TF_CONFIG task", k8s.get("tf_config_task")),
                          ("labels training.kubeflow.org/replica-type and -index", k8s.get("replica_labels"))):
        if isinstance(claim, dict) and (claim.get("type") is not None or claim.get("index") is not None):
            out.append((source, claim.get("type"), claim.get("index")))
    return out


def _differs(claimed_job: Any, claimed_task: Any, job: str, task: int | None) -> bool:
    """Replica types are lower-cased in TF_CONFIG and labels ("Worker" -> "worker"); an index the pod does not
    state, or a task the server did not report, is not a difference."""
    if isinstance(claimed_job, str) and claimed_job.lower() != job.lower():
        return True
    return isinstance(claimed_task, int) and isinstance(task, int) and claimed_task != task


def identity_findings(endpoints: list[Endpoint]) -> list[Finding]:
    rule = mismatch_rule()
    out = []
    for ep in endpoints:
        k8s, job, task = ep.details.get("k8s"), ep.details.get("job"), ep.details.get("task")
        if ep.state != "open" or not isinstance(k8s, dict) or not isinstance(job, str):
            continue
        wrong = [(source, j, t) for source, j, t in _claims(k8s) if _differs(j, t, job, task)]
        if not wrong:
            continue
        pod = f"{k8s.get('namespace')}/{k8s.get('pod')}"
        server = f"job {job!r} task {task}"
        claims = "; ".join(f"{source}: {j!r} {t}" for source, j, t in wrong)
        fields = {"address": ep.address, "pod": pod, "server": server, "claims": claims}
        evidence = [f"the server's devices name {server} (details.job, details.task)",
                    *(f"pod {pod} {source}: type {j!r}, index {t}" for source, j, t in wrong)]
        if k8s.get("tfjob"):
            evidence.append(f"TFJob {k8s.get('namespace')}/{k8s['tfjob']}")
        out.append(Finding(rule=rule.id, severity=rule.severity, host=ep.host, port=ep.port,
                           title=rule.title.format(**fields), evidence=evidence,
                           remediation=rule.remediation.format(**fields), references=list(rule.references),
                           compliance=rule.compliance))
    return out

"""`netaudit k8s expect` and the `k8s:` target source, on the fixture cluster and on a TFJob manifest that is
not deployed: what the NetworkPolicies intend, before anything is sent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from netaudit.policy.k8s_expect import default_sources, expect, load
from netaudit.targets.parse import build_targets

FIXTURE = Path(__file__).parent / "k8s" / "tfjob-cluster.yaml"
NETAUDIT = [sys.executable, "-m", "netaudit"]

UNDEPLOYED = """\
apiVersion: v1
kind: Namespace
metadata: {name: research, labels: {team: research}}
---
apiVersion: kubeflow.org/v1
kind: TFJob
metadata: {name: bert, namespace: research}
spec:
  tfReplicaSpecs:
    Chief: {replicas: 1, template: {spec: {containers: [{name: tensorflow, image: tensorflow/tensorflow:2.16.1}]}}}
    Worker:
      replicas: 2
      template:
        metadata: {labels: {app: bert}}
        spec:
          containers:
          - name: tensorflow
            image: tensorflow/tensorflow:2.16.1
            ports: [{name: tfjob-port, containerPort: 2345}]
---
apiVersion: v1
kind: Service
metadata: {name: bert-debug, namespace: research}
spec:
  type: NodePort
  selector: {app: bert}
  ports: [{port: 2345, targetPort: 2345, nodePort: 30222}]
"""


def cell(data, source: str, pod: str, port: int) -> dict:
    return next(c for c in data["cells"] if (c["from"].get("cidr") or c["from"]["namespace"]) == source
                and c["to"]["pod"] == pod and c["to"]["port"] == port)


def test_the_fixture_cluster_verdicts_and_findings():
    snapshot = load([str(FIXTURE)])
    data = expect(snapshot, default_sources(snapshot))
    assert data["schema"] == "netaudit/k8s-expect-v1" and data["workloads"] == 6
    for source in ("apps", "corp", "ml-serving", "0.0.0.0/0"):
        assert cell(data, source, "mnist-worker-0", 2222)["verdict"] == "denied"
    allowed = cell(data, "ml-training", "mnist-worker-0", 2222)
    assert allowed["verdict"] == "allowed" and allowed["rules"] == ["ml-training/training-peers-only#ingress[0]"]
    resnet = next(c["to"]["pod"] for c in data["cells"] if c["to"]["kind"] == "tf-serving")
    assert cell(data, "apps", resnet, 8500)["verdict"] == "allowed"
    assert cell(data, "corp", resnet, 8500)["verdict"] == "denied"
    assert cell(data, "apps", resnet, 8501)["verdict"] == "denied"
    assert {f["rule"] for f in data["findings"]} == {"k8s-tf-pod-not-isolated", "k8s-kserve-grpc-by-pod-ip"}
    assert all(f["target"].startswith("ml-serving/flowers-predictor") for f in data["findings"])


def test_a_tfjob_that_is_not_deployed_is_judged_with_the_pods_the_operator_would_make(tmp_path):
    manifest = tmp_path / "bert.yaml"
    manifest.write_text(UNDEPLOYED)
    snapshot = load([str(manifest)])
    pods = sorted(p.name for p in snapshot.pods)
    assert pods == ["bert-chief-0", "bert-worker-0", "bert-worker-1"]
    worker = snapshot.pod("research", "bert-worker-1")
    config = json.loads(next(c for c in worker.containers if c.name == "tensorflow").env["TF_CONFIG"])
    assert config["task"] == {"type": "worker", "index": 1}
    assert config["cluster"]["worker"] == ["bert-worker-0.research.svc:2345", "bert-worker-1.research.svc:2345"]
    assert config["cluster"]["chief"] == ["bert-chief-0.research.svc:2222"]
    proc = subprocess.run([*NETAUDIT, "k8s", "expect", str(manifest), "--format", "json", "--fail-on", "critical"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    rules = sorted((f["rule"], f["target"]) for f in data["findings"])
    assert ("k8s-tf-server-node-exposed", "research/bert-worker-0") in rules
    assert ("k8s-tf-server-node-exposed", "research/bert-worker-1") in rules
    assert ("k8s-tf-pod-not-isolated", "research/bert-chief-0") in rules
    assert all(c["verdict"] == "allowed" for c in data["cells"])  # no policy: everything may connect
    text = subprocess.run([*NETAUDIT, "k8s", "expect", str(manifest), "--from", "research"], capture_output=True,
                          text=True, timeout=60)
    assert text.returncode == 0 and "CRITICAL" in text.stdout and "research/(any pod)" in text.stdout


def test_bad_sources_are_one_line_and_exit_2(tmp_path):
    for extra, word in ((["--from", "nowhere"], "nowhere"), (["--from", "ml-training/nopod"], "nopod")):
        proc = subprocess.run([*NETAUDIT, "k8s", "expect", str(FIXTURE), *extra], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and word in proc.stderr, proc.stderr


def test_the_k8s_target_source_lists_pod_ips_ports_and_identity():
    targets = build_targets([f"k8s:{FIXTURE}"], scope="198.18.0.0/15,fd00:198:18::/64,203.0.113.0/24")
    by_name = {b.name: b for b in targets.blocks}
    worker = by_name["ml-training/mnist-worker-1"]
    assert worker.ports == (2222,)
    identity = json.loads(worker.identity)
    assert identity["tfjob"] == "mnist" and identity["replica_type"] == "worker" and identity["replica_index"] == 1
    kserve = next(b for n, b in by_name.items() if "flowers-predictor" in n)
    assert 9000 in kserve.ports  # declared by no Service, still a target
    chief = [b for b in targets.blocks if b.name == "ml-training/mnist-chief-0"]
    assert sorted(b.networks[0].version for b in chief) == [4, 6]  # a dual-stack pod: both addresses
    service = [b for b in targets.blocks if b.spec.startswith("k8s:") and json.loads(b.identity).get("service")]
    assert service  # the addresses of the Services in front of the workloads are targets too


def test_an_unprotected_pod_is_a_finding_whatever_the_chosen_sources(tmp_path):
    manifest = tmp_path / "bert.yaml"
    manifest.write_text(UNDEPLOYED)
    proc = subprocess.run([*NETAUDIT, "k8s", "expect", str(manifest), "--from", "research", "--from", "10.0.0.0/8",
                           "--format", "json", "--fail-on", "high"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "k8s-tf-pod-not-isolated" in {f["rule"] for f in json.loads(proc.stdout)["findings"]}


def test_a_deployed_job_of_a_similar_name_does_not_hide_a_planned_one(tmp_path):
    deployed = """\
apiVersion: v1
kind: Pod
metadata:
  name: bert-v2-worker-0
  namespace: research
  labels: {training.kubeflow.org/job-name: bert-v2}
  ownerReferences: [{kind: TFJob, name: bert-v2, controller: true}]
spec: {containers: [{name: tensorflow, image: tensorflow/tensorflow:2.16.1}]}
"""
    (tmp_path / "bert.yaml").write_text(UNDEPLOYED + "---\n" + deployed)
    pods = {p.name for p in load([str(tmp_path / "bert.yaml")]).pods}
    assert {"bert-chief-0", "bert-worker-0", "bert-worker-1", "bert-v2-worker-0"} <= pods


# The cluster lab's three NetworkPolicies (lab/cluster.py POLICIES), read by hand: only the job's replicas reach
# its TF port, TF Serving gRPC 8500 only from `apps`, the KServe predictor's 8080 from every namespace.
LAB_INTENT = {
    ("apps/scanner", "mnist-chief-0", 2222): "denied", ("ml-training/debug", "mnist-chief-0", 2222): "denied",
    ("ml-training/mnist-worker-0", "mnist-chief-0", 2222): "allowed",
    ("ml-training/mnist-ps-0", "mnist-worker-1", 2222): "allowed",
    ("apps/scanner", "resnet-6b8f9c7d5-x2x9q", 8500): "allowed",
    ("ml-training/debug", "resnet-6b8f9c7d5-x2x9q", 8500): "denied",
    ("apps/scanner", "resnet-6b8f9c7d5-x2x9q", 8501): "denied",  # the pod isolated, 8501 not admitted
    ("ml-training/debug", "flowers-predictor-7c9d8f6b4-k8m2p", 8080): "allowed",
    ("apps/scanner", "flowers-predictor-7c9d8f6b4-k8m2p", 9000): "denied",  # the undeclared gRPC port
}


def test_expect_on_the_cluster_labs_snapshot_gives_its_policies_verdicts(tmp_path):
    """The snapshot the cluster lab writes (no root needed to write it), as `k8s expect` reads it."""
    from netaudit.lab.cluster import snapshot

    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(snapshot()))
    sources = sorted({source for source, _, _ in LAB_INTENT})
    proc = subprocess.run([*NETAUDIT, "k8s", "expect", str(path), *(a for s in sources for a in ("--from", s)),
                           "--format", "json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    cells = {(f"{c['from']['namespace']}/{c['from']['pod']}", c["to"]["pod"], c["to"]["port"]): c
             for c in json.loads(proc.stdout)["cells"]}
    assert {key: cells[key]["verdict"] for key in LAB_INTENT} == LAB_INTENT
    assert cells["apps/scanner", "mnist-chief-0", 2222]["rules"] == ["ml-training/training-peers-only#ingress"]
    assert cells["apps/scanner", "resnet-6b8f9c7d5-x2x9q", 8500]["rules"] == [
        "ml-serving/resnet-grpc-from-apps#ingress[0]"]
    # By default (every namespace's unlabeled pod, 0.0.0.0/0): the predictor's 8080 rule admits every namespace.
    default = subprocess.run([*NETAUDIT, "k8s", "expect", str(path), "--format", "json"], capture_output=True,
                             text=True, timeout=60)
    assert [(f["rule"], f["target"]) for f in json.loads(default.stdout)["findings"]] == [
        ("k8s-tf-port-open-to-all", "ml-serving/flowers-predictor-7c9d8f6b4-k8m2p")]

"""The lab that plays a cluster (lab/cluster.py): namespaces as pods, a TFJob of real TF servers with the
operator's TF_CONFIG, TF Serving and a KServe predictor, and the snapshot a cluster would return for them.
`scan k8s: --policy k8s:` from a vantage pod must find every cell the NetworkPolicies deny but that is open
when the node's firewall ignores the policies (flannel), and none when it enforces them; under the enforcing
firewall every cell must be exactly as the engine intends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_root_tools

NETAUDIT = [sys.executable, "-m", "netaudit"]
TREE = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster_lab(tmp_path_factory):
    require_root_tools("ip", "nft")
    from netaudit.lab.cluster import ClusterLab

    with ClusterLab(tmp_path_factory.mktemp("cluster-lab"), firewall="flannel") as lab:
        yield lab


def intended(lab, vantage: str) -> dict[tuple[str, int], str]:
    """The engine's verdict for every server the lab runs, from the vantage pod."""
    from netaudit.policy.netpol import verdict
    from netaudit.targets.k8s_snapshot import load_snapshot

    snapshot = load_snapshot([lab.info["snapshot"]])
    namespace, _, name = lab.info["vantages"][vantage]["pod"].partition("/")
    source = snapshot.pod(namespace, name)
    out = {}
    for endpoint in lab.endpoints:
        pod_ns, _, pod_name = endpoint.name.partition("/")
        out[endpoint.host, endpoint.port] = verdict(snapshot, source, snapshot.pod(pod_ns, pod_name),
                                                    endpoint.port).value
    return out


def scan_from(lab, vantage: str, tmp_path: Path, engine: str = "connect") -> dict:
    snapshot = lab.info["snapshot"]
    out = tmp_path / f"{vantage}-{lab.firewall}.json"
    argv = lab.vantage_argv(vantage, *NETAUDIT, "scan", f"k8s:{snapshot}", "--policy", f"k8s:{snapshot}", "--scope",
                            lab.info["pod_net"], "--engine", engine, "--timeout", "1", "--format", "json", "-o",
                            str(out))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=TREE)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def denied_but_open(data: dict) -> set[tuple[str, int]]:
    return {(f["host"], f["port"]) for f in data["findings"] if f["rule"].startswith("k8s-netpol-denied-but-open@")}


@pytest.mark.parametrize("vantage", ["apps", "ml-training"])
def test_the_ignoring_firewall_shows_every_denied_cell_open(cluster_lab, tmp_path, vantage):
    cluster_lab.apply_firewall("flannel")
    data = scan_from(cluster_lab, vantage, tmp_path)
    assert data["segment"] == cluster_lab.info["vantages"][vantage]["pod"]  # found through POD_NAMESPACE/POD_NAME
    intent = intended(cluster_lab, vantage)
    denied = {cell for cell, value in intent.items() if value == "denied"}
    assert denied and set(intent.values()) <= {"allowed", "denied"}
    states = {(e["host"], e["port"]): e["state"] for e in data["endpoints"]}
    assert all(states[cell] == "open" for cell in intent), states  # nothing enforces the policies
    assert denied_but_open(data) == denied
    tf = {(e.host, e.port) for e in cluster_lab.endpoints if e.kind == "tf-server"}
    assert tf <= denied  # neither vantage is a replica of the job: every TF server is denied to it, and open
    replicas = [e for e in data["endpoints"] if e["details"].get("k8s", {}).get("tfjob") == "mnist"]
    assert len(replicas) == 4 and all(e["details"]["job"] == e["details"]["k8s"]["replica_type"] for e in replicas)
    assert not [f for f in data["findings"] if f["rule"] == "k8s-tf-task-mismatch"]


@pytest.mark.parametrize("vantage", ["apps", "ml-training"])
def test_the_enforcing_firewall_matches_the_intent_cell_for_cell(cluster_lab, tmp_path, vantage):
    cluster_lab.apply_firewall("enforcing")
    try:
        data = scan_from(cluster_lab, vantage, tmp_path, "syn")  # raw SYNs: a dropped SYN reads "filtered"
    finally:
        cluster_lab.apply_firewall("flannel")
    assert denied_but_open(data) == set()
    intent = intended(cluster_lab, vantage)
    states = {(e["host"], e["port"]): e["state"] for e in data["endpoints"]}
    expected = {cell: "open" if value == "allowed" else "filtered" for cell, value in intent.items()}
    assert {cell: states[cell] for cell in intent} == expected
    assert "open" in expected.values() and "filtered" in expected.values()
    assert not [f for f in data["findings"] if f["rule"].startswith("k8s-netpol-allowed-but")]

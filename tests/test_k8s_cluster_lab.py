"""The lab that plays a cluster (lab/cluster.py): namespaces as pods, a TFJob of real TF servers with the
operator's TF_CONFIG, TF Serving and a KServe predictor, and the snapshot a cluster would return for them.
`scan k8s: --policy k8s:` from a vantage pod must find every cell the NetworkPolicies deny but that is open
when the node's firewall ignores the policies (flannel), and none when it enforces them; under the enforcing
firewall every cell must be exactly as the engine intends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_root_tools

NETAUDIT = [sys.executable, "-m", "netaudit"]
TREE = Path(__file__).resolve().parents[1]


def lab_cli(state: Path, *argv: str) -> subprocess.CompletedProcess:
    """The lab as a user drives it: `netaudit lab …`, its state in `state`."""
    return subprocess.run([*NETAUDIT, "lab", *argv], capture_output=True, text=True, timeout=400, cwd=TREE,
                          env={**os.environ, "NETAUDIT_LAB_DIR": str(state)})


@pytest.fixture(scope="module")
def cluster_lab(tmp_path_factory):
    require_root_tools("ip", "nft")
    from netaudit.lab.cluster import ClusterLab

    state = tmp_path_factory.mktemp("cluster-lab")
    lab = ClusterLab(state)
    try:
        up = lab_cli(state, "up", "--cluster")
        assert up.returncode == 0, up.stderr
        assert "cluster lab is up" in up.stdout and "firewall: 'flannel'" in up.stdout
        assert lab.load()
        names = list(lab.namespaces)
        yield lab
        down = lab_cli(state, "down")
        assert down.returncode == 0, down.stderr
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        assert names and not [ns for ns in names if ns in left], left
        assert not state.exists()  # `lab down` removed what the lab wrote, and then its folder
    finally:
        lab.down()  # only what a failed `lab up` or `lab down` left


def test_another_lab_or_a_segments_action_while_the_cluster_lab_is_up_is_one_line(cluster_lab):
    for argv, code, words in ((("up", "--loopback"), 2, "the cluster lab is already up"),
                              (("up",), 2, "the cluster lab is already up"),
                              (("impair", "apps"), 2, "needs the segmented lab"),
                              (("ruleset", "leaky"), 2, "rulesets are flannel and enforcing"),
                              (("scan", "nowhere"), 2, "unknown vantage 'nowhere'")):
        proc = lab_cli(cluster_lab.dir, *argv)
        assert proc.returncode == code and words in proc.stderr, (argv, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert cluster_lab.status()["up"]  # none of them touched it


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


def set_ruleset(lab, name: str) -> None:
    proc = lab_cli(lab.dir, "ruleset", name)
    assert proc.returncode == 0 and f"ruleset is now {name}" in proc.stdout, proc.stderr


def scan_from(lab, vantage: str, tmp_path: Path, engine: str = "connect") -> dict:
    """`netaudit lab scan VANTAGE`: `scan k8s: --policy k8s:` run inside the vantage pod's namespace."""
    out = tmp_path / f"{vantage}-{engine}.json"
    proc = lab_cli(lab.dir, "scan", vantage, "--engine", engine, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def denied_but_open(data: dict) -> set[tuple[str, int]]:
    return {(f["host"], f["port"]) for f in data["findings"] if f["rule"].startswith("k8s-netpol-denied-but-open@")}


@pytest.mark.parametrize("vantage", ["apps", "ml-training"])
def test_the_ignoring_firewall_shows_every_denied_cell_open(cluster_lab, tmp_path, vantage):
    set_ruleset(cluster_lab, "flannel")
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
    set_ruleset(cluster_lab, "enforcing")
    try:
        data = scan_from(cluster_lab, vantage, tmp_path, "syn")  # raw SYNs: a dropped SYN reads "filtered"
    finally:
        set_ruleset(cluster_lab, "flannel")
    assert denied_but_open(data) == set()
    intent = intended(cluster_lab, vantage)
    states = {(e["host"], e["port"]): e["state"] for e in data["endpoints"]}
    expected = {cell: "open" if value == "allowed" else "filtered" for cell, value in intent.items()}
    assert {cell: states[cell] for cell in intent} == expected
    assert "open" in expected.values() and "filtered" in expected.values()
    assert not [f for f in data["findings"] if f["rule"].startswith("k8s-netpol-allowed-but")]

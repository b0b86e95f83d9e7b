"""The segmented lab: scans from every vantage with both engines, merged against the policy, for the
leaky and the isolated firewall, plus a lossy link. Root only (CI runs as root)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import require_root_tools, run_cli

TF = [f"198.18.1.{i}:2222" for i in (10, 11, 12, 13)]
GRPC, REST = "198.18.1.20:8500", "198.18.1.20:8501"
VANTAGES = ("cluster", "apps", "corp", "edge")
OPEN = {  # what each vantage must reach, by firewall ruleset
    "leaky": {"cluster": {*TF, GRPC, REST}, "apps": {GRPC, REST}, "corp": {REST}, "edge": {"198.18.1.11:2222"}},
    "isolated": {"cluster": {*TF, GRPC, REST}, "apps": {GRPC, REST}, "corp": set(), "edge": set()},
}


@pytest.fixture(scope="module")
def seglab(tmp_path_factory):
    require_root_tools("ip", "nft", "nmap", "tc")
    from netaudit.lab.segments import SegmentedLab

    with SegmentedLab(tmp_path_factory.mktemp("seglab")) as lab:
        yield lab


def scan_from(lab, vantage: str, engine: str, out, *extra: str) -> dict:
    from netaudit.cli import lab_scan_argv

    argv = lab.vantage_argv(vantage, *lab_scan_argv(vantage, engine), *extra)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    path = out / f"{vantage}-{engine}.json"
    path.write_text(proc.stdout)
    return json.loads(proc.stdout)


def report(paths, policy) -> dict:
    proc = run_cli("report", *map(str, paths), "--policy", str(policy), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def matrix(rep: dict) -> dict[str, set[str]]:
    out = {v: set() for v in VANTAGES}
    for row in rep["reachability"]:
        if row["state"] == "open":
            out[row["vantage"]].add(f"{row['host']}:{row['port']}")
    return out


@pytest.mark.parametrize("ruleset", ["leaky", "isolated"])
def test_every_vantage_and_engine_merged_against_the_policy(seglab, tmp_path, ruleset):
    seglab.apply_ruleset(ruleset)
    reports = {}
    for engine in ("connect", "syn", "nmap"):
        paths = []
        for vantage in VANTAGES:
            scan_from(seglab, vantage, engine, tmp_path)
            paths.append(tmp_path / f"{vantage}-{engine}.json")
        reports[engine] = report(paths, seglab.info["policy"])
    for engine, rep in reports.items():
        assert matrix(rep) == OPEN[ruleset], engine
        kinds = {f"{e['host']}:{e['port']}": e["kind"] for e in rep["endpoints"]}
        assert kinds == {**{t: "tf-server" for t in TF}, GRPC: "modelserver-grpc", REST: "modelserver-rest"}
        policy = sorted((f["rule"], f"{f['host']}:{f['port']}", f["severity"]) for f in rep["findings"]
                        if f["rule"].startswith("policy-"))
        if ruleset == "leaky":
            assert policy == [("policy-unexpected-reachability@corp", REST, "high"),
                              ("policy-unexpected-reachability@edge", "198.18.1.11:2222", "critical")]
            edge = next(f for f in rep["findings"] if f["rule"] == "policy-unexpected-reachability@edge")
            assert edge["evidence"][0].startswith("vantage edge (segment edge, untrusted): ")
            assert "198.18.1.11 port 2222: " in edge["evidence"][0]
            assert "edge: open" in edge["evidence"][2] and "198.18.4.0/24" in edge["remediation"]
        else:
            assert policy == []
        assert rep["expected_unreachable"] == []
    # Where the engines differ, by design: syn and nmap (-sS) see filtered and why; connect cannot tell a
    # drop from loss, so it says undetermined, with the kernel's reason.
    for engine, silent in (("nmap", "no-response"), ("syn", "no response to 2 SYN(s)")):
        cells = {(r["vantage"], f"{r['host']}:{r['port']}"): r for r in reports[engine]["reachability"]}
        corp_tf = cells[("corp", "198.18.1.10:2222")]
        assert corp_tf["state"] == "filtered" and "admin-prohibited" in corp_tf["evidence"], engine
        assert cells[("corp", GRPC)]["state"] == "filtered" and silent in cells[("corp", GRPC)]["evidence"], engine
    cells = {(r["vantage"], f"{r['host']}:{r['port']}"): r for r in reports["connect"]["reachability"]}
    assert cells[("corp", "198.18.1.10:2222")]["state"] == "undetermined"
    assert "EHOSTUNREACH" in cells[("corp", "198.18.1.10:2222")]["evidence"]
    assert cells[("corp", GRPC)]["evidence"].endswith("no reply within 1s")


def test_expected_but_unreachable(seglab, tmp_path):
    seglab.apply_ruleset("leaky")
    policy = tmp_path / "policy.toml"
    policy.write_text(open(seglab.info["policy"]).read().replace('from = ["cluster"]', 'from = ["cluster", "apps"]', 1))
    scan_from(seglab, "apps", "connect", tmp_path)
    rep = report([tmp_path / "apps-connect.json"], policy)
    assert sorted((r["vantage"], f"{r['host']}:{r['port']}") for r in rep["expected_unreachable"]) == []
    scan_from(seglab, "cluster", "connect", tmp_path)
    rep = report([tmp_path / "apps-connect.json", tmp_path / "cluster-connect.json"], policy)
    assert sorted(f"{r['host']}:{r['port']}" for r in rep["expected_unreachable"]) == TF
    assert {r["vantage"] for r in rep["expected_unreachable"]} == {"apps"}


LOSS_RULES = """
table inet netaudit_loss {
    chain output { type filter hook output priority 0; policy accept; numgen random mod 10 0 drop; }
    chain input { type filter hook input priority 0; policy accept; numgen random mod 10 0 drop; }
}
"""


def impair(netns: str) -> str:
    """10% loss each way and 200 ms delay with tc netem; where the kernel has no netem, 10% loss each way
    with nftables' random numbers (no delay). Returns what was applied."""
    netem = subprocess.run(["ip", "netns", "exec", netns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                            "loss", "10%", "delay", "200ms"], capture_output=True, text=True)
    if netem.returncode == 0:
        return "netem"
    subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=LOSS_RULES, text=True, check=True)
    print(f"tc netem unavailable ({netem.stderr.strip()}); injecting 10% loss each way with nftables instead")
    return "nft"


def test_lossy_link_keeps_detection_complete(seglab, tmp_path):
    seglab.apply_ruleset("leaky")
    host = seglab.info["vantages"]["edge"]["netns"]
    applied = impair(host)
    try:
        # 200 ports of the segment's router all answer RST: every one must come back closed, some after retries.
        swept = run_scan_in(seglab, "edge", "198.18.4.254", "-p", "1-200", "--all-states", "--retries", "6",
                            "--timeout", "1")
        tf = run_scan_in(seglab, "edge", "198.18.1.11", "-p", "2222", "--retries", "6", "--timeout", "3")
    finally:
        undo = (["tc", "qdisc", "del", "dev", "eth0", "root"] if applied == "netem"
                else ["nft", "delete", "table", "inet", "netaudit_loss"])
        subprocess.run(["ip", "netns", "exec", host, *undo], check=True)
    assert swept["stats"]["states"] == {"closed": 200}
    assert swept["stats"]["retried"] > 0  # the loss was real; retries made detection complete
    (ep,) = tf["endpoints"]
    assert (ep["state"], ep["kind"], ep["details"]["job"]) == ("open", "tf-server", "worker")


def run_scan_in(lab, vantage: str, *args: str) -> dict:
    argv = lab.vantage_argv(vantage, sys.executable, "-m", "netaudit", "scan", *args, "--scope", "198.18.0.0/15",
                            "--format", "json")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_lab_cli_scan_refuses_without_segmented_lab(tmp_path):
    proc = run_cli("lab", "scan", "corp", env={"NETAUDIT_LAB_DIR": str(tmp_path / "none")})
    assert proc.returncode == 2 and "needs the segmented lab" in proc.stderr


def test_opening_a_firewall_rule_shows_up_as_new(seglab, tmp_path):
    """History across a firewall change: isolated, then leaky (edge may now reach worker 0), then leaky again."""
    from netaudit.cli import lab_scan_argv

    store = tmp_path / "history.sqlite"

    def edge_scan() -> dict:
        argv = seglab.vantage_argv("edge", *lab_scan_argv("edge"), "--store", str(store))
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    seglab.apply_ruleset("isolated")
    first = edge_scan()
    assert first["findings"] == []
    seglab.apply_ruleset("leaky")
    second = edge_scan()
    assert sorted((f["rule"], f["host"], f["state"]) for f in second["findings"]) == [
        ("tf-profiler-exposed", "198.18.1.11", "new"), ("tf-server-unauthenticated-plaintext", "198.18.1.11", "new")]
    assert second["diff"]["baseline"] == f"run {first['run_id']}" and second["diff"]["resolved"] == []
    third = edge_scan()
    assert {f["state"] for f in third["findings"]} == {"persisting"} and third["diff"]["new"] == []
    seglab.apply_ruleset("isolated")
    fourth = edge_scan()
    assert sorted(f["rule"] for f in fourth["diff"]["resolved"]) == ["tf-profiler-exposed",
                                                                     "tf-server-unauthenticated-plaintext"]

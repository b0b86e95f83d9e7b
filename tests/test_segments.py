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


def test_lossy_slow_link_keeps_detection_complete(seglab, tmp_path):
    """10% loss each way and 200 ms delay on edge's link (`netaudit lab impair`: tc netem where the kernel has
    it, else the lab's delay line): every port still gets its true state, some only after retries."""
    seglab.apply_ruleset("leaky")
    lab_env = {"NETAUDIT_LAB_DIR": str(seglab.dir)}
    applied = run_cli("lab", "impair", "edge", "--delay", "200", "--loss", "10", env=lab_env)
    assert applied.returncode == 0, applied.stderr
    print(applied.stdout.strip())
    try:
        assert "impaired: edge: " in run_cli("lab", "status", env=lab_env).stdout
        # 200 ports of the segment's router all answer RST: every one must come back closed, some after retries.
        swept = run_scan_in(seglab, "edge", "198.18.4.254", "-p", "1-200", "--all-states", "--retries", "6",
                            "--timeout", "1")
        tf = run_scan_in(seglab, "edge", "198.18.1.11", "-p", "2222", "--retries", "6", "--timeout", "3")
    finally:
        cleared = run_cli("lab", "impair", "edge", "--clear", env=lab_env)
    assert cleared.returncode == 0 and "impairment removed" in cleared.stdout, cleared.stdout + cleared.stderr
    assert "impaired" not in run_cli("lab", "status", env=lab_env).stdout
    assert swept["stats"]["states"] == {"closed": 200}
    assert swept["stats"]["retried"] > 0  # the loss was real; retries made detection complete
    (ep,) = tf["endpoints"]
    assert (ep["state"], ep["kind"], ep["details"].get("job")) == ("open", "tf-server", "worker"), ep["evidence"]
    # The delay was real too: the handshake the scan timed cannot be faster than the added 200 ms.
    (handshake,) = [line for line in ep["evidence"] if "syn-ack in" in line]
    assert float(handshake.split("syn-ack in ")[1].split()[0]) >= 200, handshake
    # Cleared means gone: no rules, routes, TUN device, qdisc or nftables table left in the host.
    host = seglab.info["vantages"]["edge"]["netns"]
    left = "".join(subprocess.run(["ip", "netns", "exec", host, *argv], capture_output=True, text=True).stdout
                   for argv in (["ip", "rule"], ["ip", "link"], ["tc", "qdisc", "show", "dev", "eth0"],
                                ["nft", "list", "ruleset"], ["ip", "route", "show", "table", "all"]))
    assert not any(mark in left for mark in ("naimpair", "netem", "netaudit_impair", "table 78", "table 79")), left


def test_impair_refuses_bad_input_and_the_machines_own_namespace(seglab):
    lab_env = {"NETAUDIT_LAB_DIR": str(seglab.dir)}
    proc = run_cli("lab", "impair", "edge", "--loss", "150", env=lab_env)
    assert proc.returncode == 2 and "loss takes 0 to 99.9" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("lab", "impair", "nowhere", env=lab_env)
    assert proc.returncode == 2 and "unknown vantage 'nowhere'" in proc.stderr
    # Run directly, outside `ip netns exec`, the impairment refuses to touch this machine's own network.
    proc = subprocess.run([sys.executable, "-m", "netaudit.lab.impair"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "refusing to run outside a named network namespace" in proc.stderr


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

"""The segmented lab: scans from every vantage with both engines, merged against the policy, for the
leaky and the isolated firewall, plus a lossy link. Root only (CI runs as root)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_root_tools, run_cli
from netaudit.targets.parse import named_port_sets

TF = [f"198.18.1.{i}:2222" for i in (10, 11, 12, 13)]
GRPC, REST = "198.18.1.20:8500", "198.18.1.20:8501"
ENDPOINTS = [*TF, GRPC, REST]
VANTAGES = ("cluster", "apps", "corp", "edge")
OPEN = {  # what each vantage must reach, by firewall ruleset
    "leaky": {"cluster": {*TF, GRPC, REST}, "apps": {GRPC, REST}, "corp": {REST}, "edge": {"198.18.1.11:2222"}},
    "isolated": {"cluster": {*TF, GRPC, REST}, "apps": {GRPC, REST}, "corp": set(), "edge": set()},
}
# Single-address targets, not host:port: every probed port must keep its verdict all the same.
HOSTS = ["198.18.1.10", "198.18.1.11", "198.18.1.12", "198.18.1.13", "198.18.1.20"]


def expected_cell(ruleset: str, engine: str, vantage: str, endpoint: str) -> tuple[str, str]:
    """(state, reason) the lab firewall (lab/segments.py RULES) makes each engine see. connect() cannot see
    an ICMP error's code nor tell a drop from loss: it says undetermined, with the kernel's reason."""
    if endpoint in OPEN[ruleset][vantage]:
        return "open", "syn-ack"
    if vantage == "corp" and endpoint == GRPC:
        return "closed", "reset"  # reject with tcp reset, sent by the router in the server's name
    if vantage == "corp" and endpoint in TF:
        return ("undetermined", "EHOSTUNREACH") if engine == "connect" else ("filtered", "admin-prohibited")
    return ("undetermined" if engine == "connect" else "filtered"), "no-response"


def expected_verdict(vantage: str, endpoint: str, state: str) -> str:
    allowed = vantage == "cluster" or (vantage == "apps" and endpoint in (GRPC, REST))
    if state == "open":
        return "open-allowed" if allowed else "open-not-allowed"
    if state in ("closed", "filtered"):
        return "expected-unreachable" if allowed else "blocked"
    return "unknown"


@pytest.fixture(scope="module")
def seglab(tmp_path_factory):
    require_root_tools("ip", "nft", "nmap", "tc")
    from netaudit.lab.segments import SegmentedLab

    with SegmentedLab(tmp_path_factory.mktemp("seglab")) as lab:
        yield lab


def scan_from(lab, vantage: str, engine: str, out, *extra: str) -> dict:
    argv = lab.vantage_argv(vantage, *lab.scan_argv(vantage, engine), *extra)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    path = out / f"{vantage}-{engine}.json"
    path.write_text(proc.stdout)
    return json.loads(proc.stdout)


def report(paths, policy, fmt: str = "json") -> dict | str:
    proc = run_cli("report", *map(str, paths), "--policy", str(policy), "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if fmt == "json" else proc.stdout


def scan_hosts(lab, vantage: str, engine: str, out) -> Path:
    data = run_scan_in(lab, vantage, *HOSTS, "-p", "2222,8500,8501", "--engine", engine, "--timeout", "1",
                       "--vantage", vantage)
    path = out / f"{vantage}-{engine}.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("ruleset", ["leaky", "isolated"])
def test_exact_matrix_from_every_vantage_with_every_engine(seglab, tmp_path, ruleset):
    """The firewall accepts, resets and drops; every engine's matrix says exactly what it did, cell by cell."""
    seglab.apply_ruleset(ruleset)
    for engine in ("connect", "syn", "nmap"):
        paths = [scan_hosts(seglab, vantage, engine, tmp_path) for vantage in VANTAGES]
        rep = report(paths, seglab.info["policy"])
        cells = {(r["vantage"], f"{r['host']}:{r['port']}"): r for r in rep["reachability"]}
        assert {k: (c["state"], c["reason"]) for k, c in cells.items()} == {
            (v, ep): expected_cell(ruleset, engine, v, ep) for v in VANTAGES for ep in ENDPOINTS}, engine
        assert {k: c["verdict"] for k, c in cells.items()} == {
            (v, ep): expected_verdict(v, ep, cells[(v, ep)]["state"]) for v in VANTAGES for ep in ENDPOINTS}, engine
        kinds = {f"{e['host']}:{e['port']}": e["kind"] for e in rep["endpoints"]}
        assert kinds == {**{t: "tf-server" for t in TF}, GRPC: "modelserver-grpc", REST: "modelserver-rest"}
        policy = sorted((f["rule"], f"{f['host']}:{f['port']}", f["severity"]) for f in rep["findings"]
                        if f["rule"].startswith("policy-"))
        if ruleset == "leaky":
            assert policy == [("policy-unexpected-reachability@corp", REST, "high"),
                              ("policy-unexpected-reachability@edge", "198.18.1.11:2222", "critical")]
            edge = next(f for f in rep["findings"] if f["rule"] == "policy-unexpected-reachability@edge")
            assert edge["evidence"][0].startswith("vantage edge (segment edge, untrusted): ")
            assert "198.18.1.11:2222: SYN-ACK" in edge["evidence"][0]
            assert "edge: open" in edge["evidence"][2] and "198.18.4.0/24" in edge["remediation"]
            # The worker is reached from edge (untrusted) and cluster (trusted): the context names each as such.
            worker = next(f for f in rep["findings"] if f["rule"] == "tf-server-unauthenticated-plaintext"
                          and f["host"] == "198.18.1.11")
            assert worker["context"] == "reachable from untrusted segments (edge) and from trusted segments (cluster)"
        else:
            assert policy == []
        assert rep["expected_unreachable"] == []
        if engine == "connect":
            assert "does not see the reply packet" in cells[("corp", GRPC)]["answered_by"]
            continue
        # Who answered: the ICMP error names the router; the reset came from one hop before the server.
        assert cells[("corp", TF[0])]["answered_by"].startswith("198.18.3.254, not the target"), engine
        reset = cells[("corp", GRPC)]
        assert reset["ttl"] == 64 and reset["received"] == "RST", engine
        if ruleset == "leaky":  # corp also gets the server's own SYN-ACK on 8501, one hop further away
            assert reset["answered_by"].startswith("a device 1 hop before the target: a firewall"), reset
        else:
            assert reset["answered_by"].startswith("the next hop itself"), reset
        assert cells[("edge", TF[0])]["answered_by"].startswith("nobody: no reply")
    text = report(paths, seglab.info["policy"], "text")
    assert "blocked closed (reset)" in text and "blocked filtered (admin-prohibited)" in text
    # The legend explains the marks shown: only the leaky ruleset lets a segment reach what it must not.
    assert ("OPEN!         open, and the policy does not allow it" in text) == (ruleset == "leaky"), text
    assert "corp -> 198.18.1.20:8500: nmap -sS SYN" in text


def test_scan_policy_infers_the_vantage_and_gives_its_policy_findings(seglab, tmp_path):
    """A pre-deployment check is one command run from the segment it guards."""
    seglab.apply_ruleset("leaky")
    policy = seglab.info["policy"]
    corp = run_scan_in(seglab, "corp", "198.18.1.20", "-p", "8500,8501", "--policy", policy)
    assert (corp["vantage"], corp["segment"]) == ("corp", "corp")
    assert [(f["rule"], f["port"], f["severity"]) for f in corp["findings"] if f["rule"].startswith("policy-")] == [
        ("policy-unexpected-reachability@corp", 8501, "high")]
    proc = run_in_vantage(seglab, "corp", "198.18.1.20", "-p", "8500,8501", "--policy", policy, "--fail-on", "high")
    assert proc.returncode == 1, proc.stderr
    # Allowed from apps but dropped by the firewall: expected but unreachable, with the port's usual kind.
    wider = tmp_path / "policy.toml"
    wider.write_text(open(policy).read().replace('from = ["cluster"]', 'from = ["cluster", "apps"]', 1))
    apps = run_scan_in(seglab, "apps", "198.18.1.10", "-p", "2222", "--policy", str(wider))
    assert apps["vantage"] == "apps"
    assert [(r["kind"], r["host"], r["port"], r["state"], r["reason"]) for r in apps["expected_unreachable"]] == [
        ("tf-server", "198.18.1.10", 2222, "filtered", "no-response")]
    # The same two checks with two worker processes (one of them has no host): the same verdicts.
    split = run_scan_in(seglab, "apps", "198.18.1.10", "-p", "2222", "--policy", str(wider), "--workers", "2")
    assert split["expected_unreachable"] == apps["expected_unreachable"] and split["options"]["workers"] == 2
    split = run_scan_in(seglab, "corp", "198.18.1.20", "-p", "8500,8501", "--policy", policy, "--workers", "2")
    assert sorted((f["rule"], f["port"], f["severity"]) for f in split["findings"]) == sorted(
        (f["rule"], f["port"], f["severity"]) for f in corp["findings"])
    # A source address in no policy segment: the vantage is named unknown, and said so.
    narrow = tmp_path / "narrow.toml"
    narrow.write_text('[segments.cluster]\ncidrs = ["198.18.1.0/24"]\ntrust = "trusted"\n')
    proc = run_in_vantage(seglab, "edge", "198.18.1.11", "-p", "2222", "--policy", str(narrow))
    assert proc.returncode == 0 and "source address 198.18.4.10 is in no segment of the policy" in proc.stderr
    assert json.loads(proc.stdout)["vantage"] == "unknown"


def test_report_says_not_probed_only_for_pairs_a_vantage_never_probed(seglab, tmp_path):
    """A swept range keeps its closed and filtered ports compactly; only unprobed pairs read `not probed`."""
    seglab.apply_ruleset("leaky")
    cluster = scan_from(seglab, "cluster", "syn", tmp_path)
    # Inside the segment: RSTs from the hosts, and for addresses with no host the scanning machine's own
    # host-unreachable (no neighbour answered) or silence; 64 addresses x 12 ports in a few groups.
    assert {(g["state"], g["reason"]) for g in cluster["port_states"]} <= {
        ("closed", "reset"), ("filtered", "host-unreach"), ("filtered", "no-response")}
    probed, listed = 64 * len(named_port_sets()["tf"]), len(cluster["endpoints"])
    assert sum(g["count"] for g in cluster["port_states"]) == probed - listed and len(cluster["port_states"]) < 40
    corp = scan_from(seglab, "corp", "syn", tmp_path)
    assert {(g["state"], g["reason"]) for g in corp["port_states"]} >= {("filtered", "admin-prohibited"),
                                                                      ("filtered", "no-response")}
    edge = run_scan_in(seglab, "edge", "198.18.1.11", "-p", "2222", "--vantage", "edge")
    (tmp_path / "edge-only.json").write_text(json.dumps(edge))
    rep = report([tmp_path / "cluster-syn.json", tmp_path / "corp-syn.json", tmp_path / "edge-only.json"],
                 seglab.info["policy"])
    cells = {(r["vantage"], f"{r['host']}:{r['port']}"): r for r in rep["reachability"]}
    assert (cells[("corp", TF[0])]["state"], cells[("corp", TF[0])]["reason"]) == ("filtered", "admin-prohibited")
    assert (cells[("corp", GRPC)]["state"], cells[("corp", GRPC)]["reason"]) == ("closed", "reset")
    not_probed = {k for k, c in cells.items() if c["reason"] == "not-probed"}
    assert not_probed == {("edge", f"{e['host']}:{e['port']}") for e in rep["endpoints"]} - {("edge", "198.18.1.11:2222")}


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
        tf = run_scan_in(seglab, "edge", "198.18.1.11", "-p", "2222", "--retries", "6", "--timeout", "3",
                         "--engine", "connect")
    finally:
        cleared = run_cli("lab", "impair", "edge", "--clear", env=lab_env)
    assert cleared.returncode == 0 and "impairment removed" in cleared.stdout, cleared.stdout + cleared.stderr
    assert "impaired" not in run_cli("lab", "status", env=lab_env).stdout
    assert swept["stats"]["states"] == {"closed": 200}
    assert swept["stats"]["retried"] > 0  # the loss was real; retries made detection complete
    (ep,) = tf["endpoints"]
    assert (ep["state"], ep["kind"], ep["details"].get("job")) == ("open", "tf-server", "worker"), ep["evidence"]
    # The delay was real too: the handshake the scan timed cannot be faster than the added 200 ms.
    (handshake,) = [line for line in ep["evidence"] if "SYN-ACK in" in line]
    assert float(handshake.split("SYN-ACK in ")[1].split()[0]) >= 200, handshake
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


def run_in_vantage(lab, vantage: str, *args: str) -> subprocess.CompletedProcess:
    argv = lab.vantage_argv(vantage, sys.executable, "-m", "netaudit", "scan", *args, "--scope", "198.18.0.0/15",
                            "--format", "json")
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


def run_scan_in(lab, vantage: str, *args: str) -> dict:
    proc = run_in_vantage(lab, vantage, *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_lab_cli_scan_refuses_without_segmented_lab(tmp_path):
    proc = run_cli("lab", "scan", "corp", env={"NETAUDIT_LAB_DIR": str(tmp_path / "none")})
    assert proc.returncode == 2 and "needs the segmented or the cluster lab" in proc.stderr


def test_opening_a_firewall_rule_shows_up_as_new(seglab, tmp_path):
    """History across a firewall change: isolated, then leaky (edge may now reach worker 0), then leaky again."""
    store = tmp_path / "history.sqlite"

    def edge_scan() -> dict:
        argv = seglab.vantage_argv("edge", *seglab.scan_argv("edge"), "--store", str(store))
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

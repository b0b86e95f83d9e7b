"""`netaudit lab up|status|down` and `netaudit demo` as a user runs them, and the HTML in a real browser."""

from __future__ import annotations

import json
import subprocess

import pytest

from netaudit.lab.processes import start_ticks

from conftest import require_root_tools, run_cli


def test_lab_up_status_down_leaves_nothing(tmp_path):
    env = {"NETAUDIT_LAB_DIR": str(tmp_path / "lab")}
    up = run_cli("lab", "up", "--loopback", "--no-decoys", "--no-peers", env=env, timeout=300)
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / "lab" / "state.json").read_text())
    try:
        assert [e["name"] for e in state["endpoints"]] == [
            "train/chief:0", "train/worker:0", "train/worker:1", "train/ps:0", "mwms/worker:0", "mwms/worker:1",
            "modelserver/grpc", "modelserver/rest", "tls/no-alpn", "tls/expired", "tls/self-signed", "tls/mismatch",
            "tls/dual", "tls/legacy", "tls/nginx-mtls", "tls/nginx-optional", "modelserver-tls/grpc",
            "modelserver-mtls/grpc"]
        assert "coordination leader" in up.stdout and up.stdout.count("[running]") == 18
        again = run_cli("lab", "up", env=env)
        assert again.returncode == 2 and "the loopback lab is already up" in again.stderr
        assert len(again.stderr.strip().splitlines()) == 1, again.stderr  # said before anything starts
        targets = run_cli("lab", "status", "--targets", env=env).stdout.split()
        assert targets == [f"{e['host']}:{e['port']}" for e in state["endpoints"]]
    finally:
        down = run_cli("lab", "down", env=env)
    assert down.returncode == 0 and down.stdout.startswith("lab is down")
    assert all(start_ticks(p["pid"]) is None for p in state["processes"])
    assert not (tmp_path / "lab").exists()
    assert "lab is down" in run_cli("lab", "status", env=env).stdout


def test_segmented_lab_cli_leaves_no_namespace(tmp_path):
    require_root_tools("ip", "nft")
    env = {"NETAUDIT_LAB_DIR": str(tmp_path / "seglab")}
    up = run_cli("lab", "up", env=env, timeout=300)
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / "seglab" / "state.json").read_text())
    try:
        assert state["kind"] == "segments" and len(state["namespaces"]) == 13  # router, 12 hosts
        assert "firewall: nftables ruleset 'leaky'" in up.stdout and "edge 198.18.4.10" in up.stdout
        edge = run_cli("lab", "scan", "edge", env=env, timeout=300)
        opened = [(e["host"], e["port"], e["kind"]) for e in json.loads(edge.stdout)["endpoints"] if e["state"] == "open"]
        assert opened == [("198.18.1.11", 2222, "tf-server")]
        assert run_cli("lab", "ruleset", "isolated", env=env).stdout == "firewall ruleset is now isolated\n"
        edge = run_cli("lab", "scan", "edge", env=env, timeout=300)
        assert [e for e in json.loads(edge.stdout)["endpoints"] if e["state"] == "open"] == []
    finally:
        down = run_cli("lab", "down", env=env)
    assert down.returncode == 0
    present = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [ns for ns in state["namespaces"] if ns in present]
    assert all(start_ticks(p["pid"]) is None for p in state["processes"])
    assert not (tmp_path / "seglab").exists()


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """The README's demo as CI runs it (root: the segmented lab, every vantage)."""
    require_root_tools("ip", "nft")
    out = tmp_path_factory.mktemp("demo")
    env = {"NETAUDIT_LAB_DIR": str(out / "lab-state")}
    proc = run_cli("demo", "-o", str(out / "report"), env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_demo_scans_every_vantage_and_brings_the_lab_down(demo_dir):
    out, proc = demo_dir
    report = out / "report"
    assert sorted(p.name for p in report.iterdir()) == [
        "junit.xml", "policy.toml", "report.html", "report.json", "report.sarif", "scan-apps.json", "scan-cluster.json",
        "scan-corp.json", "scan-edge.json", "summary.txt"]
    assert f"report: {(report / 'report.html').resolve()}" in proc.stdout
    assert "findings: 2 critical, 8 high, 15 medium" in proc.stdout
    data = json.loads((report / "report.json").read_text())
    assert [s["vantage"] for s in data["scans"]] == ["cluster", "apps", "corp", "edge"]
    assert sorted(f["rule"] for f in data["findings"] if f["rule"].startswith("policy-")) == [
        "policy-unexpected-reachability@corp", "policy-unexpected-reachability@edge"]
    # As root the demo scans with raw SYNs: every cell the firewall drops or rejects says so, none is unknown.
    cells = {(r["vantage"], f"{r['host']}:{r['port']}"): r for r in data["reachability"]}
    assert [k for k, c in cells.items() if c["state"] == "undetermined"] == []
    assert (cells[("corp", "198.18.1.10:2222")]["state"], cells[("corp", "198.18.1.10:2222")]["reason"]) == (
        "filtered", "admin-prohibited")
    assert (cells[("corp", "198.18.1.20:8500")]["state"], cells[("corp", "198.18.1.20:8500")]["reason"]) == (
        "closed", "reset")
    assert (cells[("edge", "198.18.1.10:2222")]["state"], cells[("edge", "198.18.1.10:2222")]["reason"]) == (
        "filtered", "no-response")
    assert cells[("edge", "198.18.1.11:2222")]["verdict"] == "open-not-allowed"
    summary = (report / "summary.txt").read_text()
    assert "blocked filtered (admin-prohibited)" in summary and "OPEN!" in summary
    assert "corp -> 198.18.1.20:8500: raw SYN to 198.18.1.20:8500: RST, TTL 64; answered by a device 1 hop before" \
        in summary
    html = (report / "report.html").read_text()
    assert 'class="legend"' in html and 'class="cell open-not-allowed"' in html and 'class="cell blocked"' in html
    assert not (out / "lab-state").exists()
    from netaudit.lab.segments import SegmentedLab

    tag = SegmentedLab(out / "lab-state").tag
    present = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"na{tag}-" not in present


def test_demo_loopback_variant(tmp_path):
    env = {"NETAUDIT_LAB_DIR": str(tmp_path / "lab-state")}
    proc = run_cli("demo", "--loopback", "-o", str(tmp_path / "report"), env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["vantage"] == "loopback" and [e["kind"] for e in data["endpoints"]].count("tf-server") == 13, \
        proc.stderr
    counts = {s: sum(f["severity"] == s for f in data["findings"]) for s in ("critical", "high", "medium")}
    assert counts["critical"] >= 15 and f"findings: {counts['critical']} critical, {counts['high']} high, " \
        f"{counts['medium']} medium" in proc.stdout
    # The neighbour servers run beside the TF servers (Triton may be left out, said so, on a loaded machine).
    kinds = {e["kind"] for e in data["endpoints"]}
    assert {"tensorboard", "inference-v1-rest", "inference-v2-rest", "inference-v2-grpc"} <= kinds
    assert ("triton" in {e["details"].get("product") for e in data["endpoints"]}) or \
        "going on without triton" in proc.stderr
    assert not (tmp_path / "lab-state").exists()


def test_lab_processes_start_from_the_checkout_with_a_regular_install(tmp_path):
    """After `pip install .` (not editable), the checkout's own netaudit/ folder (which has no lab/) must not
    shadow the installed package when a lab process starts from the checkout's root."""
    import shutil
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    venv, source = tmp_path / "venv", tmp_path / "source"
    try:
        # Built from a copy of what the package is made of: building in the checkout leaves a build/ folder.
        for name in ("netaudit", "probes", "lab", "report_templates"):
            shutil.copytree(root / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(root / name, source / name)
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
        python = str(venv / "bin" / "python")
        install = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                                  str(source)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert install.returncode == 0, install.stderr
        probe = ("import subprocess, netaudit; from netaudit.lab.processes import module_argv; "
                 "assert 'site-packages' in netaudit.__file__, netaudit.__file__; "
                 "subprocess.run(module_argv('netaudit.lab.tf_task', '--help'), check=True, capture_output=True)")
        proc = subprocess.run([python, "-P", "-c", probe], capture_output=True, text=True, timeout=120, cwd=root)
        assert proc.returncode == 0, proc.stderr
    finally:
        shutil.rmtree(venv, ignore_errors=True)
        shutil.rmtree(source, ignore_errors=True)


def test_a_lab_process_that_dies_is_named_with_the_end_of_its_log(tmp_path):
    """The demo says which lab process exited during its scan (its endpoints then miss from the report)."""
    import sys
    import time

    from netaudit.lab.base import Lab
    from netaudit.lab.processes import spawn

    lab = Lab(tmp_path)
    script = "import sys, time; print('READY', flush=True); time.sleep(0.2); sys.exit('proxy broke: out of threads')"
    lab.processes = [spawn("short-lived", [sys.executable, "-c", script], tmp_path),
                     spawn("long-lived", [sys.executable, "-c", "import time; print('READY'); time.sleep(60)"], tmp_path)]
    try:
        deadline = time.monotonic() + 20
        while "short-lived" not in lab.exited() and time.monotonic() < deadline:
            time.sleep(0.1)
        exited = lab.exited()
        assert list(exited) == ["short-lived"] and "proxy broke: out of threads" in exited["short-lived"]
    finally:
        lab.down()


def test_an_optional_process_that_did_not_start_is_named_with_the_line_that_says_why(tmp_path):
    """PyTriton's errors end in pybind11's "At:" and frames; the skip reason is the error line above them."""
    import sys
    import time

    from netaudit.lab.base import Lab
    from netaudit.lab.processes import spawn, wait_ready

    script = ("import sys; print('starting'); print('RuntimeError: Triton server failed to start: port in use');"
              "print('At:'); print('  /venv/pytriton/triton.py(412): run'); sys.exit(1)")
    lab = Lab(tmp_path)
    lab.processes = [spawn("triton", [sys.executable, "-c", script], tmp_path, optional=True)]
    try:
        lab._give_up(wait_ready(lab.processes, time.monotonic() + 20))
        assert lab.info["skipped"] == {
            "triton": "exited during start-up: RuntimeError: Triton server failed to start: port in use"}
        assert lab.processes == [] and not (tmp_path / "triton.log").exists()
    finally:
        lab.down()


def test_lab_ports_are_free_distinct_and_outside_the_ephemeral_range():
    """A lab port from the ephemeral range can be taken as some connection's source port before its server
    binds it (CI: a decoy server's EADDRINUSE while other tests scanned)."""
    import socket
    from pathlib import Path

    from netaudit.lab.processes import free_port, free_ports

    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = free_ports(64) + [free_port() for _ in range(64)]
    assert len(set(ports)) == 128 and not [p for p in ports if low <= p <= high]
    for port in ports[:8]:
        with socket.socket() as sock:
            sock.bind(("0.0.0.0", port))

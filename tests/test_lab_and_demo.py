"""`netaudit lab up|status|down` and `netaudit demo` as a user runs them, and the HTML in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from netaudit.lab.processes import start_ticks

from conftest import require_root_tools, run_cli


def test_lab_up_status_down_leaves_nothing(tmp_path):
    env = {"NETAUDIT_LAB_DIR": str(tmp_path / "lab")}
    up = run_cli("lab", "up", "--loopback", "--no-decoys", env=env, timeout=300)
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / "lab" / "state.json").read_text())
    try:
        assert [e["name"] for e in state["endpoints"]] == [
            "train/chief:0", "train/worker:0", "train/worker:1", "train/ps:0", "mwms/worker:0", "mwms/worker:1",
            "modelserver/grpc", "modelserver/rest", "tls/no-alpn", "tls/expired", "tls/self-signed", "tls/mismatch",
            "tls/dual", "tls/nginx-mtls", "modelserver-tls/grpc", "modelserver-mtls/grpc"]
        assert "coordination leader" in up.stdout and up.stdout.count("[running]") == 16
        again = run_cli("lab", "up", env=env)
        assert again.returncode == 4 and "already up" in again.stderr
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
        assert state["kind"] == "segments" and len(state["namespaces"]) == 10
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
    out = tmp_path_factory.mktemp("demo")
    env = {"NETAUDIT_LAB_DIR": str(out / "lab-state")}
    proc = run_cli("demo", "-o", str(out / "report"), env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_demo_writes_reports_and_brings_the_lab_down(demo_dir):
    out, proc = demo_dir
    report = out / "report"
    assert sorted(p.name for p in report.iterdir()) == ["report.html", "scan.json", "summary.txt"]
    assert f"report: {(report / 'report.html').resolve()}" in proc.stdout
    assert "findings: 13 critical, 10 high, 19 medium" in proc.stdout
    data = json.loads((report / "scan.json").read_text())
    kinds = [e["kind"] for e in data["endpoints"]]
    assert data["vantage"] == "loopback" and kinds.count("tf-server") == 11
    assert kinds.count("modelserver-grpc") == 2 and kinds.count("modelserver-rest") == 1
    assert not (out / "lab-state").exists()
    pids = [int(x) for x in subprocess.run(["pgrep", "-f", "netaudit.lab"], capture_output=True, text=True).stdout.split()]
    assert not [p for p in pids if str(out) in Path(f"/proc/{p}/environ").read_text(errors="replace")]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")


def test_html_report_renders_in_headless_chromium(demo_dir):
    out, _ = demo_dir
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", f"--user-data-dir={profile}", "--dump-dom",
                               (out / "report" / "report.html").resolve().as_uri()],
                              capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert 'id="summary"' in dom and "13 critical findings" in dom
    assert dom.count('class="card critical"') == 13
    assert "tf.distribute.Server at 127.0.0.1:" in dom and "/tensorflow.WorkerService/GetStatus" in dom

"""The CLI as a user runs it: output formats, the JSON contract, exit codes, stdin and tf-config targets."""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess

from conftest import NETAUDIT, run_cli


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


def test_json_output_follows_the_contract(lab):
    proc = run_cli("scan", *lab.targets()[:2], "--format", "json", "--vantage", "corp")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["schema"] == "netaudit/scan-v1" and data["vantage"] == "corp" and data["complete"] is True
    assert data["started"].endswith("Z") and data["finished"].endswith("Z")
    ep = data["endpoints"][0]
    assert set(ep) >= {"host", "port", "state", "kind", "transport", "authenticated", "services", "details", "evidence"}
    finding = data["findings"][0]
    assert set(finding) >= {"id", "rule", "severity", "host", "port", "title", "evidence", "remediation", "references"}


def test_fail_on_sets_exit_1_only_at_or_above_the_threshold(lab):
    tf_target = next(e.target for e in lab.endpoints if e.kind == "tf-server")
    decoy = next(e.target for e in lab.endpoints if e.kind == "grpc")
    assert run_cli("scan", tf_target, "--fail-on", "critical").returncode == 1
    assert run_cli("scan", tf_target).returncode == 0
    assert run_cli("scan", decoy, "--fail-on", "info").returncode == 0


def test_text_summary_and_closed_port(lab):
    tf = next(e for e in lab.endpoints if e.kind == "tf-server")
    port = closed_port()
    proc = run_cli("scan", tf.target, f"127.0.0.1:{port}")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    row = next(line for line in lines if line.startswith(tf.target))
    assert row.split()[1:5] == ["open", "tf-server", "plaintext", "NO"]
    assert f"{tf.job}:{tf.task}" in row
    closed = next(line for line in lines if line.startswith(f"127.0.0.1:{port}"))
    assert closed.split()[1] == "closed" and "RST" in closed
    assert "CRITICAL" in proc.stdout


def test_stdin_and_tf_config_targets(lab, tmp_path):
    train = [e for e in lab.endpoints if e.name.startswith("train/")]
    cluster = {}
    for e in train:
        cluster.setdefault(e.job, []).append(e.target)
    config = tmp_path / "tf_config.json"
    config.write_text(json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}}))
    proc = run_cli("scan", "-", "--format", "json", stdin=f"tf-config:{config}\n")
    data = json.loads(proc.stdout)
    got = {(e["details"]["target_name"], e["details"]["job"], e["details"]["task"]) for e in data["endpoints"]}
    assert got == {(f"{e.job}:{e.task}", e.job, e.task) for e in train}


def test_output_file_format_from_suffix(lab, tmp_path):
    out = tmp_path / "scan.html"
    proc = run_cli("scan", lab.targets()[0], "-o", str(out))
    assert proc.returncode == 0 and proc.stdout == ""
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in html and "tf-server" in html


def test_time_budget_gives_exit_3_and_incomplete_output(lab, tmp_path):
    silent = next(e.target for e in lab.endpoints if e.name == "decoy/silent")
    out = tmp_path / "partial.json"
    proc = run_cli("scan", silent, "--max-time", "0.5", "-o", str(out))
    assert proc.returncode == 3
    assert "scan incomplete: time budget of 0.5s spent" in proc.stderr
    data = json.loads(out.read_text())
    assert data["complete"] is False and data["stats"]["incomplete_reason"] == "time budget of 0.5s spent"
    assert [(e["port"], e["state"]) for e in data["endpoints"]] == [(int(silent.split(":")[1]), "open")]
    stopped = data["endpoints"][0]["details"]["probe_error"]  # its sniff was still waiting: said, not hidden
    assert stopped["error"] == "CancelledError" and stopped["during"] == "sniff", stopped


def test_interrupt_keeps_what_was_found(lab, tmp_path):
    import signal
    import time

    silent = next(e.target for e in lab.endpoints if e.name == "decoy/silent")
    out = tmp_path / "interrupted.json"
    proc = subprocess.Popen([*NETAUDIT, "scan", silent, "--timeout", "20", "-o", str(out)], stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    data = json.loads(out.read_text())
    assert data["complete"] is False and data["stats"]["incomplete_reason"] == "interrupted by SIGINT"


def test_progress_goes_to_stderr_on_a_terminal(lab):
    master, slave = pty.openpty()
    proc = subprocess.Popen([*NETAUDIT, "scan", *lab.targets()[:3], "--format", "json"], stdout=subprocess.PIPE,
                            stderr=slave, env={**os.environ})
    os.close(slave)
    out, _ = proc.communicate(timeout=60)
    chunks = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks += data
    os.close(master)
    assert proc.returncode == 0
    assert b"scanning: " in chunks and b"found tf-server at 127.0.0.1:" in chunks
    assert json.loads(out)["complete"] is True  # stdout stays clean


def test_no_progress_when_stderr_is_not_a_terminal(lab):
    proc = run_cli("scan", lab.targets()[0], "--format", "json")
    assert proc.stderr == ""


def test_help_explains_targets_and_exit_codes():
    proc = run_cli("scan", "--help")
    assert proc.returncode == 0
    for text in ("tf-config:", "--scope", "--fail-on", "exit codes", "198.18.1.10-20"):
        assert text in proc.stdout

"""Scan history: what changed between runs, accepted risks, gating on new findings, and a store that
survives killed runs and concurrent writers. Plus the Prometheus textfile output."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from netaudit.lab.loopback import LoopbackLab
from netaudit.lab.processes import stop

from conftest import NETAUDIT, run_cli


@pytest.fixture(scope="module")
def small_lab(tmp_path_factory):
    """TF servers only, of this module's own: the tests stop one of them."""
    with LoopbackLab(tmp_path_factory.mktemp("hist-lab"), decoys=False, modelserver=False, tls=False) as lab:
        yield lab


def scan_json(*args: str, store: Path) -> tuple[int, dict]:
    proc = run_cli("scan", *args, "--format", "json", "--store", str(store))
    assert proc.returncode in (0, 1, 3), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def states(data: dict) -> dict[str, set[tuple[str, int]]]:
    out = {"new": set(), "persisting": set()}
    for f in data["findings"]:
        out[f["state"]].add((f["rule"], f["port"]))
    out["resolved"] = {(f["rule"], f["port"]) for f in data["diff"]["resolved"]}
    return out


def test_stopping_a_worker_resolves_its_findings(small_lab, tmp_path):
    store = tmp_path / "h.sqlite"
    targets = [e.target for e in small_lab.endpoints if e.name.startswith("train/")]
    _, first = scan_json(*targets, store=store)
    assert first["diff"]["baseline"] is None and {f["state"] for f in first["findings"]} == {"new"}
    worker = next(e for e in small_lab.endpoints if e.name == "train/worker:1")
    stop([p for p in small_lab.processes if p.name == worker.process])
    _, second = scan_json(*targets, store=store)
    rules = {("tf-server-unauthenticated-plaintext", worker.port), ("tf-profiler-exposed", worker.port)}
    others = {(f["rule"], f["port"]) for f in first["findings"]} - rules
    assert states(second) == {"new": set(), "persisting": others, "resolved": rules}
    assert second["diff"]["baseline"] == f"run {first['run_id']}"
    down = next(e for e in second["endpoints"] if e["port"] == worker.port)
    assert down["state"] == "closed"
    history = run_cli("history", "--store", str(store)).stdout.splitlines()
    assert len(history) == 2 and history[1].split()[0] == str(second["run_id"])
    diff = run_cli("history", str(first["run_id"]), str(second["run_id"]), "--store", str(store)).stdout
    assert "0 new, 6 persisting, 2 resolved" in diff and f"127.0.0.1:{worker.port}" in diff


def test_accept_list_with_expiry_and_fail_on_new(small_lab, tmp_path):
    store = tmp_path / "h.sqlite"
    chief = next(e for e in small_lab.endpoints if e.name == "train/chief:0")
    accept = tmp_path / "accept.toml"
    accept.write_text(f'[[accept]]\nrule = "tf-server-unauthenticated-plaintext"\nhost = "127.0.0.1"\nport = {chief.port}\n'
                      f'reason = "isolated training VPC, reviewed"\nowner = "ml-platform"\nexpires = 2099-01-01\n')
    code, data = scan_json(chief.target, "--fail-on", "critical", "--accept", str(accept), store=store)
    critical = next(f for f in data["findings"] if f["severity"] == "critical")
    assert code == 0 and critical["accepted"] == {"reason": "isolated training VPC, reviewed", "owner": "ml-platform",
                                                  "expires": "2099-01-01", "expired": False}
    accept.write_text(accept.read_text().replace("2099-01-01", "2020-01-01"))
    code, data = scan_json(chief.target, "--fail-on", "critical", "--accept", str(accept), store=store)
    assert code == 1 and next(f for f in data["findings"] if f["severity"] == "critical")["accepted"]["expired"]
    code, _ = scan_json(chief.target, "--fail-on-new", "critical", store=store)
    assert code == 0  # the same findings again: nothing new
    ps = next(e for e in small_lab.endpoints if e.name == "train/ps:0")
    code, data = scan_json(chief.target, ps.target, "--fail-on-new", "critical", store=store)
    assert code == 1  # another target set is another scope: its first run has no baseline, so all is new
    code, data = scan_json(chief.target, "--fail-on-new", "critical", "--baseline", str(baseline_file(tmp_path, data)),
                           store=store)
    assert code == 0


def baseline_file(tmp_path: Path, data: dict) -> Path:
    """A baseline given as a file: an earlier run's JSON output."""
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(data))
    return path


def test_new_scope_without_baseline_fails_on_new(small_lab, tmp_path):
    """No baseline at all means every finding is new: --fail-on-new must not pass silently."""
    ps = next(e for e in small_lab.endpoints if e.name == "train/ps:0")
    code, data = scan_json(ps.target, "--fail-on-new", "critical", "--baseline", str(empty_baseline(tmp_path)),
                           store=tmp_path / "h.sqlite")
    assert code == 1 and {f["state"] for f in data["findings"]} == {"new"}


def empty_baseline(tmp_path: Path) -> Path:
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"schema": "netaudit/scan-v1", "findings": [], "endpoints": [], "complete": True}))
    return path


def test_killed_and_concurrent_runs_leave_the_store_readable(small_lab, tmp_path):
    store = tmp_path / "h.sqlite"
    targets = [e.target for e in small_lab.endpoints if e.name.startswith("train/")]
    scan_json(*targets, store=store)
    procs = [subprocess.Popen([*NETAUDIT, "scan", *targets, "--format", "json", "--store", str(store)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    killed = subprocess.Popen([*NETAUDIT, "scan", *targets, "--format", "json", "--store", str(store)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    killed.send_signal(signal.SIGKILL)
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    killed.wait()
    db = sqlite3.connect(store)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    counts = db.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert counts in (3, 4)  # the killed one may or may not have reached its single transaction
    assert run_cli("history", "--store", str(store)).stdout.count("complete") == counts


def test_interrupted_run_is_recorded_incomplete_and_not_a_baseline(small_lab, tmp_path):
    store = tmp_path / "h.sqlite"
    chief = next(e for e in small_lab.endpoints if e.name == "train/chief:0")
    _, first = scan_json(chief.target, store=store)
    code, partial = scan_json(chief.target, "--max-time", "0.01", store=store)
    assert code == 3 and partial["complete"] is False
    _, third = scan_json(chief.target, store=store)
    assert third["diff"]["baseline"] == f"run {first['run_id']}"  # the incomplete run is skipped
    assert "INCOMPLETE" in run_cli("history", "--store", str(store)).stdout


def promtool() -> str | None:
    local = Path(__file__).resolve().parents[1] / ".ci" / "cache" / "usr" / "bin" / "promtool"
    return shutil.which("promtool") or (str(local) if local.exists() else None)


def test_prometheus_textfile(small_lab, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    targets = [e.target for e in small_lab.endpoints if e.name.startswith("train/")]
    out = tmp_path / "netaudit.prom"
    proc = run_cli("scan", *targets, "-o", str(out), "--store", str(tmp_path / "h.sqlite"))
    assert proc.returncode == 0, proc.stderr
    families = {f.name: f for f in text_string_to_metric_families(out.read_text())}
    findings = {(s.labels["severity"], s.labels["rule"]): s.value for s in families["netaudit_findings"].samples}
    _, data = scan_json(*targets, store=tmp_path / "h.sqlite")
    tf_up = sum(1 for e in data["endpoints"] if e["kind"] == "tf-server")
    assert tf_up >= 3 and findings[("critical", "tf-server-unauthenticated-plaintext")] == tf_up
    exposed = {s.labels["kind"]: s.value for s in families["netaudit_exposed_endpoints"].samples}
    from netaudit.core import registry

    assert exposed == {**{kind: 0 for kind in registry.sensitive_kinds()}, "tf-server": tf_up}
    assert families["netaudit_scan_complete"].samples[0].value == 1
    tool = promtool()
    if tool is None:
        pytest.skip("promtool not found (.ci/run extracts it from Debian's prometheus package); the parser passed")
    check = subprocess.run([tool, "check", "metrics"], input=out.read_text(), capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_scheduling_examples_use_real_options():
    """Every netaudit command in docs/scheduling parses with the real CLI, and the accept list loads."""
    import re
    import shlex

    from netaudit.cli.parser import build_parser
    from netaudit.results.accept import load_accept_list

    folder = Path(__file__).resolve().parents[1] / "docs" / "scheduling"
    commands = []
    k8s = (folder / "kubernetes-cronjob.yaml").read_text()
    commands.append(json.loads(re.search(r'command: (\[.*?\])\n', k8s, re.S)[1].replace("\n", " "))[1:])
    service = (folder / "netaudit-corp.service").read_text().replace("\\\n", " ")
    commands.append(shlex.split(re.search(r"ExecStart=\S+ (.*)", service)[1]))
    ci = (folder / "ci-pre-deploy.yml").read_text()
    commands.append(shlex.split(" ".join(re.search(r"- run: >\n((?:\s{10}.*\n)+)", ci)[1].split())[len("netaudit "):]))
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv)
        assert args.command == "scan" and args.store and (args.fail_on_new or args.fail_on)
    assert [a.owner for a in load_accept_list(str(folder / "accept.example.toml"))] == ["ml-platform@example.com",
                                                                                       "research-infra"]

"""A table of ordinary mistakes: each one is a single line on stderr, the documented exit code, and no file
created or changed (the history store included). Scans aim at a loopback port this test holds open, so a
case that wrongly got as far as sending would only reach the test itself."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


NETAUDIT = [sys.executable, "-m", "netaudit"]
TREE = Path(__file__).resolve().parents[1]
POLICY = '[segments.lab]\ncidrs = ["127.0.0.1/32"]\ntrust = "trusted"\n'
ACCEPT = '[[accept]]\nrule = "tf-server-unauthenticated-plaintext"\nreason = "lab"\nowner = "me"\nexpires = 2999-01-01\n'


def scan_json(**changes) -> str:
    """A small valid scan result, with one endpoint and one finding, changed as asked."""
    data = {"schema": "netaudit/scan-v1", "vantage": "lab", "started": "2026-12-01T00:00:00Z",
            "finished": "2026-12-01T00:00:01Z", "complete": True,
            "endpoints": [{"host": "127.0.0.1", "port": 2222, "state": "open", "kind": "tf-server",
                           "transport": "plaintext", "authenticated": False, "services": [], "details": {},
                           "evidence": []}],
            "findings": [{"id": "0123456789abcdef", "rule": "tf-server-unauthenticated-plaintext",
                          "severity": "critical", "host": "127.0.0.1", "port": 2222, "title": "t", "evidence": [],
                          "remediation": "r", "references": []}],
            "stats": {}, "options": {}, "port_states": []}
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return json.dumps(data)


DELETE = object()


def scan_stream(**changes) -> str:
    """scan_json's result, changed as asked, as the JSON lines of `scan --format jsonl`."""
    return "".join(json.dumps(record) + "\n" for record in stream_records(json.loads(scan_json(**changes))))


def stream_records(data: dict) -> list[dict]:
    header = {"type": "header", "schema": "netaudit/scan-stream-v1", "result_schema": "netaudit/scan-v1",
              "vantage": data["vantage"], "started": data["started"], "options": data["options"]}
    lines = [header] + [{"type": "endpoint", "endpoint": e, "findings": data["findings"]} for e in data["endpoints"]]
    return lines + [{"type": "trailer", "finished": data["finished"], "complete": True, "stats": {}, "port_states": [],
                     "endpoints": 1, "findings": 1, "severities": {}, "expected_unreachable": []}]

# (id, argv, files to create, exit code, a word the one line must hold). PORT is the held loopback port.
CASES = [
    # scan: targets and options
    ("scan-no-target", ["scan"], {}, 2, "target"),
    ("scan-bad-address", ["scan", "999.1.1.1"], {}, 2, "999.1.1.1"),
    ("scan-big-range-no-scope", ["scan", "10.0.0.0/8"], {}, 2, "scope"),
    ("scan-outside-scope", ["scan", "127.0.0.1:PORT", "--scope", "10.0.0.0/8"], {}, 2, "scope"),
    ("scan-port-word", ["scan", "127.0.0.1", "-p", "abc"], {}, 2, "abc"),
    ("scan-port-too-big", ["scan", "127.0.0.1", "-p", "70000"], {}, 2, "70000"),
    ("scan-port-zero", ["scan", "127.0.0.1", "-p", "0"], {}, 2, "0"),
    ("scan-negative-timeout", ["scan", "127.0.0.1:PORT", "--timeout", "-1"], {}, 2, "timeout"),
    ("scan-negative-retries", ["scan", "127.0.0.1:PORT", "--retries", "-1"], {}, 2, "0 or more"),
    ("scan-zero-concurrency", ["scan", "127.0.0.1:PORT", "--concurrency", "0"], {}, 2, "concurrency"),
    ("scan-negative-rate", ["scan", "127.0.0.1:PORT", "--rate", "-5"], {}, 2, "rate"),
    ("scan-engine", ["scan", "127.0.0.1:PORT", "--engine", "bogus"], {}, 2, "engine"),
    ("scan-format", ["scan", "127.0.0.1:PORT", "--format", "bogus"], {}, 2, "format"),
    ("scan-fail-on", ["scan", "127.0.0.1:PORT", "--fail-on", "super"], {}, 2, "fail-on"),
    ("scan-shard-order", ["scan", "127.0.0.1:PORT", "--shard", "3/2"], {}, 2, "shard"),
    ("scan-shard-word", ["scan", "127.0.0.1:PORT", "--shard", "x"], {}, 2, "shard"),
    ("scan-workers-zero", ["scan", "127.0.0.1:PORT", "--workers", "0"], {}, 2, "workers"),
    ("scan-workers-many", ["scan", "127.0.0.1:PORT", "--workers", "1000"], {}, 2, "workers"),
    ("scan-max-time", ["scan", "127.0.0.1:PORT", "--max-time", "-3"], {}, 2, "max-time"),
    ("scan-syn-ipv6", ["scan", "[::1]:PORT", "--engine", "syn"], {}, 2, "IPv6"),
    ("scan-tf-config-missing", ["scan", "tf-config:missing.json"], {}, 2, "missing.json"),
    ("scan-tf-config-bad", ["scan", "tf-config:tf.json"], {"tf.json": '{"cluster": 5}'}, 2, "tf.json"),
    ("scan-masscan-missing", ["scan", "masscan:none.json"], {}, 2, "none.json"),
    ("scan-nmap-not-xml", ["scan", "nmap:n.xml"], {"n.xml": "hello"}, 2, "n.xml"),
    ("scan-stdin-bad", ["scan", "-"], {}, 2, "not-an-address"),
    # scan: input files
    ("scan-policy-missing", ["scan", "127.0.0.1:PORT", "--policy", "p.toml"], {}, 2, "p.toml"),
    ("scan-policy-not-toml", ["scan", "127.0.0.1:PORT", "--policy", "p.toml"], {"p.toml": "[[["}, 2, "TOML"),
    ("scan-policy-cidr", ["scan", "127.0.0.1:PORT", "--policy", "p.toml"],
     {"p.toml": '[segments.lab]\ncidr = ["127.0.0.1/32"]\n'}, 2, "'cidrs'"),
    ("scan-policy-form", ["scan", "127.0.0.1:PORT", "--policy", "p.toml"],
     {"p.toml": POLICY + '[[allow]]\nkinds = ["tf-server"]\nform = ["lab"]\n'}, 2, "'from'"),
    ("scan-policy-alow", ["scan", "127.0.0.1:PORT", "--policy", "p.toml"],
     {"p.toml": POLICY + '[[alow]]\nkinds = ["tf-server"]\nfrom = ["lab"]\n'}, 2, "'allow'"),
    ("scan-policy-kind", ["scan", "127.0.0.1:PORT", "--policy", "p.toml"],
     {"p.toml": POLICY + '[[allow]]\nkinds = ["tf-sever"]\nfrom = ["lab"]\n'}, 2, "'tf-server'"),
    ("scan-policy-segment", ["scan", "127.0.0.1:PORT", "--policy", "p.toml"],
     {"p.toml": POLICY + '[[allow]]\nkinds = ["tf-server"]\nfrom = ["lap"]\n'}, 2, "'lab'"),
    ("scan-policy-trust", ["scan", "127.0.0.1:PORT", "--policy", "p.toml"],
     {"p.toml": POLICY.replace('"trusted"', '"semi"')}, 2, "semi"),
    ("scan-policy-cidr-value", ["scan", "127.0.0.1:PORT", "--policy", "p.toml"],
     {"p.toml": '[segments.lab]\ncidrs = ["127.0.0.300/32"]\n'}, 2, "127.0.0.300"),
    ("scan-accept-missing", ["scan", "127.0.0.1:PORT", "--accept", "a.toml"], {}, 2, "a.toml"),
    ("scan-accept-rule", ["scan", "127.0.0.1:PORT", "--accept", "a.toml"],
     {"a.toml": ACCEPT.replace("plaintext", "plaintxt")}, 2, "did you mean"),
    ("scan-accept-key", ["scan", "127.0.0.1:PORT", "--accept", "a.toml"],
     {"a.toml": ACCEPT + 'onwer = "x"\n'}, 2, "'owner'"),
    ("scan-accept-port", ["scan", "127.0.0.1:PORT", "--accept", "a.toml"], {"a.toml": ACCEPT + 'port = "abc"\n'},
     2, "port"),
    ("scan-accept-date", ["scan", "127.0.0.1:PORT", "--accept", "a.toml"],
     {"a.toml": ACCEPT.replace("2999-01-01", '"soon"')}, 2, "date"),
    ("scan-accept-incomplete", ["scan", "127.0.0.1:PORT", "--accept", "a.toml"],
     {"a.toml": '[[accept]]\nrule = "tf-server-unauthenticated-plaintext"\n'}, 2, "reason"),
    ("scan-model-names-missing", ["scan", "127.0.0.1:PORT", "--model-names", "m.txt"], {}, 2, "m.txt"),
    ("scan-model-names-bad", ["scan", "127.0.0.1:PORT", "--model-names", "m.txt"], {"m.txt": "a/b\n"}, 2, "a/b"),
    ("scan-ca-missing", ["scan", "127.0.0.1:PORT", "--ca-bundle", "ca.pem"], {}, 2, "ca.pem"),
    ("scan-key-without-cert", ["scan", "127.0.0.1:PORT", "--client-key", "k.pem"],
     {"k.pem": "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"}, 2, "client-cert"),
    ("scan-cert-not-pem", ["scan", "127.0.0.1:PORT", "--client-cert", "c.pem", "--client-key", "c.pem"],
     {"c.pem": "not pem"}, 2, "PEM"),
    ("scan-baseline-missing", ["scan", "127.0.0.1:PORT", "--baseline", "b.json"], {}, 2, "b.json"),
    ("scan-baseline-run", ["scan", "127.0.0.1:PORT", "--baseline", "999"], {}, 2, "999"),
    ("scan-baseline-shape", ["scan", "127.0.0.1:PORT", "--baseline", "b.json"],
     {"b.json": '{"schema": "netaudit/scan-v1"}'}, 2, "required"),
    # scan: outputs, checked before the first packet
    ("scan-output-folder-missing", ["scan", "127.0.0.1:PORT", "-o", "missing-dir/out.json"], {}, 2, "missing-dir"),
    ("scan-output-jsonl-folder-missing", ["scan", "127.0.0.1:PORT", "-o", "missing-dir/out.jsonl"], {}, 2,
     "missing-dir"),
    ("scan-output-is-folder", ["scan", "127.0.0.1:PORT", "-o", "adir"], {"adir/": ""}, 2, "adir"),
    ("scan-store-folder-is-file", ["scan", "127.0.0.1:PORT", "--store", "f/h.sqlite"], {"f": "x"}, 2, "f/h.sqlite"),
    # report
    ("report-nothing", ["report"], {}, 2, "report"),
    ("report-missing", ["report", "r.json"], {}, 2, "r.json"),
    ("report-not-json", ["report", "r.json"], {"r.json": "{"}, 2, "JSON"),
    ("report-not-a-scan", ["report", "r.json"], {"r.json": "[1, 2]"}, 2, "scan"),
    ("report-schema-only", ["report", "r.json"], {"r.json": '{"schema": "netaudit/scan-v1"}'}, 2, "required"),
    ("report-source-not-an-address", ["report", "r.json", "--policy", "p.toml"],
     {"r.json": scan_json(vantage=None, stats={"source_addresses": ["gateway"]}), "p.toml": POLICY}, 2, "stats.source_addresses[0]"),
    ("report-no-host", ["report", "r.json"], {"r.json": scan_json(endpoints__0__host=DELETE)}, 2, "host"),
    ("report-severity", ["report", "r.json"], {"r.json": scan_json(findings__0__severity="super")}, 2, "severity"),
    ("report-port-word", ["report", "r.json"], {"r.json": scan_json(endpoints__0__port="abc")}, 2, "port"),
    ("report-kind", ["report", "r.json"], {"r.json": scan_json(endpoints__0__kind="tf-sever")}, 2, "tf-server"),
    ("report-state", ["report", "r.json"], {"r.json": scan_json(endpoints__0__state="opn")}, 2, "state"),
    ("report-policy-typo", ["report", "r.json", "--policy", "p.toml"],
     {"r.json": scan_json(), "p.toml": '[segments.lab]\ncidr = ["127.0.0.1/32"]\n'}, 2, "'cidrs'"),
    ("report-output-folder-missing", ["report", "r.json", "-o", "missing-dir/r.html"], {"r.json": scan_json()}, 2,
     "missing-dir"),
    ("report-jsonl", ["report", "r.json", "--format", "jsonl"], {"r.json": scan_json()}, 2, "jsonl"),
    ("report-stream-bad-line", ["report", "r.jsonl"], {"r.jsonl": '{"type": "header"}\nnot json\n'}, 2, "r.jsonl"),
    # convert
    ("convert-missing", ["convert", "r.json", "--format", "html"], {}, 2, "r.json"),
    ("convert-schema-only", ["convert", "r.json", "--format", "html"], {"r.json": '{"schema": "netaudit/scan-v1"}'},
     2, "required"),
    ("convert-severity", ["convert", "r.json", "--format", "sarif"],
     {"r.json": scan_json(findings__0__severity="super")}, 2, "severity"),
    ("convert-port-word", ["convert", "r.json", "--format", "text"], {"r.json": scan_json(findings__0__port="abc")},
     2, "port"),
    ("convert-no-findings", ["convert", "r.json", "--format", "junit"], {"r.json": scan_json(findings=DELETE)}, 2,
     "findings"),
    ("convert-stream-port-word", ["convert", "r.jsonl", "--format", "html"],
     {"r.jsonl": scan_stream(endpoints__0__port="abc")}, 2, "r.jsonl line 2: endpoint.port"),
    ("convert-stream-severity", ["convert", "r.jsonl", "--format", "sarif"],
     {"r.jsonl": scan_stream(findings__0__severity="super")}, 2, "r.jsonl line 2: findings[0].severity"),
    ("convert-stream-kind", ["convert", "r.jsonl", "--format", "json"],
     {"r.jsonl": scan_stream(endpoints__0__kind="tf-srever")}, 2, "did you mean 'tf-server'"),
    ("convert-stream-findings-word", ["convert", "r.jsonl", "--format", "text"],
     {"r.jsonl": scan_stream(findings="none")}, 2, "r.jsonl line 2: findings: not a list"),
    ("convert-output-folder-missing", ["convert", "r.json", "-o", "missing-dir/x.html"], {"r.json": scan_json()}, 2,
     "missing-dir"),
    # history
    ("history-three-runs", ["history", "1", "2", "3"], {}, 2, "RUN"),
    ("history-word", ["history", "abc"], {}, 2, "RUN"),
    ("history-store-is-folder", ["history", "--store", "adir"], {"adir/": ""}, 2, "adir"),
    # lab and export
    ("lab-action", ["lab", "bogus"], {}, 2, "bogus"),
    ("lab-vantage-without-lab", ["lab", "scan", "nowhere"], {}, 2, "lab"),
    ("lab-state-of-unknown-kind", ["lab", "status"], {"labstate/": "", "labstate/state.json": '{"kind": "bogus"}'}, 2,
     "unknown lab kind 'bogus'"),
    ("lab-cluster-and-loopback", ["lab", "up", "--cluster", "--loopback"], {}, 2, "--cluster or --loopback"),
    ("lab-ruleset-without-lab", ["lab", "ruleset", "flannel"], {}, 2, "needs the segmented or the cluster lab"),
    ("lab-loopback-ruleset", ["lab", "up", "--loopback", "--ruleset", "isolated"], {}, 2,
     "--ruleset isolated: the loopback lab has no firewall"),
    ("lab-ruleset-of-another-lab", ["lab", "up", "--no-install", "--ruleset", "enforcing"], {}, 2,
     "--ruleset enforcing: the "),
    ("export-what", ["export", "bogus"], {}, 2, "bogus"),
    ("export-stock-missing", ["export", "nmap-probes", "--with-stock", "missing"], {}, 2, "missing"),
    ("export-output-folder-missing", ["export", "nmap-probes", "-o", "missing-dir/p"], {}, 2, "missing-dir"),
    ("no-command-option", ["--bogus"], {}, 2, "bogus"),
]


@pytest.fixture(scope="module")
def held_port():
    """A listening socket of the test's own: a case that wrongly scans can only reach it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


def snapshot(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def make_files(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        if name.endswith("/"):
            (folder / name).mkdir(parents=True)
        else:
            (folder / name).write_text(text, encoding="utf-8")


def run_case(folder: Path, argv: list[str], stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "NETAUDIT_STORE": str(folder / "store" / "history.sqlite"),
           "NETAUDIT_LAB_DIR": str(folder / "labstate"), "XDG_CACHE_HOME": str(folder / "cache")}
    return subprocess.run([*NETAUDIT, *argv], capture_output=True, text=True, cwd=folder, env=env, timeout=120,
                          input=stdin)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_mistake_is_one_line_its_exit_code_and_nothing_written(case, tmp_path, held_port):
    name, argv, files, code, word = case
    make_files(tmp_path, files)
    before = snapshot(tmp_path)
    argv = [a.replace("PORT", str(held_port)) for a in argv]
    proc = run_case(tmp_path, argv, stdin="not-an-address\n" if name == "scan-stdin-bad" else "")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert word in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert snapshot(tmp_path) == before  # no file created or changed, the history store included


def test_the_table_is_at_least_sixty_cases_over_every_command():
    assert len(CASES) >= 60
    assert {c[1][0] for c in CASES if c[1]} >= {"scan", "report", "convert", "history", "lab", "export"}


def test_history_of_a_store_that_does_not_exist_creates_nothing(tmp_path):
    proc = run_case(tmp_path, ["history", "--store", str(tmp_path / "none" / "h.sqlite")])
    assert proc.returncode == 0, proc.stderr
    assert "no runs" in proc.stdout
    assert not (tmp_path / "none").exists()


def test_convert_and_report_create_nothing_but_their_output(tmp_path):
    (tmp_path / "r.json").write_text(scan_json())
    for argv in (["convert", "r.json", "--format", "html", "-o", "out.html"],
                 ["report", "r.json", "--no-history", "-o", "rep.html"]):
        before = set(snapshot(tmp_path))
        proc = run_case(tmp_path, argv)
        assert proc.returncode in (0, 1), proc.stderr
        assert set(snapshot(tmp_path)) - before == {argv[-1]}


MUTATIONS = st.recursive(st.none() | st.booleans() | st.integers(-3, 70000) | st.text(max_size=8),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                     max_size=3), max_leaves=6)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths(value, (*prefix, index))


def mutate(data, document, where_choices: list[tuple]) -> tuple[tuple, object]:
    """Set one drawn place of `document` to one drawn value; (place, value) for the assertion message."""
    where = data.draw(st.sampled_from(where_choices))
    value = data.draw(MUTATIONS)
    node = document
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = value
    return where, value


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_report_and_convert_answer_0_to_3_for_any_mutated_scan_never_4(data, tmp_path_factory):
    """3 is a scan marked incomplete, which a mutation of `complete` makes it."""
    from netaudit.cli.main import main

    scan = json.loads(scan_json())
    where, value = mutate(data, scan, list(paths(scan))[1:])
    folder = tmp_path_factory.mktemp("mutated")
    (folder / "r.json").write_text(json.dumps(scan))
    for argv in (["report", str(folder / "r.json"), "--no-history", "--format", "text", "-o", str(folder / "o.txt")],
                 ["convert", str(folder / "r.json"), "--format", "html", "-o", str(folder / "o.html")]):
        assert main(argv) in (0, 1, 2, 3), (argv, where, value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_convert_answers_0_to_3_for_any_mutated_stream_never_4(data, tmp_path_factory):
    """A stream is checked line by line as it is read into the spool: any field of any line changed."""
    from netaudit.cli.main import main

    records = stream_records(json.loads(scan_json()))
    where, value = mutate(data, records, [p for p in paths(records) if len(p) > 1])
    folder = tmp_path_factory.mktemp("mutated")
    (folder / "r.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    for fmt in ("html", "json"):
        argv = ["convert", str(folder / "r.jsonl"), "--format", fmt, "-o", str(folder / f"o.{fmt}")]
        assert main(argv) in (0, 1, 2, 3), (argv, where, value)


@pytest.mark.parametrize("argv", [
    ["lab", "status"], ["k8s", "expect", str(TREE / "tests" / "k8s" / "tfjob-cluster.yaml")],
    ["convert", "r.json", "--format", "text"], ["--help"], []], ids=["lab", "k8s", "convert", "help", "bare"])
def test_a_reader_that_left_is_one_line_and_exit_5_never_an_internal_error(argv, tmp_path):
    """`netaudit … | head -1` where head is gone: the pipe's read end is closed before netaudit writes.
    Buffered, as in a user's shell (PYTHONUNBUFFERED would hide bytes left in the buffer at exit)."""
    (tmp_path / "r.json").write_text(scan_json())
    read, write = os.pipe()
    os.close(read)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
           "NETAUDIT_LAB_DIR": str(tmp_path / "labstate")}
    try:
        proc = subprocess.run([*NETAUDIT, *argv], stdout=write, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                              env=env, timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == 5, proc.stderr
    assert proc.stderr.strip().splitlines() == ["netaudit: error: cannot write standard output: Broken pipe"]


def test_the_state_a_dead_lab_of_another_kind_left_does_not_block_lab_up(tmp_path):
    """A cluster lab whose processes and namespaces are gone: `lab up --loopback` clears its state and goes on
    (here to the --ruleset check, which stops it before anything starts)."""
    state = tmp_path / "labstate"
    state.mkdir()
    (state / "state.json").write_text(json.dumps({"kind": "cluster", "processes": [], "endpoints": [],
                                                  "namespaces": [], "info": {}}))
    proc = run_case(tmp_path, ["lab", "up", "--loopback", "--ruleset", "flannel"])
    assert proc.returncode == 2 and "the loopback lab has no firewall" in proc.stderr, proc.stderr
    assert not state.exists()

"""Large sweeps: results streamed as JSON lines (and readable after an interrupt or a kill), and sweeps split
into shards whose union is the unsharded result. In a network namespace where every address of a /24 is
local and one real tf.distribute.Server answers on all of them."""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tf_everywhere

NETAUDIT = (sys.executable, "-m", "netaudit")
DROP_RULES = """
table inet netaudit_test {
    chain input {
        type filter hook input priority 0; policy accept;
        ip daddr 198.18.0.5 tcp dport 2222 drop
        ip daddr 198.18.0.9 tcp dport 2223 reject with icmp type admin-prohibited
    }
}
"""


@pytest.fixture(scope="module")
def tf_ns():
    with tf_everywhere(DROP_RULES) as ns:
        yield ns


def pairs(scan: dict) -> dict[tuple[str, int], tuple]:
    """Every probed (host, port) -> (state, reason, kind): listed endpoints and the port_states groups."""
    out = {}
    for ep in scan["endpoints"]:
        out[(ep["host"], ep["port"])] = (ep["state"], ep["details"]["discovery"]["reason"], ep["kind"])
    for group in scan["port_states"]:
        for net in group["hosts"]:
            for addr in ipaddress.ip_network(net):
                for port in group["ports"]:
                    key = (str(addr), port)
                    assert key not in out, f"{key} is in two places"
                    out[key] = (group["state"], group["reason"], None)
    return out


SWEEP = ("198.18.0.0/26", "-p", "2222,2223", "--timeout", "1", "--retries", "0", "--no-history")


@pytest.mark.parametrize("engine", ["syn", "connect"])
def test_union_of_shards_equals_the_unsharded_scan(tf_ns, tmp_path, engine):
    whole = tf_ns.run(*NETAUDIT, "scan", *SWEEP, "--engine", engine, "--format", "json", check=False)
    assert whole.returncode == 0, whole.stderr
    whole = json.loads(whole.stdout)
    expected = pairs(whole)
    assert len(expected) == 128
    assert sum(1 for state, _, kind in expected.values() if kind == "tf-server") == 63

    shards = []
    for k in (1, 2, 3):
        out = tmp_path / f"shard{k}.jsonl"
        proc = tf_ns.run(*NETAUDIT, "scan", *SWEEP, "--engine", engine, "--shard", f"{k}/3", "-o", str(out),
                         check=False)
        assert proc.returncode == 0, proc.stderr
        converted = subprocess.run([*NETAUDIT, "convert", str(out), "--format", "json"], capture_output=True,
                                   text=True, timeout=60)
        assert converted.returncode == 0, converted.stderr
        shards.append(json.loads(converted.stdout))
    seen = [pairs(s) for s in shards]
    assert all(20 < len(part) < 70 for part in seen), [len(p) for p in seen]  # an even spread, not one block each
    assert all(set(a).isdisjoint(b) for i, a in enumerate(seen) for b in seen[i + 1:])
    union = {k: v for part in seen for k, v in part.items()}
    assert union == expected
    assert shards[1]["options"]["shard"] == {"index": 2, "count": 3}
    assert sorted(f["id"] for s in shards for f in s["findings"]) == sorted(f["id"] for f in whole["findings"])

    # report merges the shards of one vantage into one column, equal to the report of the unsharded scan.
    (tmp_path / "whole.json").write_text(json.dumps(whole))
    merged = subprocess.run([*NETAUDIT, "report", *(str(tmp_path / f"shard{k}.jsonl") for k in (3, 1, 2)),
                             "--format", "json", "--no-history"], capture_output=True, text=True, timeout=60)
    assert merged.returncode == 0, merged.stderr
    single = subprocess.run([*NETAUDIT, "report", str(tmp_path / "whole.json"), "--format", "json", "--no-history"],
                            capture_output=True, text=True, timeout=60)
    merged, single = json.loads(merged.stdout), json.loads(single.stdout)
    assert len(merged["scans"]) == 1 and merged["complete"]
    assert merged["scans"][0]["shards"] == {"count": 3, "present": [1, 2, 3], "missing": [], "unfinished": []}

    def cells(report):
        return sorted((r["host"], r["port"], r["state"], r["reason"], r["kind"]) for r in report["reachability"])

    assert cells(merged) == cells(single) and len(cells(single)) == 63
    assert sorted(f["id"] for f in merged["findings"]) == sorted(f["id"] for f in single["findings"])

    # A missing shard: the merge says which, and is incomplete (exit 3).
    partial = subprocess.run([*NETAUDIT, "report", str(tmp_path / "shard1.jsonl"), str(tmp_path / "shard3.jsonl"),
                              "--format", "json", "--no-history"], capture_output=True, text=True, timeout=60)
    assert partial.returncode == 3
    assert "2 of 3 shards, missing 2/3" in partial.stderr
    data = json.loads(partial.stdout)
    assert not data["complete"] and data["scans"][0]["shards"]["missing"] == [2]


@pytest.mark.parametrize("engine", ["syn", "connect"])
def test_shards_of_a_24_regroup_their_port_states_into_the_groups_of_one_scan(tf_ns, tmp_path, engine):
    """One merge for a scan that ran in parts: the shards' hash-scattered groups become one scan's CIDRs."""
    from netaudit.policy.report import merge_shards
    from netaudit.results.load import load_scan

    sweep = ("198.18.0.0/24", "-p", "2223", "--timeout", "1", "--retries", "0", "--no-history", "--engine", engine)
    whole = tf_ns.run(*NETAUDIT, "scan", *sweep, "--format", "json", check=False)
    assert whole.returncode == 0, whole.stderr
    paths = []
    for k in (1, 2, 3, 4):
        out = tmp_path / f"part{k}.jsonl"
        proc = tf_ns.run(*NETAUDIT, "scan", *sweep, "--shard", f"{k}/4", "-o", str(out), check=False)
        assert proc.returncode == 0, proc.stderr
        paths.append(str(out))
    parts = [load_scan(p) for p in paths]
    merged, = merge_shards(parts)
    expected = json.loads(whole.stdout)["port_states"]
    assert merged["port_states"] == expected
    blocks = sum(len(g["hosts"]) for g in expected)
    # Each shard's addresses are hash-scattered: joined as they are, they would be many times the blocks.
    assert sum(len(g["hosts"]) for p in parts for g in p["port_states"]) > 10 * blocks, blocks


def test_shard_is_validated():
    for bad, why in (("0/4", "K must be between 1 and N"), ("5/4", "K must be between 1 and N"),
                     ("2", "expected K/N"), ("a/b", "expected K/N")):
        proc = subprocess.run([*NETAUDIT, "scan", "198.18.0.1", "--shard", bad], capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode == 2 and why in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([*NETAUDIT, "scan", "198.18.0.1", "--shard", "1/2", "--engine", "nmap"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "--shard needs --engine connect or syn" in proc.stderr


def test_stream_equals_the_json_result(tf_ns, tmp_path):
    """Also: four fingerprints at a time (the stream) find what the default 128 at a time do (the JSON)."""
    out = tmp_path / "scan.jsonl"
    proc = tf_ns.run(*NETAUDIT, "scan", *SWEEP, "--engine", "syn", "--all-states", "--probe-concurrency", "4",
                     "-o", str(out), check=False)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["schema"] == "netaudit/scan-stream-v1"
    assert lines[0]["options"]["probe_concurrency"] == 4
    assert lines[-1]["type"] == "trailer" and lines[-1]["complete"] is True
    assert lines[-1]["endpoints"] == len(lines) - 2 == 128
    tf = [line for line in lines[1:-1] if line["endpoint"]["kind"] == "tf-server"]
    assert len(tf) == 63 and all(line["findings"] for line in tf)  # each endpoint carries its own findings
    closed = next(line["endpoint"] for line in lines[1:-1] if line["endpoint"]["host"] == "198.18.0.9"
                  and line["endpoint"]["port"] == 2223)
    assert closed["state"] == "filtered" and "answered_by" in closed["details"]["discovery"]
    converted = json.loads(subprocess.run([*NETAUDIT, "convert", str(out), "--format", "json"],
                                          capture_output=True, text=True, timeout=60).stdout)
    whole = json.loads(tf_ns.run(*NETAUDIT, "scan", *SWEEP, "--engine", "syn", "--all-states",
                                 "--format", "json").stdout)
    assert whole["options"]["probe_concurrency"] == 128 and pairs(converted) == pairs(whole)
    assert converted["complete"] and sorted(f["id"] for f in converted["findings"]) == sorted(
        f["id"] for f in whole["findings"])


@pytest.mark.parametrize("engine", ["syn", "connect"])
def test_workers_give_the_single_process_result(tf_ns, tmp_path, engine):
    """scan --workers 3: three processes, one result equal to one process's, as JSON and as one stream."""
    whole = json.loads(tf_ns.run(*NETAUDIT, "scan", *SWEEP, "--engine", engine, "--all-states",
                                 "--format", "json").stdout)
    split = tf_ns.run(*NETAUDIT, "scan", *SWEEP, "--engine", engine, "--all-states", "--workers", "3",
                      "--format", "json", check=False)
    assert split.returncode == 0, split.stderr
    split = json.loads(split.stdout)
    assert split["complete"] and pairs(split) == pairs(whole) and len(pairs(whole)) == 128
    assert sorted(f["id"] for f in split["findings"]) == sorted(f["id"] for f in whole["findings"])
    assert split["stats"]["states"] == whole["stats"]["states"] and split["stats"]["probes"] == 128
    assert (split["options"]["workers"], split["options"]["probe_concurrency"]) == (3, 128)
    assert "worker" not in split["options"]

    out = tmp_path / "scan.jsonl"
    proc = tf_ns.run(*NETAUDIT, "scan", *SWEEP, "--engine", engine, "--workers", "3", "-o", str(out), check=False)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["type"] for r in lines].count("header") == 1 and lines[0]["type"] == "header"
    assert lines[-1]["type"] == "trailer" and lines[-1]["complete"] is True
    assert lines[-1]["endpoints"] == len(lines) - 2 and lines[-1]["findings"] == len(whole["findings"])
    hosts = {r["endpoint"]["host"] for r in lines[1:-1] if r["endpoint"]["kind"] == "tf-server"}
    assert len(hosts) == 63


def test_workers_of_a_large_sweep_finish_it(tf_ns):
    """8192 probes: one process forks its connect sweep; a worker (4096 probes) sweeps with its share of the
    cores (here, in its own process; on four cores or more, in sweep processes it forks itself)."""
    proc = tf_ns.run(*NETAUDIT, "scan", "198.18.0.0/24", "-p", "2222,3000-3030", "--engine", "connect",
                     "--timeout", "1", "--retries", "0", "--no-history", "--workers", "2", "--format", "json",
                     check=False)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["complete"] and data["stats"]["probes"] == 8192
    assert sum(1 for e in data["endpoints"] if e["kind"] == "tf-server") == 255  # .5 drops port 2222


def test_workers_streams_give_back_what_was_copied(tf_ns, tmp_path):
    """A worker's stream is a file without a name; what the parent has copied out of it is punched out, so
    a long sweep does not hold its output twice (in memory, where /tmp is a tmpfs)."""
    import os

    out = tmp_path / "scan.jsonl"
    proc = tf_ns.popen(*NETAUDIT, "scan", "198.18.0.0/24", "-p", "2222", "--engine", "connect", "--rate", "40",
                       "--timeout", "1", "--no-history", "--workers", "2", "-o", str(out),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[str, tuple[int, int]] = {}  # worker file -> (size, bytes allocated), the largest size seen
    try:
        while proc.poll() is None:
            for fd in os.scandir(f"/proc/{proc.pid}/fd"):
                try:
                    target, stat = os.readlink(fd.path), os.stat(fd.path)
                except OSError:
                    continue
                if target.endswith("(deleted)") and stat.st_size > seen.get(target, (0, 0))[0]:
                    seen[target] = (stat.st_size, stat.st_blocks * 512)
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == 0
    streams = {name: sizes for name, sizes in seen.items() if not name.startswith("/dev/shm/")}  # not the counts
    assert len(streams) == 2 and all(size > 700_000 for size, _ in streams.values()), seen
    assert all(allocated < size // 2 for size, allocated in streams.values()), seen
    assert json.loads(out.read_text().splitlines()[-1])["endpoints"] == 255  # .5 drops port 2222


def test_workers_stop_and_go_on_with_their_parent(tf_ns, tmp_path):
    """Ctrl-Z (SIGTSTP) reaches the parent alone; its workers stop with it, and SIGCONT takes them all on."""
    import os

    out = tmp_path / "scan.jsonl"
    proc = tf_ns.popen(*NETAUDIT, "scan", "198.18.0.0/24", "-p", "2222", "--engine", "connect", "--rate", "40",
                       "--timeout", "1", "--no-history", "--workers", "2", "-o", str(out),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def state(pid: int) -> tuple[str, int]:  # (state letter, parent pid) from /proc/PID/stat
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:  # it has ended
            return "", 0
        return fields[0], int(fields[1])

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 6):
            time.sleep(0.1)
        proc.send_signal(signal.SIGTSTP)
        stopped_by = time.monotonic() + 10  # the stop takes effect when the parent runs its handler: poll
        while time.monotonic() < stopped_by and state(proc.pid)[0] != "T":
            time.sleep(0.1)
        time.sleep(0.5)
        workers = [int(p) for p in os.listdir("/proc") if p.isdigit() and state(int(p))[1] == proc.pid]
        assert len(workers) == 2 and state(proc.pid)[0] == "T"
        assert all(state(pid)[0] == "T" for pid in workers)
        written = out.read_text()
        time.sleep(1)
        assert out.read_text() == written  # nothing moves while stopped
        proc.send_signal(signal.SIGCONT)
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        proc.wait(10)
    assert json.loads(out.read_text().splitlines()[-1])["endpoints"] == 255  # .5 drops port 2222


def test_workers_are_validated():
    for args, why in ((("--workers", "0"), "must be at least 1"), (("--workers", "65"), "more than 64"),
                      (("--workers", "2", "--engine", "nmap"), "--workers needs --engine connect or syn")):
        proc = subprocess.run([*NETAUDIT, "scan", "198.18.0.1", *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and why in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_interrupted_workers_leave_a_readable_stream_and_no_process(tf_ns, tmp_path, how):
    """At 10 connections a second the /24 takes 25 s. SIGINT to the parent reaches each worker once, each
    writes its trailer, and the one stream ends incomplete. SIGKILL to the parent: the kernel tells the
    workers, and they stop too."""
    from netaudit.lab.netns import netns_pids

    before = set(netns_pids(tf_ns.name))
    out = tmp_path / "scan.jsonl"
    with (tmp_path / "stderr").open("w") as err:  # a file, not a pipe a worker could hold open
        proc = tf_ns.popen(*NETAUDIT, "scan", "198.18.0.0/24", "-p", "2222", "--engine", "connect", "--rate", "10",
                           "--timeout", "1", "--no-history", "--workers", "2", "-o", str(out),
                           stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 6):
            time.sleep(0.1)
        proc.send_signal(getattr(signal, how))
        proc.wait(60)
    finally:
        proc.kill()
        proc.wait(10)
    stderr = (tmp_path / "stderr").read_text()
    deadline = time.monotonic() + 10  # the unstopped scan would take 25 s more
    while time.monotonic() < deadline and set(netns_pids(tf_ns.name)) - before:
        time.sleep(0.1)
    assert not set(netns_pids(tf_ns.name)) - before, "a worker outlived its parent"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    written = [r for r in records if r["type"] == "endpoint"]
    assert 5 <= len(written) < 256 and records[0]["type"] == "header"
    if how == "SIGINT":
        assert proc.returncode == 3, stderr
        assert "interrupted by SIGINT" in stderr and "Traceback" not in stderr
        assert records[-1]["type"] == "trailer" and records[-1]["complete"] is False
        assert records[-1]["stats"]["incomplete_reason"] == "interrupted by SIGINT"
        assert records[-1]["endpoints"] == len(written)
    else:
        assert proc.returncode == -signal.SIGKILL and records[-1]["type"] == "endpoint"


@pytest.mark.parametrize("engine", ["syn", "connect"])
def test_workers_fold_unlisted_ports_as_one_process(tf_ns, engine):
    """A swept range's closed and filtered ports are folded into port_states groups of address ranges. Each
    worker's hosts are scattered over the range by the hash, so its groups are fragments; the result holds
    the groups one process writes, not one set of fragments per worker."""
    args = ("scan", "198.18.0.0/24", "-p", "2223", "--engine", engine, "--timeout", "1", "--retries", "0",
            "--no-history", "--format", "json")
    whole = json.loads(tf_ns.run(*NETAUDIT, *args).stdout)
    split = tf_ns.run(*NETAUDIT, *args, "--workers", "3", check=False)
    assert split.returncode == 0, split.stderr
    split = json.loads(split.stdout)
    assert pairs(split) == pairs(whole) and len(pairs(whole)) == 256
    assert split["port_states"] == whole["port_states"]


def test_interrupt_while_workers_start(tf_ns, tmp_path):
    """SIGINT while the parent is still forking its workers: each worker started after it is stopped at
    once, quietly, and the stream ends with a trailer saying it was interrupted."""
    from netaudit.lab.netns import netns_pids

    before = set(netns_pids(tf_ns.name))
    out = tmp_path / "scan.jsonl"
    with (tmp_path / "stderr").open("w") as err:
        proc = tf_ns.popen(*NETAUDIT, "scan", "198.18.0.0/24", "-p", "2222", "--engine", "connect", "--rate", "10",
                           "--timeout", "1", "--no-history", "--workers", "64", "-o", str(out),
                           stdout=subprocess.DEVNULL, stderr=err)
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")  # ip netns exec execs netaudit
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not children.read_text().split():
            time.sleep(0.001)
        proc.send_signal(signal.SIGINT)  # the first worker is forked, 63 are still to come
        proc.wait(60)
    finally:
        proc.kill()
        proc.wait(10)
    stderr = (tmp_path / "stderr").read_text()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and set(netns_pids(tf_ns.name)) - before:
        time.sleep(0.1)
    assert not set(netns_pids(tf_ns.name)) - before, "a worker outlived its parent"
    assert proc.returncode == 3 and "Traceback" not in stderr, stderr
    trailer = json.loads(out.read_text().splitlines()[-1])
    assert trailer["type"] == "trailer" and trailer["complete"] is False
    assert trailer["stats"]["incomplete_reason"] == "interrupted by SIGINT"


WORKER_FAILS = """
import io
from netaudit.scanner.scan import ScanOptions
from netaudit.results.stream import StreamWriter
from netaudit.targets.parse import build_targets
from netaudit.scanner.workers import WorkerError, run_workers

try:
    run_workers(build_targets(["198.18.0.1-8", "fd00::1"], ports="2222"), ScanOptions(engine="syn", timeout=1), 2,
                StreamWriter(io.StringIO()))
except WorkerError as exc:
    print(exc)
"""


def test_a_failing_worker_fails_the_scan_as_one_process_would(tf_ns, tmp_path):
    """An error inside a worker ends the scan as it ends one process (no traceback, and not a result marked
    incomplete as if the scan had merely been cut short). The command line refuses the SYN engine with an
    IPv6 target before anything is sent (exit 2, one line); through the library the engine's own check is
    met inside the worker that holds the IPv6 host, and the parent raises it."""
    args = ("scan", "198.18.0.1-8", "fd00::1", "-p", "2222", "--engine", "syn", "--timeout", "1", "--no-history")
    out = tmp_path / "scan.jsonl"
    for output in (("--format", "json"), ("--format", "json", "--workers", "2"), ("-o", str(out), "--workers", "2")):
        proc = tf_ns.run(*NETAUDIT, *args, *output, check=False)
        assert proc.returncode == 2 and "scans IPv4 only" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    proc = tf_ns.run(sys.executable, "-c", WORKER_FAILS, check=False)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.startswith("ValueError in worker ") and "scans IPv4 only" in proc.stdout, proc.stdout


def test_workers_draw_on_a_terminal_that_stops_background_writers(tf_ns, tmp_path):
    """Workers run in process groups of their own (a terminal's Ctrl-C reaches the parent alone), so to the
    terminal they are background jobs. With `stty tostop` the kernel stops a background job that writes to
    it (SIGTTOU); a worker's "found" line must not stop the worker, and with it the scan, for good."""
    import fcntl
    import os
    import pty
    import termios

    from netaudit.lab.netns import netns_pids

    before = set(netns_pids(tf_ns.name))
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[3] |= termios.TOSTOP
    termios.tcsetattr(slave, termios.TCSANOW, attrs)

    def own_terminal() -> None:  # netaudit as a login shell starts a job: a session, the pty its terminal
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    out = tmp_path / "scan.json"
    proc = tf_ns.popen(*NETAUDIT, "scan", "198.18.0.0/28", "-p", "2222", "--engine", "connect", "--timeout", "1",
                       "--no-history", "--workers", "2", "-o", str(out), stdin=slave, stdout=slave, stderr=slave,
                       preexec_fn=own_terminal)
    os.close(slave)
    os.set_blocking(master, False)
    shown = b""
    try:
        deadline = time.monotonic() + 30  # the scan takes two seconds
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                shown += os.read(master, 1 << 16)
            except (BlockingIOError, OSError):
                time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(10)
        os.close(master)
        for pid in set(netns_pids(tf_ns.name)) - before:  # stopped workers take no SIGTERM
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, shown.decode(errors="replace")[-500:]
    assert b"found tf-server at 198.18.0.1:2222" in shown
    assert sum(1 for e in json.loads(out.read_text())["endpoints"] if e["kind"] == "tf-server") == 15  # .5 drops


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_interrupted_stream_is_readable_and_marked_incomplete(tf_ns, tmp_path, how):
    """At 25 connections a second the /24 takes ten seconds: stop it once endpoints are on disk."""
    out = tmp_path / "scan.jsonl"
    proc = tf_ns.popen(*NETAUDIT, "scan", "198.18.0.0/24", "-p", "2222", "--engine", "connect", "--rate", "25",
                       "--timeout", "1", "--no-history", "--format", "jsonl", "-o", str(out),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 6):
            time.sleep(0.1)
        proc.send_signal(getattr(signal, how))
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait(10)
    lines = out.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line written is whole JSON
    written = [r for r in records if r["type"] == "endpoint"]
    assert 5 <= len(written) < 256
    # Finished endpoints are TF servers with findings; one still being fingerprinted when the signal came
    # is written too, saying where it stopped.
    unfinished = [r["endpoint"] for r in written if r["endpoint"]["kind"] != "tf-server"]
    assert all(r["findings"] for r in written if r["endpoint"]["kind"] == "tf-server") and len(unfinished) <= 2
    if how != "SIGKILL":
        assert all(e["details"]["probe_error"]["error"] == "CancelledError" for e in unfinished), unfinished
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL and records[-1]["type"] == "endpoint"  # no trailer
    else:
        assert proc.returncode == 3, stderr
        assert f"interrupted by {how}" in stderr
        assert records[-1]["type"] == "trailer" and records[-1]["complete"] is False
        assert records[-1]["stats"]["incomplete_reason"] == f"interrupted by {how}"
    converted = subprocess.run([*NETAUDIT, "convert", str(out), "--format", "json"], capture_output=True, text=True,
                               timeout=60)
    assert converted.returncode == 3  # incomplete: exit code 3 (README, Exit codes)
    data = json.loads(converted.stdout)
    assert data["complete"] is False and len(data["endpoints"]) == len(written)
    assert len(data["findings"]) == sum(len(r["findings"]) for r in written)
    if how == "SIGKILL":
        assert data["stats"]["incomplete_reason"].startswith("the stream ends without a trailer")
    report = subprocess.run([*NETAUDIT, "report", str(out), "--format", "text", "--no-history"], capture_output=True,
                            text=True, timeout=60)
    assert report.returncode == 3 and "INCOMPLETE" in report.stdout


def test_indexed_job_manifest_is_valid_and_shards_by_completion_index(tmp_path):
    """The Kubernetes example passes the API schema (strict: no unknown field), and each pod's shell line
    expands, for its JOB_COMPLETION_INDEX, to a scan of its own shard that the real CLI parses."""
    from pathlib import Path

    import kubernetes_validate
    import yaml

    from netaudit.cli.parser import build_parser

    manifest = Path(__file__).resolve().parents[1] / "docs" / "scheduling" / "kubernetes-indexed-job.yaml"
    job = next(yaml.safe_load_all(manifest.read_text()))  # the sweep; the merge Job follows it
    kubernetes_validate.validate(job, kubernetes_validate.latest_version(), strict=True)
    typo = {**job, "spec": {**job["spec"], "completionMod": "Indexed"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, kubernetes_validate.latest_version(), strict=True)
    assert job["spec"]["completionMode"] == "Indexed"
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["SHARDS"]) == job["spec"]["completions"]
    script = " ".join(container["args"]).replace("exec netaudit", "printf '%s\\n'").replace("/results",
                                                                                            str(tmp_path))
    outputs = set()
    for index in range(job["spec"]["completions"]):
        proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10,
                              env={**env, "JOB_COMPLETION_INDEX": str(index), "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
        args = build_parser().parse_args(proc.stdout.splitlines())
        assert (args.command, args.shard, args.format) == ("scan", f"{index + 1}/{env['SHARDS']}", "jsonl")
        assert args.output.startswith(str(tmp_path / env["RUN"]))
        outputs.add(args.output)
    assert len(outputs) == job["spec"]["completions"]  # one file per shard

"""Target, port and scope parsing, and the CLI's answer to bad input: one line, exit 2, nothing sent."""

from __future__ import annotations

import io
import ipaddress
import json
import socket

import pytest

from netaudit.core.errors import UsageError
from netaudit.targets.parse import build_targets, named_port_sets, parse_ports

from conftest import run_cli


def pairs(targets):
    return [(host, port) for host, port, _ in targets.probes()]


def test_every_target_form(tmp_path):
    tf_config = tmp_path / "tf.json"
    tf_config.write_text(json.dumps({"cluster": {"chief": ["127.0.0.1:2300"], "worker": ["127.0.0.1:2301", "localhost:2302"]},
                                     "task": {"type": "worker", "index": 0}}))
    targets = build_targets(["198.18.1.10", "198.18.2.0/30", "198.18.3.10-12", "198.18.4.1:2222", "localhost",
                             f"tf-config:{tf_config}", "[::1]:8500", "198.18.5.1-198.18.5.2"], ports="2222,8500")
    got = pairs(targets)
    assert got[:2] == [("198.18.1.10", 2222), ("198.18.1.10", 8500)]
    assert ("198.18.2.1", 2222) in got and ("198.18.2.2", 8500) in got
    assert ("198.18.2.0", 2222) in got and ("198.18.2.3", 2222) in got  # every address, as nmap does
    assert [h for h, p in got if h.startswith("198.18.3.") and p == 2222] == ["198.18.3.10", "198.18.3.11", "198.18.3.12"]
    assert ("198.18.4.1", 2222) in got and ("198.18.4.1", 8500) not in got  # host:port means that port only
    assert ("127.0.0.1", 2222) in got  # localhost resolved
    assert [(h, p) for h, p in got if p in (2300, 2301, 2302)] == [("127.0.0.1", 2300), ("127.0.0.1", 2301), ("127.0.0.1", 2302)]
    assert ("::1", 8500) in got
    assert ("198.18.5.2", 8500) in got
    assert targets.probe_count() == len(got)
    names = {b.spec: b.name for b in targets.blocks}
    assert names["127.0.0.1:2300"] == "chief:0" and names["localhost:2302"] == "worker:1"


def test_cluster_spec_without_tf_config_wrapper_and_stdin(tmp_path):
    spec = tmp_path / "cluster.json"
    spec.write_text(json.dumps({"ps": {"0": "198.18.9.1:2222"}, "worker": ["198.18.9.2:2222"]}))
    targets = build_targets(["-"], stdin=io.StringIO(f"# lab\n198.18.9.3:2222\n\ntf-config:{spec}\n"))
    assert pairs(targets) == [("198.18.9.3", 2222), ("198.18.9.1", 2222), ("198.18.9.2", 2222)]


def test_named_tf_port_set_covers_the_reference_ports():
    tf = set(named_port_sets()["tf"])
    # TF's own (docs/wire-facts.md §1.4, §2.2), TensorBoard's, and the inference servers' (docs/wire-facts.md §6).
    assert {2222, 2223, 2224, 2225, 2226, 8470, 8888, 12345, 23456, 8500, 8501, 9000, 6006, 8000, 8001, 8080,
            8081} == tf
    assert parse_ports("tf,1-3") == tuple(sorted(tf | {1, 2, 3}))


@pytest.mark.parametrize("args, message", [
    (["198.18.1.0/33"], "bad CIDR '198.18.1.0/33'"),
    (["198.18.1.1", "-p", "70000"], "port 70000"),
    (["198.18.1.1", "-p", "2222,x"], "bad port 'x'"),
    (["198.18.1.1", "-p", "9-3"], "runs backwards"),
    (["tf-config:/nonexistent/tf.json"], "cannot read TF_CONFIG /nonexistent/tf.json"),
    ([], "no targets given"),
    (["10.0.0.0/15"], "more than a /16"),
    (["198.18.1.1-0"], "the end comes before the start"),
    (["no-such-host.invalid"], "cannot resolve 'no-such-host.invalid'"),
    (["198.18.1.1", "--scope", "nonsense"], "bad --scope entry"),
    (["198.18.1.1", "--timeout", "0"], "must be greater than 0"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = run_cli("scan", *args, stdin="")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""


def test_bad_tf_config_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = run_cli("scan", f"tf-config:{bad}")
    assert proc.returncode == 2 and "is not valid JSON" in proc.stderr
    bad.write_text(json.dumps({"cluster": {"worker": ["no-port-here"]}}))
    proc = run_cli("scan", f"tf-config:{bad}")
    assert proc.returncode == 2 and "is not host:port" in proc.stderr


def test_large_range_is_allowed_with_an_explicit_scope():
    targets = build_targets(["198.18.0.0/15"], ports="2222", scope="198.18.0.0/15")
    assert targets.address_count() == 1 << 17


def test_out_of_scope_target_is_refused_before_any_packet():
    """A listener of our own is the target; with the scope elsewhere it must never see a connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        proc = run_cli("scan", f"127.0.0.1:{port}", "198.18.1.1", "--scope", "198.18.0.0/15")
        assert proc.returncode == 2
        assert f"target '127.0.0.1:{port}' (127.0.0.1/32) is outside --scope 198.18.0.0/15" in proc.stderr
        with pytest.raises(TimeoutError):
            listener.accept()


def test_scope_accepts_targets_inside_it():
    build_targets(["198.18.1.0/24", "198.18.2.5-9", "198.18.3.3:2222"], scope="198.18.0.0/15")
    with pytest.raises(UsageError, match="outside --scope"):
        build_targets(["198.18.0.0/14"], scope="198.18.0.0/15")


def test_workers_split_hosts_whole_and_shards_split_pairs():
    """--workers gives every port of a host to one worker; --shard spreads a host's ports; both partition."""
    from dataclasses import replace

    targets = build_targets(["198.18.0.0/26"], ports="2222,8500,8501")
    every = set((h, p) for h, p, _ in targets.probes())
    parts = [set((h, p) for h, p, _ in replace(targets, worker=(k, 3)).probes()) for k in (1, 2, 3)]
    assert set().union(*parts) == every and sum(map(len, parts)) == len(every) == 192
    assert all(len(part) == replace(targets, worker=(k + 1, 3)).probe_count() for k, part in enumerate(parts))
    owner = {}
    for k, part in enumerate(parts):
        for host, _ in part:
            assert owner.setdefault(host, k) == k, f"{host} is split across workers"
    assert all(10 * 3 < len(part) < 35 * 3 for part in parts), [len(p) for p in parts]
    sharded = [set((h, p) for h, p, _ in replace(targets, shard=(k, 3)).probes()) for k in (1, 2, 3)]
    assert set().union(*sharded) == every
    assert any(len({k for k, part in enumerate(sharded) for h, _ in part if h == host}) > 1
               for host in {h for h, _ in every})


def test_each_target_and_pair_is_counted_once():
    """Repeated targets, stdin lines given twice and overlapping CIDRs are merged before discovery."""
    once = build_targets(["127.0.0.1:2222", "127.0.0.1:2222"], ports="2222")
    assert once.probe_count() == 1 and len(once.blocks) == 1
    assert build_targets(["127.0.0.1:2222", "127.0.0.1"], ports="2222,8500").probe_count() == 2
    nested = build_targets(["198.18.0.0/24", "198.18.0.0/25", "198.18.0.128/26", "198.18.1.0/30"], ports="2222")
    assert nested.probe_count() == 260 and [b.spec for b in nested.blocks] == ["198.18.0.0/24", "198.18.1.0/30"]
    inside = build_targets(["198.18.0.5", "198.18.0.0/24"], ports="2222,8500")
    assert inside.probe_count() == 512
    assert sorted(str(h) for h, _, _ in inside.probes()) == sorted(
        str(a) for a in ipaddress.ip_network("198.18.0.0/24") for _ in range(2))
    lines = build_targets(["-"], ports="2222", stdin=io.StringIO("198.18.0.7\n198.18.0.7\n198.18.0.6/31\n"))
    assert lines.probe_count() == 2


def test_a_repeated_target_is_one_port_probed():
    with socket.socket() as listener:  # the test's own port: the scan reaches nothing else
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        proc = run_cli("scan", f"127.0.0.1:{port}", f"127.0.0.1:{port}", "--engine", "connect", "--no-history",
                       "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["stats"]["probes"] == 1 and len(data["endpoints"]) == 1

"""The connect engine in a network namespace where a whole /28 answers: open, closed and undetermined."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from conftest import tf_everywhere

DROP_RULES = """
table inet netaudit_test {
    chain input {
        type filter hook input priority 0; policy accept;
        ip daddr 198.18.0.5 tcp dport 2222 drop
    }
}
"""


@pytest.fixture
def sweep_ns():
    with tf_everywhere(DROP_RULES) as ns:
        yield ns


def test_cidr_sweep_states_and_fingerprints(sweep_ns):
    proc = sweep_ns.run(sys.executable, "-m", "netaudit", "scan", "198.18.0.0/28", "-p", "2222,2223",
                        "--engine", "connect", "--all-states", "--timeout", "1", "--retries", "1", "--format", "json")
    data = json.loads(proc.stdout)
    states = {(e["host"], e["port"]): e["state"] for e in data["endpoints"]}
    hosts = [f"198.18.0.{i}" for i in range(16)]
    assert len(states) == 32
    for host in hosts:
        assert states[(host, 2223)] == "closed"
        assert states[(host, 2222)] == ("undetermined" if host == "198.18.0.5" else "open")
    dropped = next(e for e in data["endpoints"] if e["host"] == "198.18.0.5" and e["port"] == 2222)
    assert dropped["evidence"] == ["TCP connect() to 198.18.0.5 port 2222: no reply (no reply within 1s)"]
    assert data["stats"]["retried"] == 1 and data["stats"]["states"] == {"open": 15, "closed": 16, "undetermined": 1}
    tf = [e for e in data["endpoints"] if e["kind"] == "tf-server"]
    assert len(tf) == 15 and all(e["details"]["job"] == "worker" and e["details"]["task"] == 0 for e in tf)


def test_without_all_states_only_open_ports_of_a_sweep_are_listed(sweep_ns):
    proc = sweep_ns.run(sys.executable, "-m", "netaudit", "scan", "198.18.0.1-3", "-p", "2222,2223",
                        "--engine", "connect", "--format", "json")
    data = json.loads(proc.stdout)
    assert [(e["host"], e["port"], e["state"]) for e in data["endpoints"]] == [
        (f"198.18.0.{i}", 2222, "open") for i in (1, 2, 3)]
    assert data["stats"]["states"] == {"open": 3, "closed": 3}
    # The closed ports are not listed, but their verdict is kept, compactly.
    assert data["port_states"] == [{"state": "closed", "reason": "reset", "ttl": None, "responder": None,
                                    "ports": [2223], "hosts": ["198.18.0.1/32", "198.18.0.2/31"], "count": 3}]


def test_root_defaults_to_the_syn_engine_and_says_so(sweep_ns):
    """As nmap does: raw SYNs when privileged, so a drop is `filtered`, not `undetermined`."""
    proc = sweep_ns.run(sys.executable, "-m", "netaudit", "scan", "198.18.0.5", "-p", "2222,2223", "--timeout", "1",
                        "--format", "json")
    data = json.loads(proc.stdout)
    assert (data["options"]["engine"], data["options"]["engine_reason"]) == (
        "syn", "CAP_NET_RAW on IPv4: raw SYN scan, as nmap -sS (--engine connect to override)")
    cells = {e["port"]: (e["state"], e["details"]["discovery"]["reason"]) for e in data["endpoints"]}
    assert cells == {2222: ("filtered", "no-response"), 2223: ("closed", "reset")}


def test_root_without_cap_net_raw_defaults_to_connect_and_refuses_syn_in_one_line(sweep_ns):
    """The usual container: uid 0 without CAP_NET_RAW. The capability decides the engine, not the uid."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    drop = ("setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw")
    proc = sweep_ns.run(*drop, sys.executable, "-m", "netaudit", "scan", "198.18.0.5", "-p", "2222,2223",
                        "--timeout", "1", "--format", "json", check=False)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["options"]["engine"] == "connect" and "no CAP_NET_RAW" in data["options"]["engine_reason"]
    cells = {e["port"]: e["state"] for e in data["endpoints"]}
    assert cells == {2222: "undetermined", 2223: "closed"}
    syn = sweep_ns.run(*drop, sys.executable, "-m", "netaudit", "scan", "198.18.0.5", "-p", "2222", "--engine", "syn",
                       check=False)
    assert syn.returncode == 2 and len(syn.stderr.strip().splitlines()) == 1 and "CAP_NET_RAW" in syn.stderr


def test_rate_limit_spaces_connections(sweep_ns):
    proc = sweep_ns.run(sys.executable, "-m", "netaudit", "scan", "198.18.0.0/28", "-p", "2223", "--rate", "20",
                        "--engine", "connect", "--format", "json")
    data = json.loads(proc.stdout)
    assert data["stats"]["states"] == {"closed": 16}
    assert data["stats"]["discovery_seconds"] >= 15 / 20

"""Scanning the real loopback lab: exact jobs, tasks, devices, services and findings; decoys stay decoys."""

from __future__ import annotations

import pytest

from netaudit.probes.tf_runtime import grpc as tf_runtime
from netaudit.transport.transcript import call_sentence

PLAIN_SERVICES = ["tensorflow.WorkerService", "tensorflow.eager.EagerService", "tensorflow.CoordinationService",
                  "tensorflow.ProfilerService", "tensorflow.MasterService"]


def by_port(result):
    return {e.port: e for e in result.endpoints}


def plain_tf(lab):
    """The TF servers themselves, not the TLS proxies in front of some of them (test_transport.py)."""
    return [e for e in lab.endpoints if e.kind == "tf-server" and e.name.split("/")[0] in ("train", "mwms")]


def test_scan_is_complete_and_finds_every_lab_endpoint(lab, lab_scan):
    assert lab_scan.complete
    assert sorted(by_port(lab_scan)) == sorted(e.port for e in lab.endpoints)
    assert all(e.state == "open" for e in lab_scan.endpoints)


def test_tf_servers_are_identified_exactly(lab, lab_scan):
    import tensorflow as tf

    installed = ".".join(tf.__version__.split(".")[:2])
    found = by_port(lab_scan)
    tf_endpoints = plain_tf(lab)
    assert len(tf_endpoints) == 6
    for expected in tf_endpoints:
        ep = found[expected.port]
        assert (ep.kind, ep.transport, ep.authenticated) == ("tf-server", "plaintext", False), expected.name
        assert ep.services == PLAIN_SERVICES
        assert (ep.details["job"], ep.details["task"]) == (expected.job, expected.task)
        assert [(d["name"], d["device_type"]) for d in ep.details["devices"]] == [
            (f"/job:{expected.job}/replica:0/task:{expected.task}/device:CPU:0", "CPU")]
        assert ep.details["devices"][0]["memory_limit"] > 0
        version = ep.details["tf_version"]
        assert version["min"] == installed and version["range"] == f">= {installed}"
        # Every call is one record in the transcript; evidence cites the call that proves "no authentication".
        [channel] = ep.details["transcript"]
        assert (channel["transport"], channel["credentials"]) == ("plaintext h2c", "no credentials")
        assert sum(call.get("tries", 1) for call in channel["calls"]) == ep.details["rpc_calls"]
        # Named tf-server (sole_grpc_service): no other family's probe is sent after it.
        assert {c["method"].split("/")[1] for c in channel["calls"]} <= set(PLAIN_SERVICES)
        status = next(c for c in channel["calls"] if c["method"] == "/tensorflow.WorkerService/GetStatus")
        assert (status["request"], status["code"]) == ("empty", "OK") and status["size"] > 0
        assert call_sentence(status, channel) in ep.evidence
        # Only the calls a verdict rests on are sentences in evidence; the version markers stay records.
        cited = [line for line in ep.evidence if line.startswith("-> ")]
        assert 0 < len(cited) <= len(tf_runtime.SIGNATURES)
        assert not any(marker in line for marker in tf_runtime.version_markers() for line in cited)
        leader = ep.details.get("coordination")
        if expected.coordination_leader:
            assert leader == "leader" and "this task is the coordination leader" in "\n".join(ep.evidence)
        else:
            assert leader == "registered"


def test_findings_for_tf_servers(lab, lab_scan):
    tf_ports = {e.port for e in plain_tf(lab)}
    leader = {e.port for e in lab.endpoints if e.coordination_leader}
    critical = [f for f in lab_scan.findings if f.severity == "critical" and f.port in tf_ports]
    assert {f.port for f in critical} == tf_ports and len(critical) == len(tf_ports)
    for f in critical:
        assert f.rule == "tf-server-unauthenticated-plaintext"
        assert any("/tensorflow.WorkerService/GetStatus (empty request, no credentials, plaintext h2c) <- OK" in line
                   for line in f.evidence)
        assert "isolate the cluster network" in f.remediation and "VPC" in f.remediation
        assert "SC-7" in f.compliance["NIST SP 800-53 r5"]
    high = [f for f in lab_scan.findings if f.severity == "high" and f.port in tf_ports]
    assert [(f.rule, f.port) for f in high] == [("tf-coordination-service-exposed", p) for p in leader]
    ids = [f.id for f in lab_scan.findings]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("decoy", ["grpc", "http", "tls", "banner", "silent"])
def test_decoys_are_reported_as_what_they_are(lab, lab_scan, decoy):
    expected = next(e for e in lab.endpoints if e.name == f"decoy/{decoy}")
    ep = by_port(lab_scan)[expected.port]
    assert ep.kind == expected.kind
    assert not [f for f in lab_scan.findings if f.port == expected.port]
    detail = {
        "grpc": lambda: ep.details["reflection_services"] == ["grpc.health.v1.Health",
                                                              "grpc.reflection.v1alpha.ServerReflection"]
        and ep.details["health"] == "SERVING" and ep.transport == "plaintext",
        "http": lambda: ep.details["http_status"] == "HTTP/1.0 404 Not Found" and ep.transport == "plaintext",
        "tls": lambda: ep.details["tls"]["version"] == "TLSv1.3" and ep.transport == "tls",
        "banner": lambda: ep.details["banner"].startswith("220 decoy.lab ESMTP"),
        "silent": lambda: ep.details["protocol"] == "silent" and "sent nothing" in ep.evidence[-1],
    }[decoy]
    assert detail(), ep


def test_the_scanner_never_imports_tensorflow(lab):
    import subprocess
    import sys

    code = ("import sys; from netaudit.targets.parse import build_targets; from netaudit.scanner.scan import scan; "
            "from netaudit.outputs.render import to_json, to_html; "
            f"r = scan(build_targets({lab.targets()[:1]!r})); to_json(r); to_html(r); "
            "print(r.endpoints[0].kind, any(m.split('.')[0] in ('tensorflow', 'tensorflow_serving') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["tf-server", "False"], out.stderr

"""Fault isolation: a server's bytes break at most its own endpoint's probes, never the scan; a bug in
netaudit (an unsafe call) still stops it."""

from __future__ import annotations

import asyncio

import pytest

from netaudit.transport import protowire
from netaudit.core.faults import budget, enter, sent
from netaudit.fingerprint.runner import fingerprint
from netaudit.lab.hostile import HostileLab
from netaudit.core.model import Endpoint
from netaudit.probes.base import ProbeContext
from netaudit.transport.safety import UnsafeCall, check_call
from netaudit.scanner.scan import ScanOptions, isolated, scan
from netaudit.targets.parse import build_targets


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    cases = ("tarpit", "grpc-invalid-protobuf", "grpc-spoof-devices", "reset-mid-rpc")
    with HostileLab(tmp_path_factory.mktemp("hostile"), cases=cases) as running:
        yield {e.name.split("/", 1)[1]: e for e in running.endpoints}


def test_an_exception_stays_with_its_endpoint_and_keeps_what_was_proven():
    endpoint = Endpoint("127.0.0.1", 1, "open", kind="tf-server")

    async def probe():
        enter("tf_runtime probe")
        sent("/tensorflow.WorkerService/GetStatus")
        endpoint.details["devices"] = []
        protowire.decode(b"\x0f\x1b[2J")  # wire type 7: what a honeypot answered in the issue

    asyncio.run(isolated(endpoint, probe(), 5, "sniff"))
    error = endpoint.details["probe_error"]
    assert error == {"error": "DecodeError", "message": "unsupported wire type 7",
                     "during": "tf_runtime probe (/tensorflow.WorkerService/GetStatus)"}
    assert endpoint.kind == "tf-server" and endpoint.details["devices"] == []


def test_an_unsafe_call_is_a_bug_and_propagates():
    async def probe():
        check_call("/tensorflow.WorkerService/RunGraph", b"")

    with pytest.raises(UnsafeCall):
        asyncio.run(isolated(Endpoint("127.0.0.1", 1, "open"), probe(), 5, "sniff"))


def test_a_spent_budget_is_a_probe_error_of_that_endpoint(hostile):
    """A real tarpit, a real fingerprint, a budget shorter than the sniff's own deadlines."""
    tarpit = hostile["tarpit"]
    endpoint = Endpoint(tarpit.host, tarpit.port, "open")
    asyncio.run(isolated(endpoint, fingerprint(endpoint, 5, ProbeContext()), 1.0, "sniff"))
    assert endpoint.details["probe_error"]["error"] == "budget spent"
    assert endpoint.details["probe_error"]["during"] == "sniff"


def test_budget_follows_timeout_and_retries():
    assert budget(1, 0) == 12.5
    assert budget(2, 1) == 72.5
    assert budget(2, 2) > budget(2, 1) > budget(1, 1)


def test_hostile_replies_do_not_touch_the_real_servers_result(lab, hostile):
    real = next(e for e in lab.endpoints if e.kind == "tf-server")
    targets = [real.target] + [e.target for e in hostile.values()]
    result = scan(build_targets(targets), ScanOptions(timeout=5, retries=0))
    assert result.complete
    by_port = {e.port: e for e in result.endpoints}
    assert by_port[real.port].kind == "tf-server" and by_port[real.port].details["job"] == real.job
    invalid = by_port[hostile["grpc-invalid-protobuf"].port]
    assert any("not a GetStatusResponse" in line for line in invalid.evidence)
    assert by_port[hostile["reset-mid-rpc"].port].kind == "unknown"
    assert result.stats["probe_errors"] == sum("probe_error" in e.details for e in result.endpoints)

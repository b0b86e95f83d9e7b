"""Probes only read: no probe can send a state-changing RPC, and a real scan sends none."""

from __future__ import annotations

import asyncio

import pytest

from netaudit.probes import grpc_generic, tf_runtime
from netaudit.probes.safety import DO_NOT_CALL, EMPTY_ONLY, MALFORMED, UnsafeCall, check_call
from netaudit.rpc import RpcSession

# tf-wire-facts.md §4 "do NOT call", spelled out independently of probes/safety.py so that shrinking the
# list there fails here.
REFERENCE_DO_NOT_CALL = {
    "/tensorflow.MasterService/CreateSession", "/tensorflow.MasterService/Reset", "/tensorflow.MasterService/RunStep",
    "/tensorflow.eager.EagerService/CreateContext", "/tensorflow.eager.EagerService/Enqueue",
    "/tensorflow.WorkerService/RunGraph", "/tensorflow.WorkerService/RegisterGraph",
    "/tensorflow.WorkerService/CleanupAll", "/tensorflow.WorkerService/Logging", "/tensorflow.WorkerService/RecvTensor",
    "/tensorflow.CoordinationService/ReportErrorToService", "/tensorflow.CoordinationService/ShutdownTask",
    "/tensorflow.CoordinationService/Barrier", "/tensorflow.CoordinationService/InsertKeyValue",
    "/tensorflow.ProfilerService/Profile", "/tensorflow.ProfilerService/Terminate",
    "/tensorflow.serving.PredictionService/Predict",
}


def declared_calls() -> list[tuple[str, bytes]]:
    calls = [(sig.method, sig.request) for sig in tf_runtime.SIGNATURES]
    calls += [(m.method, MALFORMED) for m in tf_runtime.VERSION_MARKERS]
    calls += [(grpc_generic.HEALTH_CHECK, b"")] + [(m, grpc_generic.LIST_SERVICES) for m in grpc_generic.REFLECTION]
    return calls


def test_do_not_call_list_covers_the_reference():
    assert REFERENCE_DO_NOT_CALL <= DO_NOT_CALL


def test_no_declared_probe_call_is_a_do_not_call_method_with_a_real_request():
    for method, request in declared_calls():
        assert method not in DO_NOT_CALL or request == MALFORMED, method
        check_call(method, request)


@pytest.mark.parametrize("method", sorted(DO_NOT_CALL))
def test_the_rpc_layer_refuses_every_do_not_call_method(method):
    with pytest.raises(UnsafeCall):
        check_call(method, b"")
    with pytest.raises(UnsafeCall):
        asyncio.run(_send(method, b"\x0a\x00"))


async def _send(method: str, request: bytes):
    session = RpcSession("127.0.0.1:9", 0.1)  # refused before any connection is attempted
    try:
        return await session.unary(method, request)
    finally:
        await session.close()


def test_reload_config_only_ever_empty():
    (method,) = EMPTY_ONLY
    check_call(method, b"")
    with pytest.raises(UnsafeCall):
        check_call(method, b"\x0a\x02\x0a\x00")  # config { model_config_list {} }: unloads every model


def test_a_real_probe_run_sends_only_safe_calls(lab):
    """Run the probes against a real TF server and inspect exactly what went on the wire."""
    endpoint = next(e for e in lab.endpoints if e.kind == "tf-server")

    async def run():
        session = RpcSession(endpoint.target, 5.0)
        try:
            assert await session.ready()
            await tf_runtime.probe(session)
            await grpc_generic.probe(session)
            return session.calls
        finally:
            await session.close()

    calls = asyncio.run(run())
    assert len(calls) == len(declared_calls())
    for method, request in calls:
        assert method not in DO_NOT_CALL or request == MALFORMED, method

"""Probes only read: no probe can send a state-changing RPC, and a real scan sends none."""

from __future__ import annotations

import asyncio

import pytest

from netaudit.core import registry
from netaudit.fingerprint import loader
from netaudit.probes.generic import grpc as grpc_generic
from netaudit.probes.inference_v2 import protocol as inference_v2
from netaudit.probes.tf_serving import grpc as modelserver_grpc
from netaudit.probes.tf_runtime import grpc as tf_runtime
from netaudit.probes.base import ProbeContext
from netaudit.transport.rpc import RpcSession
from netaudit.transport.safety import MALFORMED, UnsafeCall, check_call, check_http, do_not_call, empty_only

DO_NOT_CALL, EMPTY_ONLY = do_not_call(), empty_only()

# docs/wire-facts.md §4 "do NOT call", spelled out independently of the families' [safety] lists (probes/*/family.toml)
# so that shrinking a list there fails here.
REFERENCE_DO_NOT_CALL = {
    "/tensorflow.MasterService/CreateSession", "/tensorflow.MasterService/Reset", "/tensorflow.MasterService/RunStep",
    "/tensorflow.eager.EagerService/CreateContext", "/tensorflow.eager.EagerService/Enqueue",
    "/tensorflow.WorkerService/RunGraph", "/tensorflow.WorkerService/RegisterGraph",
    "/tensorflow.WorkerService/CleanupAll", "/tensorflow.WorkerService/Logging", "/tensorflow.WorkerService/RecvTensor",
    "/tensorflow.CoordinationService/ReportErrorToService", "/tensorflow.CoordinationService/ShutdownTask",
    "/tensorflow.CoordinationService/Barrier", "/tensorflow.CoordinationService/InsertKeyValue",
    "/tensorflow.ProfilerService/Profile", "/tensorflow.ProfilerService/Terminate",
}
# Open Inference Protocol V2 and Triton's extensions (issue 12): these run models, load or unload them, or
# change server settings; spelled out here for the same reason.
REFERENCE_V2_DO_NOT_CALL = {f"/inference.GRPCInferenceService/{m}" for m in (
    "ModelInfer", "ModelStreamInfer", "RepositoryModelLoad", "RepositoryModelUnload", "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister", "TraceSetting",
    "LogSettings")}
# docs/wire-facts.md §4, Serving rows: these run or replace models as soon as the request names a model or
# carries a config.
REFERENCE_EMPTY_ONLY = {
    "/tensorflow.serving.ModelService/HandleReloadConfigRequest", "/tensorflow.serving.PredictionService/Predict",
    "/tensorflow.serving.PredictionService/Classify", "/tensorflow.serving.PredictionService/Regress",
    "/tensorflow.serving.PredictionService/MultiInference",
}


def declared_calls() -> list[tuple[str, bytes]]:
    calls = [(sig.method, sig.request) for sig in tf_runtime.SIGNATURES]
    calls += [(m, MALFORMED) for m in tf_runtime.version_markers()]
    calls += [(grpc_generic.HEALTH_CHECK, b"")] + [(m, grpc_generic.LIST_SERVICES) for m in grpc_generic.REFLECTION]
    calls += [(modelserver_grpc.MODEL_STATUS, b""), (modelserver_grpc.MODEL_STATUS, modelserver_grpc.model_spec("m")),
              (modelserver_grpc.METADATA, modelserver_grpc.metadata_request("m")), (modelserver_grpc.RELOAD, b""),
              (modelserver_grpc.PREDICT, b""), (modelserver_grpc.PROFILER_MONITOR, b"")]
    calls += [(m, MALFORMED) for m in modelserver_grpc.serving_markers()
              if m.startswith(modelserver_grpc.PROFILER_PREFIX)]
    calls += inference_v2.declared_calls()
    return calls


def test_do_not_call_list_covers_the_reference():
    assert REFERENCE_DO_NOT_CALL <= DO_NOT_CALL
    assert REFERENCE_V2_DO_NOT_CALL <= DO_NOT_CALL
    assert REFERENCE_EMPTY_ONLY <= EMPTY_ONLY


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


@pytest.mark.parametrize("method", sorted(REFERENCE_EMPTY_ONLY))
def test_serving_methods_only_ever_get_an_empty_request(method):
    check_call(method, b"")
    with pytest.raises(UnsafeCall):
        check_call(method, b"\x0a\x02\x0a\x00")  # reload: config { model_config_list {} } unloads every model
    with pytest.raises(UnsafeCall):
        check_call(method, modelserver_grpc.model_spec("half_plus_two"))  # inference: runs the model


@pytest.mark.parametrize("kind", ["tf-server", "modelserver-grpc"])
def test_a_real_probe_run_sends_only_safe_calls(lab, kind):
    """Run every gRPC probe against a real server and inspect exactly what went on the wire."""
    endpoint = next(e for e in lab.endpoints if e.kind == kind)
    ctx = ProbeContext()

    async def run():
        session = RpcSession(endpoint.target, 5.0)
        try:
            assert await session.ready()
            for probe in registry.probes_for("h2", "grpc"):
                await loader.function(probe)(session, ctx)
            return session.calls
        finally:
            await session.close()

    calls = asyncio.run(run())
    methods = {m for m, _ in calls}
    assert methods <= {m for m, _ in declared_calls()}
    if kind == "modelserver-grpc":
        assert modelserver_grpc.RELOAD in methods and modelserver_grpc.METADATA in methods
    for method, request in calls:
        assert method not in DO_NOT_CALL or request == MALFORMED, method
        assert method not in EMPTY_ONLY or request == b"", method


def test_every_gRPC_family_is_covered_by_the_declared_calls():
    """A family that speaks gRPC has its requests in declared_calls(), so the checks above cover it."""
    modules = {f"{p.package}.{p.module}" for p in registry.probes_for("h2", "grpc")}
    assert modules == {"tf_runtime.grpc", "tf_serving.grpc", "generic.grpc", "inference_v2.protocol"}


@pytest.mark.parametrize("method, path, body, allowed", [
    ("GET", "/v1/models/half_plus_two", b"", True),
    ("GET", "/data/environment", b"", True),
    ("POST", "/v1/models/netaudit-probe-1a2b:predict", b"", True),  # empty: rejected by the JSON parser
    ("POST", "/v1/models/half_plus_two:predict", b'{"instances": [1.0]}', False),  # runs the model
    ("POST", "/v2/models/m/infer", b"", False),
    ("POST", "/v2/repository/models/m/unload", b"", False),
    ("POST", "/v2/repository/index", b"", False),
    ("PUT", "/v1/models/m", b"", False),
    ("DELETE", "/v1/models/m", b"", False),
])
def test_the_http_client_sends_only_reads(method, path, body, allowed):
    from netaudit.transport import httpwire

    if allowed:
        check_http(method, path, body)
        return
    with pytest.raises(UnsafeCall):
        check_http(method, path, body)
    with pytest.raises(UnsafeCall):  # refused before any connection is attempted
        asyncio.run(httpwire.request("127.0.0.1", 9, method, path, 0.1, body=body))

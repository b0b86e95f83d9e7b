"""The read-only contract every probe obeys, as data (shared/reference/tf-wire-facts.md §4).

A method on DO_NOT_CALL changes server state or runs code. A probe may only ever send it MALFORMED:
bytes that no protobuf parser accepts, so the server rejects the request before any handler runs
(INTERNAL "Unable to parse request" from gRPC's async server, INTERNAL with empty details from a sync
one) and the reply still proves whether the method is registered.
"""

from __future__ import annotations

# Field 1, wire type VARINT, then a varint that never terminates: truncated for every message type.
MALFORMED = b"\x08\x80"

DO_NOT_CALL: frozenset[str] = frozenset({
    # tf.distribute.Server WorkerService: execute graphs, clear containers, toggle logging, steal tensors.
    "/tensorflow.WorkerService/RunGraph",
    "/tensorflow.WorkerService/RegisterGraph",
    "/tensorflow.WorkerService/CleanupAll",
    "/tensorflow.WorkerService/CleanupGraph",
    "/tensorflow.WorkerService/DeregisterGraph",
    "/tensorflow.WorkerService/DeleteWorkerSession",
    "/tensorflow.WorkerService/CreateWorkerSession",
    "/tensorflow.WorkerService/Logging",
    "/tensorflow.WorkerService/RecvTensor",
    "/tensorflow.WorkerService/RecvBuf",
    # MasterService: sessions persist, Reset closes every session.
    "/tensorflow.MasterService/CreateSession",
    "/tensorflow.MasterService/ExtendSession",
    "/tensorflow.MasterService/RunStep",
    "/tensorflow.MasterService/PartialRunSetup",
    "/tensorflow.MasterService/MakeCallable",
    "/tensorflow.MasterService/RunCallable",
    "/tensorflow.MasterService/Reset",
    "/tensorflow.MasterService/CloseSession",
    "/tensorflow.MasterService/ReleaseCallable",
    # EagerService: CreateContext creates a worker session even when it fails.
    "/tensorflow.eager.EagerService/CreateContext",
    "/tensorflow.eager.EagerService/UpdateContext",
    "/tensorflow.eager.EagerService/Enqueue",
    "/tensorflow.eager.EagerService/StreamingEnqueue",
    "/tensorflow.eager.EagerService/RunComponentFunction",
    "/tensorflow.eager.EagerService/CloseContext",
    "/tensorflow.eager.EagerService/WaitQueueDone",
    # CoordinationService: can abort the job, block, or write the key-value store.
    "/tensorflow.CoordinationService/ReportErrorToService",
    "/tensorflow.CoordinationService/ReportErrorToTask",
    "/tensorflow.CoordinationService/ReportErrorToAgent",
    "/tensorflow.CoordinationService/ShutdownTask",
    "/tensorflow.CoordinationService/ResetTask",
    "/tensorflow.CoordinationService/RegisterTask",
    "/tensorflow.CoordinationService/RegisterWorker",
    "/tensorflow.CoordinationService/Barrier",
    "/tensorflow.CoordinationService/CancelBarrier",
    "/tensorflow.CoordinationService/WaitForAllTasks",
    "/tensorflow.CoordinationService/GetAliveTasks",
    "/tensorflow.CoordinationService/GetKeyValue",
    "/tensorflow.CoordinationService/TryGetKeyValue",
    "/tensorflow.CoordinationService/GetKeyValueDir",
    "/tensorflow.CoordinationService/PollForError",
    "/tensorflow.CoordinationService/WatchJobState",
    "/tensorflow.CoordinationService/GetJobState",
    "/tensorflow.CoordinationService/GetTaskState",
    "/tensorflow.CoordinationService/InsertKeyValue",
    "/tensorflow.CoordinationService/DeleteKeyValue",
    "/tensorflow.CoordinationService/IncrementKeyValue",
    # ProfilerService: Profile writes files on the server; the rest start, stop or steal sessions.
    "/tensorflow.ProfilerService/Profile",
    "/tensorflow.ProfilerService/Terminate",
    "/tensorflow.ProfilerService/StartContinuousProfiling",
    "/tensorflow.ProfilerService/StopContinuousProfiling",
    "/tensorflow.ProfilerService/GetSnapshot",
    # Open Inference Protocol V2, inference.GRPCInferenceService (kserve/kserve@aaac4e29
    # python/kserve/kserve/protocol/grpc/grpc_predict_v2.proto): ModelInfer runs a model; the repository
    # extension loads and unloads models.
    "/inference.GRPCInferenceService/ModelInfer",
    "/inference.GRPCInferenceService/RepositoryModelLoad",
    "/inference.GRPCInferenceService/RepositoryModelUnload",
    # Triton's extensions of the same service (triton-inference-server/common protobuf/grpc_service.proto,
    # as shipped in tritonclient 2.73.0's service_pb2): streaming inference; shared-memory regions that
    # Triton then reads and writes; TraceSetting and LogSettings update the server's settings whenever the
    # request carries any (the same method reads them), so they are never called at all.
    "/inference.GRPCInferenceService/ModelStreamInfer",
    "/inference.GRPCInferenceService/SystemSharedMemoryRegister",
    "/inference.GRPCInferenceService/SystemSharedMemoryUnregister",
    "/inference.GRPCInferenceService/CudaSharedMemoryRegister",
    "/inference.GRPCInferenceService/CudaSharedMemoryUnregister",
    "/inference.GRPCInferenceService/TraceSetting",
    "/inference.GRPCInferenceService/LogSettings",
})

# Methods whose only allowed request is the empty message (tf-wire-facts.md §2.4, §4): an empty
# HandleReloadConfigRequest stops at the `default:` branch before ServerCore::ReloadConfig, and an
# empty inference request fails with "Missing ModelSpec" (or "ModelSpec has no name specified.")
# before any model runs. With a model name or a config they run models or replace them.
EMPTY_ONLY: frozenset[str] = frozenset({
    "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
    "/tensorflow.serving.PredictionService/Predict",
    "/tensorflow.serving.PredictionService/Classify",
    "/tensorflow.serving.PredictionService/Regress",
    "/tensorflow.serving.PredictionService/MultiInference",
})


class UnsafeCall(RuntimeError):
    """A probe tried to send a state-changing request. This is a bug in the probe, never a scan result."""


def check_call(method: str, request: bytes) -> None:
    if method in DO_NOT_CALL and request != MALFORMED:
        raise UnsafeCall(f"refusing to call {method} with a parseable request")
    if method in EMPTY_ONLY and request not in (b"", MALFORMED):
        raise UnsafeCall(f"refusing to call {method} with a non-empty request")

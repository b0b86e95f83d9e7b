"""TF Serving: the lab stand-in follows the wire facts, and netaudit inventories it without changing it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest

from netaudit.transport import h2wire, httpwire
from netaudit.lab.modelserver_launch import ModelServerSpec, start_modelserver
from netaudit.lab.processes import free_port, stop, wait_ready
from netaudit.probes.tf_serving import grpc as modelserver_grpc
from netaudit.probes import common as serving
from netaudit.transport.safety import do_not_call, empty_only
from netaudit.scanner.scan import ScanOptions, scan
from netaudit.targets.parse import build_targets

from conftest import run_cli

HALF_PLUS_TWO_SIGNATURE = {"serving_default": {
    "method_name": "tensorflow/serving/predict",
    "inputs": {"x": {"dtype": "DT_FLOAT", "shape": [-1], "tensor_name": "serving_default_x:0"}},
    "outputs": {"y": {"dtype": "DT_FLOAT", "shape": [-1], "tensor_name": "StatefulPartitionedCall:0"}}}}
SCORER_SIGNATURE = {"serving_default": {
    "method_name": "tensorflow/serving/predict",
    "inputs": {"features": {"dtype": "DT_FLOAT", "shape": [-1, 3], "tensor_name": "serving_default_features:0"}},
    "outputs": {"score": {"dtype": "DT_FLOAT", "shape": [-1, 1], "tensor_name": "StatefulPartitionedCall:0"}}}}


def available(*versions: int) -> list[dict]:
    return [{"version": v, "state": "AVAILABLE", "error_code": "OK", "error_message": ""} for v in versions]


def expected_models(secret: str) -> dict:
    return {"half_plus_two": {"versions": available(1, 2), "signatures": HALF_PLUS_TWO_SIGNATURE, "metadata_version": 2},
            secret: {"versions": available(1), "signatures": SCORER_SIGNATURE, "metadata_version": 1}}


def lab_modelserver(lab, kind: str):
    return next(e for e in lab.endpoints if e.kind == kind)


# --- decoding is byte-compatible with tensorflow-serving-api ------------------------------------------

def test_enum_tables_match_tensorflow():
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import error_codes_pb2
    from tensorflow_serving.apis import get_model_status_pb2

    for number, name in serving.DTYPES.items():
        assert types_pb2.DataType.Name(number) == name
    for number, name in serving.MODEL_STATES.items():
        assert get_model_status_pb2.ModelVersionStatus.State.Name(number) == name
    for number, name in enumerate(h2wire.GRPC_CODES):
        assert error_codes_pb2.Code.Name(number) == name


def test_requests_parse_in_tensorflow_serving_api():
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

    assert get_model_status_pb2.GetModelStatusRequest.FromString(modelserver_grpc.model_spec("m")).model_spec.name == "m"
    meta = get_model_metadata_pb2.GetModelMetadataRequest.FromString(modelserver_grpc.metadata_request("m"))
    assert (meta.model_spec.name, list(meta.metadata_field)) == ("m", ["signature_def"])


def test_responses_decode_like_tensorflow_serving_api():
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

    status = get_model_status_pb2.GetModelStatusResponse()
    status.model_version_status.add(version=7, state=30)
    status.model_version_status.add(version=3, state=20).status.error_message = "loading"
    assert modelserver_grpc.decode_model_status(status.SerializeToString()) == [
        {"version": 3, "state": "LOADING", "error_code": "OK", "error_message": "loading"},
        {"version": 7, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}]

    sigmap = get_model_metadata_pb2.SignatureDefMap()
    sig = sigmap.signature_def["classify"]
    sig.method_name = "tensorflow/serving/classify"
    sig.inputs["inputs"].name = "tf_example:0"
    sig.inputs["inputs"].dtype = types_pb2.DT_STRING
    sig.inputs["inputs"].tensor_shape.unknown_rank = True
    sig.outputs["scores"].dtype = types_pb2.DT_HALF
    for size in (-1, 10):
        sig.outputs["scores"].tensor_shape.dim.add(size=size)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = "m"
    response.model_spec.version.value = 12
    response.metadata["signature_def"].Pack(sigmap)
    assert modelserver_grpc.decode_signatures(response.SerializeToString()) == (12, {"classify": {
        "method_name": "tensorflow/serving/classify",
        "inputs": {"inputs": {"dtype": "DT_STRING", "shape": None, "tensor_name": "tf_example:0"}},
        "outputs": {"scores": {"dtype": "DT_HALF", "shape": [-1, 10], "tensor_name": ""}}}})


# --- the scan against the lab ModelServer -----------------------------------------------------------

def test_grpc_inventory_is_exact(lab, lab_scan):
    target = lab_modelserver(lab, "modelserver-grpc")
    ep = next(e for e in lab_scan.endpoints if e.port == target.port)
    assert (ep.kind, ep.transport, ep.authenticated) == ("modelserver-grpc", "plaintext", False)
    assert ep.services == ["tensorflow.serving.ModelService", "tensorflow.serving.PredictionService",
                           "tensorflow.ProfilerService"]
    secret = target.facts["secret_model"]
    assert ep.details["models"] == expected_models(secret)
    assert ep.details["models_learned"] == [secret]  # only the REST port's metrics revealed it
    assert ep.details["admin_reload"] == "reachable"
    assert any(line.startswith("HandleReloadConfigRequest reachable with no credentials") for line in ep.evidence)
    rules = {f.rule: f for f in lab_scan.findings if f.port == target.port}
    assert {r: f.severity for r, f in rules.items()} == {
        "modelserver-reload-exposed": "critical", "modelserver-predict-exposed": "high",
        "modelserver-plaintext": "medium", "tf-profiler-exposed": "medium",
        "modelserver-known-advisories-no-new-access": "info"}
    # The lab stand-in emulates 2.14.1 by default: profiler with Terminate, no reflection (derived range).
    assert ep.details["serving_version"]["range"] == "2.3-2.15.0"
    reload_finding = rules["modelserver-reload-exposed"]
    assert any("HandleReloadConfigRequest (empty request" in line and "ServerModelConfig type not supported" in line
               for line in reload_finding.evidence)
    assert "client_verify: true" in reload_finding.remediation and "proxy" in reload_finding.remediation


def test_rest_inventory_is_exact(lab, lab_scan):
    target = lab_modelserver(lab, "modelserver-rest")
    ep = next(e for e in lab_scan.endpoints if e.port == target.port)
    assert (ep.kind, ep.transport, ep.authenticated) == ("modelserver-rest", "plaintext", False)
    secret = target.facts["secret_model"]
    assert ep.details["metrics_model_names"] == sorted(["half_plus_two", secret])
    assert ep.details["models"] == expected_models(secret)
    assert "GET / <- libevent's 90-byte 404 page" in ep.evidence
    rules = {f.rule: f.severity for f in lab_scan.findings if f.port == target.port}
    assert rules == {"modelserver-predict-exposed": "high", "modelserver-plaintext": "medium",
                     "modelserver-metrics-leak-model-names": "medium"}


def test_scan_changed_nothing_on_the_server(lab, lab_scan):
    """The audit log holds every request every test's scan sent; all are read-only, models still load."""
    target = lab_modelserver(lab, "modelserver-grpc")
    if target.facts["audit_log"] is None:
        pytest.skip("the real tensorflow_model_server keeps no audit log")
    entries = [json.loads(line) for line in Path(target.facts["audit_log"]).read_text().splitlines()]
    grpc_calls = [e for e in entries if e["transport"] == "grpc"]
    assert grpc_calls and any(e["method"].endswith("/HandleReloadConfigRequest") for e in grpc_calls)
    for e in grpc_calls:
        # A do-not-call method only ever gets unparseable bytes: rejected unparsed, or unregistered here.
        assert e["method"] not in do_not_call() or e.get("parsed") is False or e["status"] == "UNIMPLEMENTED", e
        if e["method"] in empty_only():
            assert e["request_bytes"] == 0 and e["status"] == "INVALID_ARGUMENT", e
    for e in entries:
        if e["transport"] == "http":
            assert e["method"] == "GET" or (e["method"] == "POST" and e["body_bytes"] == 0
                                            and "/v1/models/netaudit-probe-" in e["path"]), e
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    with grpc.insecure_channel(target.target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        for name, versions in target.facts["models"].items():
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = name
            states = stub.GetModelStatus(request, timeout=10).model_version_status
            assert sorted((s.version, s.state) for s in states) == [(v, 30) for v in versions]


# --- the stand-in follows TF Serving's source (docs/wire-facts.md §2) ---------------------------------

def test_stand_in_rest_wire_facts(lab):
    import asyncio

    target = lab_modelserver(lab, "modelserver-rest")

    def get(path: str, method: str = "GET"):
        return asyncio.run(httpwire.request(target.host, target.port, method, path, 10))

    root = get("/")
    assert (root.status, root.header("content-type"), root.header("connection"), len(root.body)) == (404, "text/html", "close", 90)
    assert root.header("server") is None
    malformed = get("/v1/foo")
    assert malformed.status == 400 and json.loads(malformed.body) == {"error": "Malformed request: GET /v1/foo"}
    assert json.loads(get("/v1/models").body) == {"error": "Missing model name in request."}
    missing = get("/v1/models/nope/metadata")
    assert missing.status == 404 and json.loads(missing.body) == {"error": "Servable not found for request: Latest(nope)"}
    assert get("/v1/models/half_plus_two", "TRACE").status == 501
    status = json.loads(get("/v1/models/half_plus_two/versions/1").body)
    assert status == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                                "status": {"error_code": "OK", "error_message": ""}}]}


def test_stand_in_grpc_wire_facts_and_real_inference(lab):
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    target = lab_modelserver(lab, "modelserver-grpc")
    with grpc.insecure_channel(target.target) as channel:
        def raw(method: str, payload: bytes):
            try:
                channel.unary_unary(method)(payload, timeout=10)
                return "OK", ""
            except grpc.RpcError as exc:
                return exc.code().name, exc.details()

        assert raw("/tensorflow.serving.PredictionService/MultiInference", b"") == (
            "INVALID_ARGUMENT", "ModelSpec has no name specified.")
        assert raw("/tensorflow.serving.PredictionService/GetModelMetadata", modelserver_grpc.model_spec("x")) == (
            "INVALID_ARGUMENT", "GetModelMetadataRequest must specify at least one metadata_field")
        assert raw("/tensorflow.serving.PredictionService/GetModelMetadata", modelserver_grpc.metadata_request("x")) == (
            "NOT_FOUND", "Servable not found for request: Latest(x)")
        assert raw("/tensorflow.serving.ModelService/GetModelStatus", b"\x08\x80") == ("INTERNAL", "")
        assert raw("/tensorflow.serving.SessionService/SessionRun", b"") == ("UNIMPLEMENTED", "")
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0, 2.0, 5.0], dtype=np.float32)))
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        assert tf.make_ndarray(reply.outputs["y"]).tolist() == [2.5, 3.0, 4.5]


# --- a dedicated ModelServer with CORS on and no metrics -----------------------------------------------

@pytest.fixture(scope="module")
def plain_server(lab, tmp_path_factory):
    directory = tmp_path_factory.mktemp("modelserver")
    spec = ModelServerSpec(free_port(), free_port(), Path(lab.dir) / "models" / "models.config", cors=True)
    proc, _ = start_modelserver("ms-plain", spec, directory)
    try:
        wait_ready([proc], time.monotonic() + 120)
        yield spec
    finally:
        stop([proc])


def test_model_names_file_finds_what_no_wordlist_guesses(lab, plain_server, tmp_path):
    secret = lab_modelserver(lab, "modelserver-grpc").facts["secret_model"]
    target = f"127.0.0.1:{plain_server.grpc_port}"
    without = json.loads(run_cli("scan", target, "--format", "json").stdout)
    assert list(without["endpoints"][0]["details"]["models"]) == ["half_plus_two"]
    names = tmp_path / "names.txt"
    names.write_text(f"# internal models\n{secret}\n")
    found = json.loads(run_cli("scan", target, "--model-names", str(names), "--format", "json").stdout)
    assert found["endpoints"][0]["details"]["models"] == expected_models(secret)
    bad = run_cli("scan", target, "--model-names", str(tmp_path / "missing.txt"))
    assert bad.returncode == 2 and "cannot read --model-names" in bad.stderr


def test_cors_wildcard_and_no_metrics(plain_server):
    result = scan(build_targets([f"127.0.0.1:{plain_server.rest_port}"]), ScanOptions())
    (ep,) = result.endpoints
    assert ep.kind == "modelserver-rest" and ep.details["cors"] == "*"
    assert "metrics_model_names" not in ep.details and list(ep.details["models"]) == ["half_plus_two"]
    assert {f.rule for f in result.findings} == {"modelserver-rest-cors-wildcard", "modelserver-predict-exposed",
                                                 "modelserver-plaintext"}


def test_mtls_modelserver_serves_only_clients_with_a_certificate(lab):
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    target = next(e for e in lab.endpoints if e.name == "modelserver-mtls/grpc")
    pki = {k: Path(v).read_bytes() for k, v in target.facts.items() if k in ("ca", "client_cert", "client_key")}
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half_plus_two"
    address = f"localhost:{target.port}"
    with grpc.secure_channel(address, grpc.ssl_channel_credentials(pki["ca"], pki["client_key"],
                                                                   pki["client_cert"])) as channel:
        assert len(model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
                   .model_version_status) == 2
    with grpc.secure_channel(address, grpc.ssl_channel_credentials(pki["ca"])) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

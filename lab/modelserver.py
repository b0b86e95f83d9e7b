"""A stand-in for tensorflow_model_server that speaks TF Serving's real gRPC and REST APIs.

The official binary is not installable here. This server uses tensorflow-serving-api's messages, loads
real SavedModels with TensorFlow and runs them. Every status code, error string, header and body shape
it produces follows TF Serving's source as listed in docs/wire-facts.md §2; each carries its source in a
comment (SRV = tensorflow/serving @9d981c5c2708d23c5407c7c1e30309e6f9798874,
https://github.com/tensorflow/serving/tree/9d981c5c2708d23c5407c7c1e30309e6f9798874; LEV = libevent
release-2.1.12-stable http.c, https://github.com/libevent/libevent/blob/release-2.1.12-stable/http.c), and a
bare § is a section of docs/wire-facts.md. Flags mirror the real ones.

It also keeps an audit log (JSON lines) of every RPC and HTTP request, which the real server does not:
tests read it to prove a scan changed nothing.

    python -m netaudit.lab.modelserver --port 8500 --rest_api_port 8501 --model_config_file models.config
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import grpc
from google.protobuf import json_format, text_format
from google.protobuf.message import DecodeError, Message

# libevent's error page (LEV http.c evhttp_send_error): the headers are cleared, then text/html and
# Connection: close; this is the exact 90-byte 404 body. The same template gives 400 and 501.
LIBEVENT_PAGE = "<HTML><HEAD>\n<TITLE>{code} {reason}</TITLE>\n</HEAD><BODY>\n<H1>{reason}</H1>\n</BODY></HTML>\n"
# evhttp_set_allowed_methods in SRV util/net_http/server/internal/evhttp_server.cc; others get 501.
ALLOWED_METHODS = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"}
# SRV util/prometheus_exporter.cc kPrometheusPath.
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
# SRV http_rest_api_handler.cc: the REST dispatcher takes (?i)/v1/.* and parses model paths with this shape.
REST_PREFIX = re.compile(r"(?i)/v1/.*")
MODEL_PATH = re.compile(r"(?i)/v1/models(?:/(?P<name>[^/:]+))?(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                        r"(?P<metadata>/metadata)?(?::(?P<verb>classify|regress|predict))?")
STATE_AVAILABLE = 30  # tensorflow.serving.ModelVersionStatus.State.AVAILABLE


class RpcError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


# http_server.cc ToHTTPStatusCode (§2.3).
HTTP_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400,
               grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
               grpc.StatusCode.ABORTED: 409, grpc.StatusCode.PERMISSION_DENIED: 403,
               grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNIMPLEMENTED: 501,
               grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNKNOWN: 500, grpc.StatusCode.DATA_LOSS: 500,
               grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
               grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNAUTHENTICATED: 401}


@dataclass
class Version:
    number: int
    path: str
    signatures: Any  # tf.saved_model.load(...).signatures
    signature_defs: dict  # name -> tensorflow.SignatureDef, read from saved_model.pb


@dataclass
class Servables:
    """The loaded models. Reload swaps the whole map, as ServerCore::ReloadConfig does."""

    models: dict[str, dict[int, Version]] = field(default_factory=dict)
    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    loads: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def load_config(self, config_text_or_msg) -> None:
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2
        from tensorflow_serving.config import model_server_config_pb2

        config = config_text_or_msg
        if isinstance(config, str):
            config = text_format.Parse(config, model_server_config_pb2.ModelServerConfig())
        models: dict[str, dict[int, Version]] = {}
        for entry in config.model_config_list.config:
            base = Path(entry.base_path)
            numbers = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())
            policy = entry.model_version_policy.WhichOneof("policy_choice")
            if policy == "all":
                chosen = numbers
            elif policy == "specific":
                chosen = [n for n in numbers if n in entry.model_version_policy.specific.versions]
            else:  # default: latest 1 (SRV file_system_storage_path_source.proto)
                chosen = numbers[-(entry.model_version_policy.latest.num_versions or 1):]
            versions = {}
            for number in chosen:
                path = str(base / str(number))
                saved = saved_model_pb2.SavedModel.FromString((Path(path) / "saved_model.pb").read_bytes())
                versions[number] = Version(number, path, tf.saved_model.load(path).signatures,
                                           dict(saved.meta_graphs[0].signature_def))
                self.loads.append((path, "success"))
            models[entry.name] = versions
        with self.lock:
            self.models = models

    def find(self, name: str, version: int | None) -> Version:
        with self.lock:
            versions = self.models.get(name, {})
        if version is None:
            if not versions:
                # core/basic_manager.cc:139 + core/manager.h DebugString (§2.3/§2.4).
                raise RpcError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})")
            return versions[max(versions)]
        if version not in versions:
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})")
        return versions[version]

    def count(self, name: str, status: str) -> None:
        with self.lock:
            self.requests[(name, status)] = self.requests.get((name, status), 0) + 1


class AuditLog:
    def __init__(self, path: Path | None):
        self.path = path
        self.lock = threading.Lock()

    def write(self, **entry: Any) -> None:
        if self.path is None:
            return
        entry["time"] = time.time()
        with self.lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")


class Service:
    """The RPC handlers, shared by the gRPC and REST front ends (as in the real server)."""

    def __init__(self, servables: Servables):
        self.servables = servables

    @staticmethod
    def _spec(request: Message) -> tuple[str, int | None]:
        # get_model_status_impl.cc / predict_util: a request without model_spec is "Missing ModelSpec" (§2.4).
        if not request.HasField("model_spec"):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        spec = request.model_spec
        return spec.name, spec.version.value if spec.HasField("version") else None

    def get_model_status(self, request):
        from tensorflow_serving.apis import get_model_status_pb2

        name, version = self._spec(request)
        with self.servables.lock:
            versions = dict(self.servables.models.get(name, {}))
        if not versions:
            # get_model_status_impl.cc:99 (§2.3, §2.4).
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
        if version is not None and version not in versions:
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model {name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for number in sorted(versions, reverse=True):
            if version is None or number == version:
                status = response.model_version_status.add(version=number, state=STATE_AVAILABLE)
                status.status.error_code = 0
        return response

    def get_model_metadata(self, request):
        from tensorflow_serving.apis import get_model_metadata_pb2

        name, version = self._spec(request)
        if not request.metadata_field:
            # §2.4: checked before the servable lookup.
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           "GetModelMetadataRequest must specify at least one metadata_field")
        found = self.servables.find(name, version)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = found.number
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in found.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(sig)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    def predict(self, request):
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        name, version = self._spec(request)
        found = self.servables.find(name, version)
        signature = request.model_spec.signature_name or "serving_default"
        if signature not in found.signatures:
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"Serving signature key \"{signature}\" not found.")  # stand-in wording
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        outputs = found.signatures[signature](**inputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = name
        response.model_spec.version.value = found.number
        response.model_spec.signature_name = signature
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
        self.servables.count(name, "OK")
        return response

    def classify_or_regress(self, request):
        name, version = self._spec(request)
        self.servables.find(name, version)
        # Stand-in wording: the lab models have only predict signatures.
        raise RpcError(grpc.StatusCode.FAILED_PRECONDITION, "Expected classification or regression signature")

    def multi_inference(self, request):
        if not request.tasks or not request.tasks[0].model_spec.name:
            # server_core.cc ServableRequestFromModelSpec (§2.4).
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified.")
        raise RpcError(grpc.StatusCode.FAILED_PRECONDITION, "Expected classification or regression signature")

    def reload_config(self, request):
        from tensorflow_serving.apis import model_management_pb2

        if request.config.WhichOneof("config") != "model_config_list":
            # model_service_impl.cc: config_case() == CONFIG_NOT_SET hits `default:` before ReloadConfig (§2.4).
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           "ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList "
                           "is currently supported")
        self.servables.load_config(request.config)  # §2.5: the new list supersedes the old one
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = 0
        return response


def grpc_methods(service: Service) -> dict[str, tuple[type[Message], Callable]]:
    from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                         inference_pb2, model_management_pb2, predict_pb2, regression_pb2)

    # SRV apis/prediction_service.proto and apis/model_service.proto (§2.1).
    return {
        "/tensorflow.serving.PredictionService/Predict": (predict_pb2.PredictRequest, service.predict),
        "/tensorflow.serving.PredictionService/Classify": (classification_pb2.ClassificationRequest,
                                                           service.classify_or_regress),
        "/tensorflow.serving.PredictionService/Regress": (regression_pb2.RegressionRequest, service.classify_or_regress),
        "/tensorflow.serving.PredictionService/MultiInference": (inference_pb2.MultiInferenceRequest,
                                                                 service.multi_inference),
        "/tensorflow.serving.PredictionService/GetModelMetadata": (get_model_metadata_pb2.GetModelMetadataRequest,
                                                                   service.get_model_metadata),
        "/tensorflow.serving.ModelService/GetModelStatus": (get_model_status_pb2.GetModelStatusRequest,
                                                            service.get_model_status),
        "/tensorflow.serving.ModelService/HandleReloadConfigRequest": (model_management_pb2.ReloadConfigRequest,
                                                                       service.reload_config),
    }


class RawHandler(grpc.GenericRpcHandler):
    """Every method takes raw bytes, so parse failures and unknown methods answer like the C++ server."""

    def __init__(self, methods: dict[str, tuple[type[Message] | None, Callable]], audit: AuditLog):
        self.methods = methods
        self.audit = audit

    def service(self, details: grpc.HandlerCallDetails):
        method = details.method
        entry = self.methods.get(method)

        def handle(raw: bytes, context: grpc.ServicerContext) -> bytes:
            if entry is None:
                # gRPC core answers an unregistered method UNIMPLEMENTED with empty details (§1.2, §5).
                self.audit.write(transport="grpc", method=method, request_bytes=len(raw), status="UNIMPLEMENTED")
                context.abort(grpc.StatusCode.UNIMPLEMENTED, "")
            cls, fn = entry
            try:
                request = cls.FromString(raw) if cls else raw
            except DecodeError:
                # Sync C++ service: INTERNAL with empty InitializationErrorString() (§2.4, malformed bytes).
                self.audit.write(transport="grpc", method=method, request_bytes=len(raw), status="INTERNAL",
                                 parsed=False)
                context.abort(grpc.StatusCode.INTERNAL, "")
            shown = text_format.MessageToString(request, as_one_line=True) if cls else raw.hex()
            try:
                response = fn(request)
            except RpcError as exc:
                self.audit.write(transport="grpc", method=method, request=shown, request_bytes=len(raw),
                                 status=exc.code.name)
                context.abort(exc.code, exc.message)
            self.audit.write(transport="grpc", method=method, request=shown, request_bytes=len(raw), status="OK")
            return response.SerializeToString()

        return grpc.unary_unary_rpc_method_handler(handle)


def release_tuple(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.split(".")] + [0, 0]
    return parts[0], parts[1], parts[2]


def profiler_methods(release: tuple[int, int, int]) -> dict[str, tuple[type[Message], Callable]]:
    """ProfilerService is registered by default (--enable_profiler=true, SRV server.h; §2.1), from 2.1 on
    (91adea97), with the method set of the TF it is built with (§1.2 ProfilerService table): Profile and
    Monitor; Terminate from 2.3; StartContinuousProfiling, StopContinuousProfiling and GetSnapshot from 2.21."""
    from google.protobuf import empty_pb2

    def monitor(request):
        # profiler_service_impl.cc: UNIMPLEMENTED "unimplemented." (§1.5, §4).
        raise RpcError(grpc.StatusCode.UNIMPLEMENTED, "unimplemented.")

    def refuse(request):
        # The real Profile writes files on the server (§2.8); the stand-in never does.
        raise RpcError(grpc.StatusCode.FAILED_PRECONDITION, "profiling is not implemented by the lab stand-in")

    # Empty stands in for the request types: like them it rejects unparseable bytes, which the sync C++
    # service answers INTERNAL with empty details before any handler (§2.4).
    names = ["Monitor", "Profile"] + (["Terminate"] if release >= (2, 3, 0) else []) + \
        (["StartContinuousProfiling", "StopContinuousProfiling", "GetSnapshot"] if release >= (2, 21, 0) else [])
    return {f"/tensorflow.ProfilerService/{name}": (empty_pb2.Empty, monitor if name == "Monitor" else refuse)
            for name in names if release >= (2, 1, 0)}


def enable_meta_services(server: grpc.Server, release: tuple[int, int, int], healthcheck: bool) -> None:
    """From 2.15.1/2.16.1 grpc++_reflection is linked in and registers itself (c140e011, 2024-02-07), and
    --enable_grpc_healthcheck_service (a9a8e7bf, default false) switches on the health service with the bare
    names "ModelService" and "PredictionService" set SERVING (§2.1)."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    services = ["tensorflow.serving.ModelService", "tensorflow.serving.PredictionService"]
    if healthcheck:
        servicer = health.HealthServicer()
        for name in ("ModelService", "PredictionService"):
            servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        services.append(health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    if release >= (2, 15, 1):
        reflection.enable_server_reflection(services + [reflection.SERVICE_NAME], server)


def make_rest_handler(service: Service, audit: AuditLog, prometheus_path: str | None, cors: bool):
    class RestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
            # No Server header: neither TF Serving nor libevent sets one (§2.3). libevent adds Date and
            # Content-Length.
            self.send_response_only(code)
            self.send_header("Date", self.date_time_string())
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            audit.write(transport="http", method=self.command, path=self.path, status=code,
                        body_bytes=int(self.headers.get("Content-Length") or 0))

        def _libevent_error(self, code: int, reason: str) -> None:
            self._send(code, LIBEVENT_PAGE.format(code=code, reason=reason).encode(),
                       {"Content-Type": "text/html", "Connection": "close"})
            self.close_connection = True

        def _json(self, code: int, payload: str) -> None:
            headers = {"Content-Type": "application/json"}
            if cors:
                # http_rest_api_util.cc AddCORSHeaders (--rest_api_enable_cors_support, §2.2).
                headers.update({"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, GET",
                                "Access-Control-Allow-Headers": "Content-Type"})
            self._send(code, payload.encode(), headers)

        def _error(self, code: int, message: str) -> None:
            # util/json_tensor.cc MakeJsonFromStatus: rapidjson PrettyWriter, key "error" (§2.3).
            self._json(code, "{\n    \"error\": " + json.dumps(message) + "\n}")

        def _dispatch(self) -> None:
            path = self.path.split("?", 1)[0]
            if self.command not in ALLOWED_METHODS:
                return self._libevent_error(501, "Not Implemented")
            if prometheus_path and path == prometheus_path:
                return self._send(200, service_metrics(service).encode(), {"Content-Type": "text/plain"})
            if not REST_PREFIX.fullmatch(path):
                return self._libevent_error(404, "Not Found")  # LEV: "/", "/v1" and anything else
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            match = MODEL_PATH.fullmatch(path)
            if self.command == "OPTIONS":
                # CORS preflight: empty body, 200 for an http(s) Origin, else 400 (§2.3).
                ok = re.match(r"https?://", self.headers.get("Origin", ""))
                return self._send(200 if ok else 400, b"", {"Content-Type": "application/json"})
            if match and match["name"] is None and self.command == "GET" and not match["verb"]:
                return self._error(400, "Missing model name in request.")
            if not match or match["name"] is None:
                return self._error(400, f"Malformed request: {self.command} {self.path}")
            try:
                self._model_request(match, body)
            except RpcError as exc:
                self._error(HTTP_STATUS.get(exc.code, 500), exc.message)

        def _model_request(self, match: re.Match, body: bytes) -> None:
            from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

            name, version = match["name"], int(match["version"]) if match["version"] else None
            if self.command == "GET" and not match["verb"]:
                if match["label"]:
                    raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Unrecognized servable version label: {match['label']}")  # server_core.cc:891
                if match["metadata"]:
                    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
                    request.model_spec.name = name
                    if version is not None:
                        request.model_spec.version.value = version
                    return self._json(200, metadata_json(service.get_model_metadata(request)))
                request = get_model_status_pb2.GetModelStatusRequest()
                request.model_spec.name = name
                if version is not None:
                    request.model_spec.version.value = version
                response = service.get_model_status(request)
                return self._json(200, json_format.MessageToJson(response, preserving_proto_field_name=True,
                                                                 always_print_fields_with_no_presence=True))
            if self.command == "POST" and match["verb"] == "predict" and not match["metadata"]:
                return self._predict(name, version, body)
            if self.command == "POST" and match["verb"] in ("classify", "regress") and not match["metadata"]:
                if not body:
                    raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "JSON Parse error: The document is empty")
                service.servables.find(name, version)
                raise RpcError(grpc.StatusCode.FAILED_PRECONDITION, "Expected classification or regression signature")
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"Malformed request: {self.command} {self.path}")

        def _predict(self, name: str, version: int | None, body: bytes) -> None:
            import numpy as np

            if not body:
                # The JSON parse happens before the servable lookup (§2.3).
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "JSON Parse error: The document is empty")
            try:
                payload = json.loads(body)
            except ValueError as exc:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"JSON Parse error: {exc}") from None
            found = service.servables.find(name, version)
            signature = found.signatures[payload.get("signature_name", "serving_default")]
            (key,) = signature.structured_input_signature[1].keys()
            spec = signature.structured_input_signature[1][key]
            outputs = signature(**{key: np.asarray(payload.get("instances", payload.get("inputs")),
                                                  dtype=spec.dtype.as_numpy_dtype)})
            service.servables.count(name, "OK")
            (out_key,) = outputs.keys()
            self._json(200, json.dumps({"predictions": outputs[out_key].numpy().tolist()}))

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except (ConnectionError, OSError):
                self.close_connection = True

        def __getattr__(self, name: str):
            # Every method reaches the dispatcher, which answers disallowed ones with libevent's 501.
            if name.startswith("do_"):
                return self._dispatch
            raise AttributeError(name)

    return RestHandler


def metadata_json(response) -> str:
    """ToJsonString(GetModelMetadataResponse) is hand-concatenated: model_spec, then metadata with the
    SignatureDefMap as plain JSON, no Any "@type" (http_rest_api_handler.cc, §2.3)."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return json.dumps({"model_spec": json_format.MessageToDict(response.model_spec, preserving_proto_field_name=True),
                       "metadata": {"signature_def": json_format.MessageToDict(
                           signature_map, preserving_proto_field_name=True)}}, indent=1)


def service_metrics(service: Service) -> str:
    """Prometheus text: TF metric names with '/' -> ':' (prometheus_exporter.cc GetPrometheusMetricName, §2.3).
    The SavedModel loader's counter (tensorflow/cc/saved_model/loader.cc) is labelled with each model path."""
    lines = ["# TYPE :tensorflow:cc:saved_model:load_attempt_count counter"]
    with service.servables.lock:
        loads, requests = list(service.servables.loads), dict(service.servables.requests)
    for path, status in loads:
        lines.append(f':tensorflow:cc:saved_model:load_attempt_count{{model_path="{path}",status="{status}"}} 1')
    lines.append("# TYPE :tensorflow:serving:request_count counter")
    for (name, status), count in sorted(requests.items()):
        lines.append(f':tensorflow:serving:request_count{{model_name="{name}",status="{status}"}} {count}')
    return "\n".join(lines) + "\n"


def parse_text_config(path: str) -> dict[str, Any]:
    """SSLConfig and MonitoringConfig are small text protos (SRV config/ssl_config.proto,
    config/monitoring_config.proto) whose classes tensorflow-serving-api does not ship."""
    text = Path(path).read_text()
    fields: dict[str, Any] = {}
    for key, value in re.findall(r"(\w+)\s*:\s*(\"(?:[^\"\\]|\\.)*\"|\w+)", text):
        fields[key] = json.loads(value) if value.startswith('"') else value == "true" if value in ("true", "false") else value
    return fields


def build_grpc_credentials(ssl_config_file: str) -> grpc.ServerCredentials:
    # server.cc BuildServerCredentials: client_verify -> REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY (§2.2).
    cfg = parse_text_config(ssl_config_file)
    custom_ca = cfg.get("custom_ca") or None
    return grpc.ssl_server_credentials([(cfg["server_key"].encode(), cfg["server_cert"].encode())],
                                       root_certificates=custom_ca.encode() if custom_ca else None,
                                       require_client_auth=bool(cfg.get("client_verify")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (SRV server.h grpc_port = 8500)")
    parser.add_argument("--rest_api_port", type=int, default=0, help="REST port; 0 = off (SRV http_port = 0)")
    parser.add_argument("--model_config_file", help="text ModelServerConfig")
    parser.add_argument("--model_name", default="default", help="SRV Server::Options default \"default\"")
    parser.add_argument("--model_base_path")
    parser.add_argument("--ssl_config_file", help="text SSLConfig; applies to gRPC only, as in the real server")
    parser.add_argument("--monitoring_config_file", help="text MonitoringConfig{prometheus_config{enable, path}}")
    parser.add_argument("--enable_profiler", default="true", choices=["true", "false"])
    parser.add_argument("--rest_api_enable_cors_support", default="false", choices=["true", "false"])
    parser.add_argument("--enable_grpc_healthcheck_service", default="false", choices=["true", "false"],
                        help="SRV server.h, since 2.15.1/2.16.1 (§2.1)")
    parser.add_argument("--audit_log", type=Path, help="stand-in only: JSON lines of every request received")
    parser.add_argument("--emulate_release", default="2.14.1", type=release_tuple,
                        help="stand-in only: the TF Serving release whose gRPC method set to register (profiler "
                             "methods, reflection); the default 2.14.1 predates reflection and health")
    args = parser.parse_args()
    if args.enable_grpc_healthcheck_service == "true" and args.emulate_release < (2, 15, 1):
        parser.error("--enable_grpc_healthcheck_service exists only from TF Serving 2.15.1 on")

    servables = Servables()
    if args.model_config_file:
        servables.load_config(Path(args.model_config_file).read_text())
    elif args.model_base_path:
        servables.load_config(f'model_config_list {{ config {{ name: "{args.model_name}" '
                              f'base_path: "{args.model_base_path}" model_platform: "tensorflow" }} }}')
    service = Service(servables)
    audit = AuditLog(args.audit_log)

    methods: dict[str, tuple[Any, Callable]] = dict(grpc_methods(service))
    if args.enable_profiler == "true":
        methods.update(profiler_methods(args.emulate_release))
    # grpc.max_{send,receive}_message_length = INT32_MAX (server.cc, §2.1).
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_receive_message_length", 2**31 - 1),
                                  ("grpc.max_send_message_length", 2**31 - 1)])
    # Before RawHandler, which answers every other method (unregistered ones UNIMPLEMENTED).
    enable_meta_services(server, args.emulate_release, args.enable_grpc_healthcheck_service == "true")
    server.add_generic_rpc_handlers([RawHandler(methods, audit)])
    address = f"0.0.0.0:{args.port}"  # server.cc: "0.0.0.0:" + port (§2.2)
    if args.ssl_config_file:
        server.add_secure_port(address, build_grpc_credentials(args.ssl_config_file))
    else:
        server.add_insecure_port(address)
    server.start()

    if args.rest_api_port:
        prometheus = None
        if args.monitoring_config_file:
            cfg = parse_text_config(args.monitoring_config_file)
            if cfg.get("enable"):
                prometheus = cfg.get("path") or DEFAULT_PROMETHEUS_PATH
        handler = make_rest_handler(service, audit, prometheus, args.rest_api_enable_cors_support == "true")
        http = ThreadingHTTPServer(("0.0.0.0", args.rest_api_port), handler)  # binds every interface (§2.2)
        http.daemon_threads = True
        threading.Thread(target=http.serve_forever, daemon=True).start()
    print(f"READY modelserver grpc={args.port} rest={args.rest_api_port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()

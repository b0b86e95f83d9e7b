"""The Open Inference Protocol ("V2"), spoken by KServe, Seldon MLServer and Triton, on REST and on gRPC.

Identification: REST `GET /v2` answers server metadata as a JSON object with exactly a string `name`, a string
`version` and a list `extensions` (the V2 spec's required server-metadata response); gRPC
`inference.GRPCInferenceService/ServerMetadata` answers the same three fields. The product is what the
server calls itself (kserve, mlserver, triton; anything else is kept as said, bounded). A 404 or a
uvicorn header proves nothing: KServe, MLServer and any FastAPI app share them (docs/families.md).

Only reads are sent. REST: GETs only. `POST /v2/repository/index` (the repository extension's model list)
does not change state, but it is a POST and the spec files it with load and unload, so it is not sent.
gRPC: ServerMetadata, ModelMetadata and ModelReady; everything that runs, loads or unloads models, or
changes server settings, is on probes/inference_v2/family.toml's do_not_call list. Model names come from what the server leaks
elsewhere (KServe's `GET /v1/models`, Triton's metrics labels) plus the caller's candidate list.

Message layouts from kserve/kserve@aaac4e29 python/kserve/kserve/protocol/grpc/grpc_predict_v2.proto
(checked against the installed kserve's grpc_predict_v2_pb2 descriptor, tests/test_families.py):
  ServerMetadataResponse{name 1, version 2, extensions 3 (repeated)}
  ModelMetadataRequest{name 1, version 2}; ModelReadyRequest{name 1, version 2}; ModelReadyResponse{ready 1}
  ModelMetadataResponse{name 1, versions 2 (repeated), platform 3, inputs 4, outputs 5}
  TensorMetadata{name 1, datatype 2, shape 3 (repeated int64, packed)}
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Callable

from netaudit.transport import httpwire
from netaudit.transport import protowire
from netaudit.transport.rpc import RpcSession

from netaudit.probes.common import MAX_MODELS, bounded
from netaudit.probes.base import GrpcSignature, HttpSignature, Naming, Outcome, ProbeContext

SERVICE = "inference.GRPCInferenceService"
SERVER_METADATA = f"/{SERVICE}/ServerMetadata"
MODEL_METADATA = f"/{SERVICE}/ModelMetadata"
MODEL_READY = f"/{SERVICE}/ModelReady"
GRPC_CALLS = (SERVER_METADATA, MODEL_METADATA, MODEL_READY)

# REST requests, as data: (method, path template, what a V2 server answers).
REST_SERVER_METADATA = ("GET", "/v2", "200 JSON {name: str, version: str, extensions: [str]}")
REST_MODEL_METADATA = ("GET", "/v2/models/{name}", "200 JSON {name, versions?, platform, inputs, outputs}; 404 unknown")
REST_MODEL_READY = ("GET", "/v2/models/{name}/ready", "200 ready; 503 (KServe) or 400 (Triton) not ready; 404 unknown")
REST_REQUESTS = (REST_SERVER_METADATA, REST_MODEL_METADATA, REST_MODEL_READY)
# Where servers leak their model names without being asked for one by name.
KSERVE_MODEL_LIST = "/v1/models"
TRITON_METRICS_MODEL = re.compile(r'^nv_inference_request_success\{model="([^"]{1,128})"', re.M)

# What each server calls itself in its metadata, and how reports name it.
PRODUCT_LABELS = {"kserve": "KServe", "mlserver": "Seldon MLServer", "triton": "NVIDIA Triton Inference Server"}
KNOWN_PRODUCTS = tuple(PRODUCT_LABELS)
# ServerMetadataResponse's field numbers (the layout in the module docstring).
METADATA_FIELDS = {"name": 1, "version": 2, "extensions": 3}
MAX_TENSORS = 32
MAX_EXTENSIONS = 32
INVENTORY_PARALLEL = 8


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Model:
    name: str
    versions: tuple[str, ...] = ()
    platform: str = ""
    ready: bool | None = None
    inputs: tuple[Tensor, ...] = ()
    outputs: tuple[Tensor, ...] = ()


@dataclass(frozen=True)
class InferenceV2Facts:
    """What a V2 server gave away without credentials. `product` is the server's own name, lower-cased."""

    kind: str  # "inference-v2-rest" or "inference-v2-grpc"
    product: str
    version: str
    extensions: tuple[str, ...]
    models: tuple[Model, ...]
    model_names_tried: int
    authenticated: bool = False
    evidence: tuple[str, ...] = field(default=(), compare=False)


def product_of(name: str) -> str:
    lowered = bounded(name).lower()
    return lowered if lowered in KNOWN_PRODUCTS else lowered or "unknown"


def _json(reply: httpwire.HttpReply | None) -> object:
    if reply is None or not (reply.header("content-type") or "").startswith("application/json"):
        return None
    try:
        return json.loads(reply.body)
    except ValueError:
        return None


def server_metadata_json(body: object) -> tuple[str, str, tuple[str, ...]] | None:
    """(name, version, extensions) when `body` is a V2 server-metadata object, else None."""
    if not (isinstance(body, dict) and {"name", "version", "extensions"} <= set(body)):
        return None
    name, version, extensions = body["name"], body["version"], body["extensions"]
    if not (isinstance(name, str) and name and isinstance(version, str) and isinstance(extensions, list)
            and all(isinstance(e, str) for e in extensions)):
        return None
    return bounded(name), bounded(version), tuple(bounded(e) for e in extensions[:MAX_EXTENSIONS])


def _tensors_json(items: object) -> tuple[Tensor, ...]:
    out = []
    for item in items[:MAX_TENSORS] if isinstance(items, list) else []:
        if isinstance(item, dict):
            shape = item.get("shape") if isinstance(item.get("shape"), list) else []
            out.append(Tensor(bounded(item.get("name")), bounded(item.get("datatype")),
                              tuple(int(d) for d in shape[:MAX_TENSORS] if isinstance(d, int))))
    return tuple(out)


def model_json(name: str, body: object, ready: bool | None) -> Model | None:
    if not (isinstance(body, dict) and body.get("name") == name):
        return None
    versions = body.get("versions") if isinstance(body.get("versions"), list) else []
    return Model(name, tuple(bounded(v) for v in versions[:MAX_MODELS]), bounded(body.get("platform")), ready,
                 _tensors_json(body.get("inputs")), _tensors_json(body.get("outputs")))


# --- gRPC messages ---------------------------------------------------------------------------------------

def name_request(name: str) -> bytes:
    """ModelMetadataRequest and ModelReadyRequest share the layout {name 1, version 2}."""
    return protowire.field(1, name)


def server_metadata_grpc(body: bytes) -> tuple[str, str, tuple[str, ...]] | None:
    try:
        msg = protowire.decode(body)
    except protowire.DecodeError:
        return None
    name = msg.str(METADATA_FIELDS["name"])
    if not name:
        return None
    return bounded(name), bounded(msg.str(METADATA_FIELDS["version"])), tuple(
        bounded(b.decode("utf-8", "replace")) for b in msg.blobs(METADATA_FIELDS["extensions"])[:MAX_EXTENSIONS])


def _shape(tensor: protowire.Fields) -> tuple[int, ...]:
    """Field 3 is repeated int64: packed (one LEN blob of varints) as proto3 writes it, or unpacked."""
    dims = tensor.ints(3) + [d for blob in tensor.blobs(3) for d in protowire.packed_varints(blob)]
    return tuple(d - (1 << 64) if d >= 1 << 63 else d for d in dims[:MAX_TENSORS])


def _tensors_grpc(blobs: list[protowire.Fields]) -> tuple[Tensor, ...]:
    return tuple(Tensor(bounded(t.str(1)), bounded(t.str(2)), _shape(t)) for t in blobs[:MAX_TENSORS])


def model_grpc(name: str, body: bytes, ready: bool | None) -> Model | None:
    try:
        msg = protowire.decode(body)
        if msg.str(1) != name:
            return None
        return Model(name, tuple(bounded(b.decode("utf-8", "replace")) for b in msg.blobs(2)[:MAX_MODELS]),
                     bounded(msg.str(3)), ready, _tensors_grpc(msg.messages(4)), _tensors_grpc(msg.messages(5)))
    except protowire.DecodeError:
        return None


def ready_grpc(body: bytes) -> bool | None:
    try:
        return bool(protowire.decode(body).int(1))
    except protowire.DecodeError:
        return None


# --- for nmap (probes/base.py): server metadata, one naming per known product, then any other name ------------

def _json_metadata(name: str) -> str:
    """The V2 server-metadata object as the three servers write it: name, version, extensions, in that order."""
    return rf'\A\{{\s*"name":\s*"(?P<name>{name})",\s*"version":\s*"(?P<version>[^"]{{1,64}})",\s*"extensions":\s*\['


def _proto_string(field_name: str, text: str) -> str:
    """A length-delimited string field of ServerMetadataResponse: the tag, the length byte, the text."""
    tag = (METADATA_FIELDS[field_name] << 3) | 2
    if text:
        return rf"\x{tag:02x}\x{len(text):02x}(?P<{field_name}>{text})"
    return rf"\x{tag:02x}[\x01-\x3f](?P<{field_name}>[\x20-\x7e]{{1,63}})"


def _namings(pattern: Callable[[str], str], info: str) -> tuple[Naming, ...]:
    return (*(Naming(pattern(name), label, "{version}", info) for name, label in PRODUCT_LABELS.items()),
            Naming(pattern(""), "{name}", "{version}", info))


NMAP = (
    GrpcSignature("InferenceV2ServerMetadata", SERVER_METADATA, b"", "OK",
                  _namings(lambda name: r"\A" + _proto_string("name", name) + _proto_string("version", ""),
                           "Open Inference Protocol gRPC"),
                  ("inference-v2-grpc",), 30,
                  f"Open Inference Protocol gRPC: {SERVER_METADATA} with an empty request; the reply's name and "
                  "version fields (inference_v2.server_metadata_grpc)"),
    HttpSignature("InferenceV2REST", REST_SERVER_METADATA[1], 200, (("content-type", "application/json"),),
                  _namings(lambda name: _json_metadata(name or '[^"]{1,64}'), "Open Inference Protocol REST"),
                  ("inference-v2-rest",), 50,
                  f"Open Inference Protocol REST: GET {REST_SERVER_METADATA[1]}; a JSON object with name, version "
                  "and extensions (inference_v2.server_metadata_json)"),
)


# --- probes -----------------------------------------------------------------------------------------------

async def _leaked_names(host: str, port: int, timeout: float, evidence: list[str]) -> list[str]:
    """KServe lists its models at GET /v1/models; nothing else is asked for."""
    reply = await httpwire.request(host, port, "GET", KSERVE_MODEL_LIST, timeout)
    body = _json(reply)
    if reply is None or reply.status != 200 or not isinstance(body, dict) or not isinstance(body.get("models"), list):
        return []
    names = [bounded(n) for n in body["models"][:MAX_MODELS] if isinstance(n, str) and n]
    evidence.append(f"GET {KSERVE_MODEL_LIST} <- {reply.summary()}: {len(names)} model names")
    return names


async def triton_metric_names(host: str, port: int, timeout: float, evidence: list[str]) -> list[str]:
    """Triton's metrics port (8002) labels every loaded model; a caller that found it passes the names on."""
    reply = await httpwire.request(host, port, "GET", "/metrics", timeout)
    if reply is None or reply.status != 200:
        return []
    names = sorted(set(TRITON_METRICS_MODEL.findall(reply.body.decode("utf-8", "replace"))))[:MAX_MODELS]
    if names:
        evidence.append(f"GET /metrics <- {reply.summary()}: model names in Triton's labels: {', '.join(names)}")
    return [bounded(n) for n in names]


async def probe_rest(host: str, port: int, timeout: float, model_names: tuple[str, ...] = ()) -> InferenceV2Facts | None:
    """None unless `GET /v2` answers V2 server metadata."""
    reply = await httpwire.request(host, port, "GET", "/v2", timeout)
    meta = server_metadata_json(_json(reply)) if reply is not None and reply.status == 200 else None
    if meta is None:
        return None
    name, version, extensions = meta
    evidence = [f"GET /v2 <- {reply.summary()}: server {name!r} version {version!r}, "
                f"extensions {', '.join(extensions) or '(none)'}"]
    names = tuple(dict.fromkeys(tuple(model_names) + tuple(await _leaked_names(host, port, timeout, evidence))))
    names = names[:MAX_MODELS]
    slots = asyncio.Semaphore(INVENTORY_PARALLEL)

    async def one(model: str) -> Model | None:
        async with slots:
            meta_reply = await httpwire.request(host, port, "GET", f"/v2/models/{model}", timeout)
            if meta_reply is None or meta_reply.status != 200:
                return None
            ready_reply = await httpwire.request(host, port, "GET", f"/v2/models/{model}/ready", timeout)
        ready = None if ready_reply is None else ready_reply.status == 200
        found = model_json(model, _json(meta_reply), ready)
        if found:
            evidence.append(f"GET /v2/models/{model} <- {meta_reply.summary()}; /ready <- "
                            f"{ready_reply.status if ready_reply else 'no reply'}")
        return found

    models = [m for m in await asyncio.gather(*(one(n) for n in names)) if m]
    return InferenceV2Facts("inference-v2-rest", product_of(name), version, extensions,
                            tuple(sorted(models, key=lambda m: m.name)), len(names), evidence=tuple(evidence))


async def probe_grpc_session(session: RpcSession, model_names: tuple[str, ...] = ()) -> InferenceV2Facts | None:
    """On an open session (the engine shares one channel per endpoint): None unless ServerMetadata answers."""
    reply = await session.unary(SERVER_METADATA, b"")
    meta = server_metadata_grpc(reply.body) if reply.ok else None
    if meta is None:
        return None
    name, version, extensions = meta
    evidence = [f"{SERVER_METADATA} <- OK: server {name!r} version {version!r}, "
                f"extensions {', '.join(extensions) or '(none)'}"]
    names = tuple(dict.fromkeys(model_names))[:MAX_MODELS]
    models = []
    for model in names:
        meta_reply = await session.unary(MODEL_METADATA, name_request(model), note=f"model {model!r}")
        if not meta_reply.ok:
            continue
        ready_reply = await session.unary(MODEL_READY, name_request(model), note=f"model {model!r}")
        ready = ready_grpc(ready_reply.body) if ready_reply.ok else False if ready_reply.speaks_grpc else None
        found = model_grpc(model, meta_reply.body, ready)
        if found:
            models.append(found)
            evidence.append(f"{MODEL_METADATA} ({model!r}) <- OK; {MODEL_READY} <- {ready_reply.code}"
                            + (f" ready={ready}" if ready_reply.ok else ""))
    return InferenceV2Facts("inference-v2-grpc", product_of(name), version, extensions,
                            tuple(sorted(models, key=lambda m: m.name)), len(names),
                            evidence=tuple(evidence))


async def probe_grpc(host: str, port: int, timeout: float, model_names: tuple[str, ...] = ()) -> InferenceV2Facts | None:
    session = RpcSession(f"{host}:{port}", timeout)
    try:
        if not await session.ready():
            return None
        return await probe_grpc_session(session, model_names)
    finally:
        await session.close()


# Every gRPC request this module can send, for tests/test_safety.py.
def declared_calls() -> list[tuple[str, bytes]]:
    return [(SERVER_METADATA, b""), (MODEL_METADATA, name_request("m")), (MODEL_READY, name_request("m"))]



def _outcome(facts: InferenceV2Facts | None, service: str) -> Outcome:
    if facts is None:
        return Outcome()
    models = {m.name: {"versions": list(m.versions), "platform": m.platform, "ready": m.ready,
                       "inputs": [asdict(t) for t in m.inputs], "outputs": [asdict(t) for t in m.outputs]}
              for m in facts.models}
    return Outcome(kind=facts.kind, services=[service], authenticated=facts.authenticated,
                   details={"product": facts.product, "version": facts.version, "protocols": ["v2"],
                            "extensions": list(facts.extensions), "models": models,
                            "model_names_tried": facts.model_names_tried},
                   evidence=list(facts.evidence))


async def identify_rest(host: str, port: int, timeout: float, ctx: ProbeContext) -> Outcome:
    """The engine's entries (probes/inference_v2/family.toml): the facts as an Outcome."""
    return _outcome(await probe_rest(host, port, timeout, ctx.model_names), "Open Inference Protocol REST /v2")


async def identify_grpc(session: RpcSession, ctx: ProbeContext) -> Outcome:
    return _outcome(await probe_grpc_session(session, ctx.model_names), SERVICE)


async def inventory_grpc(session: RpcSession, names: tuple[str, ...]) -> dict[str, dict]:
    """Models by name, for names the same host's REST port gave away (KServe lists them at /v1/models)."""
    return _outcome(await probe_grpc_session(session, names), SERVICE).details.get("models", {})

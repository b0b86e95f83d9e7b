"""TensorFlow Serving on gRPC: presence, model inventory, which dangerous RPCs answer without credentials,
and the release range its method set allows.

Requests and expected replies come from docs/wire-facts.md §2.4 and §4 (each fact with its public source;
a bare § below is a section of that page). Nothing here runs a model or changes the server: Predict gets
only an empty request (rejected with "Missing ModelSpec" before any model is touched) and
HandleReloadConfigRequest only an empty one (rejected before ReloadConfig). The
release markers are data (netaudit/data/tf_serving_release_markers.json): profiler methods get MALFORMED
(rejected before any handler), reflection a ListServices request, health an empty Check; all read-only.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from netaudit.core import advisories
from netaudit.transport import protowire
from netaudit.core.caps import cap_list
from netaudit.transport.rpc import Reply, RpcSession
from netaudit.transport.safety import MALFORMED

from netaudit.probes.base import (NAME_SLOT, Expect, GrpcSignature, Naming, Outcome, ProbeContext, literal, methods_agree,
                   registered_methods)
from netaudit.probes.common import HEALTH_CHECK, LIST_SERVICES, REFLECTION
from netaudit.probes.common import DTYPES, INTERNAL_SIGNATURES, MODEL_STATES, random_model_name, tensor
from netaudit.transport.h2wire import GRPC_CODES

MODEL_STATUS = "/tensorflow.serving.ModelService/GetModelStatus"
METADATA = "/tensorflow.serving.PredictionService/GetModelMetadata"
RELOAD = "/tensorflow.serving.ModelService/HandleReloadConfigRequest"
PREDICT = "/tensorflow.serving.PredictionService/Predict"
PROFILER_MONITOR = "/tensorflow.ProfilerService/Monitor"

MISSING_SPEC = Expect("INVALID_ARGUMENT", "Missing ModelSpec")
UNKNOWN_MODEL = Expect("NOT_FOUND", "Could not find any versions of model ")
RELOAD_REJECTED = Expect("INVALID_ARGUMENT", "ServerModelConfig type not supported by HandleReloadConfigRequest")
PROFILER_PRESENT = Expect("UNIMPLEMENTED", "unimplemented.")
REFUSED = ("UNAUTHENTICATED", "PERMISSION_DENIED")
INVENTORY_PARALLEL = 16
PROFILER_PREFIX = "/tensorflow.ProfilerService/"


class ServingMarkerError(ValueError):
    """tf_serving_release_markers.json is malformed; the message names the row."""


@dataclass(frozen=True)
class ServingRow:
    """A TF Serving release range (`min`/`max` inclusive, None open-ended) and what it registers (`methods`:
    path -> registered; a path not listed is unknown there)."""

    min: str | None
    max: str | None
    note: str
    methods: dict[str, bool]

    def agrees(self, observed: dict[str, bool]) -> bool:
        return methods_agree(self.methods, observed)


def parse_serving_rows(text: str) -> tuple[ServingRow, ...]:
    try:
        raw_rows = json.loads(text)["rows"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ServingMarkerError(f"tf_serving_release_markers.json: not a marker file: {exc!r}") from None
    rows = []
    for index, raw in enumerate(raw_rows):
        try:
            bounds = [advisories.parse_version(v) for v in (raw["min"], raw["max"]) if v is not None]
            if bounds != sorted(bounds) or not raw["note"]:
                raise ValueError("needs min <= max (release versions or null) and a note with its source")
            rows.append(ServingRow(raw["min"], raw["max"], str(raw["note"]), registered_methods(raw["methods"])))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ServingMarkerError(f"tf_serving_release_markers.json: row {index}: {exc!r}") from None
    for older, newer in zip(rows, rows[1:]):
        if older.max is None or newer.min is None or \
                advisories.parse_version(older.max) >= advisories.parse_version(newer.min):
            raise ServingMarkerError("tf_serving_release_markers.json: rows must be in release order and not overlap")
    return tuple(rows)


@cache
def serving_rows() -> tuple[ServingRow, ...]:
    return parse_serving_rows(resources.files("netaudit").joinpath("data/tf_serving_release_markers.json").read_text())


@cache
def serving_markers() -> tuple[str, ...]:
    return tuple(sorted({m for row in serving_rows() for m in row.methods}))


def infer_serving_version(registered: dict[str, bool], rows: tuple[ServingRow, ...] | None = None) -> dict:
    """The release range every agreeing row spans. With the profiler off (Monitor not registered), the
    profiler methods say nothing from 2.5 on (--enable_profiler=false), so only the older rows may use them."""
    rows = rows or serving_rows()
    observed = dict(registered)
    if not observed.get(PROFILER_PREFIX + "Monitor", True):
        observed = {m: v for m, v in observed.items() if not m.startswith(PROFILER_PREFIX)}
    candidates = [r for r in rows if r.agrees(observed)]
    basis = sorted(m for m, present in registered.items() if present)
    source = ("derived from TF Serving's source (model_servers/server.cc, https://github.com/tensorflow/serving); "
              "no real tensorflow_model_server confirmed it")
    if not candidates:
        return {"range": "unknown", "min": None, "max": None, "registered_markers": basis, "source": "derived",
                "basis": source}
    low, high = candidates[0].min, candidates[-1].max
    if low is None:
        text = f"<= {high}" if high else "any"
    elif high is None:
        text = f">= {low}"
    else:
        text = low if low == high else f"{low}-{high}"
    return {"range": text, "min": low, "max": high, "registered_markers": basis, "source": "derived",
            "basis": source}


async def release_markers(session: RpcSession, monitor: Reply) -> dict[str, bool]:
    """Whether each marker method is registered. Only read-only requests: MALFORMED for the profiler (the sync
    C++ service rejects it with INTERNAL before a handler; §2.4), ListServices for reflection, an empty
    Check for health. A marker left without an answer (Reply.registered None) is left out."""
    async def one(method: str) -> bool | None:
        if method == PROFILER_MONITOR:
            replies = [monitor]
        elif method in REFLECTION:
            replies = [await session.stream_first(m, LIST_SERVICES) for m in REFLECTION]
        elif method == HEALTH_CHECK:
            replies = [await session.unary(HEALTH_CHECK)]
        else:
            replies = [await session.unary(method, MALFORMED)]
        answers = [r.registered for r in replies]
        if True in answers:
            return True
        return None if None in answers else False

    found = await asyncio.gather(*(one(m) for m in serving_markers()))
    return {m: present for m, present in zip(serving_markers(), found, strict=True) if present is not None}


def model_spec(name: str) -> bytes:
    return protowire.field(1, protowire.field(1, name))  # request.model_spec (1) . name (1)


# For nmap (probes/base.py): the NOT_FOUND that echoes a random model name, as probe() checks it.
NMAP = (GrpcSignature(
    "TFServingModelStatus", MODEL_STATUS, model_spec, UNKNOWN_MODEL.code,
    (Naming(literal(UNKNOWN_MODEL.details) + NAME_SLOT, "TensorFlow Serving gRPC", info="ModelService"),),
    ("modelserver-grpc",), 20,
    f"TF Serving gRPC: {MODEL_STATUS} for a random model; {UNKNOWN_MODEL.code} "
    f"{UNKNOWN_MODEL.details!r} + the name proves it (modelserver_grpc.UNKNOWN_MODEL)"),)


def metadata_request(name: str) -> bytes:
    return model_spec(name) + protowire.field(2, "signature_def")  # metadata_field (2)


def decode_model_status(body: bytes, truncated: dict[str, int] | None = None) -> list[dict]:
    """GetModelStatusResponse.model_version_status (1) {version 1, state 2, status 3 {error_code 1, error_message 2}}."""
    out = []
    for status in map(protowire.decode, cap_list(protowire.decode(body).blobs(1), "versions", truncated)):
        detail = status.message(3)
        code = detail.int(1)
        out.append({"version": status.signed(1), "state": MODEL_STATES.get(status.int(2), str(status.int(2))),
                    "error_code": GRPC_CODES[code] if code < len(GRPC_CODES) else str(code),
                    "error_message": detail.str(2)})
    return sorted(out, key=lambda v: v["version"])


def _tensor_info(info: protowire.Fields) -> dict:
    """TensorInfo {name 1, dtype 2, tensor_shape 3 {dim 2 {size 1}, unknown_rank 3}}."""
    shape = info.message(3)
    dims = None if shape.int(3) else [d.signed(1) for d in shape.messages(2)]
    return tensor(DTYPES.get(info.int(2), str(info.int(2))), dims, info.str(1))


def _map(fields: protowire.Fields, number: int, cap: str | None = None,
         truncated: dict[str, int] | None = None) -> dict[str, protowire.Fields]:
    """A proto map<string, Message> is repeated entries {key 1, value 2}; at most CAPS[cap] of them."""
    entries = fields.blobs(number)
    return {entry.str(1): entry.message(2)
            for entry in map(protowire.decode, cap_list(entries, cap, truncated) if cap else entries)}


def decode_signatures(body: bytes, truncated: dict[str, int] | None = None) -> tuple[int | None, dict]:
    """GetModelMetadataResponse {model_spec 1 {version 2 {value 1}}, metadata 2: map<string, Any {value 2}>};
    metadata["signature_def"] is a SignatureDefMap {signature_def 1: map<string, SignatureDef
    {inputs 1, outputs 2, method_name 3}>}."""
    response = protowire.decode(body)
    version = response.message(1).message(2).signed(1) if response.message(1).blobs(2) else None
    packed = _map(response, 2).get("signature_def")
    signatures = {}
    if packed is not None:
        defs = _map(protowire.decode(packed.blobs(2)[-1] if packed.blobs(2) else b""), 1, "signatures", truncated)
        for name, sig in defs.items():
            if name in INTERNAL_SIGNATURES:
                continue
            signatures[name] = {"method_name": sig.str(3),
                                **{side: {k: _tensor_info(v) for k, v in sorted(_map(sig, number, "tensors",
                                                                                     truncated).items())}
                                   for side, number in (("inputs", 1), ("outputs", 2))}}
    return version, dict(sorted(signatures.items()))


async def inventory(session: RpcSession, names: tuple[str, ...]) -> dict[str, dict]:
    """Versions, states and signatures of every name the server knows; unknown names cost one NOT_FOUND."""
    slots = asyncio.Semaphore(INVENTORY_PARALLEL)

    async def one(name: str) -> tuple[str, dict] | None:
        async with slots:
            status = await session.unary(MODEL_STATUS, model_spec(name), f"model_spec.name={name!r}")
            if not status.ok:
                return None
            meta = await session.unary(METADATA, metadata_request(name),
                                       f"model_spec.name={name!r}, metadata_field=['signature_def']")
        truncated: dict[str, int] = {}
        model: dict = {"versions": [], "signatures": {}}
        try:
            model["versions"] = decode_model_status(status.body, truncated)
            if meta.ok:
                model["metadata_version"], model["signatures"] = decode_signatures(meta.body, truncated)
        except protowire.DecodeError as exc:
            model["decode_error"] = f"the server's reply is not the expected message: {exc}"
        if truncated:
            model["truncated"] = truncated
        return name, model

    found = await asyncio.gather(*(one(n) for n in names))
    return dict(sorted(item for item in found if item))


async def probe(session: RpcSession, ctx: ProbeContext) -> Outcome:
    random_name = random_model_name()
    empty, unknown = await asyncio.gather(session.unary(MODEL_STATUS), session.unary(MODEL_STATUS, model_spec(random_name),
                                                                  f"model_spec.name={random_name!r}"))
    out = Outcome()
    if not (empty.matches(MISSING_SPEC.code, MISSING_SPEC.details)
            or unknown.matches(UNKNOWN_MODEL.code, UNKNOWN_MODEL.details + random_name)):
        return out
    out.kind = "modelserver-grpc"
    out.authenticated = False
    out.services.append("tensorflow.serving.ModelService")
    out.evidence += [session.cite(r) for r in (empty, unknown) if r.speaks_grpc]
    reload_reply, predict_reply, monitor = await asyncio.gather(
        session.unary(RELOAD), session.unary(PREDICT), session.unary(PROFILER_MONITOR))
    if predict_reply.matches(MISSING_SPEC.code, MISSING_SPEC.details):
        out.services.append("tensorflow.serving.PredictionService")
        out.details["predict"] = "reachable"
        out.evidence.append(f"Predict reachable with {session.credentials}: an empty request reached the handler")
        out.evidence.append(session.cite(predict_reply))
    if reload_reply.matches(RELOAD_REJECTED.code, RELOAD_REJECTED.details):
        out.details["admin_reload"] = "reachable"
        out.evidence.append(f"HandleReloadConfigRequest reachable with {session.credentials}: an empty request "
                            "reached the handler")
        out.evidence.append(session.cite(reload_reply))
    elif reload_reply.code in REFUSED:
        out.details["admin_reload"] = "refused"
        out.evidence.append(f"HandleReloadConfigRequest refused: {reload_reply.code}")
        out.evidence.append(session.cite(reload_reply))
    if monitor.matches(PROFILER_PRESENT.code, PROFILER_PRESENT.details):
        out.services.append("tensorflow.ProfilerService")
    version = infer_serving_version(await release_markers(session, monitor))
    out.details["serving_version"] = version
    out.details["advisories"] = advisories.match(version["min"], version["max"], product="tensorflow-serving")
    out.evidence.append(f"TF Serving release {version['range']} ({version['basis']}), from the registered methods: "
                        + (", ".join(version["registered_markers"]) or "none of the markers"))
    out.details["models"] = await inventory(session, ctx.model_names)
    out.details["model_names_tried"] = len(ctx.model_names)
    return out

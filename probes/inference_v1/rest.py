"""KServe's V1 REST protocol: TF Serving's URL layout, told apart from TF Serving by its exact error reply.

`GET /v1/models/<random>` on KServe answers 404 with `server: uvicorn`, content-type application/json and the
compact body `{"error":"Model with name NAME does not exist."}` (kserve errors.py ModelNotFound; measured on
kserve 0.20.0, docs/families.md; for 0.21.0
https://github.com/kserve/kserve/blob/aaac4e29/python/kserve/kserve/errors.py, docs/wire-facts.md §6).
TF Serving answers `Could not find any versions of model NAME`, pretty-printed, with no Server header
(probes/tf_serving/rest.py); MLServer and a plain FastAPI app answer `{"detail":"Not Found"}`; Triton
`{"error":"Not Found"}` as text/plain. Only the exact KServe reply identifies KServe. Then `GET /v1/models`
lists the models and `GET /v1/models/NAME` gives readiness (200 `{"name":NAME,"ready":true}`, 503 `is not
ready.`). Only GETs are sent: never `:predict` or `:explain`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field

from netaudit.transport import httpwire

from netaudit.probes.base import HttpSignature, Naming, Outcome, ProbeContext, literal
from netaudit.probes.common import MAX_MODELS, bounded

# Requests and the replies that prove KServe V1, as data.
UNKNOWN_MODEL_PATH = "/v1/models/{name}"
UNKNOWN_MODEL_STATUS = 404
UNKNOWN_MODEL_BODY = '{{"error":"Model with name {name} does not exist."}}'
NOT_READY_STATUS = 503
SERVER_HEADER = "uvicorn"
MODEL_LIST_PATH = "/v1/models"
MODEL_READY_PATH = "/v1/models/{name}"
INVENTORY_PARALLEL = 8

# For nmap (probes/base.py): the reply kserve_unknown_model() accepts, byte for byte. After the V2 probe,
# which also names the version on a KServe port serving both.
NMAP = (HttpSignature(
    "KServeV1REST", UNKNOWN_MODEL_PATH, UNKNOWN_MODEL_STATUS,
    (("server", SERVER_HEADER), ("content-type", "application/json")),
    (Naming(r"\A" + literal(UNKNOWN_MODEL_BODY), "KServe", info="V1 REST"),),
    ("inference-v1-rest",), 60,
    f"KServe V1 REST: GET {UNKNOWN_MODEL_PATH} for a random model; a 404 from {SERVER_HEADER} whose body is "
    f"exactly {UNKNOWN_MODEL_BODY.format(name='NAME')} (inference_v1.kserve_unknown_model)"),)


@dataclass(frozen=True)
class V1Model:
    name: str
    ready: bool


@dataclass(frozen=True)
class InferenceV1Facts:
    kind: str  # "inference-v1-rest"
    product: str  # "kserve"
    models: tuple[V1Model, ...]
    listed: bool  # GET /v1/models answered the list (so `models` is the whole inventory)
    authenticated: bool = False
    evidence: tuple[str, ...] = field(default=(), compare=False)


def kserve_unknown_model(reply: httpwire.HttpReply | None, name: str) -> bool:
    return (reply is not None and reply.status == UNKNOWN_MODEL_STATUS and reply.header("server") == SERVER_HEADER
            and reply.header("content-type") == "application/json"
            and reply.body == UNKNOWN_MODEL_BODY.format(name=name).encode())


def _names(reply: httpwire.HttpReply | None) -> list[str] | None:
    if reply is None or reply.status != 200:
        return None
    try:
        body = json.loads(reply.body)
    except ValueError:
        return None
    models = body.get("models") if isinstance(body, dict) else None
    if not isinstance(models, list):
        return None
    return [bounded(n) for n in models[:MAX_MODELS] if isinstance(n, str) and n]


async def probe(host: str, port: int, timeout: float, model_names: tuple[str, ...] = ()) -> InferenceV1Facts | None:
    """None unless the unknown-model reply is KServe's, byte for byte."""
    unknown = f"netaudit-probe-{secrets.token_hex(6)}"
    reply = await httpwire.request(host, port, "GET", UNKNOWN_MODEL_PATH.format(name=unknown), timeout)
    if not kserve_unknown_model(reply, unknown):
        return None
    evidence = [f"GET /v1/models/{unknown} <- {reply.summary()}, server: uvicorn: KServe's compact "
                f"'Model with name … does not exist.'"]
    listing = await httpwire.request(host, port, "GET", MODEL_LIST_PATH, timeout)
    listed = _names(listing)
    if listed is not None:
        evidence.append(f"GET {MODEL_LIST_PATH} <- {listing.summary()}: {len(listed)} models")
    names = tuple(dict.fromkeys((listed or []) + list(model_names)))[:MAX_MODELS]
    slots = asyncio.Semaphore(INVENTORY_PARALLEL)

    async def one(name: str) -> V1Model | None:
        async with slots:
            status = await httpwire.request(host, port, "GET", MODEL_READY_PATH.format(name=name), timeout)
        if status is None or kserve_unknown_model(status, name) or status.status not in (200, NOT_READY_STATUS):
            return None
        evidence.append(f"GET /v1/models/{name} <- {status.status} {status.reason}")
        return V1Model(name, status.status == 200)

    models = [m for m in await asyncio.gather(*(one(n) for n in names)) if m]
    return InferenceV1Facts("inference-v1-rest", "kserve", tuple(sorted(models, key=lambda m: m.name)),
                            listed is not None, evidence=tuple(evidence))


async def identify(host: str, port: int, timeout: float, ctx: ProbeContext) -> Outcome:
    """The engine's entry (probes/inference_v1/family.toml): the facts as an Outcome."""
    facts = await probe(host, port, timeout, ctx.model_names)
    if facts is None:
        return Outcome()
    return Outcome(kind=facts.kind, services=["kserve V1 REST /v1/models"], authenticated=facts.authenticated,
                   details={"product": facts.product, "protocols": ["v1"], "listed": facts.listed,
                            "models": {m.name: {"ready": m.ready} for m in facts.models}},
                   evidence=list(facts.evidence))

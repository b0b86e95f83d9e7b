"""TensorFlow Serving's REST API: identified by its exact error bodies and headers, never by a 404 alone.

Facts from docs/wire-facts.md §2.3 (TF Serving's http_server.cc and http_rest_api_handler.cc): an unknown
model gives 404 `{"error": "Could not find any versions of model NAME"}` as application/json with no Server
header; `/` gives libevent's 90-byte HTML 404; the Prometheus exporter (when enabled) names every loaded
model path. Only GETs are sent, plus one POST with an empty body to a random model's :predict, which fails
JSON parsing before any model lookup.
"""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import quote

from netaudit.transport import httpwire
from netaudit.core.caps import cap_list

from netaudit.probes.base import HttpSignature, Naming, Outcome, ProbeContext, literal
from netaudit.probes.common import INTERNAL_SIGNATURES, random_model_name, tensor

MODEL_PATH = "/v1/models/{name}"
UNKNOWN_MODEL = "Could not find any versions of model {name}"
EMPTY_BODY = "JSON Parse error: The document is empty"
LIBEVENT_404 = b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n</BODY></HTML>\n"
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
PROBE_ORIGIN = "https://netaudit.invalid"
# Model names in metric labels: model_name="NAME", or model_path=".../NAME/VERSION" (SavedModel loader).
METRIC_NAME = re.compile(r'model_name="([^"]+)"')
METRIC_PATH = re.compile(r'model_path="[^"]*?/([^/"]+)/\d+"')
INVENTORY_PARALLEL = 8

# For nmap (probes/base.py): a 404 without a Server header whose JSON body is only the exact error, the
# checks probe() makes short of parsing the JSON.
NMAP = (HttpSignature(
    "TFServingREST", MODEL_PATH, 404, (("server", None), ("content-type", "application/json")),
    (Naming(r'\A\{\s*"error": ?"' + literal(UNKNOWN_MODEL) + r'"\s*\}', "TensorFlow Serving REST API"),),
    ("modelserver-rest",), 40,
    f"TF Serving REST: GET {MODEL_PATH} for a random model; a 404 without a Server header whose JSON body is "
    f"only {{\"error\": \"{UNKNOWN_MODEL.format(name='NAME')}\"}} (modelserver_rest.probe)"),)


def parse_json(body: bytes):
    """json.loads, with nesting too deep for the parser (a server's "[[[[…") as the ValueError it is."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _path(name: str) -> str:
    """A model name as one URL path segment: a name learned from a server's metrics may hold anything."""
    return f"/v1/models/{quote(name, safe='')}"


def _error(reply: httpwire.HttpReply | None) -> str | None:
    if reply is None or reply.header("content-type") != "application/json":
        return None
    try:
        body = parse_json(reply.body)
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) and set(body) == {"error"} else None


def names_in_metrics(text: str, truncated: dict[str, int] | None = None) -> list[str]:
    """Model names in the metric labels, at most CAPS["metrics_model_names"] of them (each one is then
    asked for, so a page listing 100,000 names must not become 100,000 requests)."""
    return cap_list(sorted(set(METRIC_NAME.findall(text)) | set(METRIC_PATH.findall(text))), "metrics_model_names",
                    truncated)


def _dims(shape: dict) -> list[int] | None:
    return None if shape.get("unknown_rank") else [int(d.get("size", 0)) for d in shape.get("dim", [])]


def signatures_from_json(metadata: dict) -> dict:
    defs = metadata.get("metadata", {}).get("signature_def", {}).get("signature_def", {})
    out = {}
    for name, sig in cap_list(sorted(defs.items()), "signatures"):
        if name in INTERNAL_SIGNATURES:
            continue
        out[name] = {"method_name": sig.get("method_name", ""),
                     **{side: {k: tensor(v.get("dtype", ""), _dims(v.get("tensor_shape", {})), v.get("name", ""))
                               for k, v in cap_list(sorted(sig.get(side, {}).items()), "tensors")}
                        for side in ("inputs", "outputs")}}
    return out


async def inventory(host: str, port: int, timeout: float, names: tuple[str, ...], evidence: list[str]) -> dict:
    slots = asyncio.Semaphore(INVENTORY_PARALLEL)

    async def one(name: str) -> tuple[str, dict] | None:
        async with slots:
            status = await httpwire.request(host, port, "GET", _path(name), timeout)
            if status is None or status.status != 200:
                return None
            meta = await httpwire.request(host, port, "GET", f"{_path(name)}/metadata", timeout)
        evidence.append(f"GET {_path(name)} <- {status.summary()}")
        try:
            versions = cap_list(parse_json(status.body).get("model_version_status", []), "versions")
            model = {"versions": sorted(({"version": int(v["version"]), "state": v.get("state", "UNKNOWN"),
                                          "error_code": v.get("status", {}).get("error_code", "OK"),
                                          "error_message": v.get("status", {}).get("error_message", "")}
                                         for v in versions), key=lambda v: v["version"]), "signatures": {}}
            if meta is not None and meta.status == 200:
                payload = parse_json(meta.body)
                model["metadata_version"] = int(payload.get("model_spec", {}).get("version", 0)) or None
                model["signatures"] = signatures_from_json(payload)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        return name, model

    found = await asyncio.gather(*(one(n) for n in names))
    return dict(sorted(item for item in found if item))


async def probe(host: str, port: int, timeout: float, ctx: ProbeContext) -> Outcome:
    out = Outcome()
    name = random_model_name()
    unknown = await httpwire.request(host, port, "GET", MODEL_PATH.format(name=name), timeout, {"Origin": PROBE_ORIGIN})
    if unknown is None:
        return out
    line = f"GET /v1/models/{name} <- {unknown.summary()}"
    if not (unknown.status == 404 and _error(unknown) == UNKNOWN_MODEL.format(name=name)
            and unknown.header("server") is None):
        out.evidence.append(line + ": not TF Serving's error body")
        return out
    out.kind = "modelserver-rest"
    out.authenticated = False
    out.services.append("tensorflow.serving REST /v1/models")
    out.evidence.append(f"{line}: {UNKNOWN_MODEL.format(name=name)!r}, no Server header")
    if unknown.header("access-control-allow-origin") == "*":
        out.details["cors"] = "*"
        out.evidence.append("Access-Control-Allow-Origin: * (any web page can call this API from a browser)")
    root, predict, metrics = await asyncio.gather(
        httpwire.request(host, port, "GET", "/", timeout),
        httpwire.request(host, port, "POST", f"/v1/models/{name}:predict", timeout),
        httpwire.request(host, port, "GET", PROMETHEUS_PATH, timeout))
    if root is not None and root.status == 404 and root.body == LIBEVENT_404:
        out.evidence.append("GET / <- libevent's 90-byte 404 page")
    if predict is not None and _error(predict) == EMPTY_BODY:
        out.details["predict"] = "reachable"
        out.evidence.append(f"POST /v1/models/{name}:predict (empty body) <- {predict.summary()}: {EMPTY_BODY!r}")
    leaked: list[str] = []
    if metrics is not None and metrics.status == 200 and b":tensorflow:" in metrics.body:
        truncated: dict[str, int] = {}
        leaked = names_in_metrics(metrics.body.decode("utf-8", "replace"), truncated)
        if truncated:
            out.details["truncated"] = truncated
        out.services.append("prometheus metrics")
        out.details["metrics_path"] = PROMETHEUS_PATH
        out.details["metrics_model_names"] = leaked
        out.evidence.append(f"GET {PROMETHEUS_PATH} <- {metrics.summary()}; model names in labels: {', '.join(leaked)}")
    names = tuple(dict.fromkeys(ctx.model_names + tuple(leaked)))
    out.details["models"] = await inventory(host, port, timeout, names, out.evidence)
    out.details["model_names_tried"] = len(names)
    return out

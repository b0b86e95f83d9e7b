"""TensorBoard, identified from its JSON API, never from a page title.

TensorBoard (a Werkzeug app with no authentication) answers three read-only GETs that together no other
server gives: `/data/environment` (a JSON object with a string `version` and a string `data_location`, the
log directory), `/data/plugins_listing` (an object of plugin name -> object with a boolean `enabled`) and
`/data/runs` (a JSON list of run names). Measured on tensorboard 2.21.0 (docs/families.md).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from netaudit.transport import httpwire

from netaudit.probes.base import HttpSignature, Naming, Outcome, ProbeContext
from netaudit.probes.common import bounded

# The requests, in order, and what each must answer.
ENVIRONMENT = ("GET", "/data/environment", "200 JSON object: version str, data_location str")
PLUGINS = ("GET", "/data/plugins_listing", "200 JSON object: plugin -> {enabled: bool, ...}")
RUNS = ("GET", "/data/runs", "200 JSON list of run names")
REQUESTS = (ENVIRONMENT, PLUGINS, RUNS)
MAX_RUNS = 256
MAX_PLUGINS = 64
MAX_PATH = 512

# For nmap (probes/base.py): /data/environment alone, read without parsing the JSON, as TensorBoard writes
# it (version first, then data_location). probe() asks for all three.
NMAP = (HttpSignature(
    "TensorBoardEnvironment", ENVIRONMENT[1], 200, (("content-type", "application/json"),),
    (Naming(rf'\A\{{\s*"version":\s*"(?P<version>[^"]{{1,64}})",\s*"data_location":\s*"(?P<logdir>[^"]{{0,{MAX_PATH}}})"',
            "TensorBoard", "{version}", "logdir: {logdir}"),),
    ("tensorboard",), 70,
    f"TensorBoard: GET {ENVIRONMENT[1]}; a JSON object starting with version and data_location (the log "
    "directory)"),)


@dataclass(frozen=True)
class TensorBoardFacts:
    kind: str  # "tensorboard"
    product: str  # "tensorboard"
    version: str
    logdir: str  # data_location: the absolute log directory on the server
    runs: tuple[str, ...]
    runs_total: int  # before the cap
    active_plugins: tuple[str, ...]
    authenticated: bool = False
    evidence: tuple[str, ...] = field(default=(), compare=False)


def _json(reply: httpwire.HttpReply | None) -> object:
    if reply is None or reply.status != 200 or reply.header("content-type") != "application/json":
        return None
    try:
        return json.loads(reply.body)
    except ValueError:
        return None


async def probe(host: str, port: int, timeout: float) -> TensorBoardFacts | None:
    """None unless all three replies have TensorBoard's shape."""
    environment, plugins, runs = await asyncio.gather(
        *(httpwire.request(host, port, method, path, timeout) for method, path, _ in REQUESTS))
    env, listing, names = _json(environment), _json(plugins), _json(runs)
    if not (isinstance(env, dict) and isinstance(env.get("version"), str) and isinstance(env.get("data_location"), str)):
        return None
    if not (isinstance(listing, dict) and listing
            and all(isinstance(v, dict) and isinstance(v.get("enabled"), bool) for v in listing.values())):
        return None
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        return None
    active = tuple(sorted(bounded(k) for k, v in list(listing.items())[:MAX_PLUGINS] if v["enabled"]))
    facts = TensorBoardFacts(
        "tensorboard", "tensorboard", bounded(env["version"]), bounded(env["data_location"], MAX_PATH),
        tuple(sorted(bounded(n) for n in names[:MAX_RUNS])), len(names), active,
        evidence=(f"GET /data/environment <- {environment.summary()}: version {bounded(env['version'])!r}, "
                  f"log directory {bounded(env['data_location'], MAX_PATH)!r}",
                  f"GET /data/plugins_listing <- {plugins.summary()}: {len(active)} active plugins",
                  f"GET /data/runs <- {runs.summary()}: {len(names)} runs"))
    return facts


async def identify(host: str, port: int, timeout: float, ctx: ProbeContext) -> Outcome:
    """The engine's entry (probes/tensorboard/family.toml): the facts as an Outcome."""
    facts = await probe(host, port, timeout)
    if facts is None:
        return Outcome()
    return Outcome(kind=facts.kind, services=["tensorboard /data API"], authenticated=facts.authenticated,
                   details={"product": facts.product, "version": facts.version, "logdir": facts.logdir,
                            "runs": list(facts.runs), "runs_total": facts.runs_total,
                            "active_plugins": list(facts.active_plugins)},
                   evidence=list(facts.evidence))

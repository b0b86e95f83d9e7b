"""tf.train.Server / tf.distribute.Server: the TF distributed runtime's gRPC services.

The shape of a family's probe module (docs/adding-a-server-family.md): what it asks and what each answer
proves (SIGNATURES, at the top), what it tells nmap (NMAP), and `probe` at the bottom, which the registry
calls (family.toml [[probe]]) and which reads as its three steps: identify, coordination, release_range.
Between them, the release markers and how a release range is inferred from them.

Signatures and the device message layout come from docs/wire-facts.md §1 and §4 (each fact with its public
source; a bare § below is a section of that page); each was measured against tensorflow 2.21 (§5). Adding
a signature means adding a row here. The version markers are data: netaudit/data/tf_release_markers.json,
one row per minor release, measured by bench/tf_release_matrix.py or derived from source
(docs/versions-and-advisories.md).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from netaudit.core import advisories
from netaudit.transport import protowire
from netaudit.core.caps import cap_list
from netaudit.transport.rpc import Reply, RpcSession

from netaudit.probes.base import Expect, GrpcSignature, Naming, Outcome, ProbeContext, methods_agree, registered_methods
from netaudit.transport.safety import MALFORMED


@dataclass(frozen=True)
class Signature:
    service: str
    method: str
    request: bytes
    proves: tuple[Expect, ...]
    tf_only: bool = True  # False: TF Serving answers the same way, so this alone does not mean tf-server


SIGNATURES = (
    # §4: lists local devices only; OK without credentials is the proof of "no authentication".
    Signature("tensorflow.WorkerService", "/tensorflow.WorkerService/GetStatus", b"", (Expect("OK"),)),
    # §1.5/§5: context 0 never exists, so this is only a lookup.
    Signature("tensorflow.eager.EagerService", "/tensorflow.eager.EagerService/KeepAlive", b"",
              (Expect("ABORTED", "Unable to find a context_id"),)),
    # §1.5/§5: checks for a null service or an unknown task before touching state.
    Signature("tensorflow.CoordinationService", "/tensorflow.CoordinationService/Heartbeat", b"",
              (Expect("INTERNAL", "Coordination service is not enabled."),
               Expect("INVALID_ARGUMENT", "Unexpected heartbeat request from task"),
               Expect("INVALID_ARGUMENT", "Unexpected task request"))),
    # §4: a no-op; the non-empty "unimplemented." proves the profiler implementation is registered.
    Signature("tensorflow.ProfilerService", "/tensorflow.ProfilerService/Monitor", b"",
              (Expect("UNIMPLEMENTED", "unimplemented."),), tf_only=False),
    # §1.1: the async server rejects unparseable bytes before ListDevices' handler (which fans out) runs.
    Signature("tensorflow.MasterService", "/tensorflow.MasterService/ListDevices", MALFORMED,
              (Expect("INTERNAL", "Unable to parse request"),)),
)

# The coordination leader rejects a heartbeat from an unknown task; the wording changed in 2.14 and its
# second sentence in 2.17 (measured; ReleaseRow.leader_heartbeat).
COORDINATION_LEADER = (Expect("INVALID_ARGUMENT", "Unexpected heartbeat request from task"),
                       Expect("INVALID_ARGUMENT", "Unexpected task request"))
HEARTBEAT = "/tensorflow.CoordinationService/Heartbeat"
# Read from the signature replies above, so never probed again with MALFORMED.
SERVICE_METHODS = (HEARTBEAT, "/tensorflow.ProfilerService/Monitor")
RELEASE_ROW = re.compile(r"^2\.\d{1,2}$")
# The task named in a heartbeat rejection ("/job:/replica:0/task:0" for the empty request the probe sends).
TASK_NAME = re.compile(r"/job:[^/\s]*/replica:\d+/task:\d+")


class MarkerDataError(ValueError):
    """tf_release_markers.json is malformed; the message names the row."""


@dataclass(frozen=True)
class ReleaseRow:
    """What one minor release registers (`methods`: path -> registered; a path not listed is unknown) and how
    its coordination leader words a heartbeat rejection, the task name masked (None: not recorded)."""

    release: str
    source: str  # "measured" (bench/tf_release_matrix.py) or "derived" (from source, never run)
    note: str
    methods: dict[str, bool]
    leader_heartbeat: str | None = None
    covers_older: bool = False  # the row also stands for every older release (1.x-2.1)

    def agrees(self, observed: dict[str, bool], leader_heartbeat: str | None) -> bool:
        return methods_agree(self.methods, observed) and \
            not (leader_heartbeat and self.leader_heartbeat and leader_heartbeat != self.leader_heartbeat)


def _leader_wording(row: dict) -> str | None:
    """The measured rejection of a measured row; a derived row may state the wording its wheel holds."""
    reply = row.get("replies", {}).get("leader", {}).get(HEARTBEAT)
    if reply and reply.get("code") == "INVALID_ARGUMENT":
        return mask_task(reply["details"])
    stated = row.get("leader_heartbeat")
    if stated is not None and not (isinstance(stated, str) and "{task}" in stated):
        raise ValueError("leader_heartbeat must be a wording with {task} in place of the task name")
    return stated


def parse_rows(text: str) -> tuple[ReleaseRow, ...]:
    try:
        raw_rows = json.loads(text)["releases"]
    except (ValueError, KeyError, TypeError) as exc:
        raise MarkerDataError(f"tf_release_markers.json: not a marker file: {exc!r}") from None
    rows = []
    for index, raw in enumerate(raw_rows):
        name = raw.get("release", f"row {index}") if isinstance(raw, dict) else f"row {index}"
        try:
            if not RELEASE_ROW.match(raw["release"]) or raw["source"] not in ("measured", "derived"):
                raise ValueError("needs release \"2.N\" and source measured/derived")
            if not isinstance(raw.get("covers_older", False), bool):
                raise ValueError("covers_older must be true or false")
            rows.append(ReleaseRow(raw["release"], raw["source"], str(raw["note"]), registered_methods(raw["methods"]),
                                   _leader_wording(raw), raw.get("covers_older", False)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MarkerDataError(f"tf_release_markers.json: release {name}: {exc!r}") from None
    rows.sort(key=lambda r: int(r.release.split(".")[1]))
    if len({r.release for r in rows}) != len(rows):
        raise MarkerDataError("tf_release_markers.json: a release appears twice")
    # infer_version reads covers_older as "and every release before it": true anywhere but the oldest row
    # would make a range reach down past the rows older than it.
    for row in rows[1:]:
        if row.covers_older:
            raise MarkerDataError(f"tf_release_markers.json: release {row.release}: covers_older on a row that is "
                                  "not the oldest")
    return tuple(rows)


def choose_markers(rows: tuple[ReleaseRow, ...]) -> tuple[str, ...]:
    """Few methods that still separate every pair of rows any method separates (greedy set cover), so a
    scan sends a handful of MALFORMED requests instead of one per known method."""
    def separates(method: str, a: ReleaseRow, b: ReleaseRow) -> bool:
        return method in a.methods and method in b.methods and a.methods[method] != b.methods[method]

    methods = sorted({m for r in rows for m in r.methods})
    pairs = [(a, b) for i, a in enumerate(rows) for b in rows[i + 1:] if any(separates(m, a, b) for m in methods)]
    chosen = [m for m in SERVICE_METHODS if m in methods]
    pairs = [(a, b) for a, b in pairs if not any(separates(m, a, b) for m in chosen)]
    while pairs:
        best = max(methods, key=lambda m: (sum(separates(m, a, b) for a, b in pairs), m))
        chosen.append(best)
        pairs = [(a, b) for a, b in pairs if not separates(best, a, b)]
    return tuple(m for m in chosen if m not in SERVICE_METHODS)


@cache
def release_rows() -> tuple[ReleaseRow, ...]:
    return parse_rows(resources.files("netaudit").joinpath("data/tf_release_markers.json").read_text())


@cache
def version_markers() -> tuple[str, ...]:
    """Probed with MALFORMED: a registered method rejects it with INTERNAL, an unknown one is UNIMPLEMENTED with
    empty details straight from gRPC core (§1.2 rule of thumb; measured on every row marked measured)."""
    return choose_markers(release_rows())


def next_marker(candidates: list[ReleaseRow], observed: dict[str, bool]) -> str | None:
    """The marker not yet asked that splits the remaining rows most evenly, or None once no marker splits them.
    Asked one at a time, a scan sends about log2(rows) markers instead of all of them (on every TF endpoint),
    and ends with the same rows: the markers together separate every pair any method separates."""
    best, best_split = None, 0
    for method in version_markers():
        if method in observed:
            continue
        values = [r.methods[method] for r in candidates if method in r.methods]
        split = min(values.count(True), values.count(False))
        if split > best_split:
            best, best_split = method, split
    return best


@cache
def _next_marker(observed: frozenset[tuple[str, bool]], leader_wording: str | None) -> str | None:
    """next_marker for what a scan saw so far; every endpoint of one release sees the same, so it is worked
    out once per scan."""
    seen = dict(observed)
    return next_marker([r for r in release_rows() if r.agrees(seen, leader_wording)], seen)


def mask_task(details: str) -> str:
    return TASK_NAME.sub("{task}", details)


def known_wording(details: str | None, rows: tuple[ReleaseRow, ...] | None = None) -> str | None:
    """A leader's heartbeat rejection with the task name masked, when some row words it so (what
    ReleaseRow.agrees compares). A wording no row has (a later release, a patched build) tells nothing, so it
    excludes no row instead of every row."""
    if not details:
        return None
    wording = mask_task(details)
    return wording if any(r.leader_heartbeat == wording for r in rows or release_rows()) else None


# TF numbers replicas, tasks and devices with int32s (at most 10 digits); a longer run of digits is no TF name, and
# past 4300 digits int() would raise on what a server sent.
DEVICE_NAME = re.compile(r"^/job:(?P<job>[^/]*)/replica:(?P<replica>\d{1,10})/task:(?P<task>\d{1,10})"
                         r"/device:(?P<type>[^:]+):(?P<index>\d{1,10})$")

# For nmap (probes/base.py): GetStatus's reply lists the task's devices, and their names travel as plain
# text in the message (docs/wire-facts.md §4), so the job, replica and task read straight off it.
GET_STATUS = next(s for s in SIGNATURES if s.service == "tensorflow.WorkerService")
NMAP = (GrpcSignature(
    "TFWorkerGetStatus", GET_STATUS.method, GET_STATUS.request, GET_STATUS.proves[0].code,
    (Naming(DEVICE_NAME.pattern.removeprefix("^").removesuffix("$"), "TensorFlow distributed runtime gRPC",
            info="job: {job}; replica {replica}; task {task}", cpe="a:google:tensorflow"),),
    ("tf-server",), 10,
    f"tf.distribute.Server: {GET_STATUS.method} with an empty request; the reply lists the task's devices "
    "(tf_runtime.SIGNATURES, DEVICE_NAME)"),)


def decode_devices(body: bytes, truncated: dict[str, int] | None = None) -> list[dict]:
    """GetStatusResponse.device_attributes (1) -> DeviceAttributes {name 1, device_type 2, memory_limit 4,
    incarnation 6 (fixed64), physical_device_desc 7, xla_global_id 8}. At most CAPS["devices"] are
    decoded; how many more the server listed goes into `truncated`."""
    devices = []
    listed = protowire.decode(body).blobs(1)
    for attrs in map(protowire.decode, cap_list(listed, "devices", truncated)):
        name = attrs.str(1)
        parsed = DEVICE_NAME.match(name)
        devices.append({
            "name": name,
            "job": parsed["job"] if parsed else None,
            "replica": int(parsed["replica"]) if parsed else None,
            "task": int(parsed["task"]) if parsed else None,
            "device_type": attrs.str(2),
            "memory_limit": attrs.signed(4),
            "incarnation": attrs.int(6),
            "physical_device_desc": attrs.str(7),
        })
    return devices


def infer_version(registered: dict[str, bool], leader_heartbeat: str | None = None,
                  rows: tuple[ReleaseRow, ...] | None = None) -> dict:
    """The releases whose row agrees with every observation. Past the newest row lies an unknown future
    release that may look the same, so the newest row alone reads ">= 2.N". `leader_heartbeat` is a coordination
    leader's heartbeat rejection as the server worded it."""
    rows = rows or release_rows()
    wording = known_wording(leader_heartbeat, rows)
    candidates = [r for r in rows if r.agrees(registered, wording)]
    basis = sorted(m for m, present in registered.items() if present)
    if not candidates:
        return {"range": "unknown", "min": None, "max": None, "registered_markers": basis, "source": None}
    low, high = candidates[0], candidates[-1]
    low_v = None if low.covers_older else low.release
    high_v = None if high is rows[-1] else high.release
    if low_v is None:
        text = f"<= {high_v}" if high_v else "any"
    elif high_v is None:
        text = f">= {low_v}"
    else:
        text = low_v if low_v == high_v else f"{low_v}-{high_v}"
    source = "measured" if all(r.source == "measured" for r in candidates) else "derived"
    return {"range": text, "min": low_v, "max": high_v, "registered_markers": basis, "source": source}


def _proves(sig: Signature, reply: Reply) -> bool:
    return any(reply.matches(e.code, e.details) for e in sig.proves)


async def probe(session: RpcSession, ctx: ProbeContext) -> Outcome:
    """The family's probe, as the registry calls it (probes/tf_runtime/family.toml [[probe]]): every
    signature's request at once, then what the replies prove, in three steps: which server this is, its
    coordination role, its release range. A server no signature names returns an Outcome with no kind."""
    answers = await asyncio.gather(*(session.unary(sig.method, sig.request) for sig in SIGNATURES))
    replies = {sig.method: reply for sig, reply in zip(SIGNATURES, answers, strict=True)}
    out = identify(session, replies)
    if out.kind is not None:
        wording = coordination(replies[HEARTBEAT], out)
        await release_range(session, replies, wording, out)
    return out


def identify(session: RpcSession, replies: dict[str, Reply]) -> Outcome:
    """The kind, the services the replies prove, whether calls need credentials, and the task's devices.
    Only a TF-only signature names a tf-server (TF Serving answers Monitor the same way), and an OK to
    GetStatus proves nothing without a TF device list in it."""
    out = Outcome()
    status = replies[GET_STATUS.method]
    truncated: dict[str, int] = {}
    try:
        devices = decode_devices(status.body, truncated) if status.ok else []
    except protowire.DecodeError as exc:
        devices = []
        out.evidence.append(f"GetStatus answered OK with a body that is not a GetStatusResponse ({exc})")
    listed = any(d["job"] is not None for d in devices)
    found = [sig for sig in SIGNATURES if _proves(sig, replies[sig.method]) and (listed or sig is not GET_STATUS)]
    if not any(sig.tf_only for sig in found):
        return out
    out.kind = "tf-server"
    out.services = [sig.service for sig in found]
    if status.ok:
        out.authenticated = False
    elif status.code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        out.authenticated = True
    out.evidence += [session.cite(replies[sig.method]) for sig in found]
    if out.authenticated:
        out.evidence.append(session.cite(status))
    tasks = sorted({(d["job"], d["task"]) for d in devices if d["job"] is not None})
    out.details["devices"] = devices
    if truncated:
        out.details["truncated"] = truncated
    if len(tasks) == 1:
        out.details["job"], out.details["task"] = tasks[0]
    return out


def coordination(heartbeat: Reply, out: Outcome) -> str | None:
    """The task's part in the coordination service, from the Heartbeat signature's reply: the leader
    rejects a heartbeat from an unknown task, other tasks have it registered but not enabled. Returns
    the leader's wording of the rejection, which tells releases apart."""
    leader = any(heartbeat.matches(e.code, e.details) for e in COORDINATION_LEADER)
    if leader:
        out.details["coordination"] = "leader"
        out.evidence.append("coordination service enabled: this task is the coordination leader")
    elif "tensorflow.CoordinationService" in out.services:
        out.details["coordination"] = "registered"
        out.evidence.append("coordination service registered, not enabled on this task")
    return heartbeat.details if leader else None


async def release_range(session: RpcSession, replies: dict[str, Reply], leader_wording: str | None,
                        out: Outcome) -> None:
    """The TF releases this server may be, and their advisories. The signature replies already tell
    whether two methods are registered; then one version marker at a time, each the one that splits the
    releases still possible most evenly, until no marker splits them (next_marker)."""
    # A reply that never came is no observation (Reply.registered is None), so it narrows nothing.
    registered = {m: present for m in SERVICE_METHODS if (present := replies[m].registered) is not None}
    asked: list[str] = []
    unanswered = False
    known_leader = known_wording(leader_wording)
    while marker := _next_marker(frozenset(registered.items()), known_leader):
        present = (await session.unary(marker, MALFORMED)).registered
        if present is None:
            unanswered = True  # the next marker would most likely fare no better: the range stays wider
            break
        registered[marker] = present
        asked.append(marker)
    version = out.details["tf_version"] = infer_version(registered, leader_wording)
    known = sum(registered[m] for m in asked)
    out.evidence.append(f"{len(asked) + unanswered} version markers (malformed requests): {known} registered, "
                        f"{len(asked) - known} unknown to this server"
                        + (", 1 unanswered" if unanswered else "") + f": TF {version['range']}")
    out.details["advisories"] = advisories.match(version["min"], version["max"])

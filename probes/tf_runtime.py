"""tf.train.Server / tf.distribute.Server: the TF distributed runtime's gRPC services.

Signatures, version markers and the device message layout come from shared/reference/tf-wire-facts.md
§1 and §4; each was measured against tensorflow 2.21 (§5). Adding a signature means adding a row here.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from netaudit import protowire
from netaudit.bounds import cap_list
from netaudit.rpc import Reply, RpcSession

from .base import Expect, Outcome, ProbeContext
from .safety import MALFORMED


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
               Expect("INVALID_ARGUMENT", "Unexpected heartbeat request from task"))),
    # §4: a no-op; the non-empty "unimplemented." proves the profiler implementation is registered.
    Signature("tensorflow.ProfilerService", "/tensorflow.ProfilerService/Monitor", b"",
              (Expect("UNIMPLEMENTED", "unimplemented."),), tf_only=False),
    # §1.1: the async server rejects unparseable bytes before ListDevices' handler (which fans out) runs.
    Signature("tensorflow.MasterService", "/tensorflow.MasterService/ListDevices", MALFORMED,
              (Expect("INTERNAL", "Unable to parse request"),)),
)

COORDINATION_LEADER = Expect("INVALID_ARGUMENT", "Unexpected heartbeat request from task")

# Releases the method tables in §1.2 tell apart; "older" is anything before 2.2, "newer" after 2.21.
RELEASES = ("older",) + tuple(f"2.{minor}" for minor in range(2, 22)) + ("newer",)


@dataclass(frozen=True)
class Marker:
    """A method registered from release `since` up to, not including, `until` (§1.2)."""

    method: str
    since: str
    until: str | None = None

    def present_in(self, release: str) -> bool:
        index = RELEASES.index(release)
        return RELEASES.index(self.since) <= index and (self.until is None or index < RELEASES.index(self.until))


# Probed with MALFORMED: a registered method rejects it with INTERNAL, an unknown one is UNIMPLEMENTED with
# empty details straight from gRPC core (§1.2 rule of thumb; measured on 2.21, §5).
VERSION_MARKERS = (
    Marker("/tensorflow.eager.EagerService/UpdateContext", "2.2"),
    Marker("/tensorflow.eager.EagerService/RunComponentFunction", "2.3"),
    Marker("/tensorflow.ProfilerService/Terminate", "2.3"),
    Marker("/tensorflow.ProfilerService/GetSnapshot", "2.21"),
    Marker("/tensorflow.CoordinationService/RegisterWorker", "2.8", "2.9"),
    Marker("/tensorflow.CoordinationService/RegisterTask", "2.9"),
    Marker("/tensorflow.CoordinationService/TryGetKeyValue", "2.10"),
    Marker("/tensorflow.CoordinationService/GetTaskState", "2.11"),
    Marker("/tensorflow.CoordinationService/PollForError", "2.18"),
    Marker("/tensorflow.CoordinationService/GetAliveTasks", "2.19"),
    Marker("/tensorflow.CoordinationService/GetJobState", "2.20", "2.21"),
    Marker("/tensorflow.CoordinationService/WatchJobState", "2.21"),
)
# Service-level markers, read from the signature replies above (§1.1 table).
SERVICE_MARKERS = (
    Marker("/tensorflow.CoordinationService/Heartbeat", "2.8"),
    Marker("/tensorflow.ProfilerService/Monitor", "2.4"),
)

DEVICE_NAME = re.compile(r"^/job:(?P<job>[^/]*)/replica:(?P<replica>\d+)/task:(?P<task>\d+)/device:(?P<type>[^:]+):(?P<index>\d+)$")


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


def infer_version(registered: dict[str, bool]) -> dict:
    candidates = [r for r in RELEASES
                  if all(m.present_in(r) == registered[m.method]
                         for m in VERSION_MARKERS + SERVICE_MARKERS if m.method in registered)]
    basis = sorted(m for m, present in registered.items() if present)
    if not candidates:
        return {"range": "unknown", "min": None, "max": None, "registered_markers": basis}
    low, high = candidates[0], candidates[-1]
    low_v = None if low == "older" else ("2.21" if low == "newer" else low)
    high_v = None if high == "newer" else ("2.1" if high == "older" else high)
    if low_v is None:
        text = f"<= {high_v}"
    elif high_v is None:
        text = f">= {low_v}"
    else:
        text = low_v if low_v == high_v else f"{low_v}-{high_v}"
    return {"range": text, "min": low_v, "max": high_v, "registered_markers": basis}


def _proves(sig: Signature, reply: Reply) -> bool:
    return any(reply.matches(e.code, e.details) for e in sig.proves)


async def probe(session: RpcSession, ctx: ProbeContext) -> Outcome:
    replies = await asyncio.gather(*(session.unary(sig.method, sig.request) for sig in SIGNATURES))
    found = {sig.service: reply for sig, reply in zip(SIGNATURES, replies, strict=True) if _proves(sig, reply)}
    status = replies[0]
    truncated: dict[str, int] = {}
    try:
        devices = decode_devices(status.body, truncated) if status.ok else []
    except protowire.DecodeError as exc:
        devices = []
        undecodable = f"GetStatus answered OK with a body that is not a GetStatusResponse ({exc})"
    else:
        undecodable = None
    if not any(d["job"] is not None for d in devices):
        found.pop("tensorflow.WorkerService", None)  # an OK with no TF device list proves nothing
    out = Outcome()
    if undecodable:
        out.evidence.append(undecodable)
    if not any(sig.tf_only and sig.service in found for sig in SIGNATURES):
        return out
    out.kind = "tf-server"
    out.services = [sig.service for sig in SIGNATURES if sig.service in found]
    if status.ok:
        out.authenticated = False
    elif status.code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        out.authenticated = True
    tasks = sorted({(d["job"], d["task"]) for d in devices if d["job"] is not None})
    out.details["devices"] = devices
    if truncated:
        out.details["truncated"] = truncated
    if len(tasks) == 1:
        out.details["job"], out.details["task"] = tasks[0]
    heartbeat = replies[[s.service for s in SIGNATURES].index("tensorflow.CoordinationService")]
    if heartbeat.matches(COORDINATION_LEADER.code, COORDINATION_LEADER.details):
        out.details["coordination_service"] = "enabled (this task is the coordination leader)"
    elif "tensorflow.CoordinationService" in found:
        out.details["coordination_service"] = "registered, not enabled on this task"
    markers = await asyncio.gather(*(session.unary(m.method, MALFORMED) for m in VERSION_MARKERS))
    registered = {m.method: reply.registered for m, reply in zip(VERSION_MARKERS, markers, strict=True)}
    for marker in SERVICE_MARKERS:
        reply = next(r for r in replies if r.method == marker.method)
        registered[marker.method] = reply.registered
    out.details["tf_version"] = infer_version(registered)
    return out

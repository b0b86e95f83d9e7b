"""Generic gRPC: the standard health and reflection services, which ordinary grpc servers often enable."""

from __future__ import annotations

from netaudit.transport import protowire
from netaudit.core.caps import cap_list
from netaudit.transport.rpc import RpcSession

from netaudit.probes.base import Outcome, ProbeContext
from netaudit.probes.common import HEALTH_CHECK, LIST_SERVICES, REFLECTION

# HealthCheckResponse.status = 1 (health.proto).
HEALTH_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def decode_service_list(body: bytes, truncated: dict[str, int] | None = None) -> list[str]:
    """ServerReflectionResponse.list_services_response (6) -> service (1) -> name (1)."""
    listed = protowire.decode(body).message(6).blobs(1)
    return [protowire.decode(svc).str(1) for svc in cap_list(listed, "reflection_services", truncated)]


async def probe(session: RpcSession, ctx: ProbeContext) -> Outcome:
    out = Outcome()
    health = await session.unary(HEALTH_CHECK)
    if health.ok:
        out.services.append("grpc.health.v1.Health")
        out.evidence.append(session.cite(health))
        try:
            out.details["health"] = HEALTH_STATUS.get(protowire.decode(health.body).int(1), "UNKNOWN")
        except protowire.DecodeError as exc:
            out.details["health"] = "UNKNOWN"
            out.evidence.append(f"health check answered OK with a body that is not a HealthCheckResponse ({exc})")
    for method in REFLECTION:
        reply = await session.stream_first(method, LIST_SERVICES)
        if reply.ok:
            out.services.append(method.split("/")[1])
            out.evidence.append(session.cite(reply))
            try:
                truncated: dict[str, int] = {}
                out.details["reflection_services"] = decode_service_list(reply.body, truncated)
                if truncated:
                    out.details["truncated"] = truncated
            except protowire.DecodeError as exc:
                out.evidence.append(f"reflection answered with a body that is not a ServerReflectionResponse ({exc})")
            break
    if health.speaks_grpc:
        out.kind = "grpc"
    return out

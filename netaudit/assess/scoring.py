"""CVSS v3.1 scores for findings, and the context adjustment: where an endpoint was reachable from.

A rule carries a base vector (what the service lets an attacker do, how it is protected). A merged report
knows the trust of every segment that reached the endpoint; reachable only from trusted segments, the
attacker must already be inside, which CVSS expresses as the environmental Modified Attack Vector
MAV:A (netaudit's choice). docs/scoring.md explains the whole scheme.
"""

from __future__ import annotations

from functools import cache

from netaudit.core.model import Finding, severity_rank

BANDS = ((9.0, "critical"), (7.0, "high"), (4.0, "medium"), (0.1, "low"), (0.0, "info"))


@cache
def scores(vector: str) -> tuple[float, float]:
    """(base, environmental) score of a vector."""
    from cvss import CVSS3

    base, _, environmental = CVSS3(vector).scores()
    return float(base), float(environmental)


def band(score: float) -> str:
    return next(name for floor, name in BANDS if score >= floor)


def with_context(finding: Finding, segments: list) -> None:
    """Lower a finding whose endpoint only trusted segments reached; never raise it. `segments` are the
    policy segments (name, trust) that reached it; the context names each with its own trust level."""
    if not segments:
        return
    untrusted = [s.name for s in segments if s.trust == "untrusted"]
    trusted = [s.name for s in segments if s.trust != "untrusted"]
    if untrusted:
        finding.context = f"reachable from untrusted segments ({', '.join(untrusted)})" + (
            f" and from trusted segments ({', '.join(trusted)})" if trusted else "")
        return
    if not finding.cvss_vector:
        finding.context = f"reachable only from trusted segments ({', '.join(trusted)})"
        return
    vector = finding.cvss_vector if "/MAV:" in finding.cvss_vector else finding.cvss_vector + "/MAV:A"
    score = scores(vector)[1]
    finding.cvss_vector, finding.cvss_score = vector, score
    adjusted = band(score)
    if severity_rank(adjusted) < severity_rank(finding.severity):
        finding.context = (f"severity lowered from {finding.severity}: reachable only from trusted segments "
                           f"({', '.join(trusted)}), CVSS environmental MAV:A")
        finding.severity = adjusted
    else:
        finding.context = f"reachable only from trusted segments ({', '.join(trusted)})"

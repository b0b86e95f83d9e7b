"""A result against its baseline: each finding new or persisting, the resolved ones listed, and the accept
list applied. The baseline is a result file, a stored run, or the last comparable run of the history
store (netaudit/results/history.py)."""

from __future__ import annotations

from datetime import date
from typing import Any

from netaudit.results.accept import Acceptance


def annotate(data: dict[str, Any], baseline: dict[str, Any] | None, baseline_label: str | None,
             accepted: list[Acceptance], today: date | None = None) -> None:
    """Mark each finding new or persisting against the baseline (all new when there is none), list the
    resolved ones, and apply the accept list (expired acceptances are shown and no longer shield)."""
    today = today or date.today()
    before = {f["id"]: f for f in (baseline or {}).get("findings", [])}
    current = {f["id"] for f in data["findings"]}
    for finding in data["findings"]:
        # Without a baseline everything is new: gating on new findings fails closed on a first run.
        finding["state"] = "persisting" if finding["id"] in before else "new"
        rule = next((a for a in accepted if a.covers(finding)), None)
        if rule:
            finding["accepted"] = {"reason": rule.reason, "owner": rule.owner, "expires": rule.expires.isoformat(),
                                   "expired": rule.expires < today}
    data["expired_acceptances"] = [
        {"entry": a.finding_id or a.rule, "owner": a.owner, "reason": a.reason, "expires": a.expires.isoformat(),
         "covers": sorted(f["id"] for f in data["findings"] if a.covers(f))}
        for a in accepted if a.expires < today]
    data["diff"] = {
        "baseline": baseline_label if baseline is not None else None,
        "new": sorted(f["id"] for f in data["findings"] if f["state"] == "new"),
        "persisting": sorted(f["id"] for f in data["findings"] if f["state"] == "persisting"),
        "resolved": [before[i] for i in sorted(set(before) - current)],
    }

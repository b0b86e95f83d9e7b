"""Accepted risks: an accept list (TOML [[accept]]) names findings, by id or by rule, host and port, with a
reason, an owner and an expiry date. An accepted finding stays in every output; it only stops failing
--fail-on and --fail-on-new until its acceptance expires."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from netaudit.core.errors import UsageError
from netaudit.core.files import read_toml
from netaudit.core.validate import check_keys, nearest


@dataclass(frozen=True)
class Acceptance:
    finding_id: str | None
    rule: str | None
    host: str | None
    port: int | None
    reason: str
    owner: str
    expires: date

    def covers(self, finding: dict[str, Any]) -> bool:
        if self.finding_id:
            return finding["id"] == self.finding_id
        return all(want is None or finding[key] == want or (key == "rule" and finding[key].split("@")[0] == want)
                   for key, want in (("rule", self.rule), ("host", self.host), ("port", self.port)))


def known_rules() -> set[str]:
    """Every rule a finding can carry: the families' and the policy's, the TF_CONFIG cross-check and the
    NetworkPolicy intent rules. A policy finding is RULE@SEGMENT; an entry may name either."""
    from netaudit.assess.k8s_identity import mismatch_rule
    from netaudit.assess.rules import load_rules
    from netaudit.policy.k8s_policy import intent_rules

    return {rule.id for rule in load_rules()} | {mismatch_rule().id} | {rule.id for rule in intent_rules()}


ACCEPT_KEYS = {"id", "rule", "host", "port", "reason", "owner", "expires"}


def load_accept_list(path: str) -> list[Acceptance]:
    """[[accept]] entries: id, or rule/host/port; and reason, owner, expires (a date), all required. A key,
    a rule or a port that could never match is an error, not an entry that silently covers nothing."""
    data = read_toml(path, "accept list")
    where = f"accept list {path}"
    check_keys(data, {"accept"}, where, "top level")
    if not isinstance(data.get("accept", []), list):
        raise UsageError(f"{where}: accept must be a list of tables ([[accept]])")
    rules = known_rules()
    out = []
    for index, entry in enumerate(data.get("accept", []), 1):
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: entry #{index} must be a table ([[accept]] with id or rule, reason, owner, "
                             "expires)")
        check_keys(entry, ACCEPT_KEYS, where, f"entry #{index}")
        missing = [k for k in ("reason", "owner", "expires") if not entry.get(k)]
        if missing or not (entry.get("id") or entry.get("rule")):
            raise UsageError(f"accept list {path}: entry #{index} needs id (or rule), reason, owner and expires"
                             + (f"; missing {', '.join(missing)}" if missing else ""))
        if entry.get("rule") is not None and str(entry["rule"]).split("@")[0] not in rules:
            raise UsageError(f"{where}: entry #{index}: unknown rule {entry['rule']!r}{nearest(entry['rule'], rules)}")
        port = entry.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
            raise UsageError(f"{where}: entry #{index}: port {port!r} is not a number 1-65535")
        for key in ("id", "host", "reason", "owner"):
            if entry.get(key) is not None and not isinstance(entry[key], str):
                raise UsageError(f"{where}: entry #{index}: {key} must be a string")
        expires = entry["expires"]
        if isinstance(expires, str):
            try:
                expires = date.fromisoformat(expires)
            except ValueError:
                raise UsageError(f"accept list {path}: entry #{index} expires {expires!r} is not a date") from None
        if isinstance(expires, datetime):
            expires = expires.date()
        if not isinstance(expires, date):
            raise UsageError(f"{where}: entry #{index}: expires {expires!r} is not a date")
        out.append(Acceptance(entry.get("id"), entry.get("rule"), entry.get("host"), entry.get("port"),
                              entry["reason"], entry["owner"], expires))
    return out


def gating(findings: list[dict[str, Any]], only_new: bool) -> list[dict[str, Any]]:
    """The findings that may fail a run: not covered by an unexpired acceptance (and new, when asked)."""
    return [f for f in findings
            if not (f.get("accepted") and not f["accepted"]["expired"]) and (not only_new or f.get("state") == "new")]

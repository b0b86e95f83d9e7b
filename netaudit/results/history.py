"""Scan history in SQLite: every run and its findings, the diff against the last comparable run (or a
baseline), and accepted risks.

Each run is written in one IMMEDIATE transaction in WAL mode, so a killed run leaves earlier history
untouched and several vantages can record into one store at once (writers wait on the lock).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from netaudit.core.errors import UsageError
from netaudit.core.files import read_toml
from netaudit.core.validate import check_keys, nearest

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, scope TEXT NOT NULL, vantage TEXT, started TEXT, finished TEXT,
    complete INTEGER NOT NULL, recorded TEXT NOT NULL, result TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS findings (
    run_id INTEGER NOT NULL REFERENCES runs(id), finding_id TEXT NOT NULL, rule TEXT NOT NULL,
    severity TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL, title TEXT NOT NULL,
    PRIMARY KEY (run_id, finding_id));
CREATE INDEX IF NOT EXISTS runs_scope ON runs (scope, id);
"""


def default_store() -> Path:
    if os.environ.get("NETAUDIT_STORE"):
        return Path(os.environ["NETAUDIT_STORE"])
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "netaudit" / "history.sqlite"


def scope_key(data: dict[str, Any]) -> str:
    """What makes two runs comparable: the same targets, ports and vantage (a scan), or the same vantages
    and policy (a report)."""
    if "reachability" in data:
        basis = {"vantages": sorted(s["vantage"] for s in data["scans"]), "policy": data.get("policy")}
    else:
        basis = {"targets": sorted(data["options"].get("targets", [])), "ports": data["options"].get("ports"),
                 "vantage": data.get("vantage")}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


class Store:
    def __init__(self, path: Path, read_only: bool = False):
        """`read_only` opens an existing store for `history`, which creates and changes nothing."""
        self.path = path
        if read_only:
            try:
                self.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
                self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            except sqlite3.Error as exc:
                raise UsageError(f"cannot read history store {path}: {exc}") from None
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA busy_timeout=60000")
            self.db.execute("BEGIN IMMEDIATE")
            for statement in filter(str.strip, SCHEMA.split(";")):
                self.db.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise UsageError(f"cannot open history store {path}: {exc}") from None
        version = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if version is None:
            self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(version[0]) > SCHEMA_VERSION:
            self.db.execute("ROLLBACK")
            raise UsageError(f"history store {path} has schema {version[0]}; this netaudit knows {SCHEMA_VERSION}")
        self.db.execute("COMMIT")

    @contextmanager
    def recording(self, data: dict[str, Any]) -> Iterator[int]:
        """The run, inserted and committed only if the block succeeds: a run whose output could not be
        written must never become the next run's baseline."""
        kind = "report" if "reachability" in data else "scan"
        vantage = data.get("vantage") or ",".join(s["vantage"] for s in data.get("scans", []))
        self.db.execute("BEGIN IMMEDIATE")
        try:
            cursor = self.db.execute(
                "INSERT INTO runs (kind, scope, vantage, started, finished, complete, recorded, result) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, scope_key(data), vantage, data.get("started") or data.get("generated"), data.get("finished"),
                 int(bool(data["complete"])), datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 json.dumps(data)))
            run_id = cursor.lastrowid
            self.db.executemany("INSERT OR IGNORE INTO findings VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [(run_id, f["id"], f["rule"], f["severity"], f["host"], f["port"], f["title"])
                                 for f in data["findings"]])
            yield run_id
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def previous(self, scope: str, before: int | None = None) -> int | None:
        row = self.db.execute("SELECT max(id) FROM runs WHERE scope = ? AND complete = 1 AND id < ?",
                              (scope, before if before is not None else 1 << 62)).fetchone()
        return row[0]

    def run(self, run_id: int) -> dict[str, Any]:
        row = self.db.execute("SELECT result FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise UsageError(f"no run {run_id} in {self.path}")
        return json.loads(row[0])

    def runs(self) -> list[tuple]:
        return self.db.execute(
            "SELECT r.id, r.kind, r.vantage, r.started, r.complete, count(f.finding_id) FROM runs r "
            "LEFT JOIN findings f ON f.run_id = r.id GROUP BY r.id ORDER BY r.id").fetchall()

    def severity_trend(self, scope: str) -> list[tuple[int, str, dict[str, int]]]:
        out = []
        for run_id, started in self.db.execute("SELECT id, started FROM runs WHERE scope = ? AND complete = 1 "
                                               "ORDER BY id", (scope,)).fetchall():
            counts = dict(self.db.execute("SELECT severity, count(*) FROM findings WHERE run_id = ? GROUP BY severity",
                                          (run_id,)).fetchall())
            out.append((run_id, started, counts))
        return out


class Recorded:
    """A result as stored and annotated (a dict), in the shape the renderers take."""

    def __init__(self, data: dict[str, Any]):
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        return self.data


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
        return all(want is None or finding[key] == want
                   for key, want in (("rule", self.rule), ("host", self.host), ("port", self.port)))


ACCEPT_KEYS = {"id", "rule", "host", "port", "reason", "owner", "expires"}


def load_accept_list(path: str) -> list[Acceptance]:
    """[[accept]] entries: id, or rule/host/port; and reason, owner, expires (a date), all required. A key,
    a rule or a port that could never match is an error, not an entry that silently covers nothing."""
    from netaudit.assess.rules import load_rules

    data = read_toml(path, "accept list")
    where = f"accept list {path}"
    check_keys(data, {"accept"}, where, "top level")
    if not isinstance(data.get("accept", []), list):
        raise UsageError(f"{where}: accept must be a list of tables ([[accept]])")
    rules = {rule.id for rule in load_rules()}
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
        if entry.get("rule") is not None and entry["rule"] not in rules:
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


def gating(findings: list[dict[str, Any]], only_new: bool) -> list[dict[str, Any]]:
    """The findings that may fail a run: not covered by an unexpired acceptance (and new, when asked)."""
    return [f for f in findings
            if not (f.get("accepted") and not f["accepted"]["expired"]) and (not only_new or f.get("state") == "new")]

"""Scan history in SQLite: every run and its findings, found again by what makes runs comparable. The diff
against a baseline is netaudit/results/diff.py; the accept list, netaudit/results/accept.py.

Each run is written in one IMMEDIATE transaction in WAL mode, so a killed run leaves earlier history
untouched and several vantages can record into one store at once (writers wait on the lock).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from netaudit.core.errors import UsageError

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
        policy = data.get("policy")
        if isinstance(policy, dict) and isinstance(policy.get("scope"), dict):
            policy = policy["scope"]  # the stable part a policy names, without what changes every reading
        basis = {"vantages": sorted(s["vantage"] for s in data["scans"]), "policy": policy}
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

"""Scan results as JSON lines, written while the scan runs: a header, one line per finished endpoint with its
findings, and a trailer with the counts and the complete flag.

Every scan goes through a StreamWriter: with --format jsonl to the output as it goes, else into a spool
(netaudit/results/spool.py) the other formats are written from. It holds only what is in flight, so
thousands of endpoints cost no more memory than ten. A stream is readable at every moment: a scan that is
interrupted still writes its trailer, marked incomplete, and one that is killed leaves no trailer at all,
which reads as incomplete too. `netaudit convert` and `netaudit report` read streams back.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Iterable, Iterator, TextIO

from netaudit.core.errors import OutputError, UsageError
from netaudit.core.model import SCHEMA, ScanResult, endpoint_order
from netaudit.policy.assessor import Assessed
from netaudit.results.spool import Spool

STREAM_SCHEMA = "netaudit/scan-stream-v1"
# What history and --fail-on need of a finding once its line is written; evidence stays in the stream.
COMPACT_FINDING = ("id", "rule", "severity", "host", "port", "title")
NO_TRAILER = "the stream ends without a trailer: the scan was killed before it could finish"


class StreamWriter:
    """A scan.Sink that writes each assessed endpoint the moment the scan hands it on: as a JSON line to `out`
    (the stream), and into `spool` when an output is built from the stream afterwards. It only writes: what
    an endpoint's findings are was settled before it came here (netaudit/policy/assessor.py)."""

    def __init__(self, out: TextIO | None, options: dict[str, Any] | None = None, spool: Spool | None = None):
        self.out = out
        self.options = options or {}  # more for the result's options, such as the --ports spec as typed
        self.spool = spool
        self.result: ScanResult | None = None
        self.endpoints = 0
        self.states: Counter = Counter()
        self.kinds: Counter = Counter()
        self.findings: list[dict[str, Any]] = []  # compact, see COMPACT_FINDING
        self.expected_unreachable: list[dict[str, Any]] = []

    def _write(self, record: dict[str, Any]) -> None:
        self._put(json.dumps(record) + "\n")
        self.flush()

    def _put(self, text: str) -> None:
        if self.out is None:
            return
        try:
            self.out.write(text)
        except OSError as exc:
            raise self._failed(exc) from None

    def flush(self) -> None:
        if self.out is None:
            return
        try:
            self.out.flush()
        except OSError as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: OSError) -> OutputError:
        name = getattr(self.out, "name", None)
        where = name if isinstance(name, str) and name != "<stdout>" else "standard output"
        return OutputError(f"cannot write {where}: {exc.strerror}; the {self.endpoints} endpoints written before "
                           "stay readable there, without a trailer (incomplete), and the run is not recorded")

    def begin(self, result: ScanResult) -> None:
        self.result = result
        result.options.update(self.options)
        header = {"type": "header", "schema": STREAM_SCHEMA, "result_schema": SCHEMA, "vantage": result.vantage,
                  "started": result.started, "options": result.options}
        if result.policy is not None:
            header.update(policy=result.policy, segment=result.segment)
        self._write(header)

    def endpoint(self, assessed: Assessed) -> None:
        assert self.result is not None, "begin() comes first"
        record = assessed.record()
        self._write(record)
        self._count(record)
        self.expected_unreachable += assessed.unreachable

    def copy(self, line: str, record: dict[str, Any]) -> None:
        """An endpoint line of another stream of this scan (a worker's, scan --workers), written as it came;
        `record` is the line parsed. The caller flushes, once per batch."""
        self._put(line if line.endswith("\n") else line + "\n")
        self._count(record)

    def _count(self, record: dict[str, Any]) -> None:
        self.endpoints += 1
        self.states[record["endpoint"]["state"]] += 1
        self.kinds[record["endpoint"]["kind"] or "-"] += 1
        self.findings += [{k: f[k] for k in COMPACT_FINDING} for f in record["findings"]]
        if self.spool is not None:
            self.spool.take(record)

    def summary(self, result: ScanResult) -> dict[str, Any]:
        """The scan as history and the exit code see it: everything but the endpoints and the evidence."""
        data = result.to_dict()
        data.update(findings=self.findings, stream={"endpoints": self.endpoints, "states": dict(self.states),
                                                     "kinds": dict(self.kinds)})
        if result.policy is not None:
            data.update(expected_unreachable=self.expected_unreachable)
        return data

    def end(self, data: dict[str, Any]) -> None:
        """The trailer, from summary()'s dict once history has annotated it."""
        counts = Counter(f["severity"] for f in data["findings"])
        trailer = {"type": "trailer", "finished": data["finished"], "complete": data["complete"],
                   "stats": data["stats"], "port_states": data["port_states"], "endpoints": self.endpoints,
                   "findings": len(data["findings"]), "severities": dict(counts),
                   "expected_unreachable": self.expected_unreachable}
        for key in ("run_id", "diff"):
            if key in data:
                trailer[key] = data[key] if key != "diff" else {
                    "baseline": data["diff"]["baseline"], "new": data["diff"]["new"],
                    "resolved": [f["id"] for f in data["diff"]["resolved"]]}
        self._write(trailer)


def is_stream(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline(4096)
    except (OSError, UnicodeDecodeError):
        return False
    return first.lstrip().startswith('{"type": "header"') or f'"{STREAM_SCHEMA}"' in first


def stream_lines(path: str) -> Iterator[str]:
    """The file's lines; a file that cannot be read is one line of error, however far the reading got."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            yield from fh
    except OSError as exc:
        raise UsageError(f"cannot read scan stream {path}: {exc.strerror}") from None


def read_stream(path: str) -> dict[str, Any]:
    return parse_stream(stream_lines(path), path)


class StreamParser:
    """The records of one stream, read in one pass: the header checked first, then each endpoint record as it
    comes, the trailer kept. A last line cut short by a kill ends the stream and is said so."""

    def __init__(self, path: str):
        self.path = path
        self.header: dict[str, Any] | None = None
        self.trailer: dict[str, Any] | None = None
        self.cut = False

    def endpoints(self, lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, endpoint record) for each endpoint line."""
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if line.endswith("\n"):
                    raise UsageError(f"{self.path} line {number} is not JSON: not a netaudit stream") from None
                self.cut = True
                return
            kind = record.get("type") if isinstance(record, dict) else None
            if number == 1 and (kind != "header" or record.get("schema") != STREAM_SCHEMA):
                raise UsageError(f"{self.path} is not a netaudit scan stream (schema {STREAM_SCHEMA!r} expected)")
            if kind == "header":
                self.header = record
            elif kind == "endpoint":
                yield number, record
            elif kind == "trailer":
                self.trailer = record

    def result(self, endpoints: Any, findings: Any) -> dict[str, Any]:
        """The scan result (schema scan-v1) around the endpoints and findings the caller kept."""
        header, trailer = self.header, self.trailer
        if header is None:
            raise UsageError(f"{self.path} is empty: not a netaudit scan stream")
        data = {"schema": SCHEMA, "vantage": header["vantage"], "started": header["started"],
                "finished": trailer["finished"] if trailer else None, "complete": bool(trailer and trailer["complete"]),
                "endpoints": endpoints, "findings": findings, "stats": dict(trailer["stats"]) if trailer else {},
                "options": header["options"], "port_states": trailer["port_states"] if trailer else []}
        if trailer is None:
            data["stats"]["incomplete_reason"] = NO_TRAILER + (" (its last line was cut short)" if self.cut else "")
        if "policy" in header:
            data.update(policy=header["policy"], segment=header["segment"],
                        expected_unreachable=trailer["expected_unreachable"] if trailer else [])
        return data


def malformed(path: str, exc: Exception) -> UsageError:
    """A record without what a stream holds."""
    return UsageError(f"{path}: a record of the stream is malformed ({type(exc).__name__}: {exc})")


def parse_stream(lines: Iterable[str], path: str) -> dict[str, Any]:
    """The scan result (schema scan-v1) a stream holds, as lists, in the order a spool of it gives. Without a
    trailer it is incomplete."""
    stream = StreamParser(path)
    endpoints: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    try:
        for _, record in stream.endpoints(lines):
            endpoints.append(record["endpoint"])
            findings += record["findings"]
        endpoints.sort(key=lambda e: endpoint_order(e["host"], e["port"]))
        findings.sort(key=lambda f: endpoint_order(f["host"], f["port"]))  # as a spool gives them (stable)
        return stream.result(endpoints, findings)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise malformed(path, exc) from None

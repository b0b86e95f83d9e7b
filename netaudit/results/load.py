"""Reading results back: scan-v1 JSON, scan streams and report-v1 JSON, checked against their schemas."""

from __future__ import annotations

from typing import Any

from netaudit.core.errors import UsageError
from netaudit.core.files import read_json
from netaudit.core.model import SCHEMA
from netaudit.core.validate import check_result, check_scan_items
from netaudit.policy.report import REPORT_SCHEMA
from netaudit.results.spool import Spool
from netaudit.results.stream import COMPACT_FINDING, StreamParser, is_stream, malformed, read_stream, stream_lines


def load_scan(path: str) -> dict[str, Any]:
    """A scan result: the JSON of --format json, or the JSON lines of --format jsonl."""
    data = read_stream(path) if is_stream(path) else read_json(path, "scan result")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UsageError(f"{path} is not a netaudit scan result (schema {SCHEMA!r} expected)")
    check_result(data, path, "scan-v1")
    data["_path"] = path
    return data


def load_scan_or_report(path: str, what: str = "baseline") -> dict[str, Any]:
    """A --baseline file or what `convert` reads: a scan result (JSON or a stream) or a merged report."""
    data = read_stream(path) if is_stream(path) else read_json(path, what)
    if not isinstance(data, dict) or data.get("schema") not in (SCHEMA, REPORT_SCHEMA):
        raise UsageError(f"{what} {path} is not a netaudit scan result or report")
    check_result(data, f"{what} {path}", "scan-v1" if data["schema"] == SCHEMA else "report-v1")
    return data


def spool_stream(path: str, spool: Spool) -> dict[str, Any]:
    """A scan stream read into `spool` a line at a time, each line checked against the schema as it comes:
    the summary Spool.view takes (findings compact), so that `convert` of a stream of any length holds no
    more than a scan writing it does."""
    stream = StreamParser(path)
    compact: list[dict[str, Any]] = []
    try:
        for number, record in stream.endpoints(stream_lines(path)):
            check_scan_items(record.get("endpoint"), record.get("findings"), f"{path} line {number}")
            spool.take(record)
            compact += [{k: f[k] for k in COMPACT_FINDING} for f in record["findings"]]
        summary = stream.result([], [])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise malformed(path, exc) from None
    check_result(summary, path, "scan-v1")
    summary["findings"] = compact
    return summary

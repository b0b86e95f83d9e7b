"""A dual-stack cluster: IPv4 and IPv6 scans merge into one report in one endpoint order (IPv4 first)."""

from __future__ import annotations

import json

from conftest import run_cli
from test_bad_inputs import scan_json


def test_report_of_an_ipv4_scan_and_an_ipv6_scan(tmp_path):
    v4 = tmp_path / "v4.json"
    v4.write_text(scan_json())
    v6 = json.loads(scan_json(vantage="lab6"))
    for item in v6["endpoints"] + v6["findings"]:
        item["host"] = "::1"
    (tmp_path / "v6.json").write_text(json.dumps(v6))
    proc = run_cli("report", str(tmp_path / "v6.json"), str(v4), "--format", "json", "--no-history")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [e["host"] for e in report["endpoints"]] == ["127.0.0.1", "::1"]
    assert {f["host"] for f in report["findings"]} == {"127.0.0.1", "::1"}
    for fmt in ("html", "text", "sarif", "junit"):
        assert run_cli("report", str(v4), str(tmp_path / "v6.json"), "--format", fmt, "--no-history").returncode == 0

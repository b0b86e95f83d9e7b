"""One assessed stream: the scanner hands every endpoint through the one Assessor, and every format is written
from the spool of that stream. A writer that reads the spool must give, byte for byte, what it gives for the
same result held as lists, for every format, also after history has marked findings new and accepted."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import json
from datetime import date, timedelta

import pytest

from netaudit.outputs.formats import FORMATS, WHOLE
from netaudit.outputs.json_pieces import iter_json
from netaudit.policy.assessor import Assessor
from netaudit.results.accept import Acceptance
from netaudit.results.diff import annotate
from netaudit.results.history import Recorded
from netaudit.results.spool import Spool, Spooled
from netaudit.results.stream import StreamWriter, parse_stream

from conftest import run_cli


def written(pieces) -> str:
    return pieces if isinstance(pieces, str) else "".join(pieces)


@pytest.fixture(scope="module")
def spooled(lab_scan):
    """lab_scan's endpoints assessed again and spooled in the order a scan might finish them (reversed), with
    the summary history keeps; the spool is closed after the module."""
    assessor = Assessor()
    result = copy.copy(lab_scan)
    result.endpoints, result.findings = [], []
    with Spool() as spool:
        writer = StreamWriter(None, spool=spool)
        writer.begin(result)
        for endpoint in reversed(lab_scan.endpoints):
            writer.endpoint(assessor.assess(endpoint, result))
        yield writer.summary(result), spool


@pytest.fixture(scope="module")
def stream_file(lab_scan, tmp_path_factory):
    """lab_scan as the JSON lines `scan --format jsonl` writes, its endpoints in reverse order."""
    path = tmp_path_factory.mktemp("stream") / "scan.jsonl"
    assessor = Assessor()
    result = copy.copy(lab_scan)
    result.endpoints, result.findings = [], []
    with open(path, "w", encoding="utf-8") as out:
        writer = StreamWriter(out)
        writer.begin(result)
        for endpoint in reversed(lab_scan.endpoints):
            writer.endpoint(assessor.assess(endpoint, result))
        writer.end(writer.summary(result))
    return path


def marked(data: dict, lab_scan) -> dict:
    """History's marks: a baseline holding half the findings (the rest are new), one accepted, one expired."""
    ids = [f.id for f in lab_scan.findings]
    baseline = {"findings": [{"id": i, "rule": "r", "severity": "high", "host": "h", "port": 1, "title": "t"}
                             for i in ids[::2]]}
    today = date.today()
    accepted = [Acceptance(ids[0], None, None, None, "known", "ops", today + timedelta(days=9)),
                Acceptance(ids[1], None, None, None, "old", "ops", today - timedelta(days=1))]
    annotate(data, baseline, "baseline.json", accepted)
    return data


@pytest.mark.parametrize("fmt", WHOLE)
def test_each_format_writes_the_spool_as_it_writes_lists(fmt, spooled, lab_scan):
    summary, spool = spooled
    assert len(lab_scan.findings) > 20 and len({e.kind for e in lab_scan.endpoints}) > 3
    whole = marked(lab_scan.to_dict(), lab_scan)
    view = spool.view(marked(copy.deepcopy(summary), lab_scan))
    assert isinstance(view["endpoints"], Spooled) and "stream" not in view
    assert written(FORMATS[fmt](Recorded(view))) == written(FORMATS[fmt](Recorded(whole)))


@pytest.mark.parametrize("fmt", WHOLE)
def test_convert_writes_a_stream_from_a_spool_as_it_writes_the_stream_read_as_lists(fmt, stream_file, lab_scan,
                                                                                   tmp_path):
    """`convert` never holds a stream whole (results/load.py spool_stream), and gives what the lists give."""
    proc = run_cli("convert", str(stream_file), "--format", fmt, "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    with open(stream_file, encoding="utf-8") as lines:
        lists = parse_stream(lines, str(stream_file))
    assert [(e["host"], e["port"]) for e in lists["endpoints"]] == [(e.host, e.port) for e in lab_scan.endpoints]
    assert len(lists["findings"]) == len(lab_scan.findings) > 20
    assert (tmp_path / "out").read_text(encoding="utf-8") == written(FORMATS[fmt](Recorded(lists)))


def test_the_json_pieces_are_json_dumps(spooled, lab_scan):
    summary, spool = spooled
    view = spool.view(copy.deepcopy(summary))
    assert "".join(iter_json(view)) == json.dumps(lab_scan.to_dict(), indent=2)
    assert [e["port"] for e in view["endpoints"]] == [e.port for e in lab_scan.endpoints]  # endpoint order again


def test_a_spool_refuses_a_summary_that_is_not_its_own(spooled):
    summary, spool = spooled
    with pytest.raises(ValueError, match="findings"):
        spool.view({**summary, "findings": summary["findings"][1:]})


def test_history_keeps_the_summary_and_says_where_the_endpoints_are(lab, tmp_path):
    store = tmp_path / "h.sqlite"
    chief = next(e for e in lab.endpoints if e.name == "train/chief:0")
    proc = run_cli("scan", chief.target, "--format", "json", "--store", str(store))
    assert proc.returncode in (0, 1), proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    shown = run_cli("history", str(run_id), "--store", str(store))
    assert shown.returncode == 0, shown.stderr
    assert "1 endpoint listed by the scan: its output holds them, history keeps the findings" in shown.stdout
    assert "no open ports found" not in shown.stdout


def test_a_full_temp_folder_is_one_line_and_exit_5(lab, tmp_path):
    """The spool lives in the temp folder: when it fills up mid-scan the run says so in one line (exit 5),
    writes nothing and records nothing. A tmpfs of one page stands in for a full disk."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tiny tmpfs (CI runs as root)")
    full = tmp_path / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(full)], check=True)
    try:
        chief = next(e for e in lab.endpoints if e.name == "train/chief:0")
        out, store = tmp_path / "scan.json", tmp_path / "h.sqlite"
        proc = run_cli("scan", chief.target, "-o", str(out), "--store", str(store), env={"TMPDIR": str(full)})
        assert proc.returncode == 5, proc.stderr
        assert "cannot spool the scan's results in " + str(full) in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert not out.exists()
        assert "no runs" in run_cli("history", "--store", str(store)).stdout
    finally:
        subprocess.run(["umount", str(full)], check=True)

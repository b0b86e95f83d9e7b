"""Release markers and advisories: the measured tables replayed through infer_version, the advisory data
matched for chosen releases, and open-ended or unknown ranges never over-claiming `affected: "all"`."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from netaudit import advisories
from netaudit.probes import tf_runtime

# What the recorded wire behaviour can tell apart (docs/versions-and-advisories.md). 2.12-2.17 register the
# same methods and answer every safe RPC alike; only a coordination leader's heartbeat wording splits them
# at 2.14. The newest row is open-ended: a later release may look the same.
EXPECTED = {
    # release: (range on a plain server, range on a coordination leader)
    "2.12": ("2.11-2.17", "2.11-2.13"),
    "2.13": ("2.11-2.17", "2.11-2.13"),
    "2.14": ("2.11-2.17", "2.11, 2.14-2.17"),
    "2.18": ("2.18", "2.18"),
    "2.19": ("2.19", "2.19"),
    "2.20": ("2.20", "2.20"),
}


def raw_rows() -> list[dict]:
    return json.loads(resources.files("netaudit").joinpath("data/tf_release_markers.json").read_text())["releases"]


def observe(row: tf_runtime.ReleaseRow) -> dict[str, bool]:
    """What a scan learns from this release: the chosen markers plus the services of the signature replies."""
    return {m: row.methods[m] for m in tf_runtime.version_markers() + tf_runtime.SERVICE_METHODS if m in row.methods}


def candidates(observed: dict[str, bool], leader: str | None) -> list[str]:
    return [r.release for r in tf_runtime.release_rows() if r.agrees(observed, leader)]


def measured() -> list[tf_runtime.ReleaseRow]:
    return [r for r in tf_runtime.release_rows() if r.source == "measured"]


def test_every_minor_from_2_12_to_2_21_was_measured():
    assert [r.release for r in measured()] == [f"2.{n}" for n in range(12, 22)]
    assert all(r.note.startswith("measured on tensorflow-cpu 2.") for r in measured())
    assert {r.release for r in tf_runtime.release_rows() if r.source == "derived"} == {f"2.{n}" for n in range(1, 12)}


@pytest.mark.parametrize("row", measured(), ids=lambda r: r.release)
def test_replayed_release_is_recognised_as_exactly_as_its_wire_behaviour_allows(row):
    """The chosen markers lose nothing: they leave the same candidates as every method recorded, and the
    range always holds the release."""
    newest = tf_runtime.release_rows()[-1]
    for leader in (None, row.leader_heartbeat):
        version = tf_runtime.infer_version(observe(row), leader and leader + ": /job:/replica:0/task:0")
        assert candidates(observe(row), leader) == candidates(row.methods, leader)
        releases = candidates(row.methods, leader)
        assert row.release in releases
        if releases == [row.release]:
            assert version["range"] == (row.release if row is not newest else f">= {row.release}")
            assert version["source"] == "measured"
    if row.release in EXPECTED:
        plain, leader = EXPECTED[row.release]
        assert tf_runtime.infer_version(observe(row))["range"] == plain
        assert ", ".join(_spans(candidates(observe(row), row.leader_heartbeat))) == leader


def _spans(releases: list[str]) -> list[str]:
    minors = [int(r.split(".")[1]) for r in releases]
    out, start = [], minors[0]
    for prev, cur in zip(minors, minors[1:] + [None]):
        if cur != prev + 1:
            out.append(f"2.{start}" if start == prev else f"2.{start}-2.{prev}")
            start = cur
    return out


def test_the_newest_release_stays_open_ended_and_older_rows_are_derived():
    newest = measured()[-1]
    version = tf_runtime.infer_version(observe(newest))
    assert (version["range"], version["min"], version["max"], version["source"]) == \
        (f">= {newest.release}", newest.release, None, "measured")
    oldest = tf_runtime.release_rows()[0]
    version = tf_runtime.infer_version(observe(oldest))
    assert (version["range"], version["min"], version["max"], version["source"]) == ("<= 2.1", None, "2.1", "derived")


def test_markers_separate_the_releases_that_differ_in_methods():
    markers = tf_runtime.version_markers()
    assert "/tensorflow.CoordinationService/PollForError" in markers and len(markers) <= 12
    assert all(m.startswith("/tensorflow.") for m in markers)


@pytest.mark.parametrize("broken, named", [
    ({"release": "2.x", "source": "measured", "note": "", "methods": {"/a/b": True}}, "release 2.x"),
    ({"release": "2.30", "source": "guessed", "note": "", "methods": {"/a/b": True}}, "release 2.30"),
    ({"release": "2.31", "source": "measured", "note": "", "methods": {"/a/b": "yes"}}, "release 2.31"),
])
def test_a_malformed_marker_row_is_named(broken, named):
    text = json.dumps({"releases": raw_rows() + [broken]})
    with pytest.raises(tf_runtime.MarkerDataError, match=named):
        tf_runtime.parse_rows(text)


def by_id(result: dict) -> dict[str, str]:
    return {a["id"]: a["affected"] for a in result["list"]}


def test_advisories_for_chosen_releases_follow_the_data_file():
    # CVE-2021-29569 (PYSEC-2021-206): affected 2.4.0 up to 2.4.2, and every release before 2.1.4.
    assert by_id(advisories.match("2.4", "2.4"))["CVE-2021-29569"] == "some"
    assert by_id(advisories.match("2.4.1", "2.4.1"))["CVE-2021-29569"] == "all"
    assert "CVE-2021-29569" not in by_id(advisories.match("2.4.2", "2.4.2"))
    assert by_id(advisories.match("1.15", "1.15"))["CVE-2021-29569"] == "all"
    # Every TF advisory in the data was fixed before 2.12: the measured releases carry none.
    assert advisories.match("2.12", "2.17")["list"] == []
    assert advisories.match("2.21", None)["list"] == []
    # TF Serving: CVE-2025-0649 has no fix in any release, so it affects every ModelServer release.
    serving = advisories.match("2.19", "2.19", product="tensorflow-serving")
    assert by_id(serving) == {"CVE-2025-0649": "all"}
    assert by_id(advisories.match("2.3", "2.3", product="tensorflow-serving"))["CVE-2020-15206"] == "some"


def test_an_exact_release_gives_only_all():
    for version in ("1.15.0", "2.4.1", "2.7.0", "2.11.0", "2.16.2"):
        assert {a["affected"] for a in advisories.match(version, version)["list"]} <= {"all"}


def _affects(advisory: advisories.Advisory, version: tuple[int, int, int]) -> bool:
    return any(s.introduced <= version and (s.fixed is None or version < s.fixed) for s in advisory.affected)


@pytest.mark.parametrize("low, high", [(None, None), ("2.21", None), (None, "2.1"), ("2.2", None), ("2.4", "2.6"),
                                       ("2.12", "2.17"), (None, "2.11")])
def test_all_means_every_release_in_the_range(low, high):
    """Checked against each advisory's own intervals at every patch of every minor in the range, plus a far
    future release for an open upper end and release 0 for an open lower end."""
    data = advisories.load()
    first = advisories.parse_version(low) if low else (0, 0, 0)
    last = advisories.parse_version(high) if high else (2, 40, 0)
    minors = [(major, minor) for major in (0, 1, 2) for minor in range(0, 41)
              if first[:2] <= (major, minor) <= last[:2]]
    versions = [(ma, mi, p) for ma, mi in minors for p in range(0, 10)]
    versions += [(0, 0, 0)] if low is None else []
    versions += [(99, 0, 0)] if high is None else []
    result = {a["id"]: a["affected"] for a in advisories.match(low, high, data=data)["list"]}
    for advisory in data.advisories:
        if advisory.product != "tensorflow":
            continue
        hit = [_affects(advisory, v) for v in versions]
        if result.get(advisory.id) == "all":
            assert all(hit), advisory.id
        assert (advisory.id in result) == any(hit), advisory.id
    if high is None:
        assert all(a["fixed"] == [] for a in advisories.match(low, high, data=data)["list"] if a["affected"] == "all")


def test_a_malformed_advisory_is_named():
    text = resources.files("netaudit").joinpath("data/tf_advisories.json").read_text()
    data = json.loads(text)
    data["advisories"][3]["severity"] = "dire"
    with pytest.raises(advisories.AdvisoryDataError, match=data["advisories"][3]["id"]):
        advisories.parse(json.dumps(data))


def test_lab_servers_carry_their_release_and_advisories(lab_scan):
    tf_eps = [e for e in lab_scan.endpoints if e.kind == "tf-server" and "tf_version" in e.details]
    assert tf_eps
    for ep in tf_eps:
        version = ep.details["tf_version"]
        assert version["source"] == "measured" and version["max"] is None
        found = ep.details["advisories"]
        assert found["product"] == "tensorflow" and found["all"] == 0
        assert found["list"] == advisories.match(version["min"], None)["list"]


@pytest.mark.parametrize("transport, authenticated, rule, severity", [
    ("plaintext", False, "tf-known-advisories-no-new-access", "info"),
    ("mtls", False, "tf-known-advisories-behind-mtls", "high"),
])
def test_advisory_findings_follow_the_access_the_server_already_gives(transport, authenticated, rule, severity):
    """A derived 2.4 row replayed: its advisories become one finding, listed with links, whose severity depends
    on whether the server already runs anyone's graphs."""
    from netaudit.assess import assess
    from netaudit.model import Endpoint

    row = next(r for r in tf_runtime.release_rows() if r.release == "2.4")
    version = tf_runtime.infer_version(observe(row))
    found = advisories.match(version["min"], version["max"])
    ep = Endpoint("198.18.1.10", 2222, "open", kind="tf-server", transport=transport, authenticated=authenticated,
                  details={"tf_version": version, "advisories": found})
    findings = [f for f in assess([ep]) if f.rule.startswith("tf-known-advisories")]
    assert [(f.rule, f.severity) for f in findings] == [(rule, severity)]
    assert version["range"] in findings[0].title and f"{found['some']} affect some" in findings[0].title
    lines = [line for line in findings[0].evidence if line.startswith("advisory ")]
    assert len(lines) == len(found["list"]) and all("https://" in line for line in lines)
    empty = Endpoint("198.18.1.10", 2222, "open", kind="tf-server", transport=transport, authenticated=authenticated,
                     details={"tf_version": version, "advisories": advisories.match("2.12", "2.17")})
    assert not [f for f in assess([empty]) if f.rule.startswith("tf-known-advisories")]

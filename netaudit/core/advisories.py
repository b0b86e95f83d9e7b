"""Known advisories for a release range, from netaudit/data/tf_advisories.json (built offline by
tools/build_advisories.py; the scanner never goes online).

A range is the one the probes inferred: `min`/`max` are minor releases ("2.14") or exact versions
("2.14.1"); None is open-ended. A minor release stands for every final patch release of it (2.14.0,
2.14.1, …), so an advisory fixed in 2.14.1 affects only some of "2.14". Pre-releases are not counted.
An advisory is `all` only when one affected interval covers the whole range; an open upper end is
covered only by an advisory with no fix, an open lower end only by one affected since the first release.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

# An advisory's own scale (GitHub's, with "unknown"), not a finding's (core.model.SEVERITIES).
ADVISORY_SEVERITIES = ("critical", "high", "medium", "low", "unknown")
PRODUCTS = ("tensorflow", "tensorflow-serving")
ID_KINDS = ("tfsa", "ghsa", "cve", "pysec")
VERSION = re.compile(r"^\d+(\.\d+){0,2}$")

Version = tuple[int, int, int]


class AdvisoryDataError(ValueError):
    """The advisory data file is malformed; the message names the entry."""


def parse_version(text: str) -> Version:
    if not VERSION.match(text):
        raise ValueError(f"not a release version: {text!r}")
    parts = [int(p) for p in text.split(".")] + [0, 0]
    return parts[0], parts[1], parts[2]


@dataclass(frozen=True)
class Interval:
    """Affected from `introduced` up to, not including, `fixed` (None: no fix known)."""

    introduced: Version
    fixed: Version | None


@dataclass(frozen=True)
class Advisory:
    id: str
    ids: dict[str, tuple[str, ...]]
    product: str
    affected: tuple[Interval, ...]
    fixed: tuple[str, ...]
    severity: str
    cvss: str | None
    summary: str
    url: str

    def to_dict(self, affected: str) -> dict[str, Any]:
        return {"id": self.id, "affected": affected, "severity": self.severity, "cvss": self.cvss,
                "fixed": list(self.fixed), "fixed_in": ", ".join(self.fixed) or "no release yet", "summary": self.summary, "url": self.url,
                "aliases": sorted({i for ids in self.ids.values() for i in ids} - {self.id})}


@dataclass(frozen=True)
class AdvisoryData:
    advisories: tuple[Advisory, ...]
    coverage: dict[str, str]
    sources: tuple[dict[str, str], ...]


def _entry(raw: dict[str, Any], index: int) -> Advisory:
    name = raw.get("id", f"entry {index}") if isinstance(raw, dict) else f"entry {index}"
    try:
        if raw["product"] not in PRODUCTS:
            raise ValueError(f"product {raw['product']!r} is not one of {PRODUCTS}")
        if raw["severity"] not in ADVISORY_SEVERITIES:
            raise ValueError(f"severity {raw['severity']!r} is not one of {ADVISORY_SEVERITIES}")
        ids = {kind: tuple(raw["ids"].get(kind, ())) for kind in ID_KINDS}
        if set(raw["ids"]) - set(ID_KINDS) or raw["id"] not in {i for v in ids.values() for i in v}:
            raise ValueError("ids must be lists under tfsa/ghsa/cve/pysec and include the entry's id")
        affected = tuple(Interval(parse_version(a["introduced"]),
                                  parse_version(a["fixed"]) if a.get("fixed") else None) for a in raw["affected"])
        if not affected or any(a.fixed is not None and a.fixed <= a.introduced for a in affected):
            raise ValueError("needs affected intervals with introduced before fixed")
        for fixed in raw["fixed"]:
            parse_version(fixed)
        if not raw["url"].startswith("https://") or not raw["summary"] or "\n" in raw["summary"]:
            raise ValueError("needs an https url and a one-line summary")
        return Advisory(raw["id"], ids, raw["product"], affected, tuple(raw["fixed"]), raw["severity"],
                        raw.get("cvss"), raw["summary"], raw["url"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AdvisoryDataError(f"tf_advisories.json: advisory {name}: {exc!r}") from None


def parse(text: str) -> AdvisoryData:
    try:
        data = json.loads(text)
        entries = data["advisories"]
        coverage, sources = data["coverage"], tuple(data["sources"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AdvisoryDataError(f"tf_advisories.json: not an advisory file: {exc!r}") from None
    return AdvisoryData(tuple(_entry(raw, i) for i, raw in enumerate(entries)), coverage, sources)


@cache
def load() -> AdvisoryData:
    return parse(resources.files("netaudit").joinpath("data/tf_advisories.json").read_text())


def _bounds(low: str | None, high: str | None) -> tuple[Version, Version | None]:
    """The range as [start, end): a minor "2.14" ends before 2.15.0, an exact "2.14.1" before 2.14.2."""
    start = parse_version(low) if low else (0, 0, 0)
    if high is None:
        return start, None
    major, minor, patch = parse_version(high)
    exact = high.count(".") == 2
    return start, ((major, minor, patch + 1) if exact else (major, minor + 1, 0))


def classify(advisory: Advisory, low: str | None, high: str | None) -> str | None:
    """"all" when every release in the range is affected, "some" when only part of it, None when none."""
    start, end = _bounds(low, high)
    overlaps = covers = False
    for span in advisory.affected:
        if (end is None or span.introduced < end) and (span.fixed is None or span.fixed > start):
            overlaps = True
            if span.introduced <= start and (span.fixed is None or (end is not None and span.fixed >= end)):
                covers = True
    if covers:
        return "all"
    return "some" if overlaps else None


def match(low: str | None, high: str | None, product: str = "tensorflow",
          data: AdvisoryData | None = None) -> dict[str, Any]:
    """The advisories of `product` that affect the release range, "all" before "some", worst first. Every
    endpoint of one release asks the same question, so the bundled data's answers are kept (a fresh dict
    and list per call: the endpoint's copy is its own to bound)."""
    found = _matched(low, high, product) if data is None else _match(low, high, product, data)
    return {**found, "list": list(found["list"])}


@cache
def _matched(low: str | None, high: str | None, product: str) -> dict[str, Any]:
    return _match(low, high, product, load())


def _match(low: str | None, high: str | None, product: str, data: AdvisoryData) -> dict[str, Any]:
    found = []
    for advisory in data.advisories:
        if advisory.product == product and (affected := classify(advisory, low, high)):
            found.append(advisory.to_dict(affected))
    found.sort(key=lambda a: (a["affected"] != "all", ADVISORY_SEVERITIES.index(a["severity"]), a["id"]))
    counts = {s: sum(a["severity"] == s for a in found if a["affected"] == "all") for s in ADVISORY_SEVERITIES}
    return {
        "product": product,
        "all": sum(a["affected"] == "all" for a in found),
        "some": sum(a["affected"] == "some" for a in found),
        "by_severity": ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "none",
        "coverage": data.coverage.get(product, ""),
        "list": found,
    }

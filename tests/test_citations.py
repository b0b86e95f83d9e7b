"""Every citation a user or contributor reads points at something they have.

The team's research notes (the wire-fact files, the peer-tool survey, the compliance notes, the design
document) are not part of the repository and never ship, so no tracked file may cite them: a fact is cited
by its public source (a URL), or by a page under docs/ that gives that source (docs/wire-facts.md). This
walks every git-tracked file, as a grep would, and needs no lab.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()

# Names of the private notes, and the phrase that stood for the design document.
INTERNAL = re.compile(r"tf-wire-facts|peers-wire-facts|k8s-facts|anchors\.md|compliance-remediation|"
                      r"shared/reference|shared/design|product contract", re.IGNORECASE)
# A repository docs page: `docs/...md` not preceded by a path character, so URL paths such as
# https://…/docs/protocol/x.md (another project's docs) are not taken for ours.
DOCS_PAGE = re.compile(r"(?<![\w./-])docs/[\w./-]+?\.md\b")
# "docs/page.md §N" (the page may be in backticks): the section must be a numbered heading of that page.
DOCS_SECTION = re.compile(r"(?<![\w./-])(docs/[\w./-]+?\.md)`?\s+§(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no list of tracked files")
    return sorted(p for p in out.decode().split("\0") if p and p != SELF)


def read_lines(relpath: str) -> list[str]:
    try:
        text = (ROOT / relpath).read_bytes().decode("utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return []  # tracked but deleted in the work tree
    if relpath.endswith(".json"):
        text = text.replace("\\u00a7", "§")  # json.dumps writes § as an escape
    return text.splitlines()


def internal_citations(relpath: str, lines: list[str]) -> list[str]:
    return [f"{relpath}:{n}: {m.group(0)!r} in {line.strip()[:160]}"
            for n, line in enumerate(lines, 1) for m in INTERNAL.finditer(line)]


def missing_pages(relpath: str, lines: list[str]) -> list[str]:
    return [f"{relpath}:{n}: {m.group(0)} does not exist"
            for n, line in enumerate(lines, 1) for m in DOCS_PAGE.finditer(line)
            if not (ROOT / m.group(0)).is_file()]


def sections(page: str) -> set[str]:
    path = ROOT / page
    return set(HEADING.findall(path.read_text())) if path.is_file() else set()


def missing_sections(relpath: str, lines: list[str]) -> list[str]:
    found = []
    for n, line in enumerate(lines, 1):
        for m in DOCS_SECTION.finditer(line):
            page, section = m.groups()
            if (ROOT / page).is_file() and section not in sections(page):
                found.append(f"{relpath}:{n}: {page} has no section {section}")
    return found


@pytest.fixture(scope="module")
def files() -> dict[str, list[str]]:
    return {p: read_lines(p) for p in tracked_files()}


def test_the_checks_catch_what_they_should():
    bad = ["see tf-wire-facts.md §2.8", "(peers-wire-facts.md §3)", "k8s-facts.md", "anchors.md §2",
           "compliance-remediation.md §4.1", "shared/reference/x.md", "from the Product Contract"]
    assert all(INTERNAL.search(line) for line in bad)
    assert not INTERNAL.search("docs/wire-facts.md §2.8, https://github.com/tensorflow/serving")
    assert DOCS_PAGE.findall("see docs/scoring.md and `docs/wire-facts.md` §4") == ["docs/scoring.md",
                                                                                    "docs/wire-facts.md"]
    assert not DOCS_PAGE.findall("https://github.com/x/y/blob/main/docs/protocol/extension.md")
    assert DOCS_SECTION.findall("`docs/wire-facts.md` §2.5, docs/wire-facts.md §4") == [
        ("docs/wire-facts.md", "2.5"), ("docs/wire-facts.md", "4")]


def test_no_tracked_file_cites_the_private_notes(files):
    hits = [hit for path, lines in files.items() for hit in internal_citations(path, lines)]
    assert not hits, ("cite the public source (a URL) or a docs/ page that gives it, not the private notes:\n"
                      + "\n".join(hits))


def test_every_cited_docs_page_exists(files):
    missing = [m for path, lines in files.items() for m in missing_pages(path, lines)]
    assert not missing, "\n".join(missing)


def test_every_cited_docs_section_exists(files):
    missing = [m for path, lines in files.items() for m in missing_sections(path, lines)]
    assert not missing, "\n".join(missing)


def test_the_wire_facts_page_gives_a_public_source_in_every_section():
    text = (ROOT / "docs" / "wire-facts.md").read_text()
    parts = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    assert parts, "docs/wire-facts.md has no sections"
    without = [p.splitlines()[0] for p in parts
               if "https://" not in p and "measured" not in p.lower()]
    assert not without, f"sections with neither a public URL nor a measurement: {without}"

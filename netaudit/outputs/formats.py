"""The output formats: one table of their names, the -o suffixes that choose them and the function that
writes each. The CLI's --format choices, its suffix rule and every writer lookup read it, so a format is
added in one line.

It imports nothing of the writers: `netaudit --help` reads the names, and a writer's module is loaded
only when its format is written."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from collections.abc import Iterator
from typing import Any


@dataclass(frozen=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    # "module:function" that renders a whole result (a ScanResult, a report or a Recorded dict), whole (a
    # string) or in pieces (an iterator of strings, for the formats whose size follows the endpoints:
    # destination.write_text takes both); None for a format only `scan` writes, one endpoint at a time
    # (jsonl: netaudit/results/stream.py).
    writer: str | None

    def __call__(self, result: Any) -> str | Iterator[str]:
        if self.writer is None:
            raise ValueError(f"{self.name} is written as a scan streams, not from a whole result")
        module, function = self.writer.split(":")
        return getattr(importlib.import_module(module), function)(result)


# In the order --format lists them.
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("text", (".txt",), "netaudit.outputs.render:to_text"),
    Format("json", (".json",), "netaudit.outputs.render:json_pieces"),
    Format("html", (".html", ".htm"), "netaudit.outputs.render:html_pieces"),
    Format("sarif", (".sarif",), "netaudit.outputs.exports:sarif_pieces"),
    Format("junit", (".xml",), "netaudit.outputs.exports:junit_pieces"),
    Format("prom", (".prom",), "netaudit.outputs.exports:to_prom"),
    Format("ocsf", (".ocsf",), "netaudit.outputs.ocsf:ocsf_pieces"),
    Format("jsonl", (".jsonl",), None),
)}
# What report and convert write: every format made from a whole result.
WHOLE = tuple(name for name, f in FORMATS.items() if f.writer is not None)
BY_SUFFIX = {suffix: f.name for f in FORMATS.values() for suffix in f.suffixes}

"""A scan's assessed endpoints and findings on disk, with the index that reads them back in the result's order.

The JSON, HTML, SARIF and JUnit writers read a result through spool.view(): a dict shaped like scan-v1 whose
`endpoints` and `findings` are Spooled sequences, read from two files without names on every pass. Memory
then holds what the index needs (a few numbers per endpoint and the compact findings history keeps anyway),
not the endpoints: 16,384 TF endpoints cost no more than a thousand. A writer that needs totals makes a
second pass instead of keeping a list.
"""

from __future__ import annotations

import json
import os
import tempfile
from array import array
from collections.abc import Sequence
from typing import Any, Callable, Iterable, Iterator, overload

from netaudit.core.errors import OutputError
from netaudit.core.model import endpoint_order


class SpoolError(OutputError):
    """The spool could not be written or read back (a full or unwritable temp folder): nothing of the result
    can be kept elsewhere either, so it is said once, with the folder (exit 5)."""

    def __init__(self, exc: OSError):
        super().__init__(f"cannot spool the scan's results in {tempfile.gettempdir()} (set TMPDIR to another "
                         f"folder): {exc.strerror or exc}; nothing was written and the run is not recorded")


class Spooled(Sequence):
    """A list-shaped view of spooled items: each access reads the item again, so a pass holds one at a time.
    `compact` gives an item's in-memory summary (a finding's id, rule, severity, host, port and title), which
    sorted_by() orders by without reading anything back."""

    def __init__(self, load: Callable[[int], Any], keys: list[int], compact: Callable[[int], Any] | None = None):
        self._load, self._keys, self._compact = load, keys, compact

    def __len__(self) -> int:
        return len(self._keys)

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._load(key) for key in self._keys[index]]
        return self._load(self._keys[index])

    def __iter__(self) -> Iterator[Any]:
        for key in self._keys:
            yield self._load(key)

    def briefs(self) -> Iterator[Any]:
        """The items' compact forms, in order, read from memory."""
        if self._compact is None:
            raise TypeError("these spooled items have no compact form")
        return map(self._compact, self._keys)

    def sorted_by(self, key: Callable[[Any], Any]) -> "Spooled":
        if self._compact is None:
            raise TypeError("these spooled items have no compact form to sort by")
        compact = self._compact
        return Spooled(self._load, sorted(self._keys, key=lambda k: key(compact(k))), compact)


def briefs(findings: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Findings for a pass that reads only their id, rule, severity, host, port and title (a count, a
    worst severity): a Spooled sequence's compact forms, without reading the spool; a list as it is."""
    return findings.briefs() if isinstance(findings, Spooled) else findings


def sorted_items(items: Sequence, key: Callable[[Any], Any]) -> Sequence:
    """`items` in the order of `key`: a list sorted, a Spooled sequence reordered without being read."""
    return items.sorted_by(key) if isinstance(items, Spooled) else sorted(items, key=key)


class Spool:
    """Endpoint records of one scan, taken in the order the scan finished them, kept for the writers."""

    def __init__(self) -> None:
        try:  # files without a name: nothing is left on disk however the scan ends
            self._endpoints = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the spool
            self._findings = tempfile.TemporaryFile()  # noqa: SIM115
        except OSError as exc:
            raise SpoolError(exc) from None
        self._written = [0, 0]
        self._order: list[tuple[int, int, int]] = []  # per endpoint, endpoint_order
        self._spans = array("q")  # per endpoint: offset, length, first finding, finding count
        self._finding_spans = array("q")  # per finding: offset, length

    def take(self, record: dict[str, Any]) -> None:
        endpoint = record["endpoint"]
        order = endpoint_order(endpoint["host"], endpoint["port"])
        start = self._put(0, json.dumps(endpoint))
        first = len(self._finding_spans) // 2
        for finding in record["findings"]:
            self._finding_spans.extend(self._put(1, json.dumps(finding)))
        self._order.append(order)
        self._spans.extend((*start, first, len(record["findings"])))

    def _put(self, which: int, text: str) -> tuple[int, int]:
        data = text.encode("utf-8", errors="surrogatepass")
        try:
            (self._endpoints, self._findings)[which].write(data)
        except OSError as exc:
            raise SpoolError(exc) from None
        offset = self._written[which]
        self._written[which] += len(data)
        return offset, len(data)

    def _read(self, which: int, offset: int, length: int) -> Any:
        try:
            data = os.pread((self._endpoints, self._findings)[which].fileno(), length, offset)
        except OSError as exc:
            raise SpoolError(exc) from None
        return json.loads(data.decode("utf-8", errors="surrogatepass"))

    def view(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The result the writers take: `summary` (StreamWriter.summary(), annotated by history, its findings
        compact and in the order taken) with its endpoints and its findings read from the spool, in endpoint
        order. What history added to a compact finding (new or persisting, accepted) is added to the full one."""
        try:
            self._endpoints.flush()
            self._findings.flush()
        except OSError as exc:
            raise SpoolError(exc) from None
        compact = summary["findings"]
        if len(compact) != len(self._finding_spans) // 2:
            raise ValueError(f"the summary has {len(compact)} findings, the spool {len(self._finding_spans) // 2}")
        spans, finding_spans = self._spans, self._finding_spans
        order = sorted(range(len(self._order)), key=self._order.__getitem__)

        def endpoint(index: int) -> dict[str, Any]:
            return self._read(0, spans[4 * index], spans[4 * index + 1])

        def finding(number: int) -> dict[str, Any]:
            full = self._read(1, finding_spans[2 * number], finding_spans[2 * number + 1])
            full.update((k, v) for k, v in compact[number].items() if k not in full)
            return full

        numbers = [n for i in order for n in range(spans[4 * i + 2], spans[4 * i + 2] + spans[4 * i + 3])]
        data = {k: v for k, v in summary.items() if k != "stream"}
        data.update(endpoints=Spooled(endpoint, order), findings=Spooled(finding, numbers, compact.__getitem__))
        return data

    def close(self) -> None:
        for file in (self._endpoints, self._findings):
            try:
                file.close()
            except OSError:  # the flush of what is thrown away failed: a full disk, said already (SpoolError)
                pass

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

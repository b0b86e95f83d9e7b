"""JSON written in pieces: exactly the text of json.dumps(value, indent=2), produced while a spooled sequence
(or a generator) is read item by item, so a result of 16,384 endpoints is never one string or one list."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from netaudit.results.spool import Spooled

INDENT = 2


def _lazy(value: Any) -> bool:
    """A value that holds a sequence read on demand, at any depth of the dicts and lists around it."""
    if isinstance(value, (Spooled, Iterator)):
        return True
    if isinstance(value, dict):
        return any(_lazy(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_lazy(v) for v in value)
    return False


def _key(key: Any) -> str:
    """A dict key as json.dumps writes it: a string as is, true/false/null and numbers as their JSON text."""
    return json.dumps(key if isinstance(key, str) else json.dumps(key) if isinstance(key, (bool, type(None)))
                      else repr(key) if isinstance(key, float) else str(key))


def _whole(value: Any, level: int) -> str:
    return json.dumps(value, indent=INDENT).replace("\n", "\n" + " " * INDENT * level)


def iter_json(value: Any, level: int = 0) -> Iterator[str]:
    """The pieces of json.dumps(value, indent=2). Items of a lazy sequence are plain data: each is encoded
    whole, so the pieces are as many as the items, not as the values."""
    inner = "\n" + " " * INDENT * (level + 1)
    close = "\n" + " " * INDENT * level
    if isinstance(value, dict) and _lazy(value):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            yield ("," if index else "") + inner + _key(key) + ": "
            yield from iter_json(item, level + 1)
        yield close + "}"
    elif isinstance(value, (Spooled, Iterator)) or (isinstance(value, (list, tuple)) and _lazy(value)):
        read = isinstance(value, (Spooled, Iterator))  # its items are plain data, encoded whole
        empty = True
        for item in value:
            yield ("[" if empty else ",") + inner
            yield from ((_whole(item, level + 1),) if read else iter_json(item, level + 1))
            empty = False
        yield "[]" if empty else close + "]"
    else:
        yield _whole(value, level)

"""Server-supplied text on a terminal: every control character shown, never obeyed.

A device name such as "ESC ] 0 ; title BEL" retitles a terminal, "ESC [ 2 J" clears it, a newline or a
carriage return forges output lines, and the bidi overrides reorder what the eye reads (Trojan Source,
CVE-2021-42574). JSON keeps the exact string; everything printed for a person passes through here.
"""

from __future__ import annotations

import re

# C0 (tab and newline included: inside a field they forge columns and lines), DEL, C1, and the bidi
# embeddings, overrides and isolates U+202A-U+202E, U+2066-U+2069.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def terminal_safe(text: str) -> str:
    """`text` with every control character and bidi override written as a visible escape (\\x1b, \\u202e)."""
    return UNSAFE.sub(_escape, text)


def terminal_lines(text: str) -> str:
    """Multi-line text: each line made safe, the line breaks kept."""
    return "\n".join(terminal_safe(line) for line in text.split("\n"))

"""gRPC transcripts as records, and the sentences they read as.

An endpoint's calls are kept once, as data, in details.transcript: one record per channel (how it was
reached and with what identity) holding one small record per call. Repeating the channel, the identity and
the request wording in every line made each TF endpoint carry two dozen sentences, copied again into each
of its findings. Evidence keeps only the sentences that carry a verdict; the text and HTML outputs render
the rest from the records with the functions below. Nothing here talks to the network.
"""

from __future__ import annotations

from typing import Any

from netaudit.transport.safety import MALFORMED

# How a request reads in a sentence, by the record's short form.
REQUEST_WORDS = {"empty": "empty request", "malformed": "malformed request (unparseable, rejected before any handler)"}


def request_kind(request: bytes, note: str | None = None) -> str:
    """The record's short form of what was sent: empty, malformed, the note (what it asks for) or its size."""
    if note:
        return note
    if request == MALFORMED:
        return "malformed"
    return "empty" if not request else f"{len(request)} bytes"


def call_record(method: str, request: str, code: str, details: str, size: int | None, tries: int,
                stream: bool = False) -> dict[str, Any]:
    """Keys that would hold their usual value are left out: details when empty, size unless the call
    answered OK, tries when one send was enough, stream for unary calls."""
    record: dict[str, Any] = {"method": method, "request": request, "code": code}
    if details:
        record["details"] = details
    if size is not None:
        record["size"] = size
    if tries > 1:
        record["tries"] = tries
    if stream:
        record["stream"] = True
    return record


def call_sentence(call: dict[str, Any], channel: dict[str, Any]) -> str:
    request = call.get("request", "")
    words = REQUEST_WORDS.get(request) or (f"{request[:-6]}-byte request" if request.endswith(" bytes") and
                                           request[:-6].isdigit() else request)
    if call.get("stream"):
        head = f"-> {call['method']} (stream, {words})"
    else:
        head = f"-> {call['method']} ({words}, {channel.get('credentials', '?')}, {channel.get('transport', '?')})"
    return (head + f" <- {call['code']}" + (f" {call['details']!r}" if call.get("details") else "")
            + (f" [{call['size']}-byte response]" if call.get("size") is not None else "")
            + (f" (sent {call['tries']} times: deadline passed)" if call.get("tries", 1) > 1 else ""))


def channel_sentence(channel: dict[str, Any]) -> str | None:
    """The channel's set-up, when it says something: it never became ready, or only after more waits."""
    if channel.get("ready", True) and channel.get("waits", 1) == 1:
        return None
    where = channel.get("address", "the endpoint")
    if not channel.get("ready", True):
        return (f"-> {where}: gRPC channel not ready within {channel['waited']:g}s"
                + (" (the connection failed)" if channel.get("failed") else ""))
    return f"-> {where}: gRPC channel ready within {channel['waited']:g}s, after {channel['waits']} waits (slow link)"


def sentences(transcript: list[dict[str, Any]]) -> list[str]:
    """Every record of details.transcript as the line a reader expects, in the order the calls were made."""
    lines = []
    for channel in transcript:
        opening = channel_sentence(channel)
        if opening:
            lines.append(opening)
        lines += [call_sentence(call, channel) for call in channel.get("calls", [])]
        if channel.get("calls_cut"):
            lines.append(f"… and {channel['calls_cut']:,} more calls")
    return lines


def summary(channel: dict[str, Any]) -> str:
    """One sentence for a channel's calls: how many, how they were sent, what came back."""
    counts: dict[str, int] = {}
    for call in channel.get("calls", []):
        counts[call["code"]] = counts.get(call["code"], 0) + 1
    total = len(channel.get("calls", [])) + channel.get("calls_cut", 0)
    codes = ", ".join(f"{n} {code}" for code, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return (f"{total} gRPC call{'s' if total != 1 else ''} over {channel.get('transport', '?')} with "
            f"{channel.get('credentials', '?')}" + (f": {codes}" if codes else "") + " (each in details.transcript)")

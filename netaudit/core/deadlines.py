"""How long each try waits on a slow or lossy link, shared by the sniff, the RPC session and the budget."""

from __future__ import annotations


def deadlines(timeout: float, retries: int) -> list[float]:
    """The deadline of each try: every try waits longer than the last, as TCP's own retransmission timer
    backs off, so a reply held up by a retransmission still arrives in time."""
    return [timeout * (attempt + 1) for attempt in range(retries + 1)]

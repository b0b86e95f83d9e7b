"""Fault isolation: whatever one server sends, the fault stays with its endpoint.

Each endpoint's fingerprint runs under a wall-clock budget and a catch-all. The step the probe was in
(and the last RPC or request it sent) is tracked here, so details.probe_error can say what the server
was answering when it broke the probe. Only the safety check's UnsafeCall escapes: it is a bug in
netaudit, never something a server can cause.
"""

from __future__ import annotations

import asyncio
import contextvars
from contextlib import asynccontextmanager
from dataclasses import dataclass

from netaudit.core.caps import clip
from netaudit.core.deadlines import deadlines
from netaudit.core.textsafe import terminal_safe

# Rounds of sequential waits a fingerprint may spend: sniff (connect, preface, TLS or HTTP) takes up to
# three, the gRPC probes up to nine more when every call needs all its retries (channel set-up, TF
# signatures, version markers, ModelServer presence, calls, inventory, health, two reflection streams).
BUDGET_ROUNDS = 12


def budget(timeout: float, retries: int) -> float:
    """The wall-clock budget of one endpoint's fingerprint: BUDGET_ROUNDS rounds, each as long as one
    call's deadlines with all its retries, timeout x (1 + 2 + ... + (retries + 1)), plus the sniff's
    0.5 s banner wait. --timeout 2 --retries 1: 12 x 6 + 0.5 = 72.5 s; --timeout 1 --retries 0: 12.5 s."""
    return BUDGET_ROUNDS * sum(deadlines(timeout, retries)) + 0.5


@dataclass
class Step:
    """Where a fingerprint is: the probe, and the last request it sent."""

    probe: str = "sniff"
    request: str | None = None
    budget: asyncio.Timeout | None = None

    def describe(self) -> str:
        return self.probe + (f" ({self.request})" if self.request else "")


CURRENT: contextvars.ContextVar[Step | None] = contextvars.ContextVar("netaudit_step", default=None)


def enter(probe: str) -> None:
    """The probe now running on this task's endpoint (child tasks share the same Step object)."""
    step = CURRENT.get()
    if step is not None:
        step.probe, step.request = probe, None


@asynccontextmanager
async def slot(semaphore: asyncio.Semaphore):
    """Hold one of a few shared slots; the time spent queueing for it is not charged to the budget."""
    step = CURRENT.get()
    budget = step.budget if step else None
    due = budget.when() if budget else None
    loop = asyncio.get_running_loop()
    started = loop.time()
    if budget and due is not None:
        budget.reschedule(None)
    try:
        async with semaphore:
            if budget and due is not None:
                budget.reschedule(due + loop.time() - started)
            yield
    finally:
        if budget and due is not None and budget.when() is None:
            budget.reschedule(due + loop.time() - started)


def sent(request: str) -> None:
    step = CURRENT.get()
    if step is not None:
        step.request = request


def probe_error(exc: BaseException | None, during: str, message: str | None = None) -> dict[str, str]:
    """details.probe_error: the failure's type, its bounded and escaped text, and the step it hit."""
    name = "budget spent" if exc is None else type(exc).__name__
    text = message if message is not None else str(exc)
    return {"error": name, "message": terminal_safe(clip(text)), "during": terminal_safe(clip(during))}

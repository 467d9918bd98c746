"""What the store records: plain data, built by the cycle, written in one transaction."""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = _ALPHABET[r] + out
    return out or "0"


# Ids need to be unique, not secret: a generator seeded from the OS once per process draws them without a
# system call each (a backtest makes one for every step).
_ID_RANDOM = random.Random(os.urandom(32))
_ID_SPACE = 36**5
_id_lock = threading.Lock()
_id_last: tuple[int, int] = (-1, 0)


def _reseed_ids() -> None:
    """A forked child draws its own ids: it would otherwise repeat its parent's draws and count."""
    global _id_last
    _ID_RANDOM.seed(os.urandom(32))
    _id_last = (-1, 0)


os.register_at_fork(after_in_child=_reseed_ids)


def new_decision_id(now_ms: int | None = None) -> str:
    """A short, time-sortable, unique id (also a safe part of a client order id).

    Nine base36 characters of milliseconds, then five of a random draw. Within one process, ids of the same
    millisecond never repeat: the draw is taken from the lower half of its range once per millisecond and
    counted up from there (as ULID's monotonic mode does), so they also sort in the order they were made.
    Across processes, two ids of the same millisecond differ by a 1 in 30 million draw."""
    global _id_last
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _id_lock:
        last_ms, last_draw = _id_last
        draw = last_draw + 1 if ms == last_ms else _ID_RANDOM.randrange(_ID_SPACE // 2)
        _id_last = (ms, draw)
    return _base36(ms).rjust(9, "0") + _base36(draw).rjust(5, "0")


@dataclass
class AssetRow:
    symbol: str
    action: str
    status: str
    reasons: list[str]
    proposed: dict[str, Any] | None
    allocation_usd: float | None = None
    leverage: int | None = None
    entry_price: float | None = None
    tp_price: float | None = None
    sl_price: float | None = None
    confidence: float | None = None
    risk_level: str | None = None
    rationale: str | None = None
    mark_price: float | None = None


@dataclass
class CallRow:
    attempt: int
    response_format: str
    raw_response: str | None
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    latency_ms: int
    finish_reason: str | None
    generation_id: str | None


@dataclass
class DecisionRecord:
    """One decision: its prompt, answer, validation and outcome."""

    id: str
    created_at_ms: int
    account: str
    mode: str
    dry_run: bool
    strategy: str
    model: str
    base_url: str
    symbols: list[str]
    outcome: str
    error: str | None = None
    as_of_ms: int | None = None
    marks: dict[str, float] = field(default_factory=dict)
    system_prompt: str | None = None
    user_prompt: str | None = None
    raw_response: str | None = None
    parsed: dict[str, Any] | None = None
    parse_errors: list[str] = field(default_factory=list)
    portfolio_rationale: str | None = None
    notes: list[str] = field(default_factory=list)
    response_format: str | None = None
    reasks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    model_latency_ms: int = 0
    latency_ms: int = 0
    assets: list[AssetRow] = field(default_factory=list)
    calls: list[CallRow] = field(default_factory=list)
    execution: str | None = None
    arm: str | None = None  # the A/B arm that made the decision; None when no A/B test ran
    equity_usd: float | None = None  # the account equity the decision saw

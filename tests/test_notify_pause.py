"""A paused account's cycles (recorded as skipped, with the pause as the reason) are not failures: they never
complete a failed-cycles streak notification."""

from __future__ import annotations

from pathlib import Path

from llmtrader.notify.messages import render
from llmtrader.storage import outbox
from llmtrader.storage.store import Store
from llmtrader.storage.web import pause_of, request_control

T0 = 1_773_151_205_000


def _titles(store: Store, outcomes: list[str]) -> list[str]:
    conn = store.db.conn
    request_control(conn, account="default", action="pause", source="telegram (chat 7)", now_ms=T0)
    paused = pause_of(conn, "default")  # what the cycle records as the reason of a paused cycle
    assert paused is not None
    for i, outcome in enumerate(outcomes):
        store.record_cycle(
            account="default", started_ms=T0 + i * 60_000, finished_ms=T0 + i * 60_000 + 10,
            outcome="skipped" if outcome == "paused" else outcome,
            reason=paused if outcome == "paused" else "the model cannot be reached: HTTP 503",
            decision_id=None, equity_usd=None, cached=False, reconcile=[],
        )  # fmt: skip
    messages = [render(store, row, T0, failed_cycles=3) for row in outbox.pending(conn)]
    return [m.title for m in messages if m is not None]


def test_paused_cycles_never_complete_a_failed_cycles_streak(clean_env: Path) -> None:
    store = Store(clean_env)
    try:
        assert _titles(store, ["model_error", "model_error", "paused", "paused", "paused"]) == []
    finally:
        store.close()


def test_three_failures_are_still_told(clean_env: Path) -> None:
    store = Store(clean_env)
    try:
        assert _titles(store, ["paused", "model_error", "model_error", "model_error"]) == [
            "3 failed cycles in a row (default)"
        ]
    finally:
        store.close()

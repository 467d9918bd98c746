"""What a person does by hand, outside a cycle: resume an account stopped by its guards."""

from __future__ import annotations

from llmtrader.core.guards import ResumeResult, resume
from llmtrader.storage.store import Store


def resume_account(store: Store, account: str, *, now_ms: int, equity: float | None = None) -> ResumeResult:
    """``llmtrader resume ACCOUNT``: :func:`~llmtrader.core.guards.resume` on the persisted state, saved with
    its event when it changed something (nothing is written when the account was not stopped)."""
    result = resume(store.load_guard_state(account), now_ms=now_ms, equity=equity)
    if result.resumed:
        store.save_guard_state(account, result.new_state, result.events, now_ms=now_ms)
    return result

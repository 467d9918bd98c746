"""``llmtrader stats``: an account's figures from its stored fills and decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from llmtrader.core.stats import AccountStats, GroupBy, compute_stats, opening_decision
from llmtrader.core.trades import reconstruct_trades
from llmtrader.errors import StoreError
from llmtrader.storage.backtests import run_end_ms
from llmtrader.storage.facts import account_history
from llmtrader.storage.stats import load_decisions

if TYPE_CHECKING:
    from llmtrader.storage.store import Store


def account_stats(
    store: Store,
    *,
    account: str,
    mode: Literal["paper", "live"],
    now_ms: int,
    since_ms: int | None = None,
    by: GroupBy | None = None,
) -> AccountStats:
    """The ``stats`` figures of ``account`` in ``mode``, from its stored fills and decisions: the paper
    exchange's records, or the live venue's fills as last synced (their starting balance is not known, so
    the live figures that need it, Sharpe and drawdown in %, are None).

    The period ends at ``now_ms``, or for a backtest run (in its ``backtests.db``) where the run ended: its
    last step, in the run's own time; after it the run holds nothing and decides nothing."""
    run_end = run_end_ms(store, account)  # None for anything but a run
    if run_end is not None:
        now_ms = run_end
    history = account_history(store, account, mode)
    try:
        trades = reconstruct_trades(history.fills, history.funding)
    except ValueError as exc:
        raise StoreError(f"the recorded fills of account {account!r} do not add up: {exc}") from exc
    starts = [t for t in (history.since_ms, since_ms) if t is not None]
    start = max(starts) if starts else None
    # The decisions that opened the period's trades (closed in it, or still open) may be older than it.
    relevant = [t for t in trades if t.closed_ms is None or start is None or t.closed_ms >= start]
    openers = {o for t in relevant if (o := opening_decision(t)) is not None}
    decisions, assets = load_decisions(store, account, mode, start, openers)
    return compute_stats(
        trades,
        decisions,
        assets,
        account=account,
        mode=mode,
        starting_balance=history.starting_balance,
        end_ms=now_ms,
        reset_ms=history.since_ms,
        since_ms=since_ms,
        by=by,
    )

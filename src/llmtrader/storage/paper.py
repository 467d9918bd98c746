"""The paper account's fills and funding payments (its state: the ``*_paper_state`` methods of
:class:`~llmtrader.storage.store.Store`, which implement :class:`~llmtrader.exchange.paper.PaperStore`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from llmtrader.exchange.paper import Fill, FundingPayment, PaperEvent


def insert_events(conn: sqlite3.Connection, account: str, events: Sequence[PaperEvent]) -> None:
    """Write a book's fills and funding payments (inside the caller's transaction)."""
    fills = [e for e in events if isinstance(e, Fill)]
    payments = [e for e in events if isinstance(e, FundingPayment)]
    conn.executemany(
        "INSERT INTO paper_fills (account, time_ms, symbol, client_order_id, order_id, side, qty, price,"
        " fee, realized_pnl, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (account, f.time_ms, f.symbol, f.client_order_id, f.order_id, f.side.value, str(f.qty),
             str(f.price), str(f.fee), str(f.realized_pnl), f.reason)
            for f in fills
        ],
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO paper_funding (account, time_ms, symbol, rate, mark_price, position_amt, amount)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (account, p.time_ms, p.symbol, str(p.rate), str(p.mark_price), str(p.position_amt), str(p.amount))
            for p in payments
        ],
    )  # fmt: skip


class _Conflict(Exception):
    """Raised inside the transaction to roll it back when the stored state moved under us."""

"""The notifications' outbox (migration m013): its rows, their deliveries per target, and what they refer to.

Rows are written by triggers in the transaction of the record they tell about, or by :func:`add` (agent
started and stopped, the daily summary). :mod:`llmtrader.notify` reads them, sends them and marks them here.
A row is ``pending`` until every target has it ``sent`` or ``failed`` (then ``done``), or until the notifier
decides it tells nothing (``skipped``: a fill that neither opens nor closes a trade, an event not chosen).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from llmtrader.core.times import iso_utc

PENDING = "pending"
DONE = "done"
SKIPPED = "skipped"
SENT = "sent"
FAILED = "failed"
RETRY = "retry"


def _rows(conn: sqlite3.Connection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def add(
    conn: sqlite3.Connection, *, dedupe_key: str, kind: str, account: str, payload: dict[str, Any], now_ms: int
) -> bool:
    """Queue one row written by the agent itself; False when its dedupe key is already queued."""
    with conn:
        cur = conn.execute(
            "INSERT OR IGNORE INTO notify_outbox (dedupe_key, kind, account, payload, created_at_ms, status) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [dedupe_key, kind, account, json.dumps(payload, separators=(",", ":")), now_ms, PENDING],
        )
    return cur.rowcount == 1


def pending(conn: sqlite3.Connection, limit: int = 100) -> list[dict[str, Any]]:
    """The oldest rows not done yet."""
    return _rows(conn, "SELECT * FROM notify_outbox WHERE status = ? ORDER BY id LIMIT ?", [PENDING, limit])


def deliveries(conn: sqlite3.Connection, outbox_id: int) -> dict[str, dict[str, Any]]:
    """Target -> its delivery row, for one outbox row."""
    rows = _rows(conn, "SELECT * FROM notify_deliveries WHERE outbox_id = ?", [outbox_id])
    return {str(r["target"]): r for r in rows}


def record_attempt(
    conn: sqlite3.Connection, outbox_id: int, target: str, *, status: str, attempts: int, next_attempt_ms: int | None,
    error: str | None, now_ms: int,
) -> None:  # fmt: skip
    """What one attempt to send a row to a target gave (sent, retry later, or failed for good)."""
    with conn:
        conn.execute(
            "INSERT INTO notify_deliveries (outbox_id, target, status, attempts, next_attempt_ms, last_error, "
            "updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(outbox_id, target) DO UPDATE SET "
            "status = excluded.status, attempts = excluded.attempts, next_attempt_ms = excluded.next_attempt_ms, "
            "last_error = excluded.last_error, updated_at_ms = excluded.updated_at_ms",
            [outbox_id, target, status, attempts, next_attempt_ms, error, now_ms],
        )


def finish(conn: sqlite3.Connection, outbox_id: int, status: str, now_ms: int) -> None:
    """Mark a row done (every target answered for) or skipped (nothing to tell)."""
    with conn:
        conn.execute("UPDATE notify_outbox SET status = ?, done_at_ms = ? WHERE id = ?", [status, now_ms, outbox_id])


def referenced(conn: sqlite3.Connection, table: str, row_id: int) -> dict[str, Any] | None:
    """The row an outbox row refers to (tables named by the migration's triggers only)."""
    if table not in ("paper_fills", "venue_fills", "execution_events", "guard_events", "cycles"):
        raise ValueError(f"the outbox refers to no table {table!r}")
    found = _rows(conn, f"SELECT * FROM [{table}] WHERE id = ?", [row_id])
    return found[0] if found else None


def recent_cycles(conn: sqlite3.Connection, account: str, until_id: int, n: int) -> list[dict[str, Any]]:
    """The account's ``n`` newest cycles up to row ``until_id``, newest first."""
    return _rows(
        conn,
        "SELECT id, outcome, reason FROM cycles WHERE account = ? AND id <= ? ORDER BY id DESC LIMIT ?",
        [account, until_id, n],
    )


def decision_of(conn: sqlite3.Connection, decision_id: str, symbol: str) -> dict[str, Any] | None:
    """The model, leverage, stop, target and rationale a decision gave ``symbol``."""
    found = _rows(
        conn,
        "SELECT d.model, a.leverage, a.sl_price, a.tp_price, a.rationale FROM decisions d "
        "LEFT JOIN asset_decisions a ON a.decision_id = d.id AND a.symbol = ? WHERE d.id = ?",
        [symbol, decision_id],
    )
    return found[0] if found else None


def day_figures(conn: sqlite3.Connection, account: str, since_ms: int, until_ms: int) -> dict[str, Any]:
    """Model cost and the last equity seen by a cycle of the account, in [since_ms, until_ms)."""
    since, until = iso_utc(since_ms), iso_utc(until_ms)
    cost = conn.execute(
        "SELECT COALESCE(SUM(cost_usd), 0) FROM decisions WHERE account = ? AND created_at >= ? AND created_at < ?",
        [account, since, until],
    ).fetchone()[0]
    equity = conn.execute(
        "SELECT equity_usd FROM cycles WHERE account = ? AND started_at < ? AND equity_usd IS NOT NULL "
        "ORDER BY started_at DESC LIMIT 1",
        [account, until],
    ).fetchone()
    return {"cost_usd": float(cost or 0), "equity_usd": None if equity is None else float(equity[0])}


def health(conn: sqlite3.Connection, accounts: list[str] | None = None) -> dict[str, Any]:
    """What ``status`` and ``doctor`` show: rows waiting, deliveries failed for good, the newest error."""
    waiting = conn.execute("SELECT count(*) FROM notify_outbox WHERE status = ?", [PENDING]).fetchone()[0]
    failed = conn.execute("SELECT count(*) FROM notify_deliveries WHERE status = ?", [FAILED]).fetchone()[0]
    retrying = conn.execute("SELECT count(*) FROM notify_deliveries WHERE status = ?", [RETRY]).fetchone()[0]
    last = conn.execute(
        "SELECT last_error, updated_at_ms FROM notify_deliveries WHERE last_error IS NOT NULL "
        "ORDER BY updated_at_ms DESC LIMIT 1"
    ).fetchone()
    return {
        "pending": int(waiting),
        "retrying": int(retrying),
        "failed": int(failed),
        "last_error": None if last is None else str(last[0]),
        "last_error_at_ms": None if last is None else int(last[1]),
    }


def health_if_migrated(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """:func:`health`, None on a database older than the outbox."""
    try:
        return health(conn)
    except sqlite3.OperationalError:  # no such table: a database not migrated yet
        return None


def last_decision(conn: sqlite3.Connection, account: str) -> dict[str, Any] | None:
    """The account's newest decision with its asset rows (``assets``)."""
    found = _rows(
        conn,
        "SELECT id, created_at, model, outcome, portfolio_rationale, execution FROM decisions WHERE account = ? "
        "ORDER BY created_at DESC LIMIT 1",
        [account],
    )
    if not found:
        return None
    out = found[0]
    out["assets"] = _rows(
        conn,
        "SELECT symbol, action, status, reasons, rationale FROM asset_decisions WHERE decision_id = ? ORDER BY id",
        [out["id"]],
    )
    return out

"""The SQL of ``llmtrader serve`` (llmtrader.web): plain sqlite3 reads of the store, the positions snapshot the
agent writes at the end of each cycle, and the control requests of the dashboard (m012_web).

The reads take a plain connection (``reader.open_reader``): no sqlite-utils, no pandas, so the server stays light.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from llmtrader.core.times import iso_utc, ms_of_iso
from llmtrader.errors import ConfigError, StoreError
from llmtrader.storage.reader import decisions_with_assets

if TYPE_CHECKING:
    from llmtrader.storage.store import Store

CONTROL_ACTIONS = ("pause", "resume", "close_all")


# ---- written by the agent (the cycle) ------------------------------------------------------------------


def record_positions(store: Store, *, account: str, mode: str, time_ms: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append the open positions of ``account`` as read at ``time_ms`` (rows of ``positions --json``)."""
    try:
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO positions_snapshots (account, mode, time_ms, positions) VALUES (?, ?, ?, ?)",
                [account, mode, time_ms, json.dumps(list(rows), default=str)],
            )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot record the positions of account {account!r} in {store.path}: {exc}") from exc


def pending_controls(store: Store, account: str) -> list[dict[str, Any]]:
    """The control requests of ``account`` not carried out yet, oldest first."""
    cursor = store.db.conn.execute(
        "SELECT id, action, source, requested_at FROM control_requests "
        "WHERE account = ? AND status = 'pending' ORDER BY id",
        [account],
    )
    return [dict(zip(("id", "action", "source", "requested_at"), r, strict=True)) for r in cursor]


def finish_control(store: Store, request_id: int, *, status: str, result: str, now_ms: int) -> None:
    """Mark a control request done (or failed), saying what became of it."""
    try:
        with store.transaction() as conn:
            conn.execute(
                "UPDATE control_requests SET status = ?, result = ?, done_at = ? WHERE id = ?",
                [status, result, iso_utc(now_ms), request_id],
            )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot update control request {request_id} in {store.path}: {exc}") from exc


def is_paused(store: Store, account: str) -> str | None:
    """Who paused ``account`` and when (its latest pause or resume request is a pause), or None."""
    return pause_of(store.db.conn, account)


def pause_of(conn: sqlite3.Connection, account: str) -> str | None:
    """:func:`is_paused` on a plain connection: the one source of a pause, whoever asked for it (the
    dashboard, its API or Telegram), for the cycle, ``status`` and Telegram's /status alike."""
    row = conn.execute(
        "SELECT action, source, requested_at FROM control_requests "
        "WHERE account = ? AND action IN ('pause', 'resume') ORDER BY id DESC LIMIT 1",
        [account],
    ).fetchone()
    if row is None or row[0] != "pause":
        return None
    return f"paused from {row[1]} at {row[2]}"


# ---- written by the server (--allow-control) -----------------------------------------------------------


def request_control(
    conn: sqlite3.Connection,
    *,
    account: str,
    action: str,
    source: str,
    now_ms: int,
    status: str = "pending",
    result: str | None = None,
) -> int:
    """Record a control request for the agent's next cycle (or, with ``status`` done, one the server carried
    out itself, as resume_drawdown); returns its id."""
    if action not in (*CONTROL_ACTIONS, "resume_drawdown"):
        raise ConfigError(f"unknown control action {action!r}; accepted: {', '.join(CONTROL_ACTIONS)}")
    done_at = iso_utc(now_ms) if status != "pending" else None
    try:
        with conn:
            cursor = conn.execute(
                "INSERT INTO control_requests (account, action, source, requested_at, status, done_at, result) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [account, action, source, iso_utc(now_ms), status, done_at, result],
            )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot record the control request: {exc}") from exc
    return int(cursor.lastrowid or 0)


def controls(conn: sqlite3.Connection, account: str | None, limit: int = 20) -> list[dict[str, Any]]:
    """The latest control requests, newest first."""
    sql = "SELECT id, account, action, source, requested_at, status, done_at, result FROM control_requests"
    params: list[Any] = []
    if account is not None:
        sql += " WHERE account = ?"
        params.append(account)
    return [dict(r) for r in conn.execute(sql + " ORDER BY id DESC LIMIT ?", [*params, limit])]


# ---- reads ---------------------------------------------------------------------------------------------


def encode_cursor(created_at: str, decision_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at}|{decision_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, decision_id = raw.split("|", 1)
    except (ValueError, UnicodeDecodeError):
        raise ConfigError("cursor is not one this server gave: pass the next_cursor of a previous page") from None
    return created_at, decision_id


def decision_page(
    conn: sqlite3.Connection,
    *,
    account: str | None = None,
    accounts: Sequence[str] | None = None,
    symbol: str | None = None,
    action: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of decisions newest first (rows of ``history --json``) and the cursor of the next page;
    ``accounts``: only theirs."""
    after = decode_cursor(cursor) if cursor else None
    where: list[str] = []
    params: list[Any] = []
    if account is not None:
        where.append("account = ?")
        params.append(account)
    if accounts is not None:
        where.append(f"account IN ({','.join('?' * len(accounts))})")
        params += list(accounts)
    if since is not None:
        where.append("created_at >= ?")
        params.append(since)
    if until is not None:
        where.append("created_at < ?")
        params.append(until)
    if symbol is None and action is None:
        if after is not None:
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params += [after[0], after[0], after[1]]
        sql = "SELECT id, created_at FROM decisions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        keys = [(r[0], r[1]) for r in conn.execute(sql, [*params, limit + 1])]
    else:
        if symbol is not None:
            where.append("symbol = ?")
            params.append(symbol)
        if action is not None:
            where.append("action = ?")
            params.append(action)
        if after is not None:
            where.append("(created_at < ? OR (created_at = ? AND decision_id < ?))")
            params += [after[0], after[0], after[1]]
        sql = (
            f"SELECT decision_id, created_at FROM asset_decisions WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, decision_id DESC"
        )
        seen: dict[str, str] = {}
        for r in conn.execute(sql, params):  # lazily, newest first, stopping once a page and one more are found
            seen.setdefault(r[0], r[1])
            if len(seen) > limit:
                break
        keys = list(seen.items())
    more = len(keys) > limit
    keys = keys[:limit]
    ids = [k for k, _ in keys]
    if not ids:
        return [], None
    out = decisions_with_assets(conn, ids, symbol=symbol, action=action)
    last = keys[-1]
    return out, (encode_cursor(last[1], last[0]) if more else None)


def latest_positions(conn: sqlite3.Connection, account: str) -> dict[str, Any] | None:
    """The last positions snapshot of ``account``: its time and rows, or None when none was recorded."""
    row = conn.execute(
        "SELECT mode, time_ms, positions FROM positions_snapshots WHERE account = ? ORDER BY time_ms DESC, id DESC "
        "LIMIT 1",
        [account],
    ).fetchone()
    if row is None:
        return None
    return {"mode": row[0], "time": iso_utc(row[1]), "time_ms": row[1], "positions": json.loads(row[2])}


def recent_guard_events(conn: sqlite3.Connection, account: str, limit: int = 10) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in conn.execute(
            "SELECT kind, message, created_at FROM guard_events WHERE account = ? ORDER BY id DESC LIMIT ?",
            [account, limit],
        )
    ]


# ---- the live stream: rows newer than the last ones seen -----------------------------------------------

# stream kind -> (table, columns), in the order a cycle records them
STREAM_TABLES: dict[str, tuple[str, str]] = {
    "decision": ("decisions", "rowid AS id, id AS decision_id, created_at, account, mode, strategy, model, outcome, "
                 "execution, portfolio_rationale, cost_usd, latency_ms"),
    "order": ("orders", "id, decision_id, account, mode, symbol, leg, client_order_id, status, venue_code, "
              "venue_message, executed_qty, avg_price, created_at, updated_at"),
    "paper_fill": ("paper_fills", "id, account, time_ms, symbol, client_order_id, side, qty, price, fee, realized_pnl"),
    "venue_fill": ("venue_fills", "id, account, time_ms, symbol, client_order_id, side, qty, price, fee, realized_pnl"),
    "guard": ("guard_events", "id, account, kind, message, created_at"),
    "event": ("execution_events", "id, decision_id, account, symbol, kind, message, created_at"),
    "control": ("control_requests", "id, account, action, source, requested_at, status"),
    # recorded last, so a listener that stops at a cycle has had what the cycle did
    "cycle": ("cycles", "id, account, started_at, finished_at, duration_ms, outcome, reason, decision_id, equity_usd"),
}  # fmt: skip


def stream_heads(conn: sqlite3.Connection) -> dict[str, int]:
    """The newest row id of each streamed table (where a new listener starts)."""
    key = {"decision": "rowid"}
    return {
        kind: int(conn.execute(f"SELECT coalesce(max({key.get(kind, 'id')}), 0) FROM {table}").fetchone()[0])
        for kind, (table, _) in STREAM_TABLES.items()
    }


def stream_since(conn: sqlite3.Connection, heads: dict[str, int], limit: int = 200) -> list[tuple[str, dict[str, Any]]]:
    """The rows written since ``heads`` (updated in place), oldest first per kind."""
    out: list[tuple[str, dict[str, Any]]] = []
    for kind, (table, columns) in STREAM_TABLES.items():
        key = "rowid" if kind == "decision" else "id"
        rows = conn.execute(
            f"SELECT {columns} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?", [heads.get(kind, 0), limit]
        ).fetchall()
        for r in rows:
            item = dict(r)
            heads[kind] = max(heads.get(kind, 0), int(item["id"]))
            if kind == "decision":
                item.pop("id")
            out.append((kind, item))
    return out


# ---- /metrics ------------------------------------------------------------------------------------------


LATENCY_BUCKETS_S = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 60.0)


def metric_rows(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """The aggregates /metrics exposes, each a list of rows; ``latency``: per account the count of model
    latencies at or under each of LATENCY_BUCKETS_S, then the count and the sum in seconds."""
    buckets = ", ".join(f"sum(model_latency_ms <= {int(b * 1000)})" for b in LATENCY_BUCKETS_S)
    q = {
        "cycles": "SELECT account, outcome, count(*) FROM cycles GROUP BY account, outcome",
        "validation": "SELECT account, status, count(*) FROM asset_decisions GROUP BY account, status",
        "spend": "SELECT account, coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
        "coalesce(sum(cost_usd), 0) FROM decisions GROUP BY account",
        "latency": f"SELECT account, {buckets}, count(*), sum(model_latency_ms) / 1000.0 FROM decisions "
        "WHERE model_latency_ms IS NOT NULL GROUP BY account",
    }
    return {name: [tuple(r) for r in conn.execute(sql)] for name, sql in q.items()}


def equity_points(conn: sqlite3.Connection, account: str, since: str | None) -> list[tuple[int, float]]:
    """(time in ms, equity in USD) of each cycle of ``account`` that saw the account, oldest first."""
    sql = "SELECT started_at, equity_usd FROM cycles WHERE account = ? AND equity_usd IS NOT NULL"
    params: list[Any] = [account]
    if since is not None:
        sql += " AND started_at >= ?"
        params.append(since)
    return [(ms_of_iso(r[0]), float(r[1])) for r in conn.execute(sql + " ORDER BY started_at, id", params)]


def price_marks(
    conn: sqlite3.Connection, account: str, decisions: int = 500, limit: int = 2000
) -> dict[str, dict[str, Any]]:
    """Per symbol: the mark price at each of the account's latest ``decisions`` (``marks``: [time_ms, price]),
    and its fills in that stretch (``fills``: time_ms, side, price, qty, reason), oldest first."""
    out: dict[str, dict[str, Any]] = {}
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM decisions WHERE account = ? ORDER BY created_at DESC LIMIT ?", [account, decisions]
        )
    ]
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        f"SELECT created_at, symbol, mark_price FROM asset_decisions WHERE decision_id IN ({marks}) "
        "AND mark_price IS NOT NULL ORDER BY created_at",
        ids,
    ).fetchall()
    for created_at, symbol, mark in rows:
        out.setdefault(symbol, {"marks": [], "fills": []})["marks"].append([ms_of_iso(created_at), float(mark)])
    start = min((v["marks"][0][0] for v in out.values()), default=0)
    for table in ("paper_fills", "venue_fills"):
        for time_ms, symbol, side, price, qty, reason in conn.execute(
            f"SELECT time_ms, symbol, side, price, qty, reason FROM {table} WHERE account = ? AND time_ms >= ? "
            "ORDER BY time_ms LIMIT ?",
            [account, start, limit],
        ):
            item = {"time_ms": time_ms, "side": side, "price": str(price), "qty": str(qty), "reason": reason}
            out.setdefault(symbol, {"marks": [], "fills": []})["fills"].append(item)
    return out


@dataclass
class _ReadDb:
    """The part of sqlite-utils' ``Database`` the stats and facts readers use, over a plain connection."""

    conn: sqlite3.Connection

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)


class ReadStore:
    """A read-only stand-in for :class:`llmtrader.storage.store.Store` where a reader (stats, the trade
    ledger, backtest runs) needs one: the same ``db.conn``/``db.execute``/``path``, no sqlite-utils (which
    would import pandas into the server), no migration, no write."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.db = _ReadDb(conn)
        self.path = path

    def as_store(self) -> Store:
        return cast("Store", self)


@contextmanager
def read_only_store(path: Path) -> Iterator[Store]:
    """A :class:`ReadStore` over a read-only connection to the database at ``path`` (the backtests'),
    closed on leaving."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield ReadStore(conn, path).as_store()
    finally:
        conn.close()

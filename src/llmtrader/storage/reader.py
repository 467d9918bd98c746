"""Fast read paths for ``history`` and ``show``: the stdlib sqlite3 module, no heavy imports.

Filtering by symbol or action walks the ``(symbol, created_at)`` / ``(action, created_at)`` indexes
newest first and stops as soon as enough decisions are found, so it never scans JSON or the table.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from llmtrader.errors import NotFoundError, StoreError
from llmtrader.storage.migrations import MIGRATION_SET, migration_names

ASSET_COLUMNS = (
    "symbol, action, status, allocation_usd, leverage, entry_price, tp_price, sl_price, "
    "confidence, risk_level, rationale, reasons, proposed, mark_price"
)
JSON_COLUMNS = ("symbols", "marks", "parsed", "parse_errors", "notes", "reasons", "proposed", "request")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=5.0)
    conn.row_factory = sqlite3.Row
    return conn


def _is_current(conn: sqlite3.Connection) -> bool:
    try:
        rows = conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = ?", [MIGRATION_SET]).fetchall()
    except sqlite3.OperationalError:
        return False
    return set(migration_names()) <= {r["name"] for r in rows}


def open_reader(path: Path) -> sqlite3.Connection | None:
    """A connection for reading, or None when no database exists yet. Migrates an old file first."""
    if not path.exists():
        return None
    try:
        conn = _connect(path)
        if not _is_current(conn):
            conn.close()
            from llmtrader.storage.store import Store

            Store(path).close()
            conn = _connect(path)
        return conn
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the database {path}: {exc}") from exc


def _row(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for key in JSON_COLUMNS:
        if key in out and isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out


def _matching_ids(
    conn: sqlite3.Connection, symbol: str | None, action: str | None, since: str | None, limit: int
) -> list[str]:
    if symbol is None and action is None:
        sql = "SELECT id AS decision_id FROM decisions"
        params: list[Any] = []
        if since:
            sql += " WHERE created_at >= ?"
            params.append(since)
        sql += " ORDER BY created_at DESC LIMIT ?"
        return [r["decision_id"] for r in conn.execute(sql, [*params, limit])]
    where, params = [], []
    if symbol is not None:
        where.append("symbol = ?")
        params.append(symbol)
    if action is not None:
        where.append("action = ?")
        params.append(action)
    if since:
        where.append("created_at >= ?")
        params.append(since)
    sql = f"SELECT decision_id FROM asset_decisions WHERE {' AND '.join(where)} ORDER BY created_at DESC"
    ids: dict[str, None] = {}  # insertion-ordered set
    for r in conn.execute(sql, params):  # lazily, newest first, stopping at `limit` decisions
        ids[r["decision_id"]] = None
        if len(ids) >= limit:
            break
    return list(ids)


def history(
    conn: sqlite3.Connection,
    *,
    symbol: str | None = None,
    action: str | None = None,
    since: str | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Decisions newest first; with a symbol or action filter, only the matching asset rows."""
    ids = _matching_ids(conn, symbol, action, since, limit)
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    decisions = {
        r["id"]: r
        for r in conn.execute(
            "SELECT id, created_at, account, mode, strategy, model, outcome, error, portfolio_rationale, "
            f"prompt_tokens, completion_tokens, cost_usd, latency_ms FROM decisions WHERE id IN ({marks})",
            ids,
        )
    }
    asset_sql = f"SELECT decision_id, {ASSET_COLUMNS} FROM asset_decisions WHERE decision_id IN ({marks})"
    params: list[Any] = list(ids)
    # The unary + keeps SQLite on the decision_id index here: the (symbol, created_at) index would
    # walk every row of the symbol (measured: 0.2 s on 1,000,000 rows, against 0.3 ms).
    if symbol is not None:
        asset_sql += " AND +symbol = ?"
        params.append(symbol)
    if action is not None:
        asset_sql += " AND +action = ?"
        params.append(action)
    assets: dict[str, list[dict[str, Any]]] = {}
    for r in conn.execute(asset_sql + " ORDER BY id", params):
        item = _row(r)
        assets.setdefault(item.pop("decision_id"), []).append(item)
    out = []
    for decision_id in ids:
        d = dict(decisions[decision_id])
        out.append({"decision_id": d.pop("id"), **d, "assets": assets.get(decision_id, [])})
    return out


def show(conn: sqlite3.Connection, decision_id: str) -> dict[str, Any]:
    """One whole audit record; a unique prefix of the id is enough."""
    rows = conn.execute(
        "SELECT * FROM decisions WHERE id = ? OR id LIKE ? ORDER BY id LIMIT 2",
        [decision_id, decision_id.replace("%", "").replace("_", "") + "%"],
    ).fetchall()
    exact = [r for r in rows if r["id"] == decision_id]
    if exact:
        rows = exact
    if not rows:
        raise NotFoundError(f"no decision with id {decision_id!r}")
    if len(rows) > 1:
        raise NotFoundError(f"{decision_id!r} matches more than one decision; give more of the id")
    record = _row(rows[0])
    record["decision_id"] = record.pop("id")
    record["prompt"] = {"system": record.pop("system_prompt"), "user": record.pop("user_prompt")}
    record["assets"] = [
        _row(r)
        for r in conn.execute(
            f"SELECT {ASSET_COLUMNS} FROM asset_decisions WHERE decision_id = ? ORDER BY id",
            [record["decision_id"]],
        )
    ]
    record["llm_calls"] = [
        dict(r)
        for r in conn.execute(
            "SELECT attempt, response_format, raw_response, error, prompt_tokens, completion_tokens, "
            "reasoning_tokens, cost_usd, latency_ms, finish_reason, generation_id "
            "FROM llm_calls WHERE decision_id = ? ORDER BY attempt",
            [record["decision_id"]],
        )
    ]
    record["orders"] = [
        _row(r)
        for r in conn.execute(
            "SELECT symbol, leg, client_order_id, request, status, order_id, venue_code, venue_message, "
            "executed_qty, avg_price, created_at, updated_at FROM orders WHERE decision_id = ? ORDER BY id",
            [record["decision_id"]],
        )
    ]
    record["events"] = [
        dict(r)
        for r in conn.execute(
            "SELECT symbol, kind, message, created_at FROM execution_events WHERE decision_id = ? ORDER BY id",
            [record["decision_id"]],
        )
    ]
    return record

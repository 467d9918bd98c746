"""Fast read paths for ``history`` and ``show``: the stdlib sqlite3 module, no heavy imports.

Filtering by symbol or action walks the ``(symbol, created_at)`` / ``(action, created_at)`` indexes
newest first and stops as soon as enough decisions are found, so it never scans JSON or the table.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from llmtrader.core.guards import GuardState
from llmtrader.core.json_views import number, usd
from llmtrader.core.textfmt import json_price
from llmtrader.core.times import iso_utc, ms_of_iso
from llmtrader.core.trades import ADOPTED_REASON, FundingEvent, Trade, TradeFill, decision_id_of, reconstruct_trades
from llmtrader.errors import NotFoundError, StoreError

# A reading connection, as open_reader gives it: callers outside storage/ name its type from here.
Connection = sqlite3.Connection

ASSET_COLUMNS = (
    "symbol, action, status, allocation_usd, leverage, entry_price, tp_price, sl_price, "
    "confidence, risk_level, rationale, reasons, proposed, mark_price"
)
JSON_COLUMNS = ("symbols", "marks", "parsed", "parse_errors", "notes", "reasons", "proposed", "request")


def _row(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for key in JSON_COLUMNS:
        if key in out and isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out


def _matching_ids(
    conn: sqlite3.Connection,
    symbol: str | None,
    action: str | None,
    since: str | None,
    limit: int,
    account: str | None = None,
    until: str | None = None,
) -> list[str]:
    if symbol is None and action is None:
        sql = "SELECT id AS decision_id FROM decisions"
        params: list[Any] = []
        conds = []
        if since:
            conds.append("created_at >= ?")
            params.append(since)
        if until:
            conds.append("created_at < ?")
            params.append(until)
        if account is not None:
            conds.append("account = ?")
            params.append(account)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
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
    if until:
        where.append("created_at < ?")
        params.append(until)
    if account is not None:
        where.append("decision_id IN (SELECT id FROM decisions WHERE account = ?)")
        params.append(account)
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
    account: str | None = None,
    until: str | None = None,
) -> list[dict[str, Any]]:
    """Decisions newest first; with a symbol or action filter, only the matching asset rows; ``account``
    and ``until`` (excluded) narrow it further."""
    ids = _matching_ids(conn, symbol, action, since, limit, account, until)
    if not ids:
        return []
    return decisions_with_assets(conn, ids, symbol=symbol, action=action)


DECISION_COLUMNS = (
    "id, created_at, account, mode, strategy, arm, model, outcome, error, portfolio_rationale, "
    "prompt_tokens, completion_tokens, cost_usd, latency_ms, execution"
)


def decisions_with_assets(
    conn: sqlite3.Connection, ids: list[str], *, symbol: str | None = None, action: str | None = None
) -> list[dict[str, Any]]:
    """The decisions ``ids``, in that order, each with its asset rows (only those of ``symbol``/``action``
    when given) and each asset's trade outcome: what `history` and serve's decision pages list."""
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    decisions = {
        r["id"]: r for r in conn.execute(f"SELECT {DECISION_COLUMNS} FROM decisions WHERE id IN ({marks})", ids)
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
    outcomes = trade_outcomes(
        conn, [dict(decisions[i]) for i in ids], {i: [a["symbol"] for a in assets.get(i, [])] for i in ids}
    )
    out = []
    for decision_id in ids:
        d = dict(decisions[decision_id])
        rows = assets.get(decision_id, [])
        for a in rows:
            a["trade"] = outcomes.get((decision_id, a["symbol"]))
        out.append({"decision_id": d.pop("id"), **d, "assets": rows})
    return out


# Executions that may have sent orders; the others (dry_run, nothing, declined) never did.
_NO_ORDERS = ("dry_run", "nothing", "declined")
_FILL_COLUMNS = "id, time_ms, symbol, client_order_id, side, qty, price, fee, realized_pnl, reason"


def _paper_resets(conn: sqlite3.Connection, account: str) -> list[int]:
    """The times the paper account was reset, oldest first (json_extract: the state holds the whole book)."""
    row = conn.execute(
        "SELECT json_extract(state, '$.book.resets') FROM paper_accounts WHERE account = ?", [account]
    ).fetchone()
    if row is None or not row[0]:
        return []
    return sorted(int(r["time_ms"]) for r in json.loads(row[0]))


# Per mode: the fills table, the funding table, and what orders fills of one moment (as account_history does).
_HISTORY_TABLES = {
    "paper": ("paper_fills", "paper_funding", "id"),
    "live": ("venue_fills", "venue_funding", "trade_id"),
}
# A flat moment is looked for this long before a decision: its fills come after it, whatever the clock skew.
_FLAT_MARGIN_MS = 3_600_000
# Quantities as integers of 1e-8 to sum them exactly in SQL: venue steps are far coarser than that.
_SIGNED_QTY = "CASE side WHEN 'BUY' THEN 1 ELSE -1 END * CAST(ROUND(CAST(qty AS REAL) * 100000000) AS INTEGER)"


def _flat_point(
    conn: sqlite3.Connection, mode: str, account: str, symbol: str, after_ms: int, before_ms: int
) -> tuple[int, int] | None:
    """The last fill (time, order key) within (after, before) that left ``symbol`` flat, if any: every trade
    that starts after it starts from zero, so it can be rebuilt from the fills that follow."""
    fills, _, order = _HISTORY_TABLES[mode]
    row = conn.execute(
        f"SELECT time_ms, k FROM (SELECT time_ms, {order} AS k, SUM({_SIGNED_QTY}) OVER "
        f"(ORDER BY time_ms, {order} ROWS UNBOUNDED PRECEDING) AS position FROM {fills} "
        "WHERE account = ? AND symbol = ? AND time_ms > ? AND time_ms < ?) "
        "WHERE position = 0 ORDER BY time_ms DESC, k DESC LIMIT 1",
        [account, symbol, after_ms, before_ms],
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


def trade_outcomes(
    conn: sqlite3.Connection, decisions: Sequence[Mapping[str, Any]], symbols: Mapping[str, Sequence[str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """For each decision (a ``decisions`` row) and each of its ``symbols[id]`` whose orders filled: the trade
    those fills belong to (the latest one when they touched two, as a flip does), rebuilt from the account's
    fills with :func:`llmtrader.core.trades.reconstruct_trades`.

    Only the fills needed are read: per symbol of the given decisions, from the last moment the symbol was
    flat before the oldest of them (else from the account's reset before it), up to the next reset. A
    reset clears positions and orders, so a trade never spans one; a trade still open when the account was
    reset has the status ``reset``. On the live venue, the fills are those synced from it (``venue_fills``),
    so a decision gets its outcome once they are.
    """
    if not any(d.get("mode") in _HISTORY_TABLES and d.get("execution") not in (None, *_NO_ORDERS) for d in decisions):
        return {}  # nothing on the page sent orders: no trade to rebuild (and no import of the code to rebuild it)

    # (mode, account, stretch start, stretch end, symbol) -> the oldest decision time on it
    oldest: dict[tuple[str, str, int, int | None, str], int] = {}
    wanted: set[tuple[str, str]] = set()
    resets: dict[str, list[int]] = {}
    for d in decisions:
        mode, account = d.get("mode"), d["account"]
        if mode not in _HISTORY_TABLES or d.get("execution") in (None, *_NO_ORDERS):
            continue
        created = ms_of_iso(d["created_at"])
        lo, hi = -1, None
        if mode == "paper":
            if account not in resets:
                resets[account] = _paper_resets(conn, account)
            lo = max((r for r in resets[account] if r <= created), default=-1)
            hi = min((r for r in resets[account] if r > created), default=None)
        for symbol in symbols.get(d["id"], ()):
            key = (mode, account, lo, hi, symbol)
            oldest[key] = min(oldest.get(key, created), created)
            wanted.add((d["id"], symbol))

    def outcome(trade: Trade, decision_id: str, current: bool) -> dict[str, Any]:
        status = "closed" if not trade.is_open else ("open" if current else "reset")
        if decision_id_of(trade.entries[0].client_order_id) == decision_id:
            role = "opened"
        elif not trade.is_open and decision_id_of(trade.exits[-1].client_order_id) == decision_id:
            role = "closed"
        else:
            role = "changed"
        return {
            "status": status,
            "role": role,
            "side": trade.side,
            "opened_ms": trade.opened_ms,
            "closed_ms": trade.closed_ms,
            # a sum over the fills and funding of the trade, at the cent
            "net_pnl_usd": None if trade.is_open else usd(trade.net_pnl),
            "closing_reason": trade.closing_reason,
        }

    found: dict[tuple[str, str], dict[str, Any]] = {}
    for (mode, account, lo, hi, symbol), first in oldest.items():
        fills_table, funding_table, order = _HISTORY_TABLES[mode]
        # A position reconcile adopted opens in the ledger with no fill (with_adoptions below): the fills
        # alone do not tell where the symbol was flat, so its trades are rebuilt from the stretch's start.
        adopted = conn.execute(
            "SELECT 1 FROM adoptions WHERE account = ? AND mode = ? AND symbol = ? LIMIT 1", [account, mode, symbol]
        ).fetchone()
        flat = None if adopted else _flat_point(conn, mode, account, symbol, lo, first - _FLAT_MARGIN_MS)
        where = "account = ? AND symbol = ?"
        params: list[Any] = [account, symbol]
        if hi is not None:
            where += " AND time_ms <= ?"
            params.append(hi)
        # Funding at the flat fill's moment belongs to the trade that closed then (trades.reconstruct_trades),
        # and funding at the reset's moment to the account before it.
        after = flat[0] if flat is not None else lo
        funding_sql = f"SELECT id, time_ms, symbol, amount FROM {funding_table} WHERE {where} AND time_ms > ?"
        funding_params = [*params, after]
        # Fills after the flat one (or the reset), in the order of storage.facts.account_history.
        if flat is None:
            where += " AND time_ms > ?"
            params.append(lo)
        else:
            where += f" AND time_ms >= ? AND (time_ms, {order}) > (?, ?)"
            params += [flat[0], *flat]
        fills_sql = f"SELECT {_FILL_COLUMNS} FROM {fills_table} WHERE {where} ORDER BY time_ms, {order}"
        try:
            fills = [
                TradeFill.from_row(dict(zip(_FILL_COLUMNS.split(", "), r, strict=True)))
                for r in conn.execute(fills_sql, params)
            ]
            funding = [
                FundingEvent.from_row(dict(zip(("id", "time_ms", "symbol", "amount"), r, strict=True)))
                for r in conn.execute(funding_sql + " ORDER BY time_ms, id", funding_params)
            ]
            if adopted:
                fills = with_adoptions(conn, account, mode, fills, since_ms=lo, until_ms=hi, symbol=symbol)
            trades = reconstruct_trades(fills, funding)
        except ValueError as exc:
            raise StoreError(f"the recorded fills of {mode} account {account!r} do not add up: {exc}") from exc
        for trade in trades:
            for decision_id in trade.decision_ids():
                if (decision_id, symbol) in wanted:
                    found[(decision_id, symbol)] = outcome(trade, decision_id, hi is None)
    return found


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
    record["dry_run"] = bool(record.get("dry_run"))  # a boolean in JSON, as in `decide --json`
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
    for order in record["orders"]:  # stored as the venue's decimal text: numbers in --json (docs/json.md)
        order["executed_qty"] = number(order["executed_qty"])
        order["avg_price"] = json_price(order["avg_price"]) if order["executed_qty"] else None
    record["events"] = [
        dict(r)
        for r in conn.execute(
            "SELECT symbol, kind, message, created_at FROM execution_events WHERE decision_id = ? ORDER BY id",
            [record["decision_id"]],
        )
    ]
    return record


def strategy_choice(conn: sqlite3.Connection, account: str) -> str | None:
    """The strategy last chosen for ``account`` (the newest row of the audit table), or None."""
    row = conn.execute(
        "SELECT strategy FROM strategy_choices WHERE account = ? ORDER BY id DESC LIMIT 1", [account]
    ).fetchone()
    return None if row is None else str(row[0])


PNL_NOTE = "PnL per arm is not in this comparison: `llmtrader stats --by arm` shows it, from the recorded fills."


def compare_arms(
    conn: sqlite3.Connection | None, *, account: str, arms: Sequence[str] | None, since: str | None, until: str
) -> dict[str, Any]:
    """The A/B arms of ``account`` compared over the same period: from the first time every arm had
    recorded a decision (or ``since``, if later) to ``until``. ``arms`` None compares every recorded arm.

    Decisions made without an arm (``--model`` or ``--strategy`` given, or no test configured) are left out.
    ``conn`` None (no database yet) compares nothing.
    """
    sql = "SELECT arm, min(created_at) FROM decisions WHERE account = ? AND arm IS NOT NULL GROUP BY arm"
    firsts: dict[str, str] = {} if conn is None else {r[0]: r[1] for r in conn.execute(sql, [account])}
    names = list(arms) if arms is not None else sorted(firsts)
    missing = [a for a in names if a not in firsts]
    start = None if missing or len(names) < 2 else max(firsts[a] for a in names)
    if start is not None and since is not None:
        start = max(start, since)
    result: dict[str, Any] = {
        "account": account,
        "since": since,
        "period": {"start": start, "end": until},
        "first_decision": {a: firsts.get(a) for a in names},
        "arms": [],
        "note": PNL_NOTE,
    }
    if start is None or conn is None:
        if not names:
            why = "no A/B test is configured ([ab]) and no decision was recorded with an arm"
        elif missing:
            why = f"no common period yet: no decision recorded by arm {', '.join(missing)}"
        else:
            why = f"only arm {names[0]} has recorded decisions: there is nothing to compare it with"
        result["note"] = f"{why}. {PNL_NOTE}"
        return result
    marks = ",".join("?" * len(names))
    where = f"d.account = ? AND d.arm IN ({marks}) AND d.created_at >= ? AND d.created_at <= ?"
    params = [account, *names, start, until]
    totals = {
        r[0]: r
        for r in conn.execute(
            "SELECT arm, count(*), sum(outcome = 'model_error'), sum(outcome = 'venue_error'), "
            "sum(execution IN ('executed', 'partial')), sum(dry_run), avg(latency_ms), avg(model_latency_ms), "
            f"sum(cost_usd), count(cost_usd) FROM decisions d WHERE {where} GROUP BY arm",
            params,
        )
    }
    used: dict[str, tuple[set[str], set[str]]] = {a: (set(), set()) for a in names}
    for arm, model, strategy in conn.execute(
        f"SELECT DISTINCT arm, model, strategy FROM decisions d WHERE {where}", params
    ):
        used[arm][0].add(model)
        used[arm][1].add(strategy)
    statuses: dict[str, dict[str, int]] = {a: {} for a in names}
    for arm, status, count in conn.execute(
        f"SELECT d.arm, a.status, count(*) FROM decisions d JOIN asset_decisions a ON a.decision_id = d.id "
        f"WHERE {where} GROUP BY d.arm, a.status",
        params,
    ):
        statuses[arm][status] = count
    for name in names:
        _, decisions, model_errors, venue_errors, executed, dry_runs, latency, model_latency, cost, with_cost = (
            totals.get(name) or (name, 0, 0, 0, 0, 0, None, None, None, 0)
        )
        assets = sum(statuses[name].values())
        result["arms"].append(
            {
                "arm": name,
                "models": sorted(used[name][0]),
                "strategies": sorted(used[name][1]),
                "decisions": decisions,
                "model_errors": model_errors,
                "venue_errors": venue_errors,
                "executed": executed,
                "dry_runs": dry_runs,
                "asset_decisions": assets,
                **{
                    f"{status}_share": statuses[name].get(status, 0) / assets if assets else None
                    for status in ("accepted", "amended", "rejected")
                },
                "mean_latency_ms": latency,
                "mean_model_latency_ms": model_latency,
                "cost_usd": cost,
                "cost_per_decision_usd": cost / with_cost if cost is not None and with_cost else None,
                "decisions_without_cost": decisions - with_cost,
            }
        )
    return result


CYCLE_COLUMNS = (
    "id, account, started_at, finished_at, duration_ms, outcome, reason, decision_id, equity_usd, cached, reconcile"
)


def last_cycles(conn: sqlite3.Connection, accounts: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """The latest recorded cycle of each account (of ``accounts``, or of every account that has one), keyed by
    account in name order: the ``cycles`` row with ``cached`` as a bool and ``reconcile`` as a list."""
    if accounts is None:
        names = [str(r[0]) for r in conn.execute("SELECT DISTINCT account FROM cycles")]
    else:
        names = list(dict.fromkeys(accounts))
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(names):
        cursor = conn.execute(
            f"SELECT {CYCLE_COLUMNS} FROM cycles WHERE account = ? ORDER BY started_at DESC, id DESC LIMIT 1", [name]
        )
        row = cursor.fetchone()
        if row is None:
            continue
        columns = [d[0] for d in cursor.description]
        cycle = dict(zip(columns, row, strict=True))
        cycle["cached"] = bool(cycle["cached"])
        cycle["reconcile"] = json.loads(cycle["reconcile"]) if cycle["reconcile"] else []
        out[name] = cycle
    return out


_ALL_TIME = 2**62  # a time after any other, for open-ended ranges


def with_adoptions(
    conn: sqlite3.Connection,
    account: str,
    mode: str,
    fills: list[TradeFill],
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    symbol: str | None = None,
) -> list[TradeFill]:
    """``fills`` with an opening fill for each position reconcile adopted (after ``since_ms``, up to
    ``until_ms``; of ``symbol`` when given): at the adoption's time and the venue's entry price, for what the
    fills before it do not explain (all of it when the position was opened before the history starts, or out
    of llmtrader's sight). So the position's close is booked as the close of a trade, not as a new trade the
    other way. Reason ``adopted``, no fee."""
    rows = conn.execute(
        "SELECT symbol, amount, entry_price, time_ms FROM adoptions WHERE account = ? AND mode = ? AND time_ms > ? "
        "AND time_ms <= ? AND (? IS NULL OR symbol = ?) ORDER BY time_ms, id",
        [account, mode, -1 if since_ms is None else since_ms, _ALL_TIME if until_ms is None else until_ms, symbol,
         symbol],
    ).fetchall()  # fmt: skip
    if not rows:
        return fills
    out = list(fills)
    for adopted, amount, entry_price, time_ms in rows:
        held = sum(
            (f.qty if f.side == "BUY" else -f.qty for f in out if f.symbol == adopted and f.time_ms <= time_ms),
            Decimal(0),
        )
        missing = Decimal(str(amount)) - held
        if missing == 0:
            continue
        out.append(
            TradeFill(
                time_ms=int(time_ms),
                symbol=str(adopted),
                side="BUY" if missing > 0 else "SELL",
                qty=abs(missing),
                price=Decimal(str(entry_price)),
                fee=Decimal(0),
                reason=ADOPTED_REASON,
            )
        )
        out.sort(key=lambda f: f.time_ms)  # stable: fills of the same moment stay before the adoption
    return out


def _paper_positions(conn: sqlite3.Connection, account: str) -> int | None:
    """Open positions of the paper account as last saved (None: the account was never used)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM json_each(state, '$.book.positions')) FROM paper_accounts WHERE account = ?",
        [account],
    ).fetchone()
    return None if row is None else int(row[0])


def _guard_state(conn: sqlite3.Connection | None, account: str) -> Any:
    row = None
    if conn is not None:
        row = conn.execute("SELECT state FROM guard_state WHERE account = ?", [account]).fetchone()
    return GuardState.from_json(json.loads(row[0]) if row is not None else None)


def session_summary(conn: sqlite3.Connection, accounts: Sequence[str], since_ms: int) -> list[dict[str, Any]]:
    """What a `run` session did per account since ``since_ms``: cycles by outcome, fills, realised PnL after
    fees (paper and live fills, exact decimal strings), and the model cost of its decisions."""
    since = iso_utc(since_ms)
    out = []
    for account in accounts:
        outcomes = {
            str(r[0]): int(r[1])
            for r in conn.execute(
                "SELECT outcome, count(*) FROM cycles WHERE account = ? AND started_at >= ? GROUP BY outcome",
                [account, since],
            )
        }
        fills, pnl = 0, Decimal(0)
        for table in ("paper_fills", "venue_fills"):
            for realized, fee in conn.execute(
                f"SELECT realized_pnl, fee FROM {table} WHERE account = ? AND time_ms >= ?", [account, since_ms]
            ):
                fills += 1
                pnl += Decimal(realized or "0") - Decimal(fee or "0")
        cost = conn.execute(
            "SELECT sum(cost_usd) FROM decisions WHERE account = ? AND created_at >= ?", [account, since]
        ).fetchone()[0]
        out.append(
            {
                "account": account,
                "cycles": sum(outcomes.values()),
                "outcomes": outcomes,
                "fills": fills,
                "realized_pnl_usd": format(pnl.normalize(), "f") if fills else "0",
                "model_cost_usd": float(cost or 0.0),
            }
        )
    return out

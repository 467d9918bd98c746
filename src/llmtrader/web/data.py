"""What the API and the page show, as plain JSON-ready values, read from the store only.

Each function takes a plain sqlite3 connection (``storage.reader.open_reader``; None before the agent ever
ran) and returns the same keys and units as the CLI's ``--json`` of the matching command.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from llmtrader.core.json_views import (
    backtest_row_json,
    money_rounded,
    number,
    positions_json,
    stored_decision_json,
    usd,
)
from llmtrader.core.textfmt import json_price
from llmtrader.core.times import iso_utc
from llmtrader.errors import ConfigError, NotFoundError
from llmtrader.storage import web as q
from llmtrader.storage.reader import Connection
from llmtrader.storage.web import ReadStore, read_only_store

if TYPE_CHECKING:
    from llmtrader.config.settings import Settings
    from llmtrader.core.trades import Trade

ACTIONS = ("buy", "sell", "hold", "adjust_position", "close_position", "adjust_orders")
MAX_LIMIT = 500


def mode_of(settings: Settings, account: str) -> str:
    from llmtrader.config.accounts import settings_for_account

    if account in settings.accounts:
        return str(settings_for_account(settings, account).trading_mode)
    return str(settings.trading_mode)


def status(settings: Settings, conn: Connection | None, accounts: list[str], now_ms: int) -> list[dict[str, Any]]:
    """``status --json`` rows of the served accounts, each with ``alive`` (its last cycle is recent)."""
    from llmtrader.cycle.scheduler import agent_status

    out = []
    for row in agent_status(settings, conn, now_ms=now_ms):
        if row["account"] not in accounts:
            continue
        row["alive"] = is_recent(row, now_ms)
        out.append(money_rounded(row))
    return out


def is_recent(row: dict[str, Any], now_ms: int) -> bool:
    """The account's last cycle started within two of its intervals."""
    from llmtrader.core.times import INTERVAL_MS, ms_of_iso

    last = row.get("last_cycle")
    if not last:
        return False
    return now_ms - ms_of_iso(last["started_at"]) <= 2 * INTERVAL_MS[row["interval"]]


def parse_time(name: str, value: str | None) -> str | None:
    """An ISO date or date-time (UTC unless it says otherwise) as the store's ISO form."""
    if value is None or value == "":
        return None
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{name} {value!r} is not a date: use YYYY-MM-DD or an ISO date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return iso_utc(int(parsed.timestamp() * 1000))


def parse_limit(value: str | None, default: int = 50) -> int:
    if value is None or value == "":
        return default
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ConfigError(f"limit {value!r} is not accepted: a whole number from 1 to {MAX_LIMIT}")
    return limit


def decisions(
    conn: Connection | None, params: dict[str, str], accounts: list[str], narrowed: bool = False
) -> dict[str, Any]:
    """A page of ``history --json`` rows, newest first, with ``next_cursor`` (None on the last page); only
    those of ``accounts`` when ``narrowed`` (serve --account), else of any account in the store."""
    from llmtrader.config.file import normalize_symbol

    account = params.get("account") or None
    if account is not None and narrowed and account not in accounts:
        raise NotFoundError(f"account {account!r} is not served; served: {', '.join(accounts)}")
    symbol = params.get("symbol") or None
    if symbol is not None:
        try:
            symbol = normalize_symbol(symbol)
        except ValueError as exc:
            raise ConfigError(f"symbol: {exc}") from None
    action = params.get("action") or None
    if action is not None and action not in ACTIONS:
        raise ConfigError(f"action {action!r} is not an action; accepted: {', '.join(ACTIONS)}")
    limit = parse_limit(params.get("limit"))
    if conn is None:
        return {"decisions": [], "next_cursor": None}
    rows, cursor = q.decision_page(
        conn,
        account=account,
        accounts=accounts if narrowed else None,
        symbol=symbol,
        action=action,
        since=parse_time("since", params.get("since")),
        until=parse_time("until", params.get("until")),
        limit=limit,
        cursor=params.get("cursor") or None,
    )
    return {"decisions": [stored_decision_json(r) for r in rows], "next_cursor": cursor}


def decision(conn: Connection | None, decision_id: str, accounts: list[str], narrowed: bool = False) -> dict[str, Any]:
    """The whole audit record (``show --json``)."""
    from llmtrader.storage.reader import show

    if conn is None:
        raise NotFoundError(f"no decision with id {decision_id!r} (no database yet)")
    record = show(conn, decision_id)
    if narrowed and record["account"] not in accounts:
        raise NotFoundError(f"no decision with id {decision_id!r}")
    return stored_decision_json(record)


def positions(conn: Connection | None, account: str) -> dict[str, Any]:
    """The positions as the agent last recorded them (rows of ``positions --json``) and when."""
    snap = q.latest_positions(conn, account) if conn is not None else None
    if snap is None:
        return {"account": account, "mode": None, "time": None, "time_ms": None, "positions": []}
    return {"account": account, **snap, "positions": positions_json(snap["positions"])}


def trade_json(t: Trade) -> dict[str, Any]:
    def leg(x: Any) -> dict[str, Any]:
        return {"time": iso_utc(x.time_ms), "time_ms": x.time_ms, "qty": number(x.qty), "price": json_price(x.price)}

    return {
        "symbol": t.symbol,
        "side": t.side,
        "status": "open" if t.is_open else "closed",
        "opened_at": iso_utc(t.opened_ms),
        "opened_ms": t.opened_ms,
        "closed_at": iso_utc(t.closed_ms) if t.closed_ms is not None else None,
        "closed_ms": t.closed_ms,
        "qty": number(t.qty),
        "entry_price": json_price(t.entry_price),  # averages: to 8 decimals
        "exit_price": json_price(t.exit_price),
        "gross_pnl_usd": usd(t.gross_pnl),
        "fees_usd": usd(t.fees),
        "funding_usd": usd(t.funding),
        "net_pnl_usd": usd(t.net_pnl),
        "closing_reason": t.closing_reason,
        "decision_ids": list(t.decision_ids()),
        "entries": [leg(e) for e in t.entries],
        "exits": [leg(e) for e in t.exits],
    }


def trades(settings: Settings, conn: Connection | None, account: str, limit: int) -> dict[str, Any]:
    """The account's trades rebuilt from its recorded fills (USD amounts at the cent), newest first."""
    from llmtrader.core.trades import reconstruct_trades
    from llmtrader.storage.facts import account_history

    mode = mode_of(settings, account)
    if conn is None:
        return {"account": account, "mode": mode, "trades": []}
    history = account_history(ReadStore(conn, settings.db).as_store(), account, cast(Any, mode))
    rebuilt = reconstruct_trades(history.fills, history.funding)
    rebuilt.sort(key=lambda t: t.opened_ms, reverse=True)
    return {"account": account, "mode": mode, "trades": [trade_json(t) for t in rebuilt[:limit]]}


def stats(
    settings: Settings, conn: Connection | None, account: str, now_ms: int, by: str | None, since: str | None
) -> dict[str, Any]:
    """``stats --json``."""
    from llmtrader.core.json_views import stats_json
    from llmtrader.core.stats import GROUP_BY
    from llmtrader.core.times import ms_of_iso
    from llmtrader.cycle.stats import account_stats

    if by is not None and by not in GROUP_BY:
        raise ConfigError(f"by {by!r} is not a grouping; accepted: {', '.join(GROUP_BY)}")
    if conn is None:
        raise NotFoundError("no database yet: the agent has not run")
    since_iso = parse_time("since", since)
    result = account_stats(
        ReadStore(conn, settings.db).as_store(),
        account=account,
        mode=cast(Any, mode_of(settings, account)),
        now_ms=now_ms,
        since_ms=ms_of_iso(since_iso) if since_iso is not None else None,
        by=cast(Any, by),
    )
    return stats_json(result)


def equity(conn: Connection | None, account: str, since: str | None) -> dict[str, Any]:
    """The equity the agent saw at each cycle, with the drawdown from the running peak."""
    points: list[dict[str, Any]] = []
    if conn is not None:
        peak = None
        for time_ms, value in q.equity_points(conn, account, parse_time("since", since)):
            peak = value if peak is None else max(peak, value)
            drawdown = peak - value
            points.append(
                {
                    "time": iso_utc(time_ms),
                    "time_ms": time_ms,
                    "equity_usd": usd(value),
                    "drawdown_usd": usd(drawdown),
                    "drawdown_pct": round(100 * drawdown / peak, 4) if peak else None,
                }
            )
    return {"account": account, "source": "cycles", "equity_curve": points}


def prices(conn: Connection | None, account: str) -> dict[str, Any]:
    """Per asset: the mark prices the agent saw at each decision, and its fills (entries and exits)."""
    if conn is None:
        return {"account": account, "assets": {}}
    assets = q.price_marks(conn, account)
    for series in assets.values():  # the fills' decimal text as numbers (docs/json.md)
        for fill in series["fills"]:
            fill["price"], fill["qty"] = json_price(fill["price"]), number(fill["qty"])
    return {"account": account, "assets": assets}


def _backtests_path(settings: Settings) -> Path:
    from llmtrader.backtest.spec import backtest_db_path

    return backtest_db_path(settings)


def backtests(settings: Settings, limit: int) -> list[dict[str, Any]]:
    """``backtest list --json``."""
    from llmtrader.storage import backtests as runs

    path = _backtests_path(settings)
    if not path.exists():
        return []
    with read_only_store(path) as store:
        rows = runs.list_runs(store, limit)
    return [backtest_row_json(r) for r in rows]


def backtest(settings: Settings, run_id: str) -> dict[str, Any]:
    """``backtest show --json``."""
    from llmtrader.core.json_views import backtest_json
    from llmtrader.storage import backtests as runs

    path = _backtests_path(settings)
    if not path.exists():
        raise NotFoundError(f"no backtest run {run_id!r} (no backtests yet)")
    with read_only_store(path) as store:
        run = runs.get_run(store, run_id)
        equity_rows = runs.equity_of(store, run.id)
        changes: list[Any] = []
        if run.replay_of:
            from llmtrader.storage.backtests import verdict_changes

            changes = verdict_changes(store, run.id, run.replay_of)
    return backtest_json(run, equity_rows, changes)

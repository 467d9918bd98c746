"""What the store knows about an account's recent trading, for the limits that need history.

Read from the orders llmtrader sent (entries, closes and emergency closes that filled) and, in paper
mode, from the paper account's own fills, which include the stops and targets that triggered between
decisions. The limits do not read the live venue's synced fills yet, so on the live venue a stop that
triggers at the venue is not seen by them.

Also the account's fill and funding history, the input of trade reconstruction: the paper exchange's
records, or the live venue's as synced by :mod:`llmtrader.storage.venue_history`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from weakref import WeakKeyDictionary

from llmtrader.storage.records import iso_utc
from llmtrader.trades import FundingEvent, TradeFill

if TYPE_CHECKING:
    from llmtrader.storage.store import Store

DAY_MS = 86_400_000
ENTRY_LEGS = ("en", "ad")
CLOSE_LEGS = ("cl", "em")
CLOSING_REASONS = ("stop_loss", "take_profit", "liquidation", "adl")
# The columns paper_fills and venue_fills share, read into a TradeFill.
FILL_COLUMNS = ("id", "time_ms", "symbol", "client_order_id", "side", "qty", "price", "fee", "realized_pnl", "reason")
FUNDING_COLUMNS = ("id", "time_ms", "symbol", "amount")


@dataclass
class AccountFacts:
    """Per symbol: the last close, the opening of the open position, the last entry; and the equity
    the account had when the UTC day began."""

    last_close_ms: dict[str, int] = field(default_factory=dict)
    opened_at_ms: dict[str, int] = field(default_factory=dict)
    last_entry_ms: dict[str, int] = field(default_factory=dict)
    day_start_equity: float | None = None


def ms_of_iso(iso: str) -> int:
    """An ISO-8601 UTC time as the store writes it (:func:`~llmtrader.storage.records.iso_utc`), in epoch ms."""
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


# Per store and account: (trading version, latest event time, the facts without the day's start equity).
# The aggregate below reads the account's whole history; it is redone only when an order or a fill was
# written since (m010's triggers count every writer), so a long-running agent or a backtest pays it once
# per change instead of twice per cycle.
_FACTS: WeakKeyDictionary[Store, dict[str, tuple[int, int, AccountFacts]]] = WeakKeyDictionary()
_ALL_TIME = 2**62


def trading_version(store: Store, account: str) -> int:
    """A number that changes whenever an order row or a fill of ``account`` is written (m010's triggers)."""
    row = store.db.execute("SELECT n FROM trading_versions WHERE account = ?", [account]).fetchone()
    return int(row[0]) if row is not None else 0


def account_facts(store: Store, account: str, now_ms: int) -> AccountFacts:
    """The facts of ``account`` as of ``now_ms``, aggregated in SQL (one pass, whatever the history's length),
    and remembered until an order or a fill of the account is written.

    Entries: filled ``en``/``ad`` orders, and fills of entry orders (a limit entry fills after its
    decision). Closes: filled ``cl``/``em`` orders, and fills the venue reported as stops, targets,
    liquidations or ADL (the paper account's own, and the live venue's once synced: stops that
    triggered between decisions are only seen there).
    """
    closing = ",".join("?" * len(CLOSING_REASONS))
    entry_like = " OR ".join("client_order_id LIKE ? ESCAPE '!'" for _ in ENTRY_LEGS)
    entry_patterns = [f"%!_{leg}" for leg in ENTRY_LEGS]
    fills = (
        f"SELECT symbol, CASE WHEN reason IN ({closing}) THEN 'c' ELSE 'e' END AS kind, time_ms AS t "
        f"FROM {{table}} WHERE account = ? AND (reason IN ({closing}) OR {entry_like})"
    )
    fill_params = [*CLOSING_REASONS, account, *CLOSING_REASONS, *entry_patterns]
    legs = ",".join("?" * (len(ENTRY_LEGS) + len(CLOSE_LEGS)))
    sql = f"""
        WITH ev AS (
            SELECT symbol, CASE WHEN leg IN ({",".join("?" * len(CLOSE_LEGS))}) THEN 'c' ELSE 'e' END AS kind,
                   CAST(ROUND((julianday(updated_at) - 2440587.5) * 86400000) AS INTEGER) AS t
            FROM orders WHERE account = ? AND status IN ('filled', 'partially_filled') AND leg IN ({legs})
            UNION ALL {fills.format(table="paper_fills")}
            UNION ALL {fills.format(table="venue_fills")}
        ),
        past AS (SELECT * FROM ev WHERE t <= ?),
        closes AS (SELECT symbol, MAX(t) AS last_close FROM past WHERE kind = 'c' GROUP BY symbol)
        SELECT p.symbol, c.last_close, MAX(CASE WHEN p.kind = 'e' THEN p.t END),
               MIN(CASE WHEN p.kind = 'e' AND p.t > COALESCE(c.last_close, 0) THEN p.t END), MAX(p.t)
        FROM past p LEFT JOIN closes c ON c.symbol = p.symbol GROUP BY p.symbol
    """
    params = [*CLOSE_LEGS, account, *ENTRY_LEGS, *CLOSE_LEGS, *fill_params, *fill_params]
    version = trading_version(store, account)
    remembered = _FACTS.get(store, {}).get(account)
    if remembered is not None and remembered[0] == version and remembered[1] <= now_ms:
        known = remembered[2]
    else:
        # Over all time first: when nothing lies after now_ms (the usual case), that is the answer for any
        # later time too, until the next write; otherwise the events after now_ms are left out.
        known, latest = _facts(store.db.execute(sql, [*params, _ALL_TIME]).fetchall())
        if latest <= now_ms:
            _FACTS.setdefault(store, {})[account] = (version, latest, known)
        else:
            known, _ = _facts(store.db.execute(sql, [*params, now_ms]).fetchall())
    facts = AccountFacts(dict(known.last_close_ms), dict(known.opened_at_ms), dict(known.last_entry_ms))
    facts.day_start_equity = day_start_equity(store, account, now_ms)
    return facts


def _facts(rows: list[Any]) -> tuple[AccountFacts, int]:
    """Facts from the aggregate's rows, and the latest event time among them."""
    facts = AccountFacts()
    latest = 0
    for symbol, last_close, last_entry, opened_at, last_event in rows:
        latest = max(latest, int(last_event or 0))
        if last_close:
            facts.last_close_ms[symbol] = int(last_close)
        if last_entry is not None:
            facts.last_entry_ms[symbol] = int(last_entry)
        if opened_at is not None:
            facts.opened_at_ms[symbol] = int(opened_at)
    return facts, latest


# Where an account's equity is recorded: every decision, and every scheduled cycle (skipped ones too).
_EQUITY_SOURCES = (("decisions", "created_at"), ("cycles", "started_at"))


# Per store: (account, day) -> the day's start equity, remembered once the day is an hour old and the
# equity comes from before 00:00: records carry the time they are made, and a cycle that began before
# midnight has recorded its own by then, so nothing later changes the answer (the cycle asks three times).
_DAY_START: WeakKeyDictionary[Store, dict[tuple[str, int], float]] = WeakKeyDictionary()
_SETTLED_AFTER_MS = 3_600_000


def day_start_equity(store: Store, account: str, now_ms: int) -> float | None:
    """The account's equity when the UTC day of ``now_ms`` began: the last one recorded before 00:00 UTC (by a
    decision or a cycle), else the first one recorded today; None when none is recorded."""
    day = now_ms - now_ms % DAY_MS
    known = _DAY_START.setdefault(store, {})
    found = known.get((account, day))
    if found is not None:
        return found
    found, before_midnight = _day_start_equity(store, account, day)
    if found is not None and before_midnight and now_ms - day >= _SETTLED_AFTER_MS:
        if len(known) > 1024:
            known.clear()
        known[(account, day)] = found
    return found


def _day_start_equity(store: Store, account: str, day_ms: int) -> tuple[float | None, bool]:
    db = store.db
    midnight = iso_utc(day_ms)
    before: list[tuple[str, float]] = []
    today: list[tuple[str, float]] = []
    for table, column in _EQUITY_SOURCES:
        # One indexed seek per table and direction: (account, time) is indexed in both tables.
        row = db.execute(
            f"SELECT {column}, equity_usd FROM {table} WHERE account = ? AND {column} < ? AND equity_usd IS NOT NULL "
            f"ORDER BY {column} DESC LIMIT 1",
            [account, midnight],
        ).fetchone()
        if row is not None:
            before.append((str(row[0]), float(row[1])))
        row = db.execute(
            f"SELECT {column}, equity_usd FROM {table} WHERE account = ? AND {column} >= ? AND equity_usd IS NOT NULL "
            f"ORDER BY {column} LIMIT 1",
            [account, midnight],
        ).fetchone()
        if row is not None:
            today.append((str(row[0]), float(row[1])))
    if before:
        return max(before)[1], True
    if today:
        return min(today)[1], False
    return None, False


@dataclass
class AccountHistory:
    """An account's fills and funding (oldest first), from when they start, and the balance it started from.

    ``since_ms`` is when the history starts (a paper reset; None: from the first record).
    ``starting_balance`` is the wallet balance at that moment, None when it is not known.
    """

    fills: list[TradeFill]
    funding: list[FundingEvent]
    since_ms: int | None
    starting_balance: Decimal | None


PaperHistory = AccountHistory  # the paper account's history was the first kind; the name stays valid


def paper_history(store: Store, account: str, *, after_ids: tuple[int, int] | None = None) -> AccountHistory:
    """Everything the paper account recorded since it was last reset (or created); with ``after_ids``
    (a fill id, a funding id), only the rows recorded after those."""
    db = store.db
    row = db.execute("SELECT state FROM paper_accounts WHERE account = ?", [account]).fetchone()
    since: int | None = None
    start: Decimal | None = None
    if row is not None:
        book = json.loads(row[0]).get("book", {})
        resets = book.get("resets") or []
        if resets:
            since, start = int(resets[-1]["time_ms"]), Decimal(str(resets[-1]["balance"]))
        elif book.get("deposit") is not None:
            start = Decimal(str(book["deposit"]))
    after = since if since is not None else -1
    fill_id, funding_id = after_ids if after_ids is not None else (0, 0)
    fills = [
        TradeFill.from_row(dict(zip(FILL_COLUMNS, r, strict=True)))
        for r in db.execute(
            f"SELECT {', '.join(FILL_COLUMNS)} FROM paper_fills WHERE id > ? AND account = ? AND time_ms > ? "
            "ORDER BY time_ms, id",
            [fill_id, account, after],
        ).fetchall()
    ]
    funding = [
        FundingEvent.from_row(dict(zip(FUNDING_COLUMNS, r, strict=True)))
        for r in db.execute(
            f"SELECT {', '.join(FUNDING_COLUMNS)} FROM paper_funding WHERE id > ? AND account = ? AND time_ms > ? "
            "ORDER BY time_ms, id",
            [funding_id, account, after],
        ).fetchall()
    ]
    return AccountHistory(fills, funding, since, start)


def live_history(store: Store, account: str) -> AccountHistory:
    """The live account's fills and funding as last synced from the venue (:mod:`llmtrader.storage.venue_history`).

    They start with the first trade the sync saw (from llmtrader's first live order on the account, or the
    last 7 days when it had none), so ``since_ms`` is None. ``starting_balance`` is None: the wallet balance
    at that moment is not recorded (deposits and withdrawals are not synced), so nothing that needs it, such
    as a Sharpe ratio, is computed from a guess.
    """
    db = store.db
    fills = [
        TradeFill.from_row(dict(zip(FILL_COLUMNS, r, strict=True)))
        for r in db.execute(
            f"SELECT {', '.join(FILL_COLUMNS)} FROM venue_fills WHERE account = ? ORDER BY time_ms, symbol, trade_id",
            [account],
        ).fetchall()
    ]
    funding = [
        FundingEvent.from_row(dict(zip(FUNDING_COLUMNS, r, strict=True)))
        for r in db.execute(
            f"SELECT {', '.join(FUNDING_COLUMNS)} FROM venue_funding WHERE account = ? ORDER BY time_ms, id",
            [account],
        ).fetchall()
    ]
    return AccountHistory(fills, funding, None, None)


def account_history(store: Store, account: str, mode: Literal["paper", "live"]) -> AccountHistory:
    """The account's fills and funding in ``mode``: the paper exchange's records, or the venue's as synced.

    In live mode, sync first (:func:`llmtrader.storage.venue_history.sync_venue_history`) for the latest.
    """
    return paper_history(store, account) if mode == "paper" else live_history(store, account)


def history_version(store: Store, account: str, mode: str) -> tuple[int, ...]:
    """A value that changes whenever :func:`account_history` would return something else: the newest fill
    and funding rows (and, on paper, the number of resets). Cheap: indexed maxima."""
    db = store.db
    if mode == "paper":
        fills, funding = "paper_fills", "paper_funding"
        row = db.execute(
            "SELECT json_array_length(json_extract(state, '$.book.resets')) FROM paper_accounts WHERE account = ?",
            [account],
        ).fetchone()
        resets = int(row[0] or 0) if row is not None else 0
    else:
        fills, funding, resets = "venue_fills", "venue_funding", 0
    last_fill = db.execute(f"SELECT MAX(id) FROM {fills} WHERE account = ?", [account]).fetchone()[0]
    last_funding = db.execute(f"SELECT MAX(id) FROM {funding} WHERE account = ?", [account]).fetchone()[0]
    return (int(last_fill or 0), int(last_funding or 0), resets)

"""What the store knows about an account's recent trading, for the limits that need history.

Read from the orders llmtrader sent (entries, closes and emergency closes that filled) and from the
fills: the paper account's own, and the live venue's as synced before every decision whatever the strategy
shows the model (:meth:`llmtrader.exchange.base.Exchange.trade_history`), which include the stops and targets
that triggered between decisions. Also the live account's deposits and withdrawals (TRANSFER income).

Also the account's fill and funding history, the input of trade reconstruction: the paper exchange's
records, or the live venue's as synced by :mod:`llmtrader.storage.venue_history`.

Everything here is read from the store at each call, and kept by nothing here. A process keeps what it read
(:class:`llmtrader.cycle.cache.KeptHistory`) and reads only what was written since (:func:`read_facts`,
:func:`caught_up`, :func:`paper_history_changes`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol

from llmtrader.core.times import DAY_MS, iso_utc, ms_of_iso
from llmtrader.core.trades import AccountHistory, FundingEvent, TradeFill
from llmtrader.storage.reader import _ALL_TIME, with_adoptions


class Store(Protocol):
    """What this module reads of :class:`llmtrader.storage.store.Store`, which reads this module in turn (the
    paper account's history): a protocol, so that the two modules do not import each other."""

    @property
    def db(self) -> Any: ...


ENTRY_LEGS = ("en", "ad")
CLOSE_LEGS = ("cl", "em")
CLOSING_REASONS = ("stop_loss", "take_profit", "liquidation", "adl")
# The columns paper_fills and venue_fills share, read into a TradeFill.
FILL_COLUMNS = ("id", "time_ms", "symbol", "client_order_id", "side", "qty", "price", "fee", "realized_pnl", "reason")
FUNDING_COLUMNS = ("id", "time_ms", "symbol", "amount")


@dataclass
class AccountFacts:
    """Per symbol: the last close, the opening of the open position, the last entry; and the equity
    the account had when the UTC day began (:func:`day_start_baseline`)."""

    last_close_ms: dict[str, int] = field(default_factory=dict)
    opened_at_ms: dict[str, int] = field(default_factory=dict)
    last_entry_ms: dict[str, int] = field(default_factory=dict)
    day_start_equity: float | None = None


@dataclass
class FactsCursor:
    """The facts of an account without the day's start equity, as of trading version ``version``, and where
    their reading stopped, so that only what was written since is read next time (:func:`caught_up`): the
    highest fill ids (paper, venue) and order id, the account's counter (orders written after it carry a
    higher ``change_seq``), and its count of rewritten fills."""

    version: int
    latest: int  # the latest event time among the facts
    facts: AccountFacts
    fill_ids: tuple[int, int]
    order_id: int
    seq: int
    rewrites: int = 0  # the account's rewritten fills (m014): another count means read the whole again


_PENDING_STATUS = ("filled", "partially_filled")


def trading_version(store: Store, account: str) -> int:
    """A number that changes whenever an order row or a fill of ``account`` is written (m010's triggers)."""
    row = store.db.execute("SELECT n FROM trading_versions WHERE account = ?", [account]).fetchone()
    return int(row[0]) if row is not None else 0


def _fill_events_sql(where: str) -> tuple[str, list[Any]]:
    closing = ",".join("?" * len(CLOSING_REASONS))
    entry_like = " OR ".join("client_order_id LIKE ? ESCAPE '!'" for _ in ENTRY_LEGS)
    sql = (
        f"SELECT symbol, CASE WHEN reason IN ({closing}) THEN 'c' ELSE 'e' END AS kind, time_ms AS t "
        f"FROM {{table}} WHERE {where} AND (reason IN ({closing}) OR {entry_like})"
    )
    return sql, [*CLOSING_REASONS, *CLOSING_REASONS, *(f"%!_{leg}" for leg in ENTRY_LEGS)]


# The fills recorded after a given id, classified (caught_up): per table, paper then venue.
_fills_since, _FILLS_SINCE_PARAMS = _fill_events_sql("id > ? AND +account = ?")
_FILLS_SINCE = tuple(_fills_since.format(table=table) for table in ("paper_fills", "venue_fills"))

_ORDER_KIND = f"CASE WHEN leg IN ({','.join('?' * len(CLOSE_LEGS))}) THEN 'c' ELSE 'e' END"
_ORDER_TIME = "CAST(ROUND((julianday(updated_at) - 2440587.5) * 86400000) AS INTEGER)"
_LEG_MARKS = ",".join("?" * (len(ENTRY_LEGS) + len(CLOSE_LEGS)))
_ORDER_FILTER = f"status IN ({','.join('?' * len(_PENDING_STATUS))}) AND leg IN ({_LEG_MARKS})"


def account_facts(store: Store, account: str, now_ms: int) -> AccountFacts:
    """The facts of ``account`` as of ``now_ms``, aggregated in SQL over its whole history.

    Entries: filled ``en``/``ad`` orders, and fills of entry orders (a limit entry fills after its
    decision). Closes: filled ``cl``/``em`` orders, and fills the venue reported as stops, targets,
    liquidations or ADL (the paper account's own, and the live venue's once synced: stops that
    triggered between decisions are only seen there). The day's start equity is :func:`day_start_baseline`.
    """
    facts = _aggregate(store, account, now_ms)[0]
    facts.day_start_equity = day_start_baseline(store, account, now_ms)
    return facts


def _aggregate(store: Store, account: str, until_ms: int) -> tuple[AccountFacts, int]:
    """The facts over every event up to ``until_ms``, and the latest event time among them."""
    fills, fill_params = _fill_events_sql("account = ?")
    sql = f"""
        WITH ev AS (
            SELECT symbol, {_ORDER_KIND} AS kind, {_ORDER_TIME} AS t
            FROM orders WHERE account = ? AND {_ORDER_FILTER}
            UNION ALL {fills.format(table="paper_fills")}
            UNION ALL {fills.format(table="venue_fills")}
        ),
        past AS MATERIALIZED (SELECT * FROM ev WHERE t <= ?),
        closes AS MATERIALIZED (SELECT symbol, MAX(t) AS last_close FROM past WHERE kind = 'c' GROUP BY symbol)
        SELECT p.symbol, c.last_close, MAX(CASE WHEN p.kind = 'e' THEN p.t END),
               MIN(CASE WHEN p.kind = 'e' AND p.t > COALESCE(c.last_close, 0) THEN p.t END), MAX(p.t)
        FROM past p LEFT JOIN closes c ON c.symbol = p.symbol GROUP BY p.symbol
    """
    fill_args = [*fill_params[: len(CLOSING_REASONS)], account, *fill_params[len(CLOSING_REASONS) :]]
    params = [*CLOSE_LEGS, account, *_PENDING_STATUS, *ENTRY_LEGS, *CLOSE_LEGS, *fill_args, *fill_args, until_ms]
    return _facts(store.db.execute(sql, params).fetchall())


def _marks(store: Store, account: str) -> tuple[tuple[int, int], int, int, int]:
    """Where reading stops: the highest fill and order ids (of any account: ids only grow), the account's
    counter, and how many of its recorded fills were rewritten (m014)."""
    paper, venue, order, seq, rewrites = store.db.execute(
        "SELECT (SELECT MAX(id) FROM paper_fills), (SELECT MAX(id) FROM venue_fills), (SELECT MAX(id) FROM orders),"
        " (SELECT n FROM trading_versions WHERE account = ?), (SELECT n FROM fill_rewrites WHERE account = ?)",
        [account, account],
    ).fetchone()
    return (int(paper or 0), int(venue or 0)), int(order or 0), int(seq or 0), int(rewrites or 0)


def read_facts(store: Store, account: str, version: int, now_ms: int) -> FactsCursor | None:
    """The whole aggregate as of trading version ``version`` (:func:`trading_version`), with where its reading
    stopped; None when an event lies after ``now_ms`` (the facts as of ``now_ms`` are then not the whole)."""
    # The marks are read first: a row written in between is read again next time, and merging an event
    # twice changes nothing (maxima and minima).
    fill_ids, order_id, seq, rewrites = _marks(store, account)
    facts, latest = _aggregate(store, account, _ALL_TIME)
    if latest > now_ms:
        return None
    return FactsCursor(version, latest, facts, fill_ids, order_id, seq, rewrites)


def caught_up(store: Store, account: str, known: FactsCursor, version: int, now_ms: int) -> FactsCursor | None:
    """``known`` with the rows written since merged in; None when they could change an earlier answer (an
    order written before that changed since, an event older than one already counted, an event after
    ``now_ms``): read the whole again then (:func:`read_facts`)."""
    db = store.db
    events: list[tuple[str, str, int]] = []
    fill_ids, order_id, seq, rewrites = _marks(store, account)
    if rewrites != known.rewrites:
        return None  # a fill already counted was rewritten (linked to its order: a stop-loss now, say)
    # The few rows since, classified by the same SQL as the whole aggregate ("+account": the rowid range,
    # not the account's index, which would walk every fill of the account).
    for sql, after in zip(_FILLS_SINCE, known.fill_ids, strict=True):
        params = [*_FILLS_SINCE_PARAMS[: len(CLOSING_REASONS)], after, account]
        events.extend(db.execute(sql, [*params, *_FILLS_SINCE_PARAMS[len(CLOSING_REASONS) :]]).fetchall())
    changed = db.execute(
        f"SELECT id, symbol, {_ORDER_KIND}, {_ORDER_TIME} FROM orders "
        f"WHERE account = ? AND change_seq > ? AND {_ORDER_FILTER}",
        [*CLOSE_LEGS, account, known.seq, *_PENDING_STATUS, *ENTRY_LEGS, *CLOSE_LEGS],
    ).fetchall()
    for row_id, symbol, kind, t in changed:
        if row_id <= known.order_id:
            return None  # an older order changed (a limit entry filled, a partial fill grew): its time moved
        events.append((symbol, kind, t))
    facts = AccountFacts(
        dict(known.facts.last_close_ms), dict(known.facts.opened_at_ms), dict(known.facts.last_entry_ms)
    )
    latest = known.latest
    for symbol, kind, t in sorted(events, key=lambda e: (e[2], e[1] != "c")):
        t = int(t)
        if t > now_ms:
            return None
        latest = max(latest, t)
        if kind == "c":
            if t <= facts.last_close_ms.get(symbol, 0):
                continue
            if t < facts.last_entry_ms.get(symbol, 0):
                return None  # a close before an entry already counted: the opening would move
            facts.last_close_ms[symbol] = t
            facts.opened_at_ms.pop(symbol, None)
        else:
            facts.last_entry_ms[symbol] = max(t, facts.last_entry_ms.get(symbol, t))
            if t > facts.last_close_ms.get(symbol, 0):
                facts.opened_at_ms[symbol] = min(t, facts.opened_at_ms.get(symbol, t))
    return FactsCursor(version, latest, facts, fill_ids, order_id, seq, rewrites)


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


def day_start_baseline(store: Store, account: str, now_ms: int) -> float | None:
    """The account's equity when the UTC day of ``now_ms`` began (the last one recorded before 00:00 UTC, by a
    decision or a cycle, else the first one recorded today), moved by the deposits (+) and withdrawals (−)
    made since it was recorded (since 00:00 UTC, or since today's first record when that is the baseline): they
    are no profit or loss, so the daily loss switches measure from it. None when no equity is recorded."""
    return day_start_settled(store, account, now_ms)[0]


# A day's start equity cannot change once the day is an hour old and it comes from before 00:00: records carry
# the time they are made, and a cycle that began before midnight has recorded its own by then.
_SETTLED_AFTER_MS = 3_600_000


def day_start_settled(store: Store, account: str, now_ms: int) -> tuple[float | None, bool]:
    """:func:`day_start_baseline`, and whether no record made later can change it (a deposit or withdrawal
    still can)."""
    day = now_ms - now_ms % DAY_MS
    found, before_midnight, at_ms = _day_start_equity(store, account, day)
    if found is None:
        return None, False
    settled = before_midnight and now_ms - day >= _SETTLED_AFTER_MS
    return found + net_transfers(store, account, day if before_midnight else at_ms + 1), settled


def _day_start_equity(store: Store, account: str, day_ms: int) -> tuple[float | None, bool, int]:
    """The start-of-day equity, whether it was recorded before 00:00 UTC, and when (ms; 0 when none)."""
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
        return max(before)[1], True, ms_of_iso(max(before)[0])
    if today:
        return min(today)[1], False, ms_of_iso(min(today)[0])
    return None, False, 0


def transfers_since(store: Store, account: str, since_ms: int) -> list[tuple[int, float]]:
    """The account's deposits (+) and withdrawals (−) at or after ``since_ms``, as (time ms, USD), oldest
    first: the venue's TRANSFER income as synced (:mod:`llmtrader.storage.venue_history`); none on paper."""
    rows = store.db.execute(
        "SELECT time_ms, amount FROM venue_transfers WHERE account = ? AND time_ms >= ? ORDER BY time_ms, id",
        [account, since_ms],
    ).fetchall()
    return [(int(t), float(Decimal(str(amount)))) for t, amount in rows]


def net_transfers(store: Store, account: str, since_ms: int) -> float:
    """The net of the account's deposits and withdrawals at or after ``since_ms`` (see :func:`transfers_since`)."""
    return sum((amount for _, amount in transfers_since(store, account, since_ms)), 0.0)


def paper_history(
    store: Store,
    account: str,
    *,
    after_ids: tuple[int, int] | None = None,
    until_ids: tuple[int, int] | None = None,
) -> AccountHistory:
    """Everything the paper account recorded since it was last reset (or created); with ``after_ids``
    (a fill id, a funding id), only the rows recorded after those (and with ``until_ids``, up to those)."""
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
    last_fill, last_funding = until_ids if until_ids is not None else (_ALL_TIME, _ALL_TIME)
    # The rows after given ids: a walk of the rowid range from there ("+" keeps SQLite off the account's
    # index, which would read every row of the account); the whole history: the account's index.
    where = (
        "id > ? AND id <= ? AND account = ? AND time_ms > ?"
        if after_ids is None
        else "id > ? AND id <= ? AND +account = ? AND +time_ms > ?"
    )
    fills = [
        TradeFill.from_row(dict(zip(FILL_COLUMNS, r, strict=True)))
        for r in db.execute(
            f"SELECT {', '.join(FILL_COLUMNS)} FROM paper_fills WHERE {where} ORDER BY time_ms, id",
            [fill_id, last_fill, account, after],
        ).fetchall()
    ]
    funding = [
        FundingEvent.from_row(dict(zip(FUNDING_COLUMNS, r, strict=True)))
        for r in db.execute(
            f"SELECT {', '.join(FUNDING_COLUMNS)} FROM paper_funding WHERE {where} ORDER BY time_ms, id",
            [funding_id, last_funding, account, after],
        ).fetchall()
    ]
    return AccountHistory(fills, funding, since, start)


def live_history(store: Store, account: str) -> AccountHistory:
    """The live account's fills and funding as last synced from the venue (:mod:`llmtrader.storage.venue_history`).

    They start with the first trade the sync saw (from llmtrader's first live order on the account, or the
    last 7 days when it had none), so ``since_ms`` is None. ``starting_balance`` is None: the wallet balance
    at that moment is not recorded (deposits and withdrawals are synced only from then on), so nothing that
    needs it, such as a Sharpe ratio, is computed from a guess.
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


def paper_account_history(store: Store, account: str) -> AccountHistory:
    """The paper account's fills and funding since its last reset, with an opening for each position reconcile
    adopted (:func:`with_adoptions`): what :class:`~llmtrader.exchange.paper.PaperExchange` answers."""
    history = paper_history(store, account)
    history.fills = with_adoptions(store.db.conn, account, "paper", history.fills, since_ms=history.since_ms)
    return history


def venue_account_history(store: Store, account: str) -> AccountHistory:
    """The live venue's fills and funding of ``account`` as synced (:func:`live_history`), with an opening for
    each position reconcile adopted (:func:`with_adoptions`): what the live adapter answers."""
    history = live_history(store, account)
    history.fills = with_adoptions(store.db.conn, account, "live", history.fills, since_ms=history.since_ms)
    return history


def account_history(store: Store, account: str, mode: Literal["paper", "live"]) -> AccountHistory:
    """The history recorded under ``mode``, for the readers of recorded rows (``stats``, the dashboard, the
    notifications), which know the mode a row or an account was recorded in and never sync. A cycle asks its
    exchange instead (:meth:`~llmtrader.exchange.base.Exchange.trade_history`)."""
    return paper_account_history(store, account) if mode == "paper" else venue_account_history(store, account)


HistoryVersion = tuple[int, ...]


def paper_history_changes(
    store: Store, account: str, since: HistoryVersion | None
) -> tuple[HistoryVersion, AccountHistory | None]:
    """The version of :func:`paper_account_history` now (:func:`paper_history_version`), and the rows recorded
    after version ``since`` up to it; None when they cannot be read alone (no ``since``, or a reset or an
    adoption since: read the whole history then)."""
    version = paper_history_version(store, account)
    if since is None or len(since) != len(version) or since[2:] != version[2:]:
        return version, None
    if since == version:
        return version, AccountHistory([], [], None, None)
    after, until = (since[0], since[1]), (version[0], version[1])
    return version, paper_history(store, account, after_ids=after, until_ids=until)


def venue_history_changes(
    store: Store, account: str, since: HistoryVersion | None
) -> tuple[HistoryVersion, AccountHistory | None]:
    """The version of :func:`venue_account_history` now (the newest venue fill, funding and adoption ids: it
    changes whenever the answer would), and None: a sync may store fills older than ones already read (a
    delisted symbol's, a late settlement), so what changed is read whole."""
    last_fill, last_funding, adopted = store.db.execute(
        "SELECT (SELECT MAX(id) FROM venue_fills), (SELECT MAX(id) FROM venue_funding), (SELECT MAX(id) FROM adoptions)"
    ).fetchone()
    return (int(last_fill or 0), int(last_funding or 0), 0, int(adopted or 0)), None


def paper_history_version(store: Store, account: str) -> tuple[int, ...]:
    """A value that changes whenever :func:`paper_account_history` would return something else: the newest
    fill and funding row ids, the number of resets, the newest adoption. Cheap: the ends of the rowids."""
    # The newest rows of any account: a read of the rowid's end instead of a walk through the account's rows
    # (the key changes more often with several accounts, never less often than the account's own history).
    last_fill, last_funding, resets, adopted = store.db.execute(
        "SELECT (SELECT MAX(id) FROM paper_fills), (SELECT MAX(id) FROM paper_funding), (SELECT "
        "json_array_length(json_extract(state, '$.book.resets')) FROM paper_accounts WHERE account = ?), "
        "(SELECT MAX(id) FROM adoptions)",
        [account],
    ).fetchone()
    return (int(last_fill or 0), int(last_funding or 0), int(resets or 0), int(adopted or 0))

"""The live account's trade and funding history, copied from the venue into the store.

Fills come from userTrades (per symbol), funding from FUNDING_FEE income, deposits and withdrawals from
TRANSFER income. Each stream keeps a cursor in
``venue_sync``, so a sync asks only for what is new: trades page forward by id (``fromId``); before the
first trade of a symbol is known, and for income, the venue is read in windows of at most 7 days (its
limit), from llmtrader's first live order on the account (or the last 7 days when there is none). The
venue lists a window oldest first, so a full page is followed by the next one. Rows are keyed by the
venue's ids: running a sync twice adds nothing. Each page is stored with its cursor in one transaction,
so a sync cut short (by its request budget, a timeout or a venue error) resumes where it stopped, and
the last ``OVERLAP_MS`` of a time cursor are read again to catch rows the venue settled late.

Each fill is linked to the order llmtrader sent, by the venue order id recorded in ``orders``; an order
whose answer was lost (so its id was never recorded), and one llmtrader did not send, is looked up at
the venue by id. Its client order id then links it to our order, or tells what it was: a liquidation
(``autoclose-…``), an auto-deleveraging (``adl_autoclose…``) or a manual trade.

Only the venue's business fields are stored: no key, signature or nonce.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmtrader.core.times import DAY_MS, ms_of_iso
from llmtrader.core.trades import AccountHistory
from llmtrader.errors import StoreError, VenueError, VenueRejected
from llmtrader.exchange.base import HistorySource
from llmtrader.storage.facts import ENTRY_LEGS, HistoryVersion, venue_account_history, venue_history_changes

if TYPE_CHECKING:
    from llmtrader.exchange.base import OrderState
    from llmtrader.storage.store import Store

# The venue's limits, as the adapter checks them (asterdex.HISTORY_WINDOW_MS, HISTORY_LIMIT); not imported
# from there, so that reading the store never loads the HTTP stack.
WINDOW_MS = 7 * DAY_MS  # the longest userTrades window; income is read in the same windows
PAGE_LIMIT = 1000
OVERLAP_MS = 10 * 60_000  # a time cursor re-reads this much, for rows the venue settled late
FUNDING = "FUNDING_FEE"
TRANSFER = "TRANSFER"  # deposits (+) and withdrawals (−): they move the kill switches' equity baselines
INVALID_SYMBOL = -1121
# Client order ids the venue gives the orders it sends itself (as Binance does).
LIQUIDATION_PREFIX = "autoclose-"
ADL_PREFIX = "adl_autoclose"
_FILL_COLUMNS = (
    "account", "symbol", "trade_id", "order_id", "client_order_id", "decision_id", "side", "qty", "price", "fee",
    "fee_asset", "realized_pnl", "reason", "maker", "time_ms",
)  # fmt: skip
_FUNDING_COLUMNS = ("account", "symbol", "tran_id", "asset", "amount", "time_ms")
_TRANSFER_COLUMNS = ("account", "tran_id", "asset", "amount", "time_ms")


@dataclass
class SyncReport:
    """What one sync did. ``complete`` is False when the request budget ran out first (the next sync resumes)."""

    fills_added: int = 0
    funding_added: int = 0
    requests: int = 0
    complete: bool = True
    budget_spent: bool = False  # the request budget ran out before the sync reached now
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Link:
    """Who sent the order a fill belongs to, and so why the fill happened."""

    client_order_id: str | None
    decision_id: str | None
    reason: str


@dataclass(frozen=True)
class _Cursor:
    last_id: int | None
    last_time_ms: int | None


class _BudgetSpent(Exception):
    """Internal: the sync made as many requests as it may."""


def our_reason(leg: str, request: str | None) -> str:
    """The reason of a fill of an order llmtrader sent, from the order's leg (and type, for entries)."""
    if leg.startswith("sl"):
        return "stop_loss"
    if leg.startswith("tp"):
        return "take_profit"
    if leg in ENTRY_LEGS:
        try:
            sent = json.loads(request) if request else {}
        except ValueError:
            sent = {}
        return "limit" if isinstance(sent, dict) and sent.get("type") == "LIMIT" else "market"
    return "market"  # closes, reductions and emergency closes are market orders


def venue_reason(client_order_id: str | None, order_type: str | None = None) -> str:
    """The reason of a fill of an order llmtrader did not send, from the venue's client id and order type."""
    cid = client_order_id or ""
    if cid.startswith(LIQUIDATION_PREFIX):
        return "liquidation"
    if cid.startswith(ADL_PREFIX):
        return "adl"
    if order_type == "LIMIT":
        return "limit"
    if order_type in ("STOP", "STOP_MARKET"):
        return "stop_loss"
    if order_type in ("TAKE_PROFIT", "TAKE_PROFIT_MARKET"):
        return "take_profit"
    return "market"


class StoredVenueHistory:
    """The live adapter's :class:`~llmtrader.exchange.base.HistoryStore`: the venue's history synced into
    ``store`` (:func:`sync_venue_history`) and read back (:func:`llmtrader.storage.facts.venue_account_history`)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def sync_venue(
        self, source: HistorySource, account: str, symbols: Sequence[str], now_ms: int, *, max_requests: int
    ) -> SyncReport:
        return await sync_venue_history(source, self.store, account, symbols, now_ms, max_requests=max_requests)

    def venue_history(self, account: str) -> AccountHistory:
        return venue_account_history(self.store, account)

    def venue_history_changes(
        self, account: str, since: HistoryVersion | None
    ) -> tuple[HistoryVersion, AccountHistory | None]:
        return venue_history_changes(self.store, account, since)


async def sync_venue_history(
    exchange: HistorySource,
    store: Store,
    account: str,
    symbols: Iterable[str],
    now_ms: int,
    *,
    limit: int = PAGE_LIMIT,
    max_requests: int = 200,
) -> SyncReport:
    """Copy the venue's new fills of ``symbols`` (and of every symbol llmtrader has sent a live order on for
    ``account``) and the account's new funding payments into the store, up to ``now_ms``.

    At most ``max_requests`` venue requests (lookups included); the report says when that stopped it.
    A symbol the venue no longer knows (-1121: delisted, say) is skipped with a note. Raises VenueError when
    a read fails or a reply is malformed (what was stored until then stays), and StoreError when the store
    cannot be written.
    """
    try:
        sync = _Sync(exchange, store, account, now_ms, limit, max_requests)
        try:
            for symbol in dict.fromkeys([*symbols, *sync.order_symbols()]):
                try:
                    await sync.trades(symbol)
                except VenueRejected as exc:
                    if exc.code != INVALID_SYMBOL:
                        raise
                    # A symbol delisted since llmtrader traded it: the other streams still sync.
                    sync.report.complete = False
                    sync.report.notes.append(f"{symbol} trades not synced: {exc}")
            await sync.funding()
            await sync.transfers()
        except _BudgetSpent:
            sync.report.complete, sync.report.budget_spent = False, True
            sync.report.notes.append(f"stopped after {max_requests} requests; the next sync resumes from there")
        sync.relink()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot store the venue history of account {account!r} in {store.path}: {exc}") from exc
    return sync.report


class _Sync:
    def __init__(
        self, exchange: HistorySource, store: Store, account: str, now_ms: int, limit: int, max_requests: int
    ) -> None:
        self.exchange = exchange
        self.db = store.db
        self.account = account
        self.now = now_ms
        self.limit = limit
        self.max_requests = max_requests
        self.report = SyncReport()
        self.looked_up: dict[tuple[str, str], OrderState | None] = {}
        first = self.db.execute(
            "SELECT MIN(created_at) FROM orders WHERE account = ? AND mode = 'live'", [account]
        ).fetchone()[0]
        # Before llmtrader's first live order the account's history is not its to explain.
        self.start = ms_of_iso(first) - OVERLAP_MS if first else now_ms - WINDOW_MS

    def spend(self) -> None:
        if self.report.requests >= self.max_requests:
            raise _BudgetSpent
        self.report.requests += 1

    def order_symbols(self) -> list[str]:
        rows = self.db.execute(
            "SELECT DISTINCT symbol FROM orders WHERE account = ? AND mode = 'live' ORDER BY symbol", [self.account]
        ).fetchall()
        return [str(r[0]) for r in rows]

    # ---- cursors --------------------------------------------------------------------------------------
    def cursor(self, stream: str) -> _Cursor:
        row = self.db.execute(
            "SELECT last_id, last_time_ms FROM venue_sync WHERE account = ? AND stream = ?", [self.account, stream]
        ).fetchone()
        return _Cursor(row[0], row[1]) if row is not None else _Cursor(None, None)

    def save_cursor(self, stream: str, last_id: int | None, last_time_ms: int) -> None:
        """Within the caller's transaction."""
        self.db.execute(
            "INSERT INTO venue_sync (account, stream, last_id, last_time_ms, updated_at_ms) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (account, stream) DO UPDATE SET last_id = excluded.last_id, "
            "last_time_ms = excluded.last_time_ms, updated_at_ms = excluded.updated_at_ms",
            [self.account, stream, last_id, last_time_ms, self.now],
        )

    def resume_from(self, cursor: _Cursor) -> int:
        return cursor.last_time_ms - OVERLAP_MS if cursor.last_time_ms is not None else self.start

    # ---- trades ---------------------------------------------------------------------------------------
    async def trades(self, symbol: str) -> None:
        stream = f"trades:{symbol}"
        cursor = self.cursor(stream)
        from_id = cursor.last_id + 1 if cursor.last_id is not None else None
        start = self.resume_from(cursor)
        # Until a first trade is known, find it window by window; from there on, page by id.
        while from_id is None and start <= self.now:
            end = min(start + WINDOW_MS - 1, self.now)
            self.spend()
            rows = await self.exchange.user_trades(symbol, start_ms=start, end_ms=end, limit=self.limit)
            if rows:
                last_id = await self.store_fills(stream, symbol, rows)
                if len(rows) < self.limit and end >= self.now:
                    return
                from_id = last_id + 1
            else:
                with self.db.conn:
                    self.save_cursor(stream, None, end)
            start = end + 1
        while from_id is not None:
            self.spend()
            rows = await self.exchange.user_trades(symbol, from_id=from_id, limit=self.limit)
            if not rows:
                return
            last_id = await self.store_fills(stream, symbol, rows)
            if len(rows) < self.limit:
                return
            if last_id < from_id:
                raise VenueError(f"userTrades {symbol}: fromId {from_id} answered older trades (up to id {last_id})")
            from_id = last_id + 1

    async def store_fills(self, stream: str, symbol: str, rows: Sequence[dict[str, Any]]) -> int:
        """Store one page of userTrades rows with its cursor; the page's last trade id."""
        rows = sorted(rows, key=lambda r: int(r["id"]))
        links = await self.links(symbol, rows)
        values = []
        for row in rows:
            if row["symbol"] != symbol:
                raise VenueError(f"userTrades {symbol}: the reply holds a {row['symbol']!r} trade")
            if row["side"] not in ("BUY", "SELL"):
                raise VenueError(f"userTrades {symbol}: trade {row['id']} has side {row['side']!r}")
            link = links[str(row["orderId"])]
            pnl = row.get("realizedPnl")
            values.append(
                (
                    self.account, symbol, int(row["id"]), str(row["orderId"]), link.client_order_id,
                    link.decision_id, row["side"], str(row["qty"]), str(row["price"]), str(row["commission"]),
                    row.get("commissionAsset"), None if pnl in (None, "") else str(pnl), link.reason,
                    int(str(row.get("maker")).lower() == "true"), int(row["time"]),
                )
            )  # fmt: skip
        last_id = int(rows[-1]["id"])
        last_time = max(int(r["time"]) for r in rows)
        with self.db.conn:
            # rowcount counts the rows inserted (ignored duplicates, and what triggers write, do not count).
            inserted = self.db.conn.executemany(
                f"INSERT OR IGNORE INTO venue_fills ({', '.join(_FILL_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_FILL_COLUMNS))})",
                values,
            )
            self.report.fills_added += max(inserted.rowcount, 0)
            self.save_cursor(stream, last_id, last_time)
        return last_id

    async def links(self, symbol: str, rows: Sequence[dict[str, Any]]) -> dict[str, _Link]:
        """Each order id of the page: our order (by venue id, else by the client id the venue has for it)."""
        order_ids = list(dict.fromkeys(str(r["orderId"]) for r in rows))
        marks = ",".join("?" * len(order_ids))
        links = {
            str(oid): _Link(cid, did, our_reason(leg, request))
            for oid, cid, did, leg, request in self.db.execute(
                "SELECT order_id, client_order_id, decision_id, leg, request FROM orders "
                f"WHERE account = ? AND mode = 'live' AND symbol = ? AND order_id IN ({marks}) ORDER BY id",
                [self.account, symbol, *order_ids],
            ).fetchall()
        }
        for oid in order_ids:
            if oid in links:
                continue
            # Some venues name the client id in the trade row itself; otherwise ask for the order.
            named = next(
                (str(r["clientOrderId"]) for r in rows if str(r["orderId"]) == oid and r.get("clientOrderId")), None
            )
            order_type: str | None = None
            if named is None:
                order = await self.order(symbol, oid)
                if order is not None:
                    named, order_type = order.client_order_id or None, str(order.type)
            ours = self.our_order(named) if named else None
            links[oid] = ours or _Link(named, None, venue_reason(named, order_type))
        return links

    async def order(self, symbol: str, order_id: str) -> OrderState | None:
        key = (symbol, order_id)
        if key not in self.looked_up:
            self.spend()
            self.looked_up[key] = await self.exchange.order_by_id(symbol, order_id)
        return self.looked_up[key]

    def our_order(self, client_order_id: str) -> _Link | None:
        row = self.db.execute(
            "SELECT client_order_id, decision_id, leg, request FROM orders "
            "WHERE account = ? AND mode = 'live' AND client_order_id = ? ORDER BY id DESC LIMIT 1",
            [self.account, client_order_id],
        ).fetchone()
        return _Link(row[0], row[1], our_reason(row[2], row[3])) if row is not None else None

    def relink(self) -> None:
        """Link the fills stored before their order's venue id was recorded (a lookup that found nothing)."""
        found = self.db.execute(
            "SELECT f.id, o.client_order_id, o.decision_id, o.leg, o.request FROM venue_fills f "
            "JOIN orders o ON o.account = f.account AND o.mode = 'live' AND o.symbol = f.symbol "
            "AND o.order_id = f.order_id WHERE f.account = ? AND f.decision_id IS NULL ORDER BY o.id",
            [self.account],
        ).fetchall()
        if not found:
            return
        with self.db.conn:
            self.db.conn.executemany(
                "UPDATE venue_fills SET client_order_id = ?, decision_id = ?, reason = ? WHERE id = ?",
                [(cid, did, our_reason(leg, request), fid) for fid, cid, did, leg, request in found],
            )

    # ---- funding --------------------------------------------------------------------------------------
    async def funding(self) -> None:
        await self.income_stream(FUNDING, self.store_funding)

    async def transfers(self) -> None:
        # Only the kill switches' baselines (today's and the peak's) need them: a first sync reads the last 7
        # days, not every week since llmtrader's first order (which would spend the request budget).
        await self.income_stream(TRANSFER, self.store_transfers, first=max(self.start, self.now - WINDOW_MS))

    async def income_stream(
        self,
        income_type: str,
        store: Callable[[str, Sequence[dict[str, Any]], int], None],
        *,
        first: int | None = None,
    ) -> None:
        """Page the income rows of ``income_type`` since the stream's cursor (without one: since ``first``,
        else the sync's start), each page stored by ``store``."""
        stream = f"income:{income_type}"
        cursor = self.cursor(stream)
        start = first if first is not None and cursor.last_time_ms is None else self.resume_from(cursor)
        while start <= self.now:
            end = min(start + WINDOW_MS - 1, self.now)
            page_start = start
            while True:
                self.spend()
                rows = await self.exchange.income(income_type, start_ms=page_start, end_ms=end, limit=self.limit)
                full = len(rows) >= self.limit
                last = max((int(r["time"]) for r in rows), default=end)
                store(stream, rows, last if full else end)
                if not full:
                    break
                if last <= page_start:  # a whole page at one moment: step past it rather than loop
                    self.report.notes.append(
                        f"more than {self.limit} {income_type} rows at {last}; some may be missing"
                    )
                    last = page_start + 1
                page_start = last  # inclusive: the rows at ``last`` are read again, and ignored
            start = end + 1

    def store_funding(self, stream: str, rows: Sequence[dict[str, Any]], cursor_ms: int) -> None:
        values = []
        for row in rows:
            if row["incomeType"] != FUNDING:
                continue
            if not row.get("symbol"):
                raise VenueError(f"income: funding payment {row['tranId']} names no symbol")
            values.append(
                (self.account, str(row["symbol"]), str(row["tranId"]), row.get("asset"), str(row["income"]),
                 int(row["time"]))
            )  # fmt: skip
        with self.db.conn:
            inserted = self.db.conn.executemany(
                f"INSERT OR IGNORE INTO venue_funding ({', '.join(_FUNDING_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_FUNDING_COLUMNS))})",
                values,
            )
            self.report.funding_added += max(inserted.rowcount, 0)
            self.save_cursor(stream, None, cursor_ms)

    def store_transfers(self, stream: str, rows: Sequence[dict[str, Any]], cursor_ms: int) -> None:
        """Deposits and withdrawals (TRANSFER income), keyed by the venue's transaction id."""
        values = [
            (self.account, str(row["tranId"]), row.get("asset"), str(row["income"]), int(row["time"]))
            for row in rows
            if row["incomeType"] == TRANSFER
        ]
        with self.db.conn:
            self.db.conn.executemany(
                f"INSERT OR IGNORE INTO venue_transfers ({', '.join(_TRANSFER_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_TRANSFER_COLUMNS))})",
                values,
            )
            self.save_cursor(stream, None, cursor_ms)

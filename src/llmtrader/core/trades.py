"""Trades reconstructed from fills, and the performance figures computed from them.

Pure functions of values: no I/O, money in ``Decimal``. The inputs are the account's fills and funding
settlements (from the paper exchange's ``paper_fills`` / ``paper_funding`` tables, or the venue's trade
and income history), already sorted by time; every figure of a :class:`Trade` is a sum over the fills
and funding events it holds, so it can be traced back to them.

Positions are one-way per symbol (as on AsterDEX): a trade starts when the position leaves zero and
ends when it returns to zero. Realized PnL uses the average-cost method, the way the venue (and
:class:`~llmtrader.exchange.paper.PaperBook`) computes it: adds move the average entry, exits do not.
"""

from __future__ import annotations

import re
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any, Literal

from llmtrader.core.times import DAY_MS

FillSide = Literal["BUY", "SELL"]
TradeSide = Literal["long", "short"]
ZERO = Decimal(0)
EPOCH = date(1970, 1, 1)
LIQUIDATION = "liquidation"
# Client order ids written by execution: lt_<decision id>_<symbol tag>_<leg> (see execution.client_order_id).
# A decision id is lowercase base36 (storage.records.new_decision_id), so it never holds an underscore.
_DECISION_CID = re.compile(r"^lt_([0-9a-z]+)_([0-9A-Za-z]+)_([0-9a-z]+)$")


def _dec(value: Any, what: str) -> Decimal:
    """A stored figure (text or number) as a finite Decimal; ValueError naming ``what`` otherwise."""
    try:
        out = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{what} is not a number: {value!r}") from None
    if not out.is_finite():
        raise ValueError(f"{what} is not a finite number: {value!r}")
    return out


# The reason of the opening fill the ledger gives a position reconcile adopted, at the venue's entry price.
ADOPTED_REASON = "adopted"


@dataclass(frozen=True)
class TradeFill:
    """One execution on the account, as recorded (paper fill or venue trade).

    ``fee`` is what was paid (a negative fee would be a rebate). ``realized_pnl`` is the recorder's own
    figure, kept only to cross-check the one computed here (None when the source has none).
    """

    time_ms: int
    symbol: str
    side: FillSide
    qty: Decimal
    price: Decimal
    fee: Decimal
    reason: str  # market | limit | stop_loss | take_profit | liquidation | ...
    client_order_id: str | None = None
    realized_pnl: Decimal | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TradeFill:
        """A ``paper_fills`` row (money stored as text) as a fill; ValueError naming a bad column."""
        side = str(row["side"])
        if side not in ("BUY", "SELL"):
            raise ValueError(f"fill row {row.get('id')!r}: side {side!r} is neither BUY nor SELL")
        where = f"fill row {row.get('id')!r}"
        reported = row.get("realized_pnl")
        return cls(
            time_ms=int(row["time_ms"]),
            symbol=str(row["symbol"]),
            side="BUY" if side == "BUY" else "SELL",
            qty=_dec(row["qty"], f"{where}: qty"),
            price=_dec(row["price"], f"{where}: price"),
            fee=_dec(row["fee"], f"{where}: fee"),
            reason=str(row["reason"]),
            client_order_id=None if row.get("client_order_id") is None else str(row["client_order_id"]),
            realized_pnl=None if reported in (None, "") else _dec(reported, f"{where}: realized_pnl"),
        )


@dataclass(frozen=True)
class FundingEvent:
    """One funding settlement: ``amount`` is signed, + received by the account, − paid by it."""

    time_ms: int
    symbol: str
    amount: Decimal

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> FundingEvent:
        """A ``paper_funding`` row as a funding event."""
        amount = _dec(row["amount"], f"funding row {row.get('id')!r}: amount")
        return cls(time_ms=int(row["time_ms"]), symbol=str(row["symbol"]), amount=amount)


@dataclass(frozen=True)
class Leg:
    """The part of one fill that belongs to a trade (a flipping fill is split between two trades)."""

    time_ms: int
    qty: Decimal
    price: Decimal
    fee: Decimal  # the fill's fee, pro rata to ``qty`` when the fill was split
    reason: str
    client_order_id: str | None


@dataclass(frozen=True)
class TradeEntry(Leg):
    """A fill (or the opening part of a flipping fill) that opened or enlarged the trade."""


@dataclass(frozen=True)
class TradeExit(Leg):
    """A fill (or the closing part of a flipping fill) that reduced or closed the trade.

    ``realized_pnl`` is computed here: qty × (price − average entry) × (+1 long / −1 short).
    ``reported_pnl`` is the recorder's figure for the same fill. For a liquidation they differ by what
    the venue keeps beyond the price move (the maintenance margin that goes to the insurance fund on
    the paper venue); that difference, computed − reported, is ``liquidation_fee``. It counts among the
    trade's fees, so that the trade's net PnL is what the wallet lost.
    """

    realized_pnl: Decimal
    reported_pnl: Decimal | None = None
    liquidation_fee: Decimal = ZERO


@dataclass(frozen=True)
class Trade:
    """One round trip on one symbol: from a flat position back to flat (``closed_ms`` None while open)."""

    symbol: str
    side: TradeSide
    opened_ms: int
    closed_ms: int | None
    qty: Decimal  # the largest size the position reached
    entries: tuple[TradeEntry, ...]
    exits: tuple[TradeExit, ...] = ()
    funding_events: tuple[FundingEvent, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.closed_ms is None

    @property
    def entry_price(self) -> Decimal:
        """Volume-weighted average price of the entries."""
        return _vwap(self.entries)

    @property
    def exit_price(self) -> Decimal | None:
        """Volume-weighted average price of the exits (None while nothing has exited)."""
        return _vwap(self.exits) if self.exits else None

    @cached_property
    def gross_pnl(self) -> Decimal:
        """PnL of the price moves: the sum of the exits' realized PnL (so far, while open)."""
        return sum((e.realized_pnl for e in self.exits), ZERO)

    @cached_property
    def liquidation_fees(self) -> Decimal:
        """What liquidations cost beyond their price move (part of :attr:`fees`)."""
        return sum((e.liquidation_fee for e in self.exits), ZERO)

    @cached_property
    def fees(self) -> Decimal:
        """Fees of the entries and the exits, liquidation fees included."""
        paid = sum((e.fee for e in self.entries), ZERO) + sum((e.fee for e in self.exits), ZERO)
        return paid + self.liquidation_fees

    @cached_property
    def funding(self) -> Decimal:
        """Funding settled while the trade was open: + received, − paid."""
        return sum((f.amount for f in self.funding_events), ZERO)

    @cached_property
    def net_pnl(self) -> Decimal:
        """gross − fees + funding: what the trade added to the wallet (so far, while open)."""
        return self.gross_pnl - self.fees + self.funding

    @property
    def reported_pnl(self) -> Decimal | None:
        """The recorder's own realized PnL summed over the exits (None when a figure is missing).

        It equals ``gross_pnl - liquidation_fees`` when the reconstruction agrees with the recorder.
        """
        figures = [e.reported_pnl for e in self.exits]
        if any(f is None for f in figures):
            return None
        return sum((f for f in figures if f is not None), ZERO)

    @property
    def hold_ms(self) -> int | None:
        return None if self.closed_ms is None else self.closed_ms - self.opened_ms

    @property
    def is_win(self) -> bool:
        """A win is a positive net PnL (a trade that breaks even is not one)."""
        return self.net_pnl > 0

    @property
    def adopted(self) -> bool:
        """The trade began as a position reconcile adopted (opened outside llmtrader, or before its records)."""
        return bool(self.entries) and self.entries[0].reason == ADOPTED_REASON

    @property
    def closing_reason(self) -> str | None:
        """The reason of the exit that closed the trade (None while it is open)."""
        return self.exits[-1].reason if self.exits and self.closed_ms is not None else None

    @property
    def client_order_ids(self) -> tuple[str, ...]:
        """Every fill's client order id, in fill order, each once."""
        legs: list[Leg] = [*self.entries, *self.exits]
        legs.sort(key=lambda leg: leg.time_ms)  # stable: at one moment, the entries (a trade opens first)
        return tuple(dict.fromkeys(leg.client_order_id for leg in legs if leg.client_order_id))

    def decision_ids(self) -> tuple[str, ...]:
        """The decisions that opened, changed or closed the trade, parsed from the client order ids."""
        return tuple(dict.fromkeys(d for d in map(decision_id_of, self.client_order_ids) if d is not None))


def decision_id_of(client_order_id: str | None) -> str | None:
    """The decision id embedded in ``lt_<decision>_<symbol>_<leg>``; None for ids of any other shape."""
    match = _DECISION_CID.match(client_order_id or "")
    return match.group(1) if match else None


def _vwap(legs: Sequence[Leg]) -> Decimal:
    qty = sum((leg.qty for leg in legs), ZERO)
    return sum((leg.qty * leg.price for leg in legs), ZERO) / qty


# ---- reconstruction ------------------------------------------------------------------------------
@dataclass
class _Open:
    """The trade being built on one symbol."""

    side: TradeSide
    opened_ms: int
    size: Decimal
    avg: Decimal  # average entry of the open size, as the venue keeps it
    max_size: Decimal
    entries: list[TradeEntry] = field(default_factory=list)
    exits: list[TradeExit] = field(default_factory=list)

    def freeze(self, symbol: str, closed_ms: int | None) -> Trade:
        return Trade(
            symbol, self.side, self.opened_ms, closed_ms, self.max_size, tuple(self.entries), tuple(self.exits)
        )


def _check(index: int, fill: TradeFill, last_ms: int | None) -> None:
    what = (
        f"fill #{index} ({fill.symbol} {fill.side} {fill.qty} @ {fill.price} at {fill.time_ms}, "
        f"id {fill.client_order_id})"
    )
    if fill.side not in ("BUY", "SELL"):
        raise ValueError(f"{what}: side {fill.side!r} is neither BUY nor SELL")
    for name in ("qty", "price", "fee"):
        value = getattr(fill, name)
        if not isinstance(value, Decimal) or not value.is_finite():
            raise ValueError(f"{what}: {name} {value!r} is not a finite Decimal")
    if fill.qty <= 0:
        raise ValueError(f"{what}: qty must be positive")
    if fill.price <= 0:
        raise ValueError(f"{what}: price must be positive")
    if last_ms is not None and fill.time_ms < last_ms:
        raise ValueError(f"{what}: older than the previous {fill.symbol} fill at {last_ms} (fills must be sorted)")


def _entry(fill: TradeFill, qty: Decimal, fee: Decimal) -> TradeEntry:
    return TradeEntry(fill.time_ms, qty, fill.price, fee, fill.reason, fill.client_order_id)


def _symbol_trades(symbol: str, fills: Iterable[tuple[int, TradeFill]]) -> list[Trade]:
    """The trades of one symbol from its fills (with their indexes in the caller's list, for errors)."""
    trades: list[Trade] = []
    cur: _Open | None = None
    for index, fill in fills:
        buying = fill.side == "BUY"
        liquidation = fill.reason == LIQUIDATION
        if cur is None or (cur.side == "long") == buying:
            if liquidation:
                raise ValueError(f"fill #{index} ({symbol} at {fill.time_ms}): a liquidation that does not reduce")
            if cur is None:
                side: TradeSide = "long" if buying else "short"
                cur = _Open(side, fill.time_ms, fill.qty, fill.price, fill.qty, [_entry(fill, fill.qty, fill.fee)])
            else:
                # The venue's average entry, computed the way it does (and PaperBook does).
                cur.avg = (cur.size * cur.avg + fill.qty * fill.price) / (cur.size + fill.qty)
                cur.size += fill.qty
                cur.max_size = max(cur.max_size, cur.size)
                cur.entries.append(_entry(fill, fill.qty, fill.fee))
            continue
        closing = min(fill.qty, cur.size)
        opening = fill.qty - closing
        if opening > 0 and liquidation:
            raise ValueError(f"fill #{index} ({symbol} at {fill.time_ms}): a liquidation larger than the position")
        # A flip pays one fee for two parts: split pro rata by quantity, the rest to the opening part,
        # so that the two parts add up to the fee exactly.
        close_fee = fill.fee if opening == 0 else fill.fee * closing / fill.qty
        realized = closing * (fill.price - cur.avg) * (1 if cur.side == "long" else -1)
        liquidation_fee = ZERO
        if liquidation and fill.realized_pnl is not None:
            liquidation_fee = realized - fill.realized_pnl
        cur.exits.append(
            TradeExit(
                fill.time_ms,
                closing,
                fill.price,
                close_fee,
                fill.reason,
                fill.client_order_id,
                realized,
                fill.realized_pnl,
                liquidation_fee,
            )
        )
        cur.size -= closing
        if cur.size > 0:
            continue
        trades.append(cur.freeze(symbol, fill.time_ms))
        cur = None
        if opening > 0:
            side = "long" if buying else "short"
            cur = _Open(side, fill.time_ms, opening, fill.price, opening, [_entry(fill, opening, fill.fee - close_fee)])
    if cur is not None:
        trades.append(cur.freeze(symbol, None))
    return trades


def _with_funding(trades: list[Trade], funding: Sequence[FundingEvent]) -> list[Trade]:
    """Attach each funding event to the trade of its symbol open at that moment.

    A settlement at the very moment of a fill is taken to come first (as on the paper venue): it
    belongs to a trade that closes at that moment, not to one that opens then. So a trade holds the
    events with opened_ms < time ≤ closed_ms. Funding while flat belongs to no trade.
    """
    by_symbol: dict[str, list[int]] = {}
    for i, trade in enumerate(trades):
        by_symbol.setdefault(trade.symbol, []).append(i)
    # The opening times per symbol, built once (a trade list is in opening order per symbol).
    opened = {symbol: [trades[i].opened_ms for i in indexes] for symbol, indexes in by_symbol.items()}
    held: dict[int, list[FundingEvent]] = {}
    for event in sorted(funding, key=lambda e: e.time_ms):
        indexes = by_symbol.get(event.symbol, [])
        k = bisect_left(opened.get(event.symbol, []), event.time_ms) - 1
        if k < 0:
            continue
        trade = trades[indexes[k]]
        if trade.closed_ms is None or event.time_ms <= trade.closed_ms:
            held.setdefault(indexes[k], []).append(event)
    return [
        Trade(t.symbol, t.side, t.opened_ms, t.closed_ms, t.qty, t.entries, t.exits, tuple(held[i])) if i in held else t
        for i, t in enumerate(trades)
    ]


def reconstruct_trades(fills: Sequence[TradeFill], funding: Sequence[FundingEvent] = ()) -> list[Trade]:
    """The account's trades from its fills (sorted by time) and funding settlements, oldest first.

    A fill larger than the open position in the opposite direction closes the trade and opens the next
    one with the rest. A liquidation must reduce the position (ValueError otherwise). A fill with
    qty ≤ 0, price ≤ 0, an unknown side, or older than the previous fill of its symbol raises
    ValueError naming it: the caller sorts, so out of order means a bug upstream.
    """
    by_symbol: dict[str, list[tuple[int, TradeFill]]] = {}
    last_ms: dict[str, int] = {}
    for index, fill in enumerate(fills):
        _check(index, fill, last_ms.get(fill.symbol))
        last_ms[fill.symbol] = fill.time_ms
        by_symbol.setdefault(fill.symbol, []).append((index, fill))
    for index, event in enumerate(funding):
        if not isinstance(event.amount, Decimal) or not event.amount.is_finite():
            raise ValueError(f"funding #{index} ({event.symbol} at {event.time_ms}): amount {event.amount!r}")
    trades = [t for symbol, items in by_symbol.items() for t in _symbol_trades(symbol, items)]
    # Stable: a symbol's trades keep their order when two open at the same moment (a flip).
    trades.sort(key=lambda t: t.opened_ms)
    return _with_funding(trades, funding)


class TradeLedger:
    """The trades of an account kept up to date as fills arrive: :meth:`add` the new fills and funding events
    (each list in time order), and :meth:`trades` equals :func:`reconstruct_trades` over everything added.

    A symbol's trades are final once it is flat after a fill; only the fills since then (and the funding
    settled since) are rebuilt when new ones arrive, so the work per new fill does not grow with the
    account's age. The closed trades are kept in closing order with running totals per UTC day, for
    :meth:`performance` and :meth:`summaries`. A fill older than one already added, or a funding event at or
    before a final trade's close (it might have belonged to it), raises ValueError: rebuild from scratch then.
    """

    def __init__(self) -> None:
        self._rank: dict[str, int] = {}  # symbols in order of their first fill
        self._final: dict[str, list[Trade]] = {}
        self._current: dict[str, list[Trade]] = {}  # trades of the fills since the symbol was last flat
        self._fills: dict[str, list[TradeFill]] = {}
        self._funding: dict[str, list[FundingEvent]] = {}
        self._last_ms: dict[str, int] = {}
        self._settled_ms: dict[str, int] = {}  # the close of the symbol's last final trade
        self._closed: list[tuple[tuple[int, int, int, int], Trade]] = []  # final closed trades, closing order
        self._seq = 0
        self._days: dict[date, Decimal] = {}
        self._net = ZERO
        self._wins = 0
        self.count = 0  # fills added

    def add(self, fills: Sequence[TradeFill], funding: Sequence[FundingEvent] = ()) -> None:
        touched: set[str] = set()
        for fill in fills:
            _check(self.count, fill, self._last_ms.get(fill.symbol))
            self.count += 1
            self._last_ms[fill.symbol] = fill.time_ms
            self._rank.setdefault(fill.symbol, len(self._rank))
            self._fills.setdefault(fill.symbol, []).append(fill)
            touched.add(fill.symbol)
        for index, event in enumerate(funding):
            if not isinstance(event.amount, Decimal) or not event.amount.is_finite():
                raise ValueError(f"funding #{index} ({event.symbol} at {event.time_ms}): amount {event.amount!r}")
            settled = self._settled_ms.get(event.symbol)
            if settled is not None and event.time_ms <= settled:
                raise ValueError(f"funding at {event.time_ms} on {event.symbol} is not newer than a final trade")
            if self._fills.get(event.symbol):  # funding while flat belongs to no trade
                self._funding.setdefault(event.symbol, []).append(event)
                touched.add(event.symbol)
        for symbol in touched:
            trades = _with_funding(
                _symbol_trades(symbol, enumerate(self._fills.get(symbol, []))), self._funding.get(symbol, [])
            )
            if trades and trades[-1].closed_ms is not None:  # flat: every trade of these fills is final
                for trade in trades:
                    self._finalize(symbol, trade)
                self._settled_ms[symbol] = max(t.closed_ms or 0 for t in trades)
                self._fills[symbol], self._funding[symbol], self._current[symbol] = [], [], []
            else:
                self._current[symbol] = trades

    def _finalize(self, symbol: str, trade: Trade) -> None:
        assert trade.closed_ms is not None
        self._final.setdefault(symbol, []).append(trade)
        # reconstruct_trades orders by opening (then symbol of first fill, then order within the symbol), and
        # closed_trades then by close, stably: the same key keeps ties where a full rebuild puts them.
        key = (trade.closed_ms, trade.opened_ms, self._rank[symbol], self._seq)
        self._seq += 1
        insort(self._closed, (key, trade), key=lambda item: item[0])
        day = utc_day(trade.closed_ms)
        self._days[day] = self._days.get(day, ZERO) + trade.net_pnl
        self._net += trade.net_pnl
        self._wins += trade.is_win

    def trades(self) -> list[Trade]:
        """Every trade, oldest opening first (as :func:`reconstruct_trades`)."""
        out: list[Trade] = []
        for symbol in sorted(self._rank, key=self._rank.__getitem__):
            out += self._final.get(symbol, []) + self._current.get(symbol, [])
        out.sort(key=lambda t: t.opened_ms)
        return out

    def _pending_closed(self) -> list[Trade]:
        return [t for trades in self._current.values() for t in trades if t.closed_ms is not None]

    def summaries(self, n: int) -> list[TradeSummary]:
        """:func:`to_summaries` of :meth:`trades`, without walking every trade."""
        newest = [t for _, t in self._closed[-n:]] if n > 0 else []
        pending = self._pending_closed()
        if pending:
            # Ties in closing time keep the order a full rebuild gives them (opening, then symbol).
            newest = sorted([*newest, *pending], key=lambda t: (t.closed_ms, t.opened_ms, self._rank[t.symbol]))
        return to_summaries(newest, n)

    def performance(self, *, equity_start: Decimal | None, since_ms: int | None = None) -> PerformanceSummary:
        """:func:`performance` of :meth:`trades` (every trade added closed at or after ``since_ms``)."""
        oldest = self._closed[0][0][0] if self._closed else None
        if self._pending_closed() or (since_ms is not None and oldest is not None and oldest < since_ms):
            return performance(self.trades(), equity_start=equity_start, since_ms=since_ms)
        closed = len(self._closed)
        ratio: float | None = None
        if equity_start is not None and self._days:
            first, last = min(self._days), max(self._days)
            days = [first + timedelta(days=k) for k in range((last - first).days + 1)]
            returns = daily_returns([(d, self._days.get(d, ZERO)) for d in days], equity_start)
            ratio = sharpe(returns) if returns is not None else None
        return PerformanceSummary(
            trades=closed,
            win_rate=self._wins / closed if closed else 0.0,
            net_pnl_usd=float(self._net),
            sharpe=ratio,
            since_ms=since_ms,
        )


# ---- performance ---------------------------------------------------------------------------------
def closed_trades(trades: Iterable[Trade], since_ms: int | None = None) -> list[Trade]:
    """The closed trades, closed at or after ``since_ms``, in closing order."""
    kept = [t for t in trades if t.closed_ms is not None and (since_ms is None or t.closed_ms >= since_ms)]
    return sorted(kept, key=lambda t: t.closed_ms or 0)


def utc_day(ms: int) -> date:
    """The UTC calendar day of an epoch-ms time."""
    return EPOCH + timedelta(days=ms // DAY_MS)


def daily_pnl(trades: Iterable[Trade], since_ms: int | None = None) -> list[tuple[date, Decimal]]:
    """Net PnL of the closed trades per UTC day of close, from the first to the last such day.

    Days in between without a closed trade are listed with 0.
    """
    totals: dict[date, Decimal] = {}
    for trade in closed_trades(trades, since_ms):
        assert trade.closed_ms is not None
        day = utc_day(trade.closed_ms)
        totals[day] = totals.get(day, ZERO) + trade.net_pnl
    if not totals:
        return []
    first, last = min(totals), max(totals)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [(day, totals.get(day, ZERO)) for day in days]


def daily_returns(pnl_by_day: Sequence[tuple[date, Decimal]], equity_start: Decimal) -> list[Decimal] | None:
    """Each day's PnL over the equity at that day's start, equity compounding day by day.

    None when the equity is not positive at the start of a day (a return on nothing is not defined).
    """
    equity = equity_start
    returns: list[Decimal] = []
    for _day, pnl in pnl_by_day:
        if equity <= 0:
            return None
        returns.append(pnl / equity)
        equity += pnl
    return returns


def sharpe(returns: Sequence[Decimal], periods_per_year: int = 365) -> float | None:
    """Annualized Sharpe ratio: mean / sample stdev (ddof 1) × √periods; None for < 2 returns or no variance."""
    n = len(returns)
    if n < 2:
        return None
    mean = sum(returns, ZERO) / n
    variance = sum(((r - mean) ** 2 for r in returns), ZERO) / (n - 1)
    if variance == 0:
        return None
    return float(mean / variance.sqrt() * Decimal(periods_per_year).sqrt())


def performance(
    trades: Iterable[Trade], *, equity_start: Decimal | None, since_ms: int | None = None
) -> PerformanceSummary:
    """The ``{performance}`` figures over the trades closed at or after ``since_ms``.

    ``win_rate`` is wins / closed trades, 0.0 when there is none (the prompt then says "no closed
    trades"). ``sharpe`` is on daily returns from ``equity_start`` (the equity at the start of the first
    day with a closed trade); None without ``equity_start``, with fewer than 2 days, without variance,
    or when the equity is not positive at the start of some day.
    """
    closed = closed_trades(trades, since_ms)
    wins = sum(1 for t in closed if t.is_win)
    net = sum((t.net_pnl for t in closed), ZERO)
    ratio: float | None = None
    if equity_start is not None:
        returns = daily_returns(daily_pnl(closed), equity_start)
        ratio = sharpe(returns) if returns is not None else None
    return PerformanceSummary(
        trades=len(closed),
        win_rate=wins / len(closed) if closed else 0.0,
        net_pnl_usd=float(net),
        sharpe=ratio,
        since_ms=since_ms,
    )


def to_summaries(trades: Iterable[Trade], n: int) -> list[TradeSummary]:
    """The newest ``n`` closed trades, newest first, in the context's ``TradeSummary`` form (floats: prompt text)."""
    if n <= 0:
        return []
    newest = list(reversed(closed_trades(trades)))[:n]
    out = []
    for t in newest:
        assert t.closed_ms is not None and t.exit_price is not None  # a closed trade has exited
        out.append(
            TradeSummary(
                symbol=t.symbol,
                side=t.side,
                opened_ms=t.opened_ms,
                closed_ms=t.closed_ms,
                entry=float(t.entry_price),
                exit=float(t.exit_price),
                pnl_usd=float(t.net_pnl),
                reason=t.closing_reason,
            )
        )
    return out


@dataclass(frozen=True)
class TradeSummary:
    """One closed trade of the account, for the ``{recent_trades}`` feedback (times in epoch ms)."""

    symbol: str
    side: Literal["long", "short"]
    opened_ms: int
    closed_ms: int
    entry: float
    exit: float
    pnl_usd: float  # realised, after fees and funding when known
    reason: str | None = None  # e.g. "take_profit", "stop_loss", "model", "manual"


@dataclass(frozen=True)
class PerformanceSummary:
    """The account's results since ``since_ms``, for the ``{performance}`` feedback."""

    trades: int
    win_rate: float  # a fraction, 0..1
    net_pnl_usd: float
    sharpe: float | None
    since_ms: int | None


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

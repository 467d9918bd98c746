"""The paper exchange: a simulated AsterDEX account on live market data.

Two layers, so that the backtester can reuse the simulation with historical candles:

* :class:`PaperBook` is the pure core. It holds the account (wallet, one-way isolated positions, open
  orders) as JSON-serializable state, never does I/O, and moves only when told: an order is placed at a
  given mark, a candle is walked, a funding event is applied. Money is ``Decimal`` throughout, so the
  same inputs always give the same figures to the last digit.
* :class:`PaperExchange` is the adapter implementing the :class:`~llmtrader.exchange.base.Exchange`
  port. Before answering any account call it replays the candles and funding events the venue published
  since its last look, then stores the new state and the fills in one SQLite transaction.

Orders are rejected with the venue's own error codes (the rule checks come from
:func:`llmtrader.exchange.rules.violations`), so that a strategy that runs clean on paper does not meet
surprises live.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from llmtrader.core.filters import SymbolRules
from llmtrader.core.times import INTERVAL_MS
from llmtrader.core.trades import AccountHistory
from llmtrader.errors import ConfigError, StoreError, VenueError, VenueRejected, VenueUnavailable
from llmtrader.exchange.base import (
    CLIENT_ORDER_ID_PATTERN,
    ZERO,
    Balance,
    HistoryRead,
    HistoryVersion,
    MarginType,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
    Side,
    VenuePosition,
    dec_str,
)
from llmtrader.exchange.rules import violations

if TYPE_CHECKING:
    from llmtrader.exchange.asterdex_market import AsterMarketData


class PaperStore(Protocol):
    """What the paper exchanges need of the store (:class:`~llmtrader.storage.store.Store` has it): the
    account's state, compare-and-swapped against another writer, and its fills and funding rows."""

    @property
    def path(self) -> Path: ...

    def read_paper_state(self, account: str) -> str | None: ...

    def write_paper_state(
        self, account: str, text: str, now_ms: int, *, expected: str | None, events: Sequence[PaperEvent]
    ) -> bool: ...

    def upsert_paper_state(self, account: str, text: str, now_ms: int) -> None: ...

    def insert_paper_events(self, account: str, events: Sequence[PaperEvent], *, failure: str) -> None: ...

    def paper_history(self, account: str) -> AccountHistory:
        """The account's fills and funding since its last reset, as stored."""
        ...

    def paper_history_changes(
        self, account: str, since: HistoryVersion | None
    ) -> tuple[HistoryVersion, AccountHistory | None]:
        """:attr:`~llmtrader.exchange.base.HistoryRead.changes` of :meth:`paper_history`."""
        ...


FillReason = Literal["market", "limit", "stop_loss", "take_profit", "liquidation"]
ONE = Decimal(1)
BPS = Decimal(10_000)
STATE_VERSION = 1
_CLIENT_ID = re.compile(CLIENT_ORDER_ID_PATTERN)
_TIME_IN_FORCE = frozenset({"GTC", "IOC", "FOK", "GTX", "HIDDEN"})
# At one price, a protective stop acts before the liquidation engine, which acts before a resting
# limit; a take-profit comes last. Within a class, the older order first.
_PRIORITY = {OrderType.STOP_MARKET: 0, OrderType.LIMIT: 2, OrderType.TAKE_PROFIT_MARKET: 3}
_LIQUIDATION_PRIORITY = 1


def _d(value: Any) -> Decimal:
    return Decimal(str(value))


@dataclass(frozen=True)
class PaperConfig:
    """How the simulation charges: AsterDEX's taker fee, adverse slippage, maintenance margin rate."""

    taker_fee: Decimal = Decimal("0.00035")
    slippage_bps: Decimal = Decimal(2)
    maintenance_margin_rate: Decimal = Decimal("0.005")
    default_leverage: int = 20
    default_margin_type: MarginType = "ISOLATED"
    # Closed orders kept for query_order: lookups concern the last few cycles' orders, and the whole state is
    # written at every paper call, so a long history was the largest per-cycle cost of a long-running agent
    # (500 orders: about 35 ms a cycle). Every fill stays in paper_fills regardless.
    history_limit: int = 100

    @property
    def slippage(self) -> Decimal:
        return self.slippage_bps / BPS


@dataclass(frozen=True)
class Fill:
    """One execution: what a stats or audit reader needs to replay the account."""

    time_ms: int
    symbol: str
    client_order_id: str
    order_id: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    realized_pnl: Decimal
    reason: FillReason


@dataclass(frozen=True)
class FundingPayment:
    """One funding settlement: ``amount`` is what the wallet received (negative when it paid)."""

    time_ms: int
    symbol: str
    rate: Decimal
    mark_price: Decimal
    position_amt: Decimal
    amount: Decimal


PaperEvent = Fill | FundingPayment


@dataclass
class _Position:
    amount: Decimal  # signed: negative is a short (one-way mode)
    entry_price: Decimal
    updated_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"amount": str(self.amount), "entry_price": str(self.entry_price), "updated_ms": self.updated_ms}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Position:
        return cls(_d(data["amount"]), _d(data["entry_price"]), int(data["updated_ms"]))


def _triggers_falling(request: OrderRequest) -> bool:
    """True when a falling price reaches the order (buy limits, sell stops, buy take-profits)."""
    if request.type is OrderType.STOP_MARKET:
        return request.side is Side.SELL
    return request.side is Side.BUY  # LIMIT and TAKE_PROFIT_MARKET


def _opt(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _opt_d(value: Any) -> Decimal | None:
    return None if value is None else _d(value)


@dataclass
class _Order:
    order_id: int
    request: OrderRequest
    status: OrderStatus
    created_ms: int
    updated_ms: int
    reserved: Decimal = ZERO  # margin (and fee) held for a resting opening LIMIT order
    executed_qty: Decimal = ZERO
    avg_price: Decimal = ZERO
    # The last state() built, with what it was built from: an order is reported many times per cycle.
    _state: tuple[tuple[Any, ...], OrderState] | None = field(default=None, compare=False, repr=False)

    @property
    def symbol(self) -> str:
        return self.request.symbol

    @property
    def reducing(self) -> bool:
        return self.request.reduce_only or self.request.close_position

    @property
    def level(self) -> Decimal:
        """The price at which a candle reaches the order: its limit price, or its stop price."""
        price = self.request.price if self.request.type is OrderType.LIMIT else self.request.stop_price
        assert price is not None  # place() refuses orders without it
        return price

    @property
    def triggers_falling(self) -> bool:
        return _triggers_falling(self.request)

    def to_json(self) -> dict[str, Any]:
        r = self.request
        return {
            "order_id": self.order_id,
            "symbol": r.symbol,
            "side": r.side.value,
            "type": r.type.value,
            "client_order_id": r.client_order_id,
            "quantity": _opt(r.quantity),
            "price": _opt(r.price),
            "stop_price": _opt(r.stop_price),
            "reduce_only": r.reduce_only,
            "close_position": r.close_position,
            "time_in_force": r.time_in_force,
            "working_type": r.working_type,
            "status": self.status.value,
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
            "reserved": str(self.reserved),
            "executed_qty": str(self.executed_qty),
            "avg_price": str(self.avg_price),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Order:
        request = OrderRequest(
            symbol=data["symbol"],
            side=Side(data["side"]),
            type=OrderType(data["type"]),
            client_order_id=data["client_order_id"],
            quantity=_opt_d(data.get("quantity")),
            price=_opt_d(data.get("price")),
            stop_price=_opt_d(data.get("stop_price")),
            reduce_only=bool(data.get("reduce_only")),
            close_position=bool(data.get("close_position")),
            time_in_force=data.get("time_in_force"),
            working_type=data.get("working_type"),
        )
        return cls(
            order_id=int(data["order_id"]),
            request=request,
            status=OrderStatus(data["status"]),
            created_ms=int(data["created_ms"]),
            updated_ms=int(data["updated_ms"]),
            reserved=_d(data.get("reserved", "0")),
            executed_qty=_d(data.get("executed_qty", "0")),
            avg_price=_d(data.get("avg_price", "0")),
        )

    def state(self) -> OrderState:
        """The order as the venue would report it (with a venue-shaped ``raw`` body for the audit log)."""
        key = (self.status, self.executed_qty, self.avg_price, self.updated_ms)
        if self._state is not None and self._state[0] == key:
            return self._state[1]
        state = self._build_state()
        self._state = (key, state)
        return state

    def _build_state(self) -> OrderState:
        r = self.request
        raw: dict[str, Any] = {
            "orderId": self.order_id,
            "clientOrderId": r.client_order_id,
            "symbol": r.symbol,
            "status": self.status.value,
            "type": r.type.value,
            "origType": r.type.value,
            "side": r.side.value,
            "positionSide": "BOTH",
            "price": dec_str(r.price or ZERO),
            "avgPrice": dec_str(self.avg_price),
            "origQty": dec_str(r.quantity or ZERO),
            "executedQty": dec_str(self.executed_qty),
            "cumQuote": dec_str(self.executed_qty * self.avg_price),
            "timeInForce": r.time_in_force or "GTC",
            "reduceOnly": r.reduce_only,
            "closePosition": r.close_position,
            "stopPrice": dec_str(r.stop_price or ZERO),
            "workingType": r.working_type or "CONTRACT_PRICE",
            "time": self.created_ms,
            "updateTime": self.updated_ms,
            "paper": True,
        }
        return OrderState(
            symbol=r.symbol,
            client_order_id=r.client_order_id,
            order_id=str(self.order_id),
            status=self.status,
            side=r.side,
            type=r.type,
            quantity=r.quantity or ZERO,
            executed_qty=self.executed_qty,
            avg_price=self.avg_price,
            price=r.price or ZERO,
            stop_price=r.stop_price or ZERO,
            reduce_only=r.reduce_only,
            close_position=r.close_position,
            update_time_ms=self.updated_ms,
            raw=raw,
        )


def _reject(code: int, message: str, request: OrderRequest | None = None) -> VenueRejected:
    """A rejection worded like the live adapter's: what was refused, then the venue's reason."""
    what = f"{request.describe()}: " if request is not None else ""
    return VenueRejected(f"paper venue error {code}: {what}{message}", code=code, venue_message=message)


class PaperBook:
    """The simulated account: pure, deterministic, and serializable with :meth:`to_json`.

    Positions are one-way and isolated: a position's margin is its entry notional divided by its
    symbol's leverage, and a liquidation loses exactly that margin. Fills and funding payments are
    queued as events; :meth:`take_events` hands them over for storage.
    """

    def __init__(self, starting_balance: Decimal, config: PaperConfig | None = None) -> None:
        self.config = config or PaperConfig()
        self.deposit = _d(starting_balance)
        self.realized = ZERO
        self.fees = ZERO
        self.funding = ZERO
        self.next_order_id = 1
        self.settings: dict[str, dict[str, Any]] = {}
        self.positions_by_symbol: dict[str, _Position] = {}
        self.orders: list[_Order] = []
        self.history: list[_Order] = []
        self.marks: dict[str, Decimal] = {}
        self.resets: list[dict[str, Any]] = []
        # Per symbol, the position's amount just before each time it changed, since the funding settlements
        # were last replayed up to (forget_changes_before): a settlement replayed late (the venue publishes
        # it after the fact) is charged to the position held at its instant, not to the one held now.
        self.changes: dict[str, list[tuple[int, Decimal]]] = {}
        self._events: list[PaperEvent] = []

    # ---- state ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Everything needed to continue the account later (pending events are not part of it)."""
        return {
            "version": STATE_VERSION,
            "deposit": str(self.deposit),
            "realized": str(self.realized),
            "fees": str(self.fees),
            "funding": str(self.funding),
            "next_order_id": self.next_order_id,
            "settings": {s: dict(v) for s, v in sorted(self.settings.items())},
            "positions": {s: p.to_json() for s, p in sorted(self.positions_by_symbol.items())},
            "orders": [o.to_json() for o in self.orders],
            "history": [o.to_json() for o in self.history],
            "marks": {s: str(m) for s, m in sorted(self.marks.items())},
            "resets": list(self.resets),
            "changes": {s: [[t, str(a)] for t, a in c] for s, c in sorted(self.changes.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], config: PaperConfig | None = None) -> PaperBook:
        if data.get("version") != STATE_VERSION:
            raise StoreError(f"paper account state has version {data.get('version')!r}, expected {STATE_VERSION}")
        book = cls(_d(data["deposit"]), config)
        book.realized = _d(data["realized"])
        book.fees = _d(data["fees"])
        book.funding = _d(data["funding"])
        book.next_order_id = int(data["next_order_id"])
        book.settings = {s: dict(v) for s, v in data.get("settings", {}).items()}
        book.positions_by_symbol = {s: _Position.from_json(p) for s, p in data.get("positions", {}).items()}
        book.orders = [_Order.from_json(o) for o in data.get("orders", [])]
        book.history = [_Order.from_json(o) for o in data.get("history", [])]
        book.marks = {s: _d(m) for s, m in data.get("marks", {}).items()}
        book.resets = list(data.get("resets", []))
        book.changes = {s: [(int(t), _d(a)) for t, a in c] for s, c in data.get("changes", {}).items()}
        return book

    def take_events(self) -> list[PaperEvent]:
        """The fills and funding payments since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def reset(self, balance: Decimal, now_ms: int) -> None:
        """Start over with ``balance``: no positions, orders or settings; the reset itself is remembered."""
        self.resets.append({"time_ms": now_ms, "balance": str(_d(balance)), "wallet_before": str(self.wallet)})
        self.deposit = _d(balance)
        self.realized = self.fees = self.funding = ZERO
        self.settings.clear()
        self.positions_by_symbol.clear()
        self.orders.clear()
        self.history.clear()
        self.marks.clear()
        self.changes.clear()
        self._events.clear()

    # ---- settings ------------------------------------------------------------------------------
    def leverage(self, symbol: str) -> int:
        return int(self.settings.get(symbol, {}).get("leverage", self.config.default_leverage))

    def margin_type(self, symbol: str) -> MarginType:
        value = self.settings.get(symbol, {}).get("margin_type", self.config.default_margin_type)
        return "CROSSED" if value == "CROSSED" else "ISOLATED"

    def set_leverage(self, symbol: str, leverage: int) -> None:
        """1..125 as on the venue (-4028). Lowering it on an open position needs the extra margin (-4161)."""
        if isinstance(leverage, bool) or not isinstance(leverage, int) or not 1 <= leverage <= 125:
            raise _reject(-4028, f"Leverage {leverage} is not valid")
        pos = self.positions_by_symbol.get(symbol)
        if pos is not None:
            notional = abs(pos.amount) * pos.entry_price
            extra = notional / leverage - notional / self.leverage(symbol)
            if extra > 0 and extra > self.available:
                raise _reject(-4161, f"Leverage reduction is not supported with an open isolated position ({symbol})")
        self.settings.setdefault(symbol, {})["leverage"] = leverage

    def set_margin_type(self, symbol: str, margin_type: MarginType) -> None:
        """ISOLATED or CROSSED; the same value is a success (the venue's -4046), a change needs a flat symbol."""
        if margin_type not in ("ISOLATED", "CROSSED"):
            raise _reject(-1116, f"Invalid marginType {margin_type!r}")
        if margin_type == self.margin_type(symbol):
            return
        if symbol in self.positions_by_symbol:
            raise _reject(-4048, f"Margin type cannot be changed if there exists position ({symbol})")
        if any(o.symbol == symbol for o in self.orders):
            raise _reject(-4047, f"Margin type cannot be changed if there exists open orders ({symbol})")
        self.settings.setdefault(symbol, {})["margin_type"] = margin_type

    # ---- account -------------------------------------------------------------------------------
    @property
    def wallet(self) -> Decimal:
        """Starting balance + realized PnL − fees + funding."""
        return self.deposit + self.realized - self.fees + self.funding

    def position_margin(self, symbol: str) -> Decimal:
        """Isolated margin: entry notional / leverage."""
        pos = self.positions_by_symbol.get(symbol)
        if pos is None:
            return ZERO
        return abs(pos.amount) * pos.entry_price / self.leverage(symbol)

    @property
    def reserved(self) -> Decimal:
        return sum((o.reserved for o in self.orders), ZERO)

    @property
    def available(self) -> Decimal:
        """Wallet − isolated margins − margin held by resting LIMIT orders (unrealized profit is not available)."""
        margins = sum((self.position_margin(s) for s in self.positions_by_symbol), ZERO)
        return self.wallet - margins - self.reserved

    def unrealized_pnl(self, symbol: str) -> Decimal:
        pos = self.positions_by_symbol.get(symbol)
        if pos is None:
            return ZERO
        return pos.amount * (self.marks.get(symbol, pos.entry_price) - pos.entry_price)

    def balance(self) -> Balance:
        unrealized = sum((self.unrealized_pnl(s) for s in self.positions_by_symbol), ZERO)
        return Balance(wallet=self.wallet, available=self.available, unrealized_pnl=unrealized)

    def liquidation_price(self, symbol: str) -> Decimal | None:
        """Isolated: entry × (1 − 1/lev + mmr) for a long, entry × (1 + 1/lev − mmr) for a short."""
        pos = self.positions_by_symbol.get(symbol)
        if pos is None:
            return None
        lev = Decimal(self.leverage(symbol))
        mmr = self.config.maintenance_margin_rate
        if pos.amount > 0:
            return pos.entry_price * (ONE - ONE / lev + mmr)
        return pos.entry_price * (ONE + ONE / lev - mmr)

    def positions(self) -> list[VenuePosition]:
        """Open positions, by symbol, valued at the latest mark."""
        out = []
        for symbol, pos in sorted(self.positions_by_symbol.items()):
            out.append(
                VenuePosition(
                    symbol=symbol,
                    amount=pos.amount,
                    entry_price=pos.entry_price,
                    mark_price=self.marks.get(symbol, pos.entry_price),
                    unrealized_pnl=self.unrealized_pnl(symbol),
                    leverage=self.leverage(symbol),
                    liquidation_price=self.liquidation_price(symbol),
                    margin_type="cross" if self.margin_type(symbol) == "CROSSED" else "isolated",
                    isolated_margin=self.position_margin(symbol),
                )
            )
        return out

    def mark(self, symbol: str) -> Decimal | None:
        return self.marks.get(symbol)

    def set_mark(self, symbol: str, mark: Decimal) -> None:
        """Value positions at ``mark`` from now on (it triggers nothing: only candles trigger orders)."""
        self.marks[symbol] = _d(mark)

    def active_symbols(self) -> set[str]:
        """Symbols with a position or an open order: the ones whose market must be watched."""
        return set(self.positions_by_symbol) | {o.symbol for o in self.orders}

    def funding_symbols(self) -> set[str]:
        """Symbols whose funding settlements must be replayed: the active ones, and those whose position
        changed since the settlements were last replayed (one closed since may still owe one)."""
        return self.active_symbols() | set(self.changes)

    def held_at(self, symbol: str, time_ms: int) -> Decimal:
        """The signed position held at the instant ``time_ms``: a change stamped at or after it does not count.

        Known for any instant from the last :meth:`forget_changes_before` on.
        """
        for when, before in self.changes.get(symbol, ()):
            if when >= time_ms:
                return before
        pos = self.positions_by_symbol.get(symbol)
        return pos.amount if pos is not None else ZERO

    def forget_changes_before(self, symbol: str, time_ms: int) -> None:
        """Every settlement of ``symbol`` before ``time_ms`` is settled: drop the changes only they needed."""
        kept = [c for c in self.changes.get(symbol, ()) if c[0] >= time_ms]
        if kept:
            self.changes[symbol] = kept
        else:
            self.changes.pop(symbol, None)

    def _changing(self, symbol: str, now_ms: int) -> None:
        """Remember the position held just before a change at ``now_ms`` (the first change of that instant)."""
        pos = self.positions_by_symbol.get(symbol)
        seen = self.changes.setdefault(symbol, [])
        if not seen or seen[-1][0] != now_ms:
            seen.append((now_ms, pos.amount if pos is not None else ZERO))

    # ---- orders --------------------------------------------------------------------------------
    def open_orders(self, symbol: str | None = None) -> list[OrderState]:
        return [o.state() for o in self.orders if symbol is None or o.symbol == symbol]

    def query(self, symbol: str, client_order_id: str) -> OrderState | None:
        """The open or recently closed order with this client id (the newest one), or None."""
        for order in [*reversed(self.orders), *reversed(self.history)]:
            if order.symbol == symbol and order.request.client_order_id == client_order_id:
                return order.state()
        return None

    def cancel(self, symbol: str, client_order_id: str, now_ms: int) -> OrderState | None:
        """Cancel an open order (its reserved margin is released); None when it is not open."""
        for order in self.orders:
            if order.symbol == symbol and order.request.client_order_id == client_order_id:
                self._close_order(order, OrderStatus.CANCELED, now_ms)
                return order.state()
        return None

    def place(self, request: OrderRequest, mark: Decimal, rules: SymbolRules, now_ms: int) -> OrderState:
        """Accept or reject ``request`` as the venue would; a MARKET (or marketable LIMIT) order fills now.

        Nothing changes when the order is rejected: every check runs before the account is touched.
        """
        mark = _d(mark)
        self._check_params(request)
        broken = violations(request, rules, mark)
        if broken:
            raise _reject(broken[0].code, broken[0].message, request)
        if any(o.request.client_order_id == request.client_order_id for o in self.orders):
            raise _reject(-4116, f"Duplicate clientOrderId {request.client_order_id}", request)
        pos = self.positions_by_symbol.get(request.symbol)
        if request.reduce_only:
            size = abs(pos.amount) if pos is not None else ZERO
            reduces = pos is not None and (pos.amount > 0) == (request.side is Side.SELL)
            if not reduces or (request.quantity or ZERO) > size:
                raise _reject(-2022, "ReduceOnly Order is rejected.", request)
        if request.type in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET):
            assert request.stop_price is not None
            falling, stop = _triggers_falling(request), request.stop_price
            if (falling and stop >= mark) or (not falling and stop <= mark):
                raise _reject(-2021, "Order would immediately trigger.", request)

        fill_price: Decimal | None = None
        reserve = ZERO
        status = OrderStatus.NEW
        if request.type is OrderType.MARKET:
            fill_price = self._slipped(mark, request.side)
        elif request.type is OrderType.LIMIT:
            assert request.price is not None and request.quantity is not None
            marketable = request.price >= mark if request.side is Side.BUY else request.price <= mark
            if marketable and request.time_in_force == "GTX":
                raise _reject(-5022, "Post Only order would execute as taker; rejected.", request)
            if marketable:
                # A limit that crosses the book takes liquidity now, never at worse than its own price.
                slipped = self._slipped(mark, request.side)
                fill_price = min(slipped, request.price) if request.side is Side.BUY else max(slipped, request.price)
            elif request.time_in_force in ("IOC", "FOK"):
                status = OrderStatus.EXPIRED
            elif not request.reduce_only:
                notional = request.quantity * request.price
                reserve = notional / self.leverage(request.symbol) + notional * self.config.taker_fee
                if reserve > self.available:
                    raise _reject(-2019, self._margin_message(reserve), request)
        if fill_price is not None and not request.reduce_only:
            assert request.quantity is not None
            needed, room = self._margin_check(request.symbol, request.side, request.quantity, fill_price)
            if needed > room:
                raise _reject(-2019, self._margin_message(needed), request)

        order = _Order(self.next_order_id, request, status, now_ms, now_ms, reserved=reserve)
        self.next_order_id += 1
        self.marks[request.symbol] = mark
        if fill_price is not None:
            assert request.quantity is not None
            reason: FillReason = "market" if request.type is OrderType.MARKET else "limit"
            self._fill(order, request.quantity, fill_price, reason, now_ms)
        elif status is OrderStatus.EXPIRED:
            self._archive(order)
        else:
            self.orders.append(order)
        return order.state()

    @staticmethod
    def _check_params(request: OrderRequest) -> None:
        """The parameter checks the venue makes before its filters (codes -1102, -1106, -1115, -4015)."""
        if not _CLIENT_ID.match(request.client_order_id):
            raise _reject(-4015, f"Client order id is not valid: {request.client_order_id!r}", request)
        kind = request.type
        if request.close_position and kind not in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET):
            raise _reject(-1106, "Parameter 'closePosition' sent when not required.", request)
        if request.close_position and request.reduce_only:
            raise _reject(-1106, "Parameter 'reduceOnly' sent when not required.", request)
        if kind is OrderType.LIMIT:
            if request.price is None:
                raise _reject(-1102, "Mandatory parameter 'price' was not sent.", request)
            if request.time_in_force is None:
                raise _reject(-1102, "Mandatory parameter 'timeInForce' was not sent.", request)
            if request.time_in_force not in _TIME_IN_FORCE:
                raise _reject(-1115, f"Invalid timeInForce {request.time_in_force!r}.", request)
        else:
            if request.price is not None:
                raise _reject(-1106, "Parameter 'price' sent when not required.", request)
        if kind is OrderType.MARKET and request.stop_price is not None:
            raise _reject(-1106, "Parameter 'stopPrice' sent when not required.", request)
        if kind in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET) and request.stop_price is None:
            raise _reject(-1102, "Mandatory parameter 'stopPrice' was not sent.", request)

    def _margin_message(self, needed: Decimal) -> str:
        return (
            f"Margin is insufficient: needs {dec_str(needed.quantize(Decimal('0.01')))} USDT, "
            f"available {dec_str(self.available.quantize(Decimal('0.01')))} USDT"
        )

    def _slipped(self, price: Decimal, side: Side) -> Decimal:
        """``price`` moved against the taker: buys pay more, sells get less."""
        slip = self.config.slippage
        return price * (ONE + slip) if side is Side.BUY else price * (ONE - slip)

    def _margin_check(self, symbol: str, side: Side, qty: Decimal, price: Decimal) -> tuple[Decimal, Decimal]:
        """(margin the opening part needs, room for it): the closing part frees its margin and PnL first."""
        pos = self.positions_by_symbol.get(symbol)
        lev = self.leverage(symbol)
        closing = ZERO
        released = realized = ZERO
        if pos is not None and (pos.amount > 0) == (side is Side.SELL):
            closing = min(qty, abs(pos.amount))
            released = closing * pos.entry_price / lev
            realized = closing * (price - pos.entry_price) * (1 if pos.amount > 0 else -1)
        opening = qty - closing
        if opening <= 0:
            return ZERO, ZERO  # a pure reduction needs no margin, even at a loss
        fee = qty * price * self.config.taker_fee
        return opening * price / lev + fee, self.available + released + realized

    # ---- execution -----------------------------------------------------------------------------
    def _archive(self, order: _Order) -> None:
        self.history.append(order)
        if len(self.history) > self.config.history_limit:
            del self.history[: len(self.history) - self.config.history_limit]

    def _close_order(self, order: _Order, status: OrderStatus, now_ms: int) -> None:
        """Take ``order`` off the book (releasing its reserve) with a final status."""
        if order in self.orders:
            self.orders.remove(order)
        order.status = status
        order.updated_ms = now_ms
        order.reserved = ZERO
        self._archive(order)

    def _fill(self, order: _Order, qty: Decimal, price: Decimal, reason: FillReason, now_ms: int) -> None:
        """Execute ``order`` for ``qty`` at ``price`` (taker fee), and update the position."""
        if order in self.orders:
            self.orders.remove(order)
        order.reserved = ZERO
        order.status = OrderStatus.FILLED
        order.executed_qty = qty
        order.avg_price = price
        order.updated_ms = now_ms
        self._archive(order)
        realized = self._apply(order.symbol, order.request.side, qty, price, now_ms)
        fee = qty * price * self.config.taker_fee
        self.fees += fee
        self._events.append(
            Fill(
                time_ms=now_ms,
                symbol=order.symbol,
                client_order_id=order.request.client_order_id,
                order_id=str(order.order_id),
                side=order.request.side,
                qty=qty,
                price=price,
                fee=fee,
                realized_pnl=realized,
                reason=reason,
            )
        )
        self._expire_orphans(order.symbol, now_ms)

    def _apply(self, symbol: str, side: Side, qty: Decimal, price: Decimal, now_ms: int) -> Decimal:
        """Move the position by a fill; return the PnL realized by its closing part (a flip opens the rest)."""
        delta = qty if side is Side.BUY else -qty
        self._changing(symbol, now_ms)
        pos = self.positions_by_symbol.get(symbol)
        if pos is None:
            self.positions_by_symbol[symbol] = _Position(delta, price, now_ms)
            return ZERO
        if (pos.amount > 0) == (delta > 0):
            size = abs(pos.amount)
            pos.entry_price = (size * pos.entry_price + qty * price) / (size + qty)
            pos.amount += delta
            pos.updated_ms = now_ms
            return ZERO
        closing = min(qty, abs(pos.amount))
        realized = closing * (price - pos.entry_price) * (1 if pos.amount > 0 else -1)
        self.realized += realized
        remaining = pos.amount + delta
        if remaining == 0:
            del self.positions_by_symbol[symbol]
        else:
            if (remaining > 0) != (pos.amount > 0):
                pos.entry_price = price  # flipped: the rest is a new position at this fill's price
            pos.amount = remaining
            pos.updated_ms = now_ms
        return realized

    def _expire_orphans(self, symbol: str, now_ms: int) -> None:
        """Reduce-only and closePosition orders with nothing left to reduce are EXPIRED, as on the venue."""
        pos = self.positions_by_symbol.get(symbol)
        for order in [o for o in self.orders if o.symbol == symbol and o.reducing]:
            if pos is None or (pos.amount > 0) == (order.request.side is Side.BUY):
                self._close_order(order, OrderStatus.EXPIRED, now_ms)

    def _liquidate(self, symbol: str, now_ms: int) -> None:
        """Close the position at its liquidation price; its whole isolated margin is lost.

        The PnL at the liquidation price is −margin + maintenance margin; the maintenance margin goes to
        the venue's insurance fund, so the account loses exactly the margin (and pays no taker fee).
        """
        pos = self.positions_by_symbol[symbol]
        liq = self.liquidation_price(symbol)
        assert liq is not None
        margin = self.position_margin(symbol)
        side = Side.SELL if pos.amount > 0 else Side.BUY
        qty = abs(pos.amount)
        self._changing(symbol, now_ms)
        del self.positions_by_symbol[symbol]
        self.realized -= margin
        order_id = self.next_order_id
        self.next_order_id += 1
        self._events.append(
            Fill(
                time_ms=now_ms,
                symbol=symbol,
                client_order_id=f"autoclose-{now_ms}",
                order_id=str(order_id),
                side=side,
                qty=qty,
                price=liq,
                fee=ZERO,
                realized_pnl=-margin,
                reason="liquidation",
            )
        )
        self._expire_orphans(symbol, now_ms)

    # ---- time passing --------------------------------------------------------------------------
    def on_candle(
        self,
        symbol: str,
        open_time_ms: int,
        interval_ms: int,
        open: Decimal,
        high: Decimal,
        low: Decimal,
        close: Decimal,
    ) -> list[Fill]:
        """Walk one closed candle: resting orders, stops, take-profits and liquidation, in path order.

        The path inside the candle is unknown, so it is taken to be the worst for the position held at
        the open: open → adverse extreme → favourable extreme → close (a long sees the low first, a
        short the high). So when a stop and a target are both inside the candle, the stop counts, and a
        stop nearer than the liquidation price acts first. Without a position, a falling candle is
        walked open → high → low → close, a rising one open → low → high → close. A level the candle
        opens beyond (a gap) acts at the open, which is worse for a stop. Fills are stamped with the
        candle's close time (open + interval − 1): the moment inside the candle is not known.
        """
        o, h, lo, c = _d(open), _d(high), _d(low), _d(close)
        when = open_time_ms + interval_ms - 1
        start = len(self._events)
        pos = self.positions_by_symbol.get(symbol)
        falls_first = pos.amount > 0 if pos is not None else c < o
        path = [lo, h, c] if falls_first else [h, lo, c]
        cur = o
        # The gap at the open: levels already passed act at the open, adverse side first.
        for down in (falls_first, not falls_first):
            self._sweep(symbol, down, cur, o, when)
        for target in path:
            if target != cur:
                self._sweep(symbol, target < cur, cur, target, when)
                cur = target
        self.marks[symbol] = c
        return [e for e in self._events[start:] if isinstance(e, Fill)]

    def _sweep(self, symbol: str, down: bool, cur: Decimal, end: Decimal, now_ms: int) -> None:
        """Move the price from ``cur`` to ``end``, acting on every level reached, nearest first."""
        for _ in range(2 * len(self.orders) + 2):  # each step closes an order or the position
            candidates: list[tuple[tuple[Decimal, int, int], Decimal, _Order | None]] = []
            for resting in self.orders:
                if resting.symbol != symbol or resting.triggers_falling != down:
                    continue
                level = resting.level
                if (level >= end) if down else (level <= end):
                    key = (-level if down else level, _PRIORITY[resting.request.type], resting.order_id)
                    candidates.append((key, level, resting))
            pos = self.positions_by_symbol.get(symbol)
            liq = self.liquidation_price(symbol)
            reached = liq is not None and ((liq >= end) if down else (liq <= end))
            if pos is not None and liq is not None and reached and (pos.amount > 0) == down:
                candidates.append(((-liq if down else liq, _LIQUIDATION_PRIORITY, 0), liq, None))
            if not candidates:
                break
            _, level, order = min(candidates, key=lambda item: item[0])
            # A level beyond the current price was passed already (a gap): it acts at the current price.
            at = min(level, cur) if down else max(level, cur)
            if order is None:
                self._liquidate(symbol, now_ms)
            else:
                self._trigger(order, at, now_ms)
            cur = at

    def _trigger(self, order: _Order, at: Decimal, now_ms: int) -> None:
        """A candle reached ``order``: fill it at its price (LIMIT) or at ``at`` with slippage (STOP/TP)."""
        request = order.request
        symbol = order.symbol
        pos = self.positions_by_symbol.get(symbol)
        if order.reducing:
            if pos is None or (pos.amount > 0) == (request.side is Side.BUY):
                self._close_order(order, OrderStatus.EXPIRED, now_ms)  # triggered with nothing to reduce
                return
            size = abs(pos.amount)
            qty = size if request.close_position else min(request.quantity or ZERO, size)
        else:
            assert request.quantity is not None
            qty = request.quantity
        if request.type is OrderType.LIMIT:
            # A resting limit fills at its own price. It is charged the taker fee all the same: the
            # simulation has one fee rate, and erring against the account is the safer mistake.
            assert request.price is not None
            order.reserved = ZERO  # its margin now backs the position
            self._fill(order, qty, request.price, "limit", now_ms)
            return
        price = self._slipped(at, request.side)
        reason: FillReason = "stop_loss" if request.type is OrderType.STOP_MARKET else "take_profit"
        liq = self.liquidation_price(symbol)
        # A stop that can only execute beyond the liquidation price is beaten to it by the venue.
        beyond = liq is not None and pos is not None and ((price < liq) if pos.amount > 0 else (price > liq))
        if order.reducing and beyond:
            self._liquidate(symbol, now_ms)
            return
        if not order.reducing:
            needed, room = self._margin_check(symbol, request.side, qty, price)
            if needed > room:
                self._close_order(order, OrderStatus.EXPIRED, now_ms)  # the venue rejects it at trigger
                return
        self._fill(order, qty, price, reason, now_ms)

    def on_funding(self, symbol: str, time_ms: int, rate: Decimal, mark: Decimal) -> FundingPayment | None:
        """Settle funding: the notional at ``mark`` × ``rate`` of the position held at the instant ``time_ms``
        (:meth:`held_at`, as the venue charges it, even when it was closed since), paid by longs to shorts
        when positive. ``mark`` is the price at that instant."""
        mark, rate = _d(mark), _d(rate)
        held = self.held_at(symbol, time_ms)
        if held == 0:
            return None
        amount = -held * mark * rate
        self.funding += amount
        payment = FundingPayment(time_ms, symbol, rate, mark, held, amount)
        self._events.append(payment)
        return payment


# ---- the adapter ---------------------------------------------------------------------------------
RulesSource = Callable[[], Awaitable[dict[str, SymbolRules]]] | Mapping[str, SymbolRules]


@dataclass
class _Sync:
    """Catch-up cursors: the next candle open time and the next funding time to replay, per symbol."""

    candles: dict[str, int] = field(default_factory=dict)
    funding: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"candles": dict(sorted(self.candles.items())), "funding": dict(sorted(self.funding.items()))}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Sync:
        return cls(
            candles={s: int(v) for s, v in data.get("candles", {}).items()},
            funding={s: int(v) for s, v in data.get("funding", {}).items()},
        )


@dataclass
class _Loaded:
    book: PaperBook
    sync: _Sync
    stored_text: str | None  # the row as read, to detect another writer


class PaperExchange:
    """The :class:`~llmtrader.exchange.base.Exchange` port on a simulated account, fed by live market data.

    Every account call first catches up: for each symbol with a position or an open order, the candles
    closed and the funding events published since the last look are replayed through the
    :class:`PaperBook` in time order, then the state and the new fills are stored in one transaction.
    An order placed during a candle is watched from the next candle on (the part of the candle before
    it existed must not trigger it). Valuation uses the live mark price (premiumIndex).

    Calls are serialized by an ``asyncio.Lock`` (execution calls it from one task per asset at once).
    Each call re-reads the stored state and writes it back only if nobody else changed it meanwhile,
    so two processes on the same database cannot silently overwrite each other.
    """

    mode: Literal["paper", "live"] = "paper"

    def __init__(
        self,
        store: PaperStore,
        market: AsterMarketData,
        *,
        account: str = "default",
        balance: Decimal | float | str = Decimal(10_000),
        taker_fee: Decimal | float | str = Decimal("0.00035"),
        slippage_bps: Decimal | float | str = Decimal(2),
        maintenance_margin_rate: Decimal | float | str = Decimal("0.005"),
        candle_interval: str = "1m",
        now_ms: Callable[[], int] | None = None,
        rules: RulesSource | None = None,
    ) -> None:
        if candle_interval not in INTERVAL_MS:
            raise ConfigError(f"paper candle interval {candle_interval!r} is not one of {', '.join(INTERVAL_MS)}")
        self.store = store
        self.market = market
        self.account = account
        self.starting_balance = _d(balance)
        self._parsed: _Loaded | None = None  # the state as last read or stored by this object
        self.config = PaperConfig(
            taker_fee=_d(taker_fee),
            slippage_bps=_d(slippage_bps),
            maintenance_margin_rate=_d(maintenance_margin_rate),
        )
        self.candle_interval = candle_interval
        self.interval_ms = INTERVAL_MS[candle_interval]
        self._now = now_ms or (lambda: int(time.time() * 1000))
        self._rules_source = rules
        self._lock = asyncio.Lock()

    # ---- the Exchange port ---------------------------------------------------------------------
    async def rules(self) -> dict[str, SymbolRules]:
        """The venue's rules: from the given source (the services' exchangeInfo, kept in the store for its
        TTL), else read from the market data."""
        source = self._rules_source
        if source is not None:
            return dict(source) if isinstance(source, Mapping) else await source()
        return await self.market.exchange_info()

    async def mark_prices(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """Live mark prices (a market-data read: the account is not caught up for it)."""
        return await self.market.mark_prices(symbols)

    async def balance(self) -> Balance:
        async with self._session() as book:
            return book.balance()

    async def positions(self) -> list[VenuePosition]:
        async with self._session() as book:
            return book.positions()

    async def open_orders(self, symbol: str | None = None) -> list[OrderState]:
        async with self._session() as book:
            return book.open_orders(symbol)

    async def place_order(self, request: OrderRequest) -> OrderState:
        """Validate and place ``request`` at the live mark; a MARKET order is filled at once."""
        async with self._session([request.symbol]) as book:
            rules = await self._symbol_rules(request.symbol)
            mark = book.mark(request.symbol)
            if mark is None:
                raise VenueError(f"no mark price for {request.symbol}")
            return book.place(request, mark, rules, self._now())

    async def query_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        async with self._session() as book:
            return book.query(symbol, client_order_id)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        async with self._session() as book:
            return book.cancel(symbol, client_order_id, self._now())

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        async with self._session() as book:
            await self._symbol_rules(symbol)
            book.set_leverage(symbol, leverage)

    async def hedge_mode(self) -> bool:
        """A paper account is in one-way mode."""
        return False

    async def set_margin_type(self, symbol: str, margin_type: MarginType) -> None:
        """Recorded and reported; the simulation itself always margins positions in isolation."""
        async with self._session() as book:
            await self._symbol_rules(symbol)
            book.set_margin_type(symbol, margin_type)

    async def trade_history(self, *, refresh: bool, now_ms: int) -> HistoryRead:
        """The account's own fills and funding as stored (nothing to refresh: every fill is stored as it
        happens)."""
        return HistoryRead(
            read=lambda: self.store.paper_history(self.account),
            changes=lambda since: self.store.paper_history_changes(self.account, since),
        )

    async def aclose(self) -> None:
        """Nothing to release: the market-data client belongs to whoever built it."""

    # ---- paper-only ----------------------------------------------------------------------------
    async def reset(self, balance: Decimal | float | str | None = None) -> Balance:
        """Wipe the account back to ``balance`` (default: the starting balance); stored fills are kept."""
        async with self._lock:
            loaded = self._load()
            loaded.book.take_events()
            loaded.book.reset(_d(balance) if balance is not None else self.starting_balance, self._now())
            loaded.sync = _Sync()
            self._persist(loaded)
            return loaded.book.balance()

    # ---- catch-up and storage ------------------------------------------------------------------
    async def _symbol_rules(self, symbol: str) -> SymbolRules:
        rules = (await self.rules()).get(symbol)
        if rules is None:
            raise _reject(-1121, f"Invalid symbol {symbol}.")
        return rules

    @asynccontextmanager
    async def _session(self, symbols: Sequence[str] = ()) -> AsyncIterator[PaperBook]:
        """Lock, load, catch up, refresh marks; store the result afterwards (also after a rejection).

        Any other failure drops the changes: the next call starts again from what is stored.
        """
        async with self._lock:
            loaded = self._load()
            try:
                now = self._now()
                await self._catch_up(loaded, now)
                watched = sorted(set(loaded.book.positions_by_symbol) | set(symbols))
                if watched:
                    for symbol, mark in (await self.market.mark_prices(watched)).items():
                        loaded.book.set_mark(symbol, mark)
                try:
                    yield loaded.book
                except VenueRejected:
                    self._persist(loaded)  # a rejection changed nothing; the catch-up is still worth keeping
                    raise
                self._watch_new_symbols(loaded, now)
                self._persist(loaded)
            except BaseException:
                self._parsed = None  # the book in memory may hold changes that were not stored
                raise

    def _load(self) -> _Loaded:
        text = self.store.read_paper_state(self.account)
        if text is None:
            return _Loaded(PaperBook(self.starting_balance, self.config), _Sync(), None)
        if self._parsed is not None and self._parsed.stored_text == text:
            # Unchanged since this object stored or read it: parsing hundreds of orders again is the
            # largest cost of a paper call. Another writer changes the text, and then it is parsed.
            return self._parsed
        try:
            data = json.loads(text)
            book = PaperBook.from_json(data["book"], self.config)
            sync = _Sync.from_json(data.get("sync", {}))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"paper account {self.account!r}: the stored state is unreadable ({exc})") from exc
        self._parsed = _Loaded(book, sync, text)
        return self._parsed

    def _watch_new_symbols(self, loaded: _Loaded, now: int) -> None:
        """Start watching newly active symbols at the next candle; forget the ones gone quiet. The funding of
        a symbol closed since its settlements were last replayed is still watched: one may be owed."""
        active = loaded.book.active_symbols()
        owing = loaded.book.funding_symbols()
        for symbol in active:
            if symbol not in loaded.sync.candles:
                loaded.sync.candles[symbol] = (now // self.interval_ms + 1) * self.interval_ms
        for symbol in owing:
            loaded.sync.funding.setdefault(symbol, now)
        for table, keep in ((loaded.sync.candles, active), (loaded.sync.funding, owing)):
            for symbol in [s for s in table if s not in keep]:
                del table[symbol]

    async def _catch_up(self, loaded: _Loaded, now: int) -> None:
        """Replay the closed candles and the funding events since each watched symbol's cursor.

        The window ends at the open of the candle in progress, so every candle in it has closed. All
        data is fetched before anything is replayed, so a failed request leaves the book untouched.

        A settlement is charged to the position held at its instant (:meth:`PaperBook.held_at`), valued
        at the price of that instant: the close of the last candle closed by then. It is replayed once
        the candle opening at its time has closed (the catch-up after the one at hh:00:05), when the
        position may be gone (closed at hh:00:05) and the book's mark has moved on; so the candle ending at
        a settlement is asked for when the candles to walk do not hold it.
        """
        book, sync = loaded.book, loaded.sync
        end = now // self.interval_ms * self.interval_ms
        self._watch_new_symbols(loaded, now)
        symbols = sorted(sync.funding)
        if not symbols:
            return

        async def fetch(symbol: str) -> tuple[str, Any, list[tuple[int, Decimal, Decimal | None]]]:
            start = sync.candles.get(symbol)  # None: not active, only a settlement may be owed
            funding_start = sync.funding[symbol]
            candles = (
                self.market.candles_between(symbol, self.candle_interval, start, end, now_ms=now)
                if start is not None and start < end
                else None
            )
            funding = self.market.funding_between(symbol, funding_start, end) if funding_start < end else None
            got_candles = await candles if candles is not None else None
            got_funding = await funding if funding is not None else []
            # The candle ending at each settlement: among those to walk, else asked for (usually the first
            # settlement's only: it was walked by the catch-up before).
            sources = [got_candles] if got_candles is not None and len(got_candles) else []
            walked = {int(t) + self.interval_ms for c in sources for t in c.open_time_ms.tolist()}
            missing = [when for when, _ in got_funding if when not in walked]
            if missing:
                sources.append(
                    await self.market.candles_between(
                        symbol, self.candle_interval, missing[0] - self.interval_ms, missing[-1], now_ms=now
                    )
                )
            priced = [(when, rate, _price_at(sources, self.interval_ms, when)) for when, rate in got_funding]
            return symbol, got_candles, priced

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(fetch(s)) for s in symbols]
        except BaseExceptionGroup as failed:
            first = failed.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None

        # (time, kind, symbol): a candle at the time its fills are stamped (its last millisecond), a settlement
        # at its own (kind 0: it settles before the candle opening at its time).
        candle_rows: list[tuple[Decimal, Decimal, Decimal, Decimal]] = []
        settlements: list[tuple[Decimal, Decimal | None]] = []
        events: list[tuple[int, int, str, int]] = []  # the last item indexes candle_rows or settlements
        for task in tasks:
            symbol, candles, funding = task.result()
            if candles is not None and len(candles):
                for i in range(len(candles)):
                    row = (candles.open[i], candles.high[i], candles.low[i], candles.close[i])
                    stamp = int(candles.open_time_ms[i]) + self.interval_ms - 1
                    o, h, lo, c = (_d(float(x)) for x in row)
                    events.append((stamp, 1, symbol, len(candle_rows)))
                    candle_rows.append((o, h, lo, c))
                sync.candles[symbol] = int(candles.open_time_ms[-1]) + self.interval_ms
            for when, rate, price in funding:
                events.append((when, 0, symbol, len(settlements)))
                settlements.append((rate, price))
            if sync.funding[symbol] < end:
                sync.funding[symbol] = end
        events.sort(key=lambda e: (e[0], e[1], e[2]))
        for when, kind, symbol, index in events:
            if kind == 1:
                book.on_candle(symbol, when - self.interval_ms + 1, self.interval_ms, *candle_rows[index])
            else:
                rate, price = settlements[index]
                mark = price if price is not None else book.mark(symbol)
                if mark is not None:
                    book.on_funding(symbol, when, rate, mark)
        for symbol in symbols:
            book.forget_changes_before(symbol, sync.funding[symbol])

    def _persist(self, loaded: _Loaded) -> None:
        """Write the state and the new fills and funding rows in one transaction (or nothing)."""
        events = loaded.book.take_events()
        text = json.dumps(
            {"book": loaded.book.to_json(), "sync": loaded.sync.to_json()}, sort_keys=True, separators=(",", ":")
        )
        if text == loaded.stored_text and not events:
            return
        now = self._now()
        try:
            written = self.store.write_paper_state(self.account, text, now, expected=loaded.stored_text, events=events)
        except StoreError:
            self._parsed = None
            raise
        if not written:
            self._parsed = None
            raise VenueUnavailable(
                f"paper account {self.account!r} was changed by another process meanwhile; nothing was done, try again"
            ) from None
        loaded.stored_text = text
        self._parsed = loaded


def _price_at(sources: Sequence[Any], interval_ms: int, when: int) -> Decimal | None:
    """The close of the newest of ``sources``' candles closed by ``when`` (None: none of them is)."""
    best: tuple[int, Decimal] | None = None
    for candles in sources:
        closes = candles.open_time_ms + interval_ms
        i = int(closes.searchsorted(when, "right")) - 1
        if i >= 0 and (best is None or int(closes[i]) > best[0]):
            best = (int(closes[i]), _d(float(candles.close[i])))
    return best[1] if best is not None else None

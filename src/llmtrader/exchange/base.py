"""The ``Exchange`` port: what execution needs from a venue, with money as ``Decimal``.

Two adapters implement it: :mod:`llmtrader.exchange.asterdex` (the live venue over httpx) and
:mod:`llmtrader.exchange.paper` (a simulated account on live market data). Execution never knows which
one it talks to; paper trading is an adapter, not a flag.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal, Protocol, TypeVar, overload

from llmtrader.core.filters import SymbolRules
from llmtrader.core.market import Candles, MarketSnapshot
from llmtrader.core.trades import AccountHistory
from llmtrader.errors import VenueError

ZERO = Decimal(0)


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP_MARKET = "STOP_MARKET"
    TAKE_PROFIT_MARKET = "TAKE_PROFIT_MARKET"


# Binance-family statuses that mean one of ours.
_STATUS_ALIASES = {"EXPIRED_IN_MATCH": "EXPIRED", "NEW_INSURANCE": "FILLED", "NEW_ADL": "FILLED"}


class OrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


MarginType = Literal["ISOLATED", "CROSSED"]
CLIENT_ORDER_ID_PATTERN = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"


def dec_str(value: Decimal) -> str:
    """A Decimal as the venue wants it: plain notation, never an exponent, no trailing zeros."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


@dataclass(frozen=True)
class OrderRequest:
    """One order as it will be sent: prices and quantities already rounded to the venue's rules."""

    symbol: str
    side: Side
    type: OrderType
    client_order_id: str
    quantity: Decimal | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    reduce_only: bool = False
    close_position: bool = False
    time_in_force: str | None = None
    working_type: str | None = None

    def params(self) -> list[tuple[str, str]]:
        """The venue's business parameters, in a fixed order (what gets signed is what gets sent)."""
        out: list[tuple[str, str]] = [
            ("symbol", self.symbol),
            ("side", self.side.value),
            ("type", self.type.value),
            ("newClientOrderId", self.client_order_id),
        ]
        if self.quantity is not None:
            out.append(("quantity", dec_str(self.quantity)))
        if self.price is not None:
            out.append(("price", dec_str(self.price)))
        if self.time_in_force is not None:
            out.append(("timeInForce", self.time_in_force))
        if self.stop_price is not None:
            out.append(("stopPrice", dec_str(self.stop_price)))
        if self.close_position:
            out.append(("closePosition", "true"))
        if self.reduce_only:
            out.append(("reduceOnly", "true"))
        if self.working_type is not None:
            out.append(("workingType", self.working_type))
        out.append(("newOrderRespType", "RESULT"))
        return out

    def describe(self) -> str:
        """A short human line: 'BUY 0.012 BTCUSDT MARKET' and the like."""
        parts = [self.side.value]
        if self.quantity is not None:
            parts.append(dec_str(self.quantity))
        parts += [self.symbol, self.type.value]
        if self.price is not None:
            parts.append(f"@ {dec_str(self.price)}")
        if self.stop_price is not None:
            parts.append(f"stop {dec_str(self.stop_price)}")
        if self.close_position:
            parts.append("closePosition")
        if self.reduce_only:
            parts.append("reduceOnly")
        return " ".join(parts)


def _dec(value: Any, what: str = "a number") -> Decimal:
    """A venue number (string or number); missing means zero. VenueError names what is malformed."""
    if value is None or value == "":
        return ZERO
    try:
        parsed = Decimal(str(value))
    except ArithmeticError:
        raise VenueError(f"the venue sent {value!r} for {what}, which is not a number") from None
    if not parsed.is_finite():
        raise VenueError(f"the venue sent {value!r} for {what}, which is not a finite number")
    return parsed


def _required(body: dict[str, Any], key: str, what: str) -> Any:
    value = body.get(key)
    if value is None or value == "":
        raise VenueError(f"{what}: the venue's reply has no {key!r}")
    return value


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _bool(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


@dataclass(frozen=True)
class OrderState:
    """An order as the venue reports it."""

    symbol: str
    client_order_id: str
    order_id: str
    status: OrderStatus
    side: Side
    type: OrderType | str
    quantity: Decimal = ZERO
    executed_qty: Decimal = ZERO
    avg_price: Decimal = ZERO
    price: Decimal = ZERO
    stop_price: Decimal = ZERO
    reduce_only: bool = False
    close_position: bool = False
    update_time_ms: int = 0
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_open(self) -> bool:
        return self.status.is_open

    @classmethod
    def from_venue(cls, body: dict[str, Any]) -> OrderState:
        """Parse a venue order object (strings or numbers; ids and times may be numeric strings).

        The status and side are required: a reply without them proves nothing about the order.
        """
        what = f"order {body.get('clientOrderId', '?')}"
        kind = str(body.get("origType") or body.get("type") or "")
        try:
            order_type: OrderType | str = OrderType(kind)
        except ValueError:
            order_type = kind
        status_text = str(_required(body, "status", what))
        status_text = _STATUS_ALIASES.get(status_text, status_text)
        side_text = str(_required(body, "side", what))
        try:
            status, side = OrderStatus(status_text), Side(side_text)
        except ValueError:
            raise VenueError(f"{what}: unknown status {status_text!r} or side {side_text!r}") from None
        return cls(
            symbol=str(body.get("symbol", "")),
            client_order_id=str(body.get("clientOrderId", "")),
            order_id=str(body.get("orderId", "")),
            status=status,
            side=side,
            type=order_type,
            quantity=_dec(body.get("origQty"), f"{what} origQty"),
            executed_qty=_dec(body.get("executedQty"), f"{what} executedQty"),
            avg_price=_dec(body.get("avgPrice"), f"{what} avgPrice"),
            price=_dec(body.get("price"), f"{what} price"),
            stop_price=_dec(body.get("stopPrice"), f"{what} stopPrice"),
            reduce_only=_bool(body.get("reduceOnly")),
            close_position=_bool(body.get("closePosition")),
            update_time_ms=_int(body.get("updateTime") or body.get("time")),
            raw=dict(body),
        )


@dataclass(frozen=True)
class VenuePosition:
    """One open position as the venue reports it (one-way mode: ``amount`` < 0 is a short)."""

    symbol: str
    amount: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    leverage: int
    liquidation_price: Decimal | None = None
    margin_type: str = "isolated"
    isolated_margin: Decimal = ZERO

    @property
    def side(self) -> Literal["long", "short"]:
        return "long" if self.amount > 0 else "short"

    @property
    def size(self) -> Decimal:
        return abs(self.amount)

    @classmethod
    def from_venue(cls, row: dict[str, Any]) -> VenuePosition:
        """Parse a positionRisk row. The amount and the leverage are required: guessing either
        would hide a position or mis-size every order on it."""
        symbol = str(_required(row, "symbol", "positionRisk row"))
        what = f"positionRisk {symbol}"
        amount = _dec(_required(row, "positionAmt", what), f"{what} positionAmt")
        leverage = _dec(_required(row, "leverage", what), f"{what} leverage")
        if leverage < 1 or leverage != leverage.to_integral_value():
            raise VenueError(f"{what}: leverage {row.get('leverage')!r} is not a whole number >= 1")
        liq = _dec(row.get("liquidationPrice"), f"{what} liquidationPrice")
        return cls(
            symbol=symbol,
            amount=amount,
            entry_price=_dec(row.get("entryPrice"), f"{what} entryPrice"),
            mark_price=_dec(row.get("markPrice"), f"{what} markPrice"),
            unrealized_pnl=_dec(row.get("unRealizedProfit", row.get("unrealizedProfit")), f"{what} unRealizedProfit"),
            leverage=int(leverage),
            liquidation_price=liq if liq > 0 else None,
            margin_type=str(row.get("marginType", "isolated")).lower(),
            isolated_margin=_dec(row.get("isolatedMargin"), f"{what} isolatedMargin"),
        )


@dataclass(frozen=True)
class Balance:
    """The account's USDT balance: wallet (realized), available for new margin, unrealized PnL."""

    wallet: Decimal
    available: Decimal
    unrealized_pnl: Decimal = ZERO

    @property
    def equity(self) -> Decimal:
        return self.wallet + self.unrealized_pnl


def _nothing_recorded() -> AccountHistory:
    return AccountHistory([], [], None, None)


HistoryVersion = tuple[int, ...]


def _changes_unknown(since: HistoryVersion | None) -> tuple[HistoryVersion | None, AccountHistory | None]:
    return None, None


@dataclass(frozen=True)
class HistoryRead:
    """The account's trade history as an exchange answers it (:meth:`Exchange.trade_history`).

    ``history`` is the account's fills and funding as recorded (the paper account's own, or the live venue's
    as synced), read when asked: a cycle asks for the history before its guards, and most strategies never
    show it. ``notes`` say what refreshing it said; ``problem`` why it could not be refreshed up to now (None:
    refreshed, or nothing to refresh: a paper account records its own). The cycle then holds openings rather
    than assume that nothing happened.

    ``changes(since)`` tells a reader that keeps the trades between cycles what to read again: the history's
    version now (None: unknown, read it whole each time), and the rows recorded after version ``since`` up to
    it (None: they cannot be read alone; read the whole ``history``).
    """

    problem: str | None = None
    notes: tuple[str, ...] = ()
    read: Callable[[], AccountHistory] = field(default=_nothing_recorded, compare=False, repr=False)
    changes: Callable[[HistoryVersion | None], tuple[HistoryVersion | None, AccountHistory | None]] = field(
        default=_changes_unknown, compare=False, repr=False
    )

    @property
    def history(self) -> AccountHistory:
        """The fills and funding as stored now (each access reads them)."""
        return self.read()


class HistorySource(Protocol):
    """What a sync of the venue's history reads from it (:class:`~llmtrader.exchange.asterdex.AsterDexExchange`
    has it)."""

    async def user_trades(
        self,
        symbol: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        from_id: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]: ...

    async def income(
        self, income_type: str, *, start_ms: int, end_ms: int, limit: int = 1000, symbol: str | None = None
    ) -> list[dict[str, Any]]: ...

    async def order_by_id(self, symbol: str, order_id: str) -> OrderState | None: ...


class SyncOutcome(Protocol):
    """What a sync of the venue's history said, and whether its request budget ran out before now."""

    @property
    def notes(self) -> Sequence[str]: ...

    @property
    def budget_spent(self) -> bool: ...


class HistoryStore(Protocol):
    """Where the live adapter keeps the venue's trade history (:mod:`llmtrader.storage.venue_history` has it):
    synced from the venue, then read back."""

    async def sync_venue(
        self, source: HistorySource, account: str, symbols: Sequence[str], now_ms: int, *, max_requests: int
    ) -> SyncOutcome:
        """Copy what is new at the venue into the store; at most ``max_requests`` requests."""
        ...

    def venue_history(self, account: str) -> AccountHistory:
        """The venue's fills and funding of ``account`` as synced so far."""
        ...

    def venue_history_changes(
        self, account: str, since: HistoryVersion | None
    ) -> tuple[HistoryVersion, AccountHistory | None]:
        """:attr:`HistoryRead.changes` of :meth:`venue_history`."""
        ...


class Exchange(Protocol):
    """A futures venue (or its paper twin). Every method may raise a :class:`~llmtrader.errors.VenueError`.

    ``place_order`` never blindly re-sends: when the outcome of a request is unknown it looks the order
    up by its client order id, and only a confirmed absence allows another attempt; if the outcome stays
    unknown it raises :class:`~llmtrader.errors.OrderOutcomeUnknown`.
    """

    mode: Literal["paper", "live"]

    async def rules(self) -> dict[str, SymbolRules]:
        """Every symbol's trading rules (exchangeInfo)."""
        ...

    async def mark_prices(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """The current mark price of each symbol."""
        ...

    async def balance(self) -> Balance: ...

    async def positions(self) -> list[VenuePosition]:
        """Open positions only (zero-size rows are dropped)."""
        ...

    async def open_orders(self, symbol: str | None = None) -> list[OrderState]: ...

    async def place_order(self, request: OrderRequest) -> OrderState: ...

    async def query_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        """The order, or None when the venue confirms it has no such order."""
        ...

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        """Cancel one order; None when the venue has no such open order (already filled or gone)."""
        ...

    async def set_leverage(self, symbol: str, leverage: int) -> None: ...

    async def hedge_mode(self) -> bool:
        """True when the account is in hedge (dual-side) position mode, where llmtrader cannot trade it."""
        ...

    async def set_margin_type(self, symbol: str, margin_type: MarginType) -> None:
        """Set ISOLATED or CROSSED; 'already set' counts as success."""
        ...

    async def trade_history(self, *, refresh: bool, now_ms: int) -> HistoryRead:
        """The account's fills and funding as recorded: the paper account's own records, or the live venue's
        history, synced up to ``now_ms`` first when ``refresh`` (bounded: a failure is the read's ``problem``,
        never an exception, and what is stored is still read)."""
        ...

    async def aclose(self) -> None: ...


_A = TypeVar("_A")
_B = TypeVar("_B")
_C = TypeVar("_C")
_D = TypeVar("_D")


@overload
async def together(exchange: object, a: Awaitable[_A], b: Awaitable[_B], /) -> tuple[_A, _B]: ...
@overload
async def together(exchange: object, a: Awaitable[_A], b: Awaitable[_B], c: Awaitable[_C], /) -> tuple[_A, _B, _C]: ...
@overload
async def together(
    exchange: object, a: Awaitable[_A], b: Awaitable[_B], c: Awaitable[_C], d: Awaitable[_D], /
) -> tuple[_A, _B, _C, _D]: ...
@overload
async def together(exchange: object, /, *aws: Awaitable[Any]) -> tuple[Any, ...]: ...
async def together(exchange: object, /, *aws: Awaitable[Any]) -> tuple[Any, ...]:
    """``asyncio.gather(*aws)`` for requests to ``exchange``: concurrent, so that they cost one round trip.

    An exchange that says ``in_memory = True`` (a backtest's) answers without waiting: its requests are
    awaited one after another in the given order, which gives the same results without a task per request.
    """
    if getattr(exchange, "in_memory", False):
        results = []
        for i, a in enumerate(aws):
            try:
                results.append(await a)
            except BaseException:
                for left in aws[i + 1 :]:  # as gather would, leave no request un-awaited (no RuntimeWarning)
                    if inspect.iscoroutine(left):
                        left.close()
                raise
        return tuple(results)
    return tuple(await asyncio.gather(*aws))


class MarketData(Protocol):
    """What a decision reads from the market: the live venue (:class:`AsterMarketData`) or, in a backtest,
    history as it stood at the simulated time (:class:`llmtrader.backtest.market.HistoricalMarket`)."""

    base_url: str

    async def exchange_info(self) -> dict[str, SymbolRules]: ...

    async def snapshot(
        self,
        symbols: Sequence[str],
        timeframes: Sequence[str],
        limit: int,
        now_ms: int,
        rules: dict[str, SymbolRules] | None = None,
    ) -> MarketSnapshot: ...

    async def klines(self, symbol: str, interval: str, limit: int, now_ms: int) -> Candles: ...

    async def aclose(self) -> None: ...

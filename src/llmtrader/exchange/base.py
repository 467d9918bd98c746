"""The ``Exchange`` port: what execution needs from a venue, with money as ``Decimal``.

Two adapters implement it: :mod:`llmtrader.exchange.asterdex` (the live venue over httpx) and
:mod:`llmtrader.exchange.paper` (a simulated account on live market data). Execution never knows which
one it talks to; paper trading is an adapter, not a flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal, Protocol

from llmtrader.exchange.filters import SymbolRules

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


def _dec(value: Any) -> Decimal:
    if value is None or value == "":
        return ZERO
    return Decimal(str(value))


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
        """Parse a venue order object (strings or numbers; ids and times may be numeric strings)."""
        kind = str(body.get("origType") or body.get("type") or "")
        try:
            order_type: OrderType | str = OrderType(kind)
        except ValueError:
            order_type = kind
        return cls(
            symbol=str(body.get("symbol", "")),
            client_order_id=str(body.get("clientOrderId", "")),
            order_id=str(body.get("orderId", "")),
            status=OrderStatus(str(body.get("status", "NEW"))),
            side=Side(str(body.get("side", "BUY"))),
            type=order_type,
            quantity=_dec(body.get("origQty")),
            executed_qty=_dec(body.get("executedQty")),
            avg_price=_dec(body.get("avgPrice")),
            price=_dec(body.get("price")),
            stop_price=_dec(body.get("stopPrice")),
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
        liq = _dec(row.get("liquidationPrice"))
        return cls(
            symbol=str(row.get("symbol", "")),
            amount=_dec(row.get("positionAmt")),
            entry_price=_dec(row.get("entryPrice")),
            mark_price=_dec(row.get("markPrice")),
            unrealized_pnl=_dec(row.get("unRealizedProfit", row.get("unrealizedProfit"))),
            leverage=_int(row.get("leverage")) or 1,
            liquidation_price=liq if liq > 0 else None,
            margin_type=str(row.get("marginType", "isolated")).lower(),
            isolated_margin=_dec(row.get("isolatedMargin")),
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

    async def set_margin_type(self, symbol: str, margin_type: MarginType) -> None:
        """Set ISOLATED or CROSSED; 'already set' counts as success."""
        ...

    async def aclose(self) -> None: ...

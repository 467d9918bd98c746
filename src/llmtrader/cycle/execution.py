"""Accepted asset decisions become orders: closes before opens, every leg recorded, never a naked position.

For each executable asset decision a short plan of legs runs in order (assets run concurrently):

- ``buy``/``sell``: margin type and leverage, the entry (market, or limit at ``entry_price``), then the
  stop-loss (STOP_MARKET, closePosition, mark-price trigger) and the take-profit (TAKE_PROFIT_MARKET,
  closePosition). If the stop-loss is not acknowledged after bounded retries, the position is closed
  reduce-only at once and the event is recorded as an emergency.
- ``close_position``: close reduce-only, then cancel the asset's protective orders. (Closing first means
  a failed close leaves the stop in place.)
- ``adjust_orders``: place the new stop or target first, then cancel the old one, so the position is
  never without a stop in between.
- ``adjust_position``: reduce (reduce-only) or add to the position; after an addition the stop and the
  target are placed anew (at the decision's levels, else at the old ones) to cover the whole new size.

Protection is replaced, never stacked (see :meth:`_Run.protect`): the new stop or target first, then the
old ones cancelled, so a position is never without a stop in between and at rest carries one pair. Only
orders llmtrader placed (client ids starting ``lt_``) are ever cancelled; the owner's own orders stay.

Closes and reductions run before opens, to free margin. Every request is written to the store before it
is sent and updated with the venue's answer, so a crash mid-request leaves a client order id to look up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from llmtrader.core.decision import Action, AssetDecision
from llmtrader.core.filters import SymbolRules
from llmtrader.core.risk import AssetValidation
from llmtrader.errors import OrderOutcomeUnknown, StoreError, VenueError, VenueRejected
from llmtrader.exchange.base import (
    CLIENT_ORDER_ID_PATTERN,
    ZERO,
    Exchange,
    MarginType,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
    Side,
    VenuePosition,
    dec_str,
    together,
)
from llmtrader.exchange.rules import fit_order

WOULD_TRIGGER = -2021
CLOSE_POSITION_EXISTS = -4130  # Binance: a closePosition order already exists on this side
MARGIN_TYPE_LOCKED_BY_POSITION = -4048
T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
_CID_RE = re.compile(CLIENT_ORDER_ID_PATTERN)
_DEAD = (OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED)


# Every client order id llmtrader sends starts so; an order without it is the owner's, never cancelled.
CLIENT_ID_PREFIX = "lt_"


def ours(order: OrderState) -> bool:
    """Whether llmtrader placed ``order`` (its client id carries llmtrader's prefix)."""
    return order.client_order_id.startswith(CLIENT_ID_PREFIX)


def covers(order: OrderState, position: VenuePosition) -> bool:
    """Whether ``order`` closes all of ``position`` when it triggers: on the closing side, closePosition or
    reduce-only for at least the position's size."""
    closing = Side.SELL if position.amount > 0 else Side.BUY
    if order.symbol != position.symbol or order.side is not closing or order.stop_price <= 0:
        return False
    return order.close_position or (order.reduce_only and order.quantity >= position.size)


def client_order_id(decision_id: str, symbol: str, leg: str) -> str:
    """The deterministic client order id of one leg: same decision, symbol and leg, same id.

    Fits the venue's pattern and its 36-character limit; long symbols are shortened with a hash.
    """
    tag = symbol if len(symbol) <= 12 else symbol[:6] + hashlib.sha1(symbol.encode()).hexdigest()[:6]
    cid = f"{CLIENT_ID_PREFIX}{decision_id}_{tag}_{leg}"
    if len(cid) > 36 or not _CID_RE.match(cid):
        raise ValueError(f"client order id {cid!r} does not fit the venue's pattern")
    return cid


class Recorder(Protocol):
    """Where execution writes as it goes (the store, bound to one account)."""

    def order_sending(self, *, decision_id: str, symbol: str, leg: str, request: OrderRequest) -> int: ...

    def order_result(
        self,
        row_id: int,
        *,
        status: str,
        state: OrderState | None = None,
        code: int | None = None,
        message: str | None = None,
    ) -> None: ...

    def event(self, *, decision_id: str, symbol: str | None, kind: str, message: str) -> None: ...


@dataclass(frozen=True)
class ExecutionSettings:
    margin_type: MarginType = "ISOLATED"
    protect_attempts: int = 3
    protect_backoff_s: float = 0.5
    taker_fee: Decimal = Decimal("0.00035")


@dataclass
class Leg:
    """One order (or setting) of a plan, and what became of it."""

    name: str
    description: str
    status: str
    client_order_id: str | None = None
    code: int | None = None
    message: str | None = None
    state: OrderState | None = None


@dataclass
class AssetExecution:
    symbol: str
    action: str
    outcome: str = "pending"
    legs: list[Leg] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    emergency: bool = False
    # The position may be open without a stop: no stop was acknowledged and the emergency close failed too.
    unprotected: bool = False


@dataclass
class ExecutionReport:
    assets: list[AssetExecution]

    @property
    def unprotected(self) -> list[str]:
        """The symbols whose position may be open without a stop-loss."""
        return [a.symbol for a in self.assets if a.unprotected]

    @property
    def summary(self) -> str:
        """One word for the decision: nothing, executed, partial, failed, unfilled, or emergency."""
        done = [a for a in self.assets if a.outcome != "nothing"]
        if any(a.emergency for a in done):
            return "emergency"
        if not done:
            return "nothing"
        if all(a.outcome == "unfilled" for a in done):
            return "unfilled"
        if all(a.outcome == "executed" for a in done):
            return "executed"
        if any(a.outcome in ("executed", "partial") for a in done):
            return "partial"
        return "failed"


class _Run:
    """The shared state of one execution: the exchange, what is known, and where to record."""

    def __init__(
        self,
        exchange: Exchange,
        recorder: Recorder,
        decision_id: str,
        rules: Mapping[str, SymbolRules],
        marks: Mapping[str, Decimal],
        settings: ExecutionSettings,
        sleep: Sleep | None,
    ) -> None:
        self.exchange = exchange
        self.recorder = recorder
        self.decision_id = decision_id
        self.rules = rules
        self.marks = marks
        self.decided_marks = marks  # the marks the decision was validated at (``marks`` becomes the fresh ones)
        self.settings = settings
        self.sleep: Sleep = sleep or asyncio.sleep
        self.store_errors: list[str] = []
        self.open_orders: dict[str, list[OrderState]] = {}
        self.positions: dict[str, VenuePosition] = {}  # as read before the first order

    def note(self, ex: AssetExecution, kind: str, message: str) -> None:
        ex.notes.append(message if kind in ("note", "amendment") else f"{kind}: {message}")
        self._record(self.recorder.event, decision_id=self.decision_id, symbol=ex.symbol, kind=kind, message=message)

    def _record(self, fn: Callable[..., T], **kwargs: Any) -> T | None:
        """Write to the store; a failure is kept (and raised once execution is over) instead of
        interrupting the orders that protect a position."""
        try:
            return fn(**kwargs)
        except StoreError as exc:
            self.store_errors.append(str(exc))
            return None

    async def send(self, ex: AssetExecution, leg: str, request: OrderRequest) -> Leg:
        """Send one order, recorded before and after. Never raises: every outcome is a leg status.

        An opening is not sent when it cannot be recorded first; protective and reduce-only orders are
        sent all the same (protection before audit), and the store error is raised at the end.
        """
        result = Leg(leg, request.describe(), "sending", request.client_order_id)
        ex.legs.append(result)  # appended before sending: legs list in the order they were started
        critical = request.close_position or request.reduce_only
        try:
            row: int | None = self.recorder.order_sending(
                decision_id=self.decision_id, symbol=ex.symbol, leg=leg, request=request
            )
        except StoreError as exc:
            self.store_errors.append(str(exc))
            row = None
            if not critical:
                result.status, result.message = "not_sent", f"cannot record the order before sending it: {exc}"
                return result
        try:
            state = await self.exchange.place_order(request)
        except OrderOutcomeUnknown as exc:
            result.status, result.message = "unknown", str(exc)
        except VenueRejected as exc:
            result.status, result.code, result.message = "rejected", exc.code, exc.venue_message or str(exc)
        except VenueError as exc:
            result.status, result.message = "failed", str(exc)
        except Exception as exc:  # a surprise after the request left: its outcome is unknown
            result.status, result.message = "unknown", f"unexpected {type(exc).__name__}: {exc}"
        else:
            result.state = state
            result.status = state.status.value.lower()
            if state.status is OrderStatus.NEW:
                result.status = "acknowledged"
        if row is not None:
            self._record(
                self.recorder.order_result,
                row_id=row,
                status=result.status,
                state=result.state,
                code=result.code,
                message=result.message,
            )
        return result

    def not_sent(self, ex: AssetExecution, leg: str, request: OrderRequest, reason: str) -> Leg:
        row = self._record(
            self.recorder.order_sending, decision_id=self.decision_id, symbol=ex.symbol, leg=leg, request=request
        )
        if row is not None:
            self._record(self.recorder.order_result, row_id=row, status="not_sent", message=reason)
        result = Leg(leg, request.describe(), "not_sent", request.client_order_id, message=reason)
        ex.legs.append(result)
        self.note(ex, "rejection", f"{leg} not sent: {reason}")
        return result

    async def setting(self, ex: AssetExecution, name: str, description: str, call: Awaitable[None]) -> Leg:
        """A leverage or margin-type change: a failure is recorded and stops the opening."""
        result = Leg(name, description, "done")
        ex.legs.append(result)
        try:
            await call
        except VenueRejected as exc:
            result.status, result.code, result.message = "rejected", exc.code, exc.venue_message or str(exc)
        except VenueError as exc:
            result.status, result.message = "failed", str(exc)
        if result.status != "done":
            self.note(ex, "rejection", f"{description}: {result.message}")
        return result

    def cid(self, symbol: str, leg: str) -> str:
        return client_order_id(self.decision_id, symbol, leg)

    def prepare(
        self,
        ex: AssetExecution,
        leg: str,
        request: OrderRequest,
        *,
        available: Decimal | None = None,
        leverage: int = 1,
    ) -> OrderRequest | None:
        """Fit an order to the venue's rules; record amendments, or why it cannot be sent."""
        rules = self.rules.get(request.symbol)
        if rules is None:
            self.not_sent(ex, leg, request, f"no exchangeInfo rules for {request.symbol}")
            return None
        fitted = fit_order(request, rules, self.marks[request.symbol], available=available, leverage=leverage)
        for amendment in fitted.amendments:
            self.note(ex, "amendment", f"{leg}: {amendment}")
        if fitted.request is None:
            self.not_sent(ex, leg, request, fitted.rejection or "breaks the venue's rules")
            return None
        return fitted.request

    # ---- protective orders ------------------------------------------------------------------
    def _protective(
        self, ex: AssetExecution, leg: str, side: Side, kind: OrderType, level: float, size: Decimal | None
    ) -> OrderRequest:
        """A stop or target closing the whole position (closePosition), or ``size`` reduce-only when
        the venue refuses a second closePosition order on the same side."""
        return OrderRequest(
            symbol=ex.symbol,
            side=side.opposite,
            type=kind,
            client_order_id=self.cid(ex.symbol, leg),
            stop_price=Decimal(str(level)),
            close_position=size is None,
            quantity=size,
            reduce_only=size is not None,
            working_type="MARK_PRICE",
        )

    async def current_position(self, ex: AssetExecution) -> VenuePosition | None:
        """The symbol's position as the venue reports it now (None: flat). Raises VenueError."""
        return next((p for p in await self.exchange.positions() if p.symbol == ex.symbol), None)

    async def _place_protective(
        self, ex: AssetExecution, leg: str, side: Side, kind: OrderType, level: float, *, resizable: bool = True
    ) -> Leg:
        """A closePosition stop or target; where the venue keeps one closePosition order per side and type
        (-4130) and one is there, a reduce-only order for the whole position as it is now instead.

        Why this order of operations: the old order is cancelled only once its replacement is acknowledged
        (see :meth:`protect`), so the position is never without a stop in between; cancelling the old
        closePosition order first would leave it naked for a round trip, and a refused replacement would
        then leave it naked for good. The reduce-only replacement is sized from a fresh read of the
        position, so it covers what was just added; the next replacement, finding no closePosition order
        any more, is a closePosition order again.

        Not ``resizable`` (an addition still resting as a limit order): no reduce-only replacement, as it
        would not cover the addition once that fills; the old closePosition order, which does, stays.
        """
        fitted = self.prepare(ex, leg, self._protective(ex, leg, side, kind, level, None))
        if fitted is None:
            return ex.legs[-1]
        result = await self.send(ex, leg, fitted)
        if result.status != "rejected" or result.code != CLOSE_POSITION_EXISTS or not resizable:
            return result
        try:
            position = await self.current_position(ex)
        except VenueError as exc:
            self.note(ex, "error", f"cannot read the position to size a reduce-only {leg}: {exc}")
            return result
        if position is None or position.side != ("long" if side is Side.BUY else "short"):
            return result  # nothing open on this side (yet): nothing a reduce-only order could close
        leg = f"{leg}q"
        fitted = self.prepare(ex, leg, self._protective(ex, leg, side, kind, level, position.size))
        if fitted is None:
            return ex.legs[-1]
        return await self.send(ex, leg, fitted)

    async def protect(
        self,
        ex: AssetExecution,
        side: Side,
        sl: float | None,
        tp: float | None,
        *,
        leg_suffix: str = "",
        resizable: bool = True,
    ) -> tuple[Leg | None, Leg | None]:
        """Place the stop-loss (with bounded retries) and the take-profit, concurrently. Never raises.

        Each one acknowledged replaces llmtrader's earlier orders of its kind on the symbol, which are
        cancelled then: at rest a position carries one stop and one target (see :meth:`_place_protective`).
        """

        async def stop() -> Leg | None:
            if sl is None:
                return None
            last: Leg | None = None
            for attempt in range(1, self.settings.protect_attempts + 1):
                leg = f"sl{leg_suffix}" + ("" if attempt == 1 else str(attempt))
                last = await self._place_protective(ex, leg, side, OrderType.STOP_MARKET, sl, resizable=resizable)
                if last.status in ("acknowledged", "filled"):
                    await self.retire(ex, side, OrderType.STOP_MARKET, keep=last.client_order_id)
                    return last
                if last.status == "not_sent":
                    return last
                if last.status == "rejected" and last.code in (WOULD_TRIGGER, CLOSE_POSITION_EXISTS):
                    return last  # beyond the stop already, or a closePosition order kept: retrying cannot help
                if attempt < self.settings.protect_attempts:
                    await self.sleep(self.settings.protect_backoff_s * attempt)
            return last

        async def target() -> Leg | None:
            if tp is None:
                return None
            leg = await self._place_protective(
                ex, f"tp{leg_suffix}", side, OrderType.TAKE_PROFIT_MARKET, tp, resizable=resizable
            )
            if leg.status in ("acknowledged", "filled"):
                await self.retire(ex, side, OrderType.TAKE_PROFIT_MARKET, keep=leg.client_order_id)
            return leg

        found = await asyncio.gather(stop(), target(), return_exceptions=True)
        legs: list[Leg | None] = []
        for name, item in zip(("stop-loss", "take-profit"), found, strict=True):
            if isinstance(item, BaseException):
                legs.append(Leg(name, name, "failed", message=f"unexpected {type(item).__name__}: {item}"))
            else:
                legs.append(item)
        return legs[0], legs[1]

    async def retire(self, ex: AssetExecution, side: Side, kind: OrderType, *, keep: str | None) -> None:
        """Cancel llmtrader's other ``kind`` orders closing the ``side`` position: ``keep`` replaced them.
        (Open orders were read with the account: without one to replace there, no request is made.)"""

        def replaced(order: OrderState) -> bool:
            return ours(order) and order.type == kind and order.side is side.opposite and order.client_order_id != keep

        if not any(replaced(o) for o in self.open_orders.get(ex.symbol, [])):
            return
        try:
            orders = await self.exchange.open_orders(ex.symbol)
        except VenueError as exc:
            self.note(ex, "error", f"cannot list open orders to cancel the replaced {kind}: {exc}")
            return
        for order in orders:
            if replaced(order):
                await self.cancel_order(ex, order.client_order_id, f"replaced {order.type} {order.client_order_id}")

    async def has_stop(self, ex: AssetExecution, position_side: Side) -> bool | None:
        """Whether the venue holds a stop-loss order protecting the position (None: cannot tell)."""
        try:
            orders = await self.exchange.open_orders(ex.symbol)
        except VenueError as exc:
            self.note(ex, "error", f"cannot list open orders: {exc}")
            return None
        return any(
            o.type == OrderType.STOP_MARKET and o.side is position_side.opposite and (o.close_position or o.reduce_only)
            for o in orders
        )

    async def has_cover(self, ex: AssetExecution) -> bool | None:
        """Whether a stop-loss at the venue closes the whole position as it is now (True when flat; None:
        cannot tell). A reduce-only stop smaller than the position does not."""
        try:
            position, orders = await together(
                self.exchange, self.current_position(ex), self.exchange.open_orders(ex.symbol)
            )
        except VenueError as exc:
            self.note(ex, "error", f"cannot read the position and its orders: {exc}")
            return None
        if position is None:
            return True
        return any(o.type == OrderType.STOP_MARKET and covers(o, position) for o in orders)

    async def flatten(self, ex: AssetExecution, reason: str) -> None:
        """Emergency: the position has no acknowledged stop. Close it reduce-only at once."""
        ex.emergency = True
        ex.outcome = "emergency"
        self.note(ex, "emergency", f"{reason}; closing the position reduce-only")
        try:
            position = await self.current_position(ex)
        except VenueError as exc:
            ex.unprotected = True
            self.note(ex, "emergency", f"cannot read the position to close it ({exc}); it may be unprotected")
            return
        if position is None:
            self.note(ex, "emergency", "no position is open (the entry did not fill): nothing to close")
            await self.cancel_protective(ex)
            return
        req = OrderRequest(
            symbol=ex.symbol,
            side=Side.SELL if position.amount > 0 else Side.BUY,
            type=OrderType.MARKET,
            client_order_id=self.cid(ex.symbol, "em"),
            quantity=position.size,
            reduce_only=True,
        )
        leg = await self.send(ex, "em", req)
        if leg.status == "filled":
            self.note(ex, "emergency", f"position closed: {req.describe()}")
            await self.cancel_protective(ex)
        else:
            ex.unprotected = True
            self.note(
                ex,
                "emergency",
                f"THE POSITION IS OPEN WITHOUT A STOP: the emergency close failed ({leg.status}: {leg.message})",
            )

    async def cancel_protective(self, ex: AssetExecution, keep: Sequence[str] = (), kinds: Sequence[str] = ()) -> None:
        """Cancel llmtrader's open orders on the symbol (only those of ``kinds`` when given), except ``keep``.
        The owner's own orders (without llmtrader's client-id prefix) are left alone."""
        try:
            orders = await self.exchange.open_orders(ex.symbol)
        except VenueError as exc:
            self.note(ex, "error", f"cannot list open orders to cancel them: {exc}")
            return
        for order in orders:
            if not ours(order) or order.client_order_id in keep or (kinds and str(order.type) not in kinds):
                continue
            await self.cancel_order(ex, order.client_order_id, f"{order.type} {order.client_order_id}")

    async def cancel_resting_entries(self, ex: AssetExecution, why: str = "superseded") -> None:
        """A new opening supersedes the symbol's resting limit entries: stacked entries could fill
        together beyond the position limit that each one respected. (Open orders were read with the
        account, so this costs a request only when there is something to cancel.) Only llmtrader's.
        A close cancels them too (``why``): none may fill after it."""
        for order in _resting_entries(self, ex.symbol):
            await self.cancel_order(ex, order.client_order_id, f"resting entry {order.client_order_id} ({why})")

    async def close_flat(self, ex: AssetExecution) -> None:
        """A close where no position was open: llmtrader's resting entries of the symbol are cancelled, so that
        none fills after a close (the kill switch's, or one by hand), then the stops and targets placed for them.
        An entry that filled (even in part) before its cancel left a position: that is closed."""
        await self.cancel_resting_entries(ex, "closed")
        try:
            position = await self.current_position(ex)
        except VenueError as exc:
            ex.outcome = "failed"
            self.note(ex, "error", f"cannot read the position after cancelling the resting entries: {exc}")
            return
        if position is not None:
            await self.close(ex, position)
            return
        cancelled = sum(1 for leg in ex.legs if leg.name == "cancel")
        if cancelled < len(_resting_entries(self, ex.symbol)):
            ex.outcome = "failed"  # an entry may still rest: its stop stays with it
            return
        await self.cancel_protective(ex, kinds=(OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET))
        ex.outcome = "executed"

    # ---- plans ------------------------------------------------------------------------------
    async def configure(self, ex: AssetExecution, d: AssetDecision) -> tuple[Leg, Leg]:
        """Margin type and leverage of an opening, at once (they do not depend on each other)."""
        margin_type = self.settings.margin_type
        mt, lv = await together(
            self.exchange,
            self.setting(
                ex, "margin", f"margin type {margin_type}", self.exchange.set_margin_type(ex.symbol, margin_type)
            ),
            self.setting(ex, "leverage", f"leverage {d.leverage}x", self.exchange.set_leverage(ex.symbol, d.leverage)),
        )
        return mt, lv

    async def open(
        self, ex: AssetExecution, d: AssetDecision, available: Decimal | None, configured: Awaitable[tuple[Leg, Leg]]
    ) -> None:
        side = Side.BUY if d.action is Action.BUY else Side.SELL
        mt, lv = await configured
        if lv.status != "done":
            ex.outcome = "rejected" if lv.status == "rejected" else "failed"
            return
        if mt.status != "done":
            if mt.code != MARGIN_TYPE_LOCKED_BY_POSITION:
                ex.outcome = "rejected" if mt.status == "rejected" else "failed"
                self.note(ex, "rejection", f"not entered: margin type {self.settings.margin_type} could not be set")
                return
            self.note(ex, "note", f"margin type stays as the open position has it: {mt.message}")
        mark = self.marks[ex.symbol]
        moved = _levels_crossed(side, mark, d)
        if moved:
            ex.outcome = "rejected"
            self.note(ex, "rejection", f"not entered: the mark moved to {dec_str(mark)} while deciding; {moved}")
            return
        await self.cancel_resting_entries(ex)
        reference = Decimal(str(d.entry_price)) if d.entry_price is not None else mark
        qty = Decimal(str(d.allocation_usd)) * d.leverage / reference
        entry = OrderRequest(
            symbol=ex.symbol,
            side=side,
            type=OrderType.LIMIT if d.entry_price is not None else OrderType.MARKET,
            client_order_id=self.cid(ex.symbol, "en"),
            quantity=qty,
            price=reference if d.entry_price is not None else None,
            time_in_force="GTC" if d.entry_price is not None else None,
        )
        fitted = self.prepare(ex, "en", entry, available=available, leverage=d.leverage)
        if fitted is None:
            ex.outcome = "rejected"
            return
        entry_leg = await self.send(ex, "en", fitted)
        if entry_leg.status in ("rejected", "failed", "not_sent"):
            ex.outcome = "rejected" if entry_leg.status == "rejected" else "failed"
            self.note(ex, "rejection", f"entry {fitted.describe()}: {entry_leg.message}")
            return
        state = entry_leg.state
        if state is not None and state.status in _DEAD and state.executed_qty == 0:
            ex.outcome = "rejected"
            self.note(ex, "rejection", f"entry {fitted.describe()}: {state.status.value} with nothing filled")
            return
        try:
            await self._protect_entry(ex, d, side, fitted, entry_leg)
        except Exception as exc:  # whatever went wrong after the entry left, the position must not stay naked
            await self.flatten(ex, f"unexpected {type(exc).__name__} while protecting the entry: {exc}")

    async def _protect_entry(
        self, ex: AssetExecution, d: AssetDecision, side: Side, entry: OrderRequest, entry_leg: Leg
    ) -> None:
        unknown = entry_leg.status == "unknown"
        if unknown:
            self.note(ex, "note", "the entry's outcome is unknown: protective orders are placed anyway")
        before = self.positions.get(ex.symbol)
        # A buy on a long (a sell on a short) adds: the new stop and target replace the old ones (protect).
        adding = before is not None and before.side == ("long" if side is Side.BUY else "short")
        resting = entry.type is OrderType.LIMIT and entry_leg.status in ("acknowledged", "partially_filled")
        resting = resting or unknown  # an entry whose outcome is unknown may be resting, or land later
        sl_leg, tp_leg = await self.protect(ex, side, d.sl_price, d.tp_price, resizable=not (adding and resting))
        if sl_leg is None or sl_leg.status not in ("acknowledged", "filled"):
            why = "no stop-loss price" if sl_leg is None else f"stop-loss {sl_leg.status}: {sl_leg.message}"
            if entry.type is OrderType.LIMIT and entry_leg.status in ("acknowledged", "partially_filled", "unknown"):
                await self.cancel_order(ex, entry.client_order_id)
                if await self._nothing_filled(ex, before):
                    # The venue refused a stop for a position not open yet: nothing is exposed, so it is no
                    # emergency; the entry is cancelled rather than left to fill without its stop.
                    ex.outcome = "unfilled"
                    self.note(
                        ex,
                        "rejection",
                        f"the limit entry had not filled and its stop-loss was not placed ({why}): "
                        "the entry is cancelled, nothing was opened",
                    )
                    return
            if adding and await self.has_cover(ex):
                # The part already held keeps its stop: closing it would be worse than the missing new level.
                ex.outcome = "partial"
                self.note(
                    ex, "rejection", f"the new stop-loss was not placed ({why}); the old stop covers the position"
                )
                return
            await self.flatten(ex, f"the stop-loss was not acknowledged ({why})")
            return
        if tp_leg is not None and tp_leg.status not in ("acknowledged", "filled"):
            ex.outcome = "partial"
            self.note(ex, "rejection", f"take-profit not placed ({tp_leg.status}: {tp_leg.message}); the stop holds")
            return
        if unknown:
            ex.outcome = "partial"
            self.note(ex, "note", f"check the position: entry {entry.client_order_id} may or may not exist")
            return
        ex.outcome = "executed"

    async def _nothing_filled(self, ex: AssetExecution, before: VenuePosition | None) -> bool:
        """Whether the symbol's position is as it was before the entry (False when it cannot be read)."""
        try:
            now = await self.current_position(ex)
        except VenueError:
            return False
        return (now.amount if now is not None else ZERO) == (before.amount if before is not None else ZERO)

    async def cancel_order(self, ex: AssetExecution, cid: str, what: str | None = None) -> None:
        try:
            state = await self.exchange.cancel_order(ex.symbol, cid)
        except VenueError as exc:
            self.note(ex, "error", f"cannot cancel {what or cid}: {exc}")
            return
        status = "canceled" if state is not None else "gone"
        ex.legs.append(Leg("cancel", f"cancel {what or cid}", status, cid))
        message = f"canceled {what or cid}" if state is not None else f"{what or cid} was already filled or gone"
        self._record(
            self.recorder.event, decision_id=self.decision_id, symbol=ex.symbol, kind="cancel", message=message
        )

    async def close(self, ex: AssetExecution, position: VenuePosition, leg: str = "cl") -> None:
        req = OrderRequest(
            symbol=ex.symbol,
            side=Side.SELL if position.amount > 0 else Side.BUY,
            type=OrderType.MARKET,
            client_order_id=self.cid(ex.symbol, leg),
            quantity=position.size,
            reduce_only=True,
        )
        result = await self.send(ex, leg, req)
        if result.status != "filled":
            ex.outcome = "rejected" if result.status == "rejected" else "failed"
            self.note(ex, "rejection", f"close {req.describe()}: {result.status} {result.message or ''}".strip())
            # Whatever became of the close, no resting entry of llmtrader's may add to the position after it.
            await self.cancel_resting_entries(ex, "closing")
            return
        await self.cancel_protective(ex)
        ex.outcome = "executed"

    async def replace_orders(
        self, ex: AssetExecution, position: VenuePosition, sl: float | None, tp: float | None
    ) -> None:
        """New stop and/or target first (each cancels the old ones once acknowledged); when the new stop is
        not acknowledged and no stop covers the whole position, flatten."""
        side = Side.BUY if position.amount > 0 else Side.SELL
        # An entry resting on the position's side adds to it when it fills: a reduce-only replacement sized now
        # would not cover that part, so the closePosition order (which does) is kept where one must give way.
        resting = any(
            o.type == OrderType.LIMIT and o.side is side and not (o.reduce_only or o.close_position)
            for o in self.open_orders.get(ex.symbol, [])
        )
        sl_leg, tp_leg = await self.protect(ex, side, sl, tp, leg_suffix="n", resizable=not resting)
        failed = []
        if sl_leg is not None and sl_leg.status not in ("acknowledged", "filled"):
            if await self.has_cover(ex) is False:
                await self.flatten(
                    ex, f"the new stop-loss was not acknowledged ({sl_leg.message}) and none covers the position"
                )
                return
            failed.append(f"new stop-loss {sl_leg.status}: {sl_leg.message}; the old stop stays")
        if tp_leg is not None and tp_leg.status not in ("acknowledged", "filled"):
            failed.append(f"new take-profit {tp_leg.status}: {tp_leg.message}; the old target stays")
        for message in failed:
            self.note(ex, "rejection", message)
        attempted = sum(1 for leg in (sl_leg, tp_leg) if leg is not None)
        if not failed:
            ex.outcome = "executed"
        else:
            ex.outcome = "rejected" if len(failed) == attempted else "partial"

    async def resize(
        self, ex: AssetExecution, d: AssetDecision, position: VenuePosition, available: Decimal | None
    ) -> None:
        mark = self.marks[ex.symbol]
        target = Decimal(str(d.allocation_usd)) * position.leverage / mark
        delta = target - position.size
        side = Side.BUY if position.amount > 0 else Side.SELL
        leg = "rd" if delta < 0 else "ad"
        sl, tp = d.sl_price, d.tp_price
        if delta < 0:
            req = OrderRequest(
                symbol=ex.symbol,
                side=side.opposite,
                type=OrderType.MARKET,
                client_order_id=self.cid(ex.symbol, leg),
                quantity=min(-delta, position.size),
                reduce_only=True,
            )
            fitted = self.prepare(ex, leg, req)
        else:
            decided = self.decided_marks.get(ex.symbol, mark)
            if Decimal(str(d.allocation_usd)) * position.leverage / decided <= position.size:
                # Validated as a reduction at the decided mark (no check an addition must pass was made): the
                # mark of now must not turn it into an addition.
                ex.outcome = "rejected"
                self.note(
                    ex,
                    "rejection",
                    f"not added: the decision reduces the position at the mark {dec_str(decided)} it was checked at; "
                    f"at the mark of now, {dec_str(mark)}, it would add",
                )
                return
            if d.sl_price is None and not await self.has_stop(ex, side):
                ex.outcome = "rejected"
                self.note(ex, "rejection", "not added: the position has no stop-loss and the decision gives none")
                return
            # A reduce-only stop or target sized for the old position would leave the addition uncovered:
            # a level the decision does not give is kept from it and placed anew for the whole new size.
            for order in self.open_orders.get(ex.symbol, []):
                if order.side is side.opposite and order.reduce_only and not order.close_position:
                    if sl is None and order.type == OrderType.STOP_MARKET:
                        sl = float(order.stop_price)
                    if tp is None and order.type == OrderType.TAKE_PROFIT_MARKET:
                        tp = float(order.stop_price)
            req = OrderRequest(
                symbol=ex.symbol,
                side=side,
                type=OrderType.MARKET,
                client_order_id=self.cid(ex.symbol, leg),
                quantity=delta,
            )
            fitted = self.prepare(ex, leg, req, available=available, leverage=position.leverage)
        if fitted is None:
            ex.outcome = "rejected"
            return
        result = await self.send(ex, leg, fitted)
        if result.status not in ("filled", "acknowledged", "partially_filled", "unknown"):
            ex.outcome = "rejected" if result.status == "rejected" else "failed"
            self.note(ex, "rejection", f"{fitted.describe()}: {result.status} {result.message or ''}".strip())
            return
        if sl is not None or tp is not None:
            await self.replace_orders(ex, position, sl, tp)
            if ex.outcome != "executed":
                return
        ex.outcome = "executed" if result.status != "unknown" else "partial"


def _resting_entries(run: _Run, symbol: str) -> list[OrderState]:
    """llmtrader's limit entries resting on ``symbol``, as the open orders were read before the first order."""
    return [
        o
        for o in run.open_orders.get(symbol, [])
        if o.type == OrderType.LIMIT and not (o.reduce_only or o.close_position) and ours(o)
    ]


def _levels_crossed(side: Side, mark: Decimal, d: AssetDecision) -> str | None:
    """Why the decision's stop or target is no longer on the right side of the current mark, if so."""
    for name, value, below in (("sl_price", d.sl_price, side is Side.BUY), ("tp_price", d.tp_price, side is Side.SELL)):
        if value is None:
            continue
        level = Decimal(str(value))
        if (level >= mark) if below else (level <= mark):
            return f"{name} {dec_str(level)} is no longer {'below' if below else 'above'} it"
    return None


def _reduces(d: AssetDecision, position: VenuePosition | None, mark: Decimal) -> bool:
    """True for decisions that free margin: closes, stop/target changes, and reductions."""
    if d.action in (Action.CLOSE_POSITION, Action.ADJUST_ORDERS):
        return True
    if d.action is Action.ADJUST_POSITION and position is not None:
        return Decimal(str(d.allocation_usd)) * position.leverage / mark < position.size
    return False


async def _fresh_marks(exchange: Exchange, symbols: list[str]) -> dict[str, Decimal]:
    """The current marks, or none (the decision's marks are used) when the venue cannot give them."""
    try:
        return await exchange.mark_prices(symbols)
    except VenueError:
        return {}


async def execute(
    exchange: Exchange,
    validations: Sequence[AssetValidation],
    *,
    decision_id: str,
    recorder: Recorder,
    rules: Mapping[str, SymbolRules],
    marks: Mapping[str, Decimal],
    settings: ExecutionSettings | None = None,
    sleep: Sleep | None = None,
) -> ExecutionReport:
    """Execute every executable asset decision: closes and reductions first, then opens.

    Assets run concurrently; the legs of one asset run in order. A failure on one asset never stops
    the others; every outcome is in the report and in the store.
    """
    run = _Run(exchange, recorder, decision_id, rules, marks, settings or ExecutionSettings(), sleep)
    todo = [v.final for v in validations if v.executable and v.final is not None and v.final.action is not Action.HOLD]
    report = ExecutionReport(assets=[AssetExecution(d.symbol, d.action.value) for d in todo])
    if not todo:
        return report
    by_symbol = {ex.symbol: ex for ex in report.assets}
    # Margin type and leverage of the openings do not depend on the account: they start now, alongside
    # the account read, which saves a round trip on every opening.
    configured = {
        d.symbol: asyncio.ensure_future(run.configure(by_symbol[d.symbol], d))
        for d in todo
        if d.action in (Action.BUY, Action.SELL)
    }
    try:
        positions_list, balance, fresh, open_orders = await together(
            exchange,
            exchange.positions(),
            exchange.balance(),
            _fresh_marks(exchange, [d.symbol for d in todo]),
            exchange.open_orders(),
        )
    except BaseException:
        await asyncio.gather(*configured.values(), return_exceptions=True)  # never leave them running
        raise
    positions = {p.symbol: p for p in positions_list}
    run.positions = positions
    for order in open_orders:
        run.open_orders.setdefault(order.symbol, []).append(order)
    # A model can think for minutes: orders are sized and checked against the mark of now.
    run.marks = {**marks, **fresh}
    stale = [d.symbol for d in todo if d.symbol not in fresh]
    if stale:
        run._record(
            recorder.event,
            decision_id=decision_id,
            symbol=None,
            kind="note",
            message=f"current marks unavailable for {', '.join(stale)}: the decision's marks are used",
        )
    first = [d for d in todo if _reduces(d, positions.get(d.symbol), run.marks[d.symbol])]
    second = [d for d in todo if d not in first]

    async def one(d: AssetDecision, available: Decimal | None) -> None:
        ex = by_symbol[d.symbol]
        position = positions.get(d.symbol)
        try:
            if d.action in (Action.BUY, Action.SELL):
                await run.open(ex, d, available, configured[d.symbol])
            elif position is None and d.action is Action.CLOSE_POSITION and _resting_entries(run, d.symbol):
                await run.close_flat(ex)
            elif position is None:
                ex.outcome = "rejected"
                run.note(ex, "rejection", f"{d.action.value}: no open position on {d.symbol} at the venue")
            elif d.action is Action.CLOSE_POSITION:
                await run.close(ex, position)
            elif d.action is Action.ADJUST_ORDERS:
                await run.replace_orders(ex, position, d.sl_price, d.tp_price)
            else:
                await run.resize(ex, d, position, available)
        except Exception as exc:  # one asset's surprise must never stop the others
            ex.outcome = "failed"
            # The report still says failed; nothing may escape the gather and cancel other assets' orders.
            with contextlib.suppress(Exception):
                run.note(ex, "error", f"unexpected {type(exc).__name__}: {exc}")

    await together(exchange, *(one(d, None) for d in first))
    available: Decimal | None = balance.available
    if first and second:
        try:
            available = (await exchange.balance()).available
        except VenueError:
            available = None  # the venue checks margin itself
    # New margin is reserved in order, so concurrent opens never count the same balance twice.
    budgets: dict[str, Decimal | None] = {}
    for d in second:
        if available is None or d.action not in (Action.BUY, Action.SELL, Action.ADJUST_POSITION):
            budgets[d.symbol] = None
            continue
        budgets[d.symbol] = available
        need = Decimal(str(d.allocation_usd)) * (1 + d.leverage * run.settings.taker_fee)
        available = max(ZERO, available - need)
    await together(exchange, *(one(d, budgets.get(d.symbol)) for d in second))
    for ex in report.assets:
        if ex.outcome == "pending":
            ex.outcome = "failed"
    if run.store_errors:
        # Every order was still sent and protected; now the missing audit trail stops the run.
        raise StoreError(f"execution of {decision_id} could not be fully recorded: {run.store_errors[0]}")
    return report

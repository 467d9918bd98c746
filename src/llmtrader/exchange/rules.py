"""The venue's order rules, applied before anything is sent: pure functions over ``Decimal``.

Quantities are rounded down to the step (never more than was decided), prices to the tick, and the
result is checked against minQty, maxQty, MIN_NOTIONAL, PERCENT_PRICE and the price bounds. Each check
carries the error code the venue would answer, so the paper exchange rejects exactly as live does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Literal

from llmtrader.core.filters import SymbolRules
from llmtrader.exchange.base import ZERO, OrderRequest, OrderType, Side, dec_str

Rounding = Literal["down", "up", "nearest"]
_MODES = {"down": ROUND_FLOOR, "up": ROUND_CEILING, "nearest": ROUND_HALF_UP}


@dataclass(frozen=True)
class Violation:
    """One broken rule: the venue's error code for it and a sentence naming the numbers."""

    code: int
    message: str


def round_to(value: Decimal, step: Decimal, how: Rounding = "nearest") -> Decimal:
    """``value`` rounded to a multiple of ``step`` (a zero step leaves it unchanged)."""
    if step <= 0:
        return value
    units = (value / step).to_integral_value(rounding=_MODES[how])
    return (units * step).quantize(step) if step.as_tuple().exponent < 0 else units * step  # type: ignore[operator]


def round_price(value: Decimal, rules: SymbolRules, how: Rounding = "nearest") -> Decimal:
    """A price on the venue's grid: minPrice plus a multiple of tickSize (the venue checks the same)."""
    base = rules.min_price if rules.min_price > 0 else ZERO
    return base + round_to(value - base, rules.tick_size, how) if base else round_to(value, rules.tick_size, how)


def floor_qty(qty: Decimal, step: Decimal) -> Decimal:
    """A quantity rounded down to the step: never more than asked."""
    if step <= 0:
        return qty
    units = (qty / step).to_integral_value(rounding=ROUND_DOWN)
    return (units * step).quantize(step) if step.as_tuple().exponent < 0 else units * step  # type: ignore[operator]


def _is_multiple(value: Decimal, step: Decimal, base: Decimal = ZERO) -> bool:
    return step <= 0 or (value - base) % step == 0


def violations(req: OrderRequest, rules: SymbolRules, mark: Decimal) -> list[Violation]:
    """Every rule ``req`` breaks, as the venue would report it (empty when it would be accepted)."""
    out: list[Violation] = []
    is_market = req.type in (OrderType.MARKET, OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)
    step = rules.market_step_size if is_market and rules.market_step_size > 0 else rules.step_size
    min_qty = rules.market_min_qty if is_market and rules.market_min_qty > 0 else rules.min_qty
    max_qty = rules.market_max_qty if is_market and rules.market_max_qty > 0 else rules.max_qty
    if not rules.trading:
        out.append(Violation(-1121, f"{req.symbol} is not trading (status {rules.status})"))
    for name, price in (("price", req.price), ("stopPrice", req.stop_price)):
        if price is None:
            continue
        if price <= 0:
            out.append(Violation(-4013, f"{name} {dec_str(price)} must be positive"))
        elif not _is_multiple(price, rules.tick_size, rules.min_price):
            out.append(
                Violation(-1111, f"{name} {dec_str(price)} is not a multiple of tickSize {dec_str(rules.tick_size)}")
            )
        elif rules.min_price > 0 and price < rules.min_price:
            out.append(Violation(-4013, f"{name} {dec_str(price)} below minPrice {dec_str(rules.min_price)}"))
        elif rules.max_price > 0 and price > rules.max_price:
            out.append(Violation(-4013, f"{name} {dec_str(price)} above maxPrice {dec_str(rules.max_price)}"))
    qty = req.quantity
    if req.close_position:
        if qty is not None:
            out.append(Violation(-4137, "closePosition orders carry no quantity"))
    elif qty is None or qty <= 0:
        out.append(Violation(-4003, f"quantity {dec_str(qty) if qty is not None else '(none)'} must be positive"))
    elif not _is_multiple(qty, step):
        out.append(Violation(-1111, f"quantity {dec_str(qty)} is not a multiple of stepSize {dec_str(step)}"))
    elif min_qty > 0 and qty < min_qty:
        out.append(Violation(-4004, f"quantity {dec_str(qty)} below minQty {dec_str(min_qty)}"))
    elif max_qty > 0 and qty > max_qty:
        out.append(Violation(-4005, f"quantity {dec_str(qty)} above maxQty {dec_str(max_qty)}"))
    if qty is not None and qty > 0 and not req.reduce_only and not req.close_position and rules.min_notional > 0:
        reference = req.price if req.type is OrderType.LIMIT and req.price else mark
        notional = qty * reference
        if notional < rules.min_notional:
            out.append(
                Violation(
                    -4164,
                    f"notional {dec_str(notional.quantize(Decimal('0.0001')))} below the minimum "
                    f"{dec_str(rules.min_notional)} (quantity {dec_str(qty)} x {dec_str(reference)})",
                )
            )
    if req.type is OrderType.LIMIT and req.price is not None and mark > 0:
        if req.side is Side.BUY and rules.percent_up > 0 and req.price > mark * rules.percent_up:
            out.append(
                Violation(
                    -4016,
                    f"limit price {dec_str(req.price)} above mark {dec_str(mark)} x {dec_str(rules.percent_up)}",
                )
            )
        if req.side is Side.SELL and rules.percent_down > 0 and req.price < mark * rules.percent_down:
            out.append(
                Violation(
                    -4024,
                    f"limit price {dec_str(req.price)} below mark {dec_str(mark)} x {dec_str(rules.percent_down)}",
                )
            )
    return out


@dataclass
class Prepared:
    """An order fitted to the rules: ``request`` is None when it cannot be sent, with the reason."""

    request: OrderRequest | None
    amendments: list[str] = field(default_factory=list)
    rejection: str | None = None


def fit_order(
    req: OrderRequest,
    rules: SymbolRules,
    mark: Decimal,
    *,
    available: Decimal | None = None,
    leverage: int = 1,
) -> Prepared:
    """Round ``req`` to the venue's tick and step and check every rule; say what changed, or why not.

    Prices round to the nearest tick, except protective stops and targets, which round toward the mark
    so that rounding never makes a stop looser. Quantities round down. With ``available``, the margin
    an opening order needs (notional / leverage) must fit in it.
    """
    amendments: list[str] = []
    changes: dict[str, Decimal | None] = {}
    is_market = req.type in (OrderType.MARKET, OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)
    step = rules.market_step_size if is_market and rules.market_step_size > 0 else rules.step_size
    if req.quantity is not None:
        qty = floor_qty(req.quantity, step)
        if qty != req.quantity:
            amendments.append(f"quantity {dec_str(req.quantity)} -> {dec_str(qty)} (stepSize {dec_str(step)})")
        changes["quantity"] = qty
    if req.price is not None:
        price = round_price(req.price, rules, "nearest")
        if price != req.price:
            amendments.append(f"price {dec_str(req.price)} -> {dec_str(price)} (tickSize {dec_str(rules.tick_size)})")
        changes["price"] = price
    if req.stop_price is not None:
        how: Rounding = "up" if req.stop_price < mark else "down"
        stop = round_price(req.stop_price, rules, how)
        if stop != req.stop_price:
            amendments.append(
                f"stopPrice {dec_str(req.stop_price)} -> {dec_str(stop)} (tickSize {dec_str(rules.tick_size)})"
            )
        changes["stop_price"] = stop
    from dataclasses import replace

    fitted = replace(req, **changes)  # type: ignore[arg-type]
    broken = violations(fitted, rules, mark)
    if broken:
        return Prepared(None, amendments, "; ".join(f"{v.message} (venue code {v.code})" for v in broken))
    if available is not None and not fitted.reduce_only and not fitted.close_position and fitted.quantity:
        reference = fitted.price if fitted.type is OrderType.LIMIT and fitted.price else mark
        margin = fitted.quantity * reference / max(leverage, 1)
        if margin > available:
            return Prepared(
                None,
                amendments,
                f"needs margin {dec_str(margin.quantize(Decimal('0.01')))} USD at {leverage}x; "
                f"available {dec_str(available.quantize(Decimal('0.01')))} USD",
            )
    return Prepared(fitted, amendments)

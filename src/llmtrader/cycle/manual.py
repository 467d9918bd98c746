"""Decisions made without a model: closes (by hand, by Telegram, by the guards), stops re-armed, the
positions shown with their protection, and resuming an account stopped by its guards."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from llmtrader.core.decision import Action, AssetDecision, RiskLevel
from llmtrader.core.guards import ResumeResult, resume
from llmtrader.core.records import DecisionRecord, new_decision_id
from llmtrader.core.risk import (
    AssetValidation,
    Status,
    ValidationReport,
)
from llmtrader.core.textfmt import at_precision
from llmtrader.cycle.decide import asset_row, execute_recorded
from llmtrader.cycle.execution import ours
from llmtrader.cycle.services import DecideResult, Services
from llmtrader.cycle.snapshot import get_rules, protective_orders
from llmtrader.errors import (
    NotFoundError,
    StoreError,
    VenueError,
)
from llmtrader.exchange.base import (
    ZERO,
    OrderType,
    dec_str,
    together,
)
from llmtrader.storage.store import Store


def resume_account(store: Store, account: str, *, now_ms: int, equity: float | None = None) -> ResumeResult:
    """``llmtrader resume ACCOUNT``: :func:`~llmtrader.core.guards.resume` on the persisted state, saved with
    its event when it changed something (nothing is written when the account was not stopped)."""
    result = resume(store.load_guard_state(account), now_ms=now_ms, equity=equity)
    if result.resumed:
        store.save_guard_state(account, result.new_state, result.events, now_ms=now_ms)
    return result


ConfirmClose = Callable[[list[str]], bool]


async def close_positions(
    services: Services,
    symbols: Sequence[str] | None,
    *,
    confirm: ConfirmClose | None = None,
    by: str = "manual",
    note: str = "closed by hand with `llmtrader close`",
) -> DecideResult:
    """Close positions (all of them when ``symbols`` is None) and cancel their orders, recorded as a
    decision made without a model (model ``by``: manual, or the cycle's guards and reconcile; the reason in
    ``note``), so that every order links to an audit record."""
    exchange = services.exchange
    started = time.monotonic()
    positions, orders = await together(exchange, exchange.positions(), exchange.open_orders())
    open_symbols = [p.symbol for p in positions]
    # llmtrader's resting limit entries (never the owner's orders) are cancelled by a close too: one filling
    # after the kill switch or a close by hand would open what was just closed.
    resting = {
        o.symbol for o in orders if o.type == OrderType.LIMIT and ours(o) and not (o.reduce_only or o.close_position)
    }
    if symbols is None:
        scope = {*open_symbols, *services.settings.assets}
        targets = open_symbols + sorted(s for s in resting if s in scope and s not in open_symbols)
    else:
        missing = [s for s in symbols if s not in open_symbols and s not in resting]
        if missing:
            raise NotFoundError(
                f"no open position on {', '.join(missing)} ({exchange.mode}); open: {', '.join(open_symbols) or 'none'}"
            )
        targets = list(symbols)
    record = _record_without_model(services, targets, by=by, note=note)
    if not targets:
        record.execution = "nothing"
        return DecideResult(record=record, report=None)
    try:
        marks = await exchange.mark_prices(targets)
    except VenueError:
        # Closing must not wait for the mark feed: the positions just read carry their marks.
        marks = {p.symbol: p.mark_price for p in positions if p.symbol in targets and p.mark_price > 0}
        if len(marks) < len([s for s in targets if s in open_symbols]):
            raise
    record.marks = {s: float(m) for s, m in marks.items()}
    marks = {**{s: ZERO for s in targets}, **marks}  # a symbol with only an entry to cancel needs no mark
    rationale = "closed by hand" if by == "manual" else note
    validations = [_accepted(s, Action.CLOSE_POSITION, rationale) for s in targets]
    if confirm is not None and not confirm(targets):
        record.execution = "declined"
        validations = [replace(v, status=Status.DECLINED) for v in validations]  # answered no: not "accepted"
    return await _execute_without_model(services, record, validations, marks, started)


async def protect_positions(services: Services, stops: Mapping[str, float], *, note: str) -> DecideResult:
    """Place a stop-loss at ``stops[symbol]`` on each of those open positions, recorded as a decision made
    by ``reconcile`` (the reason in ``note``), so that every order links to an audit record.

    The orders go through execution's ``adjust_orders`` path: the new stop (STOP_MARKET, closePosition,
    mark-price trigger, bounded retries) first; if it is not acknowledged and the position has no stop, the
    position is closed reduce-only at once, an emergency. Raises VenueError when nothing could be sent.
    """
    started = time.monotonic()
    targets = list(stops)
    record = _record_without_model(services, targets, by="reconcile", note=note)
    try:
        marks = await services.exchange.mark_prices(targets)
    except VenueError:
        # The stop must not wait for the mark feed: the positions carry their marks.
        held = await services.exchange.positions()
        marks = {p.symbol: p.mark_price for p in held if p.symbol in stops and p.mark_price > 0}
        if len(marks) < len(targets):
            raise
    record.marks = {s: float(m) for s, m in marks.items()}
    validations = [_accepted(s, Action.ADJUST_ORDERS, note, sl_price=stops[s]) for s in targets]
    return await _execute_without_model(services, record, validations, marks, started)


def _record_without_model(services: Services, symbols: list[str], *, by: str, note: str) -> DecisionRecord:
    """The record of orders no model decided (a close by hand, the kill switch, reconcile). Its outcome is
    ``manual``, which statistics leave out of the model's decision quality."""
    now = services.clock.now_ms()
    return DecisionRecord(
        id=new_decision_id(now),
        created_at_ms=now,
        account=services.settings.account,
        mode=services.exchange.mode,
        dry_run=False,
        strategy="-",
        model=by,
        base_url="-",
        symbols=symbols,
        outcome="manual",
        notes=[note],
    )


def _accepted(symbol: str, action: Action, rationale: str, *, sl_price: float | None = None) -> AssetValidation:
    return AssetValidation(
        symbol=symbol,
        action=action.value,
        status=Status.ACCEPTED,
        reasons=[],
        proposed=None,
        final=AssetDecision(
            symbol=symbol,
            action=action,
            rationale=rationale,
            allocation_usd=0,
            leverage=1,
            sl_price=sl_price,
            confidence=1,
            risk_level=RiskLevel.LOW,
        ),
    )


async def _execute_without_model(
    services: Services,
    record: DecisionRecord,
    validations: list[AssetValidation],
    marks: dict[str, Decimal],
    started: float,
) -> DecideResult:
    """Record ``record`` with its asset rows, then execute them unless declined.

    Protection before audit: these orders close positions or arm their stops, so a store that cannot write
    (disk full, read-only, locked) does not hold them back; its error is raised once they were sent.
    """
    report = ValidationReport(assets=validations)
    record.assets = [asset_row(v, record.marks) for v in validations]
    record.latency_ms = int((time.monotonic() - started) * 1000)
    unrecorded: StoreError | None = None
    try:
        services.store.record_decision(record)
    except StoreError as exc:
        if record.execution == "declined":
            raise
        unrecorded = exc
    if record.execution == "declined":
        return DecideResult(record=record, report=report)
    try:
        try:
            rules = await get_rules(services)
        except StoreError as exc:  # the rules were read but not cached
            unrecorded = unrecorded or exc
            rules = await services.market.exchange_info()
    except VenueError as exc:
        if all(v.final is not None and v.final.action is Action.CLOSE_POSITION for v in validations):
            rules = {}  # a close is sent as it is (reduce-only, the position's size): no rule fits it
        else:
            if unrecorded is None:
                services.store.set_execution(record.id, "failed")
            exc.decision_id = record.id
            raise
    try:
        execution = await execute_recorded(services, record, validations, rules, marks)
    except StoreError as exc:
        unrecorded = unrecorded or exc
    if unrecorded is not None:
        raise StoreError(
            f"the orders of {record.model} decision {record.id} were sent, but the store cannot record them: "
            f"{unrecorded}"
        )
    return DecideResult(record=record, report=report, execution=execution)


async def position_rows(services: Services) -> tuple[str, list[dict[str, str | int | None]]]:
    """Open positions with their protective orders, as plain rows (strings keep the venue's precision)."""
    exchange = services.exchange
    positions, orders = await together(exchange, exchange.positions(), exchange.open_orders())
    rules = await exchange.rules() if positions else {}
    rows: list[dict[str, str | int | None]] = []
    for p in positions:
        stop, target = protective_orders(p, orders)
        rule = rules.get(p.symbol)

        def price(value: Decimal, rule: Any = rule) -> str:
            # An averaged entry or a computed liquidation price has many decimals: shown at the tick.
            return at_precision(value, rule.tick_size) if rule is not None else dec_str(value)

        rows.append(
            {
                "symbol": p.symbol,
                "side": p.side,
                "size": at_precision(p.size, rule.step_size) if rule is not None else dec_str(p.size),
                "entry_price": price(p.entry_price),
                "mark_price": price(p.mark_price),
                "unrealized_pnl": at_precision(p.unrealized_pnl, Decimal("0.01")),
                "liquidation_price": price(p.liquidation_price) if p.liquidation_price is not None else None,
                "leverage": p.leverage,
                "margin_type": p.margin_type,
                # the names `decide --json` uses for a decision's stop and target (docs/json.md)
                "sl_price": price(stop.stop_price) if stop is not None else None,
                "sl_order_id": stop.client_order_id if stop is not None else None,
                "tp_price": price(target.stop_price) if target is not None else None,
                "tp_order_id": target.client_order_id if target is not None else None,
            }
        )
    return exchange.mode, rows

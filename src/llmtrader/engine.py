"""The decision pipeline: snapshot, context, prompt, model, validation, record.

Only this orchestrator does I/O in sequence; context building and validation are pure. Whatever
happens after the symbols are accepted is recorded before the function returns or raises.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Protocol

from llmtrader.account import AccountState, Position
from llmtrader.config import Settings
from llmtrader.context import Limits, build_context, render_prompt
from llmtrader.decision import Action, AssetDecision, RiskLevel
from llmtrader.errors import LLMTraderError, ModelError, NotFoundError, VenueError
from llmtrader.exchange.base import Exchange, OrderType, dec_str
from llmtrader.exchange.filters import SymbolRules
from llmtrader.execution import ExecutionReport, ExecutionSettings, execute
from llmtrader.llm import CallRecord, DecisionClient, DecisionRequest
from llmtrader.market import AsterMarketData, MarketSnapshot, check_symbols
from llmtrader.risk import AssetValidation, Status, ValidationReport, validate_decision
from llmtrader.storage.records import AssetRow, CallRow, DecisionRecord, new_decision_id
from llmtrader.storage.store import Store
from llmtrader.strategy import Strategy


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    """Wall-clock time in milliseconds since the epoch."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)


@dataclass
class Services:
    """Everything one decision needs, built in one place (:mod:`llmtrader.bootstrap`)."""

    settings: Settings
    store: Store
    market: AsterMarketData
    exchange: Exchange
    client: DecisionClient
    strategy: Strategy
    clock: Clock
    notes: tuple[str, ...] = ()


@dataclass
class DecideResult:
    record: DecisionRecord
    report: ValidationReport | None
    execution: ExecutionReport | None = None


Confirm = Callable[[DecisionRecord, ValidationReport], bool]
ConfirmClose = Callable[[list[str]], bool]


def cached_rules(services: Services) -> dict[str, SymbolRules] | None:
    """exchangeInfo rules from the store's cache while fresh, else None."""
    cached = services.store.cache_get(
        _rules_key(services), services.settings.exchange_info_ttl_s * 1000, services.clock.now_ms()
    )
    return None if cached is None else {s: SymbolRules.from_json(r) for s, r in json.loads(cached).items()}


async def fetch_rules(services: Services) -> dict[str, SymbolRules]:
    """exchangeInfo rules from the venue, stored in the cache."""
    rules = await services.market.exchange_info()
    body = json.dumps({s: r.to_json() for s, r in rules.items()})
    services.store.cache_put(_rules_key(services), body, services.clock.now_ms())
    return rules


async def get_rules(services: Services) -> dict[str, SymbolRules]:
    """exchangeInfo rules: from the cache while fresh, else from the venue."""
    return cached_rules(services) or await fetch_rules(services)


def _rules_key(services: Services) -> str:
    return f"exchangeInfo:{services.market.base_url}"


async def market_snapshot(
    services: Services, symbols: tuple[str, ...], timeframes: Sequence[str], limit: int, now: int
) -> MarketSnapshot:
    """Symbols checked against the venue's listing, then the market. With a cold cache the listing and
    the market are fetched at once (one round trip less); an unlisted symbol cancels the market fetch.
    """
    market = services.market
    rules = cached_rules(services)
    if rules is not None:
        check_symbols(symbols, rules)
        return await market.snapshot(symbols, timeframes, limit, now, rules)
    fetching = asyncio.ensure_future(market.snapshot(symbols, timeframes, limit, now))
    try:
        rules = await fetch_rules(services)
        check_symbols(symbols, rules)
    except BaseException:
        fetching.cancel()
        await asyncio.gather(fetching, return_exceptions=True)
        raise
    return replace(await fetching, rules={s: rules[s] for s in symbols})


async def account_state(services: Services) -> AccountState:
    """The account a decision sees, from the exchange (live venue or paper account): balance, positions,
    and each position's protective orders."""
    exchange = services.exchange
    balance, positions, orders = await asyncio.gather(exchange.balance(), exchange.positions(), exchange.open_orders())
    stops: dict[str, float] = {}
    targets: dict[str, float] = {}
    for order in orders:
        if order.stop_price <= 0:
            continue
        if order.type == OrderType.STOP_MARKET:
            stops[order.symbol] = float(order.stop_price)
        elif order.type == OrderType.TAKE_PROFIT_MARKET:
            targets[order.symbol] = float(order.stop_price)
    return AccountState(
        name=services.settings.account,
        mode=exchange.mode,
        balance_usd=float(balance.wallet),
        available_usd=float(balance.available),
        positions=tuple(
            Position(
                symbol=p.symbol,
                side=p.side,
                size=float(p.size),
                entry_price=float(p.entry_price),
                mark_price=float(p.mark_price),
                unrealized_pnl=float(p.unrealized_pnl),
                leverage=p.leverage,
                liquidation_price=float(p.liquidation_price) if p.liquidation_price is not None else None,
                stop_loss=stops.get(p.symbol),
                take_profit=targets.get(p.symbol),
            )
            for p in positions
        ),
    )


def execution_settings(settings: Settings) -> ExecutionSettings:
    return ExecutionSettings(
        margin_type=settings.margin_type,
        protect_attempts=settings.stop_loss_attempts,
        taker_fee=Decimal(str(settings.paper_taker_fee)),
    )


def _call_rows(calls: Sequence[object]) -> list[CallRow]:
    rows = []
    for c in calls:
        if isinstance(c, CallRecord):
            rows.append(
                CallRow(
                    attempt=c.attempt,
                    response_format=c.response_format,
                    raw_response=c.raw_response,
                    error=c.error,
                    prompt_tokens=c.prompt_tokens,
                    completion_tokens=c.completion_tokens,
                    reasoning_tokens=c.reasoning_tokens,
                    cost_usd=c.cost_usd,
                    latency_ms=c.latency_ms,
                    finish_reason=c.finish_reason,
                    generation_id=c.generation_id,
                )
            )
    return rows


def _asset_row(v: AssetValidation, marks: dict[str, float]) -> AssetRow:
    source = v.final.model_dump(mode="json") if v.final is not None else (v.proposed or {})

    def num(key: str) -> float | None:
        value = source.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    leverage = source.get("leverage")
    return AssetRow(
        symbol=v.symbol,
        action=v.action,
        status=v.status.value,
        reasons=v.reasons,
        proposed=v.proposed,
        allocation_usd=num("allocation_usd"),
        leverage=leverage if isinstance(leverage, int) and not isinstance(leverage, bool) else None,
        entry_price=num("entry_price"),
        tp_price=num("tp_price"),
        sl_price=num("sl_price"),
        confidence=num("confidence"),
        risk_level=source.get("risk_level") if isinstance(source.get("risk_level"), str) else None,
        rationale=source.get("rationale") if isinstance(source.get("rationale"), str) else None,
        mark_price=marks.get(v.symbol),
    )


async def decide(
    services: Services, symbols: Sequence[str], *, dry_run: bool, confirm: Confirm | None = None
) -> DecideResult:
    """One portfolio decision for ``symbols``: recorded whatever its outcome, then executed unless
    ``dry_run`` (or ``confirm`` declines). Every order and event of the execution is recorded as it happens.

    Raises UnknownSymbolError (nothing recorded, no model call) for symbols the venue does not list
    (bad input, not a decision),
    and VenueError or ModelError after recording the failed decision.
    """
    settings, strategy, client, clock = services.settings, services.strategy, services.client, services.clock
    started = time.monotonic()
    symbols = tuple(symbols)
    now = clock.now_ms()
    record = DecisionRecord(
        id=new_decision_id(now),
        created_at_ms=now,
        account=settings.account,
        mode=settings.trading_mode,
        dry_run=dry_run,
        strategy=strategy.name,
        model=client.model,
        base_url=client.base_url,
        symbols=list(symbols),
        outcome="pending",
        notes=list(services.notes),
    )

    def finish(outcome: str, error: LLMTraderError | None = None) -> None:
        record.outcome = outcome
        record.error = str(error) if error is not None else None
        record.latency_ms = int((time.monotonic() - started) * 1000)
        services.store.record_decision(record)
        if error is not None:
            error.decision_id = record.id

    # The decision interval (INTERVAL) is always among the timeframes shown.
    timeframes = list(dict.fromkeys([*strategy.timeframes, settings.interval]))
    try:
        snapshot, account = await asyncio.gather(
            market_snapshot(services, symbols, timeframes, strategy.context.candles, now), account_state(services)
        )
    except VenueError as exc:
        finish("venue_error", exc)
        raise
    record.as_of_ms = snapshot.as_of_ms
    record.marks = {s: a.mark_price for s, a in snapshot.assets.items()}
    limits = Limits.combine(settings.leverage, settings.max_position_size_usd, strategy)
    context = build_context(snapshot, account, strategy, limits, symbols, settings.interval)
    system, user = render_prompt(context, strategy)
    record.system_prompt, record.user_prompt = system, user
    try:
        answer = await client.decide(DecisionRequest(system=system, user=user, context=context))
    except ModelError as exc:
        record.calls = _call_rows(exc.calls)
        record.prompt_tokens = sum(c.prompt_tokens for c in record.calls)
        record.completion_tokens = sum(c.completion_tokens for c in record.calls)
        costs = [c.cost_usd for c in record.calls if c.cost_usd is not None]
        record.cost_usd = sum(costs) if costs else None
        record.model_latency_ms = sum(c.latency_ms for c in record.calls)
        record.raw_response = next((c.raw_response for c in reversed(record.calls) if c.raw_response), None)
        finish("model_error", exc)
        raise
    record.calls = _call_rows(answer.calls)
    record.raw_response = answer.raw_response
    record.parsed = answer.decision.model_dump(mode="json")
    record.parse_errors = answer.parse_errors
    record.portfolio_rationale = answer.decision.portfolio_rationale
    record.response_format = answer.response_format
    record.reasks = answer.reasks
    record.prompt_tokens = answer.prompt_tokens
    record.completion_tokens = answer.completion_tokens
    record.cost_usd = answer.cost_usd
    record.model_latency_ms = answer.latency_ms
    report = validate_decision(answer.decision, symbols=symbols, marks=record.marks, account=account, limits=limits)
    record.notes += report.notes
    record.assets = [_asset_row(v, record.marks) for v in report.assets]
    executable = [v for v in report.assets if v.executable and v.final is not None and v.final.action.value != "hold"]
    if dry_run:
        record.execution = "dry_run"
    elif not executable:
        record.execution = "nothing"
    elif confirm is not None and not confirm(record, report):
        record.execution = "declined"
    finish("all_rejected" if report.all_rejected else "decided")
    if record.execution is not None:
        return DecideResult(record=record, report=report)
    log = services.store.execution_log(settings.account, services.exchange.mode, clock.now_ms)
    try:
        execution = await execute(
            services.exchange,
            report.assets,
            decision_id=record.id,
            recorder=log,
            rules=snapshot.rules,
            marks={s: Decimal(str(m)) for s, m in record.marks.items()},
            settings=execution_settings(settings),
        )
    except VenueError as exc:  # the account could not be read before the first order: nothing was sent
        services.store.set_execution(record.id, "failed")
        log.event(decision_id=record.id, symbol=None, kind="error", message=f"execution did not start: {exc}")
        exc.decision_id = record.id
        raise
    record.execution = execution.summary
    services.store.set_execution(record.id, execution.summary)
    return DecideResult(record=record, report=report, execution=execution)


async def close_positions(
    services: Services, symbols: Sequence[str] | None, *, confirm: ConfirmClose | None = None
) -> DecideResult:
    """Close positions (all of them when ``symbols`` is None) and cancel their orders, recorded as a
    manual decision so that every order links to an audit record."""
    settings, clock = services.settings, services.clock
    exchange = services.exchange
    started = time.monotonic()
    positions = await exchange.positions()
    open_symbols = [p.symbol for p in positions]
    if symbols is None:
        targets = open_symbols
    else:
        missing = [s for s in symbols if s not in open_symbols]
        if missing:
            raise NotFoundError(
                f"no open position on {', '.join(missing)} ({exchange.mode}); open: {', '.join(open_symbols) or 'none'}"
            )
        targets = list(symbols)
    now = clock.now_ms()
    record = DecisionRecord(
        id=new_decision_id(now),
        created_at_ms=now,
        account=settings.account,
        mode=exchange.mode,
        dry_run=False,
        strategy="-",
        model="manual",
        base_url="-",
        symbols=targets,
        outcome="manual",
        notes=["closed by hand with `llmtrader close`"],
    )
    if not targets:
        record.execution = "nothing"
        return DecideResult(record=record, report=None)
    marks = await exchange.mark_prices(targets)
    record.marks = {s: float(m) for s, m in marks.items()}
    validations = [
        AssetValidation(
            symbol=s,
            action=Action.CLOSE_POSITION.value,
            status=Status.ACCEPTED,
            reasons=[],
            proposed=None,
            final=AssetDecision(
                symbol=s,
                action=Action.CLOSE_POSITION,
                rationale="closed by hand",
                allocation_usd=0,
                leverage=1,
                confidence=1,
                risk_level=RiskLevel.LOW,
            ),
        )
        for s in targets
    ]
    report = ValidationReport(assets=validations)
    record.assets = [_asset_row(v, record.marks) for v in validations]
    if confirm is not None and not confirm(targets):
        record.execution = "declined"
    record.latency_ms = int((time.monotonic() - started) * 1000)
    services.store.record_decision(record)
    if record.execution == "declined":
        return DecideResult(record=record, report=report)
    rules = await get_rules(services)
    log = services.store.execution_log(settings.account, exchange.mode, clock.now_ms)
    execution = await execute(
        exchange, validations, decision_id=record.id, recorder=log, rules=rules, marks=marks,
        settings=execution_settings(settings),
    )  # fmt: skip
    record.execution = execution.summary
    services.store.set_execution(record.id, execution.summary)
    return DecideResult(record=record, report=report, execution=execution)


async def position_rows(services: Services) -> tuple[str, list[dict[str, str | int | None]]]:
    """Open positions with their protective orders, as plain rows (strings keep the venue's precision)."""
    exchange = services.exchange
    positions, orders = await asyncio.gather(exchange.positions(), exchange.open_orders())
    rows: list[dict[str, str | int | None]] = []
    for p in positions:
        mine = [o for o in orders if o.symbol == p.symbol]
        stop = next((o for o in mine if o.type == OrderType.STOP_MARKET), None)
        target = next((o for o in mine if o.type == OrderType.TAKE_PROFIT_MARKET), None)
        rows.append(
            {
                "symbol": p.symbol,
                "side": p.side,
                "size": dec_str(p.size),
                "entry_price": dec_str(p.entry_price),
                "mark_price": dec_str(p.mark_price),
                "unrealized_pnl": dec_str(p.unrealized_pnl),
                "liquidation_price": dec_str(p.liquidation_price) if p.liquidation_price is not None else None,
                "leverage": p.leverage,
                "margin_type": p.margin_type,
                "stop_loss": dec_str(stop.stop_price) if stop is not None else None,
                "stop_loss_order": stop.client_order_id if stop is not None else None,
                "take_profit": dec_str(target.stop_price) if target is not None else None,
                "take_profit_order": target.client_order_id if target is not None else None,
            }
        )
    return exchange.mode, rows

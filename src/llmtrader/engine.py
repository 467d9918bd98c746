"""The decision pipeline: snapshot, context, prompt, model, validation, record.

Only this orchestrator does I/O in sequence; context building and validation are pure. Whatever
happens after the symbols are accepted is recorded before the function returns or raises.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from llmtrader.account import AccountState, paper_account_state
from llmtrader.config import Settings
from llmtrader.context import Limits, build_context, render_prompt
from llmtrader.errors import LLMTraderError, ModelError, VenueError
from llmtrader.exchange.filters import SymbolRules
from llmtrader.llm import CallRecord, DecisionClient, DecisionRequest
from llmtrader.market import AsterMarketData, MarketSnapshot, check_symbols
from llmtrader.risk import AssetValidation, ValidationReport, validate_decision
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
    client: DecisionClient
    strategy: Strategy
    clock: Clock
    notes: tuple[str, ...] = ()


@dataclass
class DecideResult:
    record: DecisionRecord
    report: ValidationReport | None


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


def account_state(services: Services) -> AccountState:
    """The account a decision sees (the paper account until execution adapters exist)."""
    settings = services.settings
    return paper_account_state(settings.account, settings.paper_balance_usd)


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


async def decide(services: Services, symbols: Sequence[str], *, dry_run: bool) -> DecideResult:
    """One portfolio decision for ``symbols``: recorded whatever its outcome.

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
        snapshot = await market_snapshot(services, symbols, timeframes, strategy.context.candles, now)
    except VenueError as exc:
        finish("venue_error", exc)
        raise
    record.as_of_ms = snapshot.as_of_ms
    record.marks = {s: a.mark_price for s, a in snapshot.assets.items()}
    limits = Limits.combine(settings.leverage, settings.max_position_size_usd, strategy)
    account = account_state(services)
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
    finish("all_rejected" if report.all_rejected else "decided")
    return DecideResult(record=record, report=report)

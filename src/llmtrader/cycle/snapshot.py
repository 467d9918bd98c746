"""What a decision is shown: the venue's rules, the market and account snapshot, the trade history read
through the exchange port, and the prepared prompt (:func:`prepare`). The steps of one decision, in
order, are in :mod:`llmtrader.cycle.decide`; one scheduled cycle, in :mod:`llmtrader.cycle.run`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from llmtrader.config.strategies import load_strategy
from llmtrader.core.account import AccountState, Position
from llmtrader.core.context import DecisionContext, build_context, render_prompt
from llmtrader.core.filters import SymbolRules
from llmtrader.core.limits import Limits
from llmtrader.core.market import MarketSnapshot, check_symbols
from llmtrader.core.risk import (
    RiskInputs,
)
from llmtrader.core.strategy import Strategy
from llmtrader.core.times import INTERVAL_MS
from llmtrader.core.trades import PerformanceSummary, TradeSummary
from llmtrader.cycle.services import Services
from llmtrader.cycle.strategies import resolve_strategy
from llmtrader.errors import (
    ConfigError,
)
from llmtrader.exchange.base import (
    HistoryRead,
    OrderState,
    OrderType,
    Side,
    VenuePosition,
    together,
)


def cached_rules(services: Services) -> dict[str, SymbolRules] | None:
    """exchangeInfo rules from the store's cache while fresh, else None (parsed once per cached text)."""
    cached = services.store.cache_get(
        _rules_key(services), services.settings.exchange_info_ttl_s * 1000, services.clock.now_ms()
    )
    if cached is None:
        return None
    parsed = services.cache.rules
    if parsed is None or parsed[0] != cached:
        parsed = (cached, {s: SymbolRules.from_json(r) for s, r in json.loads(cached).items()})
        services.cache.rules = parsed
    return dict(parsed[1])


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


def protective_orders(
    position: VenuePosition, orders: Sequence[OrderState]
) -> tuple[OrderState | None, OrderState | None]:
    """The stop-loss and take-profit protecting ``position``: closing orders on the opposite side only."""
    closing_side = Side.SELL if position.amount > 0 else Side.BUY

    def find(kind: OrderType) -> OrderState | None:
        return next(
            (
                o
                for o in orders
                if o.symbol == position.symbol
                and o.type == kind
                and o.side is closing_side
                and (o.close_position or o.reduce_only)
                and o.stop_price > 0
            ),
            None,
        )

    return find(OrderType.STOP_MARKET), find(OrderType.TAKE_PROFIT_MARKET)


async def account_state(services: Services) -> AccountState:
    """The account a decision sees, from the exchange (live venue or paper account): balance, positions,
    and each position's protective orders."""
    exchange = services.exchange
    balance, positions, orders = await together(
        exchange, exchange.balance(), exchange.positions(), exchange.open_orders()
    )
    stops: dict[str, float] = {}
    targets: dict[str, float] = {}
    for p in positions:
        stop, target = protective_orders(p, orders)
        if stop is not None:
            stops[p.symbol] = float(stop.stop_price)
        if target is not None:
            targets[p.symbol] = float(target.stop_price)
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
                margin_type="cross" if p.margin_type == "cross" else "isolated",
            )
            for p in positions
        ),
    )


@dataclass(frozen=True)
class Prepared:
    """What a decision shows the model: the market, the account, the limits and the rendered prompt (empty
    messages when ``prompted`` is False: the client reads no prompt, see
    :func:`llmtrader.llm.port.reads_prompt`)."""

    strategy: Strategy
    snapshot: MarketSnapshot
    account: AccountState
    limits: Limits
    context: DecisionContext
    system: str
    user: str
    inputs: RiskInputs
    notes: list[str]
    prompted: bool = True
    history: HistoryRead = field(default_factory=HistoryRead)


async def sync_live_history(services: Services) -> HistoryRead:
    """The account's trade history from the exchange, refreshed first, whatever the strategy shows the model:
    the live venue's fills, funding and transfers are synced into the store (bounded: a request budget and a
    timeout), since the cooldown, the minimum hold and the kill switches count the closes and transfers found
    there; a paper account records its own (:meth:`~llmtrader.exchange.base.Exchange.trade_history`).

    ``problem`` is set when the history could not be read up to now (a venue error, the time or the
    request budget ran out): the caller then holds openings rather than assume nothing happened.
    """
    return await services.exchange.trade_history(refresh=True, now_ms=services.clock.now_ms())


async def require_one_way(services: Services) -> None:
    """Refuse an account in hedge (dual-side) position mode at the venue (ConfigError): llmtrader sends one-way
    orders (positionSide BOTH), which the venue refuses there (-4061), stops included. The exchange answers
    (:meth:`~llmtrader.exchange.base.Exchange.hedge_mode`): a paper account is always one-way."""
    if await services.exchange.hedge_mode():
        raise ConfigError(
            f"account {services.settings.account!r} is in hedge (dual-side) position mode at the venue, where "
            "llmtrader cannot place its orders or stops: switch the account to one-way mode "
            "(positionSide/dual dualSidePosition=false, in the venue's settings) with no position open"
        )


async def trade_feedback(
    services: Services,
    strategy: Strategy,
    notes: list[str] | None = None,
    *,
    figures: bool = True,
    history: HistoryRead | None = None,
) -> tuple[list[TradeSummary] | None, PerformanceSummary | None]:
    """Recent closed trades and performance for the prompt, rebuilt from the account's fills as its exchange
    answers them (:meth:`~llmtrader.exchange.base.Exchange.trade_history`): refreshed first, unless the caller
    did (``history``, from :func:`sync_live_history`).

    The refresh is bounded (a request budget and a timeout): when it fails or stops short, that is added to
    ``notes`` and the history stored so far is used; what was not synced follows at the next decision.
    None (shown as "not available") when the fills do not add up to trades. ``figures`` False (no prompt will
    show them): the refresh only, which keeps ``stats`` current, and (None, None).
    """
    wanted = strategy.context.recent_trades > 0 or strategy.context.performance
    if not wanted:
        return None, None
    settings = services.settings
    said = notes if notes is not None else []
    if history is None:
        history = await sync_live_history(services)
        said += history.notes
    if not figures:
        return None, None
    try:
        return services.cache.history.trade_figures(
            services.store, settings.account, strategy.context.recent_trades, history
        )
    except ValueError as exc:
        said.append(f"recent trades not shown: the recorded fills do not add up ({exc})")
        return None, None


async def prepare(
    services: Services,
    strategy: Strategy,
    symbols: tuple[str, ...],
    now: int,
    *,
    account: AccountState | None = None,
    prompt: bool = True,
    history: HistoryRead | None = None,
) -> Prepared:
    """Snapshot the market and the account at once, then build the context and render the prompt.
    ``account``, when given, is the account just read by the caller (it is not read again). ``prompt`` False:
    no prompt is rendered (a client that reads none). ``history``: the caller synced the venue's history
    already (:func:`sync_live_history`); otherwise it is synced here, whatever the strategy shows.

    Raises UnknownSymbolError for symbols the venue does not list, VenueError when a read failed.
    """
    settings = services.settings
    # The decision interval (INTERVAL) is always among the timeframes shown.
    timeframes = list(dict.fromkeys([*strategy.timeframes, settings.interval]))
    fetching = market_snapshot(services, symbols, timeframes, strategy.context.candles, now)
    if account is None:
        snapshot, read = await asyncio.gather(fetching, account_state(services))
    else:
        snapshot, read = await fetching, account
    notes = []
    if strategy.interval != settings.interval:
        notes.append(
            f"strategy {strategy.name} suits a {strategy.interval} interval; INTERVAL is {settings.interval}, "
            "so its ATR band and schedule are measured on the INTERVAL candles"
        )
    limits = Limits.combine(settings.leverage, settings.max_position_size_usd, strategy, equity_usd=read.equity_usd)
    if history is None:
        history = await sync_live_history(services)
    notes += history.notes
    # The recent trades and performance are prompt text only: not gathered for a client that reads no prompt.
    recent, performance = await trade_feedback(services, strategy, notes, figures=prompt, history=history)
    context = build_context(
        snapshot, read, strategy, limits, symbols, settings.interval, recent_trades=recent, performance=performance
    )
    facts = services.cache.history.account_facts(services.store, settings.account, now)
    day_start = facts.day_start_equity
    inputs = RiskInputs(
        now_ms=now,
        interval_ms=INTERVAL_MS[settings.interval],
        taker_fee=settings.paper_taker_fee,
        atr=context.atr_by_symbol(),
        last_close_ms=facts.last_close_ms,
        opened_at_ms=facts.opened_at_ms,
        last_entry_ms=facts.last_entry_ms,
        # The first decision of a UTC day sees the day's starting equity itself; deposits and withdrawals since
        # it was recorded move it (the live venue's, as synced), as they are no profit or loss.
        day_start_equity=read.equity_usd if day_start is None else day_start,
    )
    system, user = render_prompt(context, strategy, services.cache.candle_lines) if prompt else ("", "")
    return Prepared(strategy, snapshot, read, limits, context, system, user, inputs, notes, prompt, history)


async def preview_strategy(services: Services, name: str | None, symbols: Sequence[str]) -> Prepared:
    """The prompt strategy ``name`` (default: the one in force) would send now: no model call, nothing recorded."""
    settings = services.settings
    strategy = (
        load_strategy(name, settings.strategies_dir)
        if name is not None
        else resolve_strategy(services.store, settings, services.strategy_override)
    )
    return await prepare(services, strategy, tuple(symbols), services.clock.now_ms())

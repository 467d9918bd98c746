"""What a decision is made of: the services, the venue's rules, the market and account snapshot, the strategy
in force, the prepared prompt (:func:`prepare`), the execution of a recorded decision, and the decisions made
without a model (closes, stops re-armed).

The steps of one decision, in order, are in :mod:`llmtrader.cycle.decide`; one scheduled cycle, in
:mod:`llmtrader.cycle.run`. Context building and validation are pure; only those orchestrators do I/O in
sequence.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmtrader.config.settings import Settings
from llmtrader.config.strategies import available_strategies, builtin_dir, load_strategy
from llmtrader.core.account import AccountState, Position
from llmtrader.core.context import DecisionContext, build_context, render_prompt
from llmtrader.core.decision import Action, AssetDecision, RiskLevel
from llmtrader.core.filters import SymbolRules
from llmtrader.core.limits import Limits
from llmtrader.core.market import MarketSnapshot, check_symbols
from llmtrader.core.records import AssetRow, DecisionRecord, new_decision_id
from llmtrader.core.risk import (
    AssetValidation,
    RiskInputs,
    Status,
    ValidationReport,
)
from llmtrader.core.strategy import Strategy
from llmtrader.core.textfmt import at_precision
from llmtrader.core.times import INTERVAL_MS, Clock
from llmtrader.core.trades import PerformanceSummary, TradeSummary
from llmtrader.cycle.cache import HistoryCache, KeptHistory
from llmtrader.cycle.execution import ExecutionReport, ExecutionSettings, execute, ours
from llmtrader.cycle.strategies import StrategySource, strategy_in_force
from llmtrader.errors import (
    ConfigError,
    ExecutionNotStarted,
    NotFoundError,
    StoreError,
    StrategyError,
    VenueError,
)
from llmtrader.exchange.base import (
    ZERO,
    Exchange,
    HistoryRead,
    MarketData,
    OrderState,
    OrderType,
    Side,
    VenuePosition,
    dec_str,
    together,
)
from llmtrader.llm.port import DecisionClient
from llmtrader.storage.store import Store


@dataclass(frozen=True)
class Arm:
    """One arm of an A/B test, ready to decide: its client, and its strategy (None: the account's)."""

    name: str
    client: DecisionClient
    strategy: str | None
    notes: tuple[str, ...] = ()


@dataclass
class CycleCache:
    """What the services keep between the cycles of one process: derived data, never orders."""

    # exchangeInfo as parsed from the store's cached text: (the text, the rules), parsed again when it changes
    rules: tuple[str, dict[str, SymbolRules]] | None = None
    # the account's trades and the facts of its history, as last read (only what is recorded since is read)
    history: HistoryCache = field(default_factory=KeptHistory)


@dataclass
class Services:
    """Everything one decision needs, built in one place (:mod:`llmtrader.cycle.compose`).

    The strategy is not fixed here: each decision resolves it (:func:`resolve_strategy`), so a choice
    made with ``strategy use`` takes effect from the next decision of a running agent.
    """

    settings: Settings
    store: Store
    market: MarketData
    exchange: Exchange
    client: DecisionClient
    clock: Clock
    notes: tuple[str, ...] = ()
    strategy_override: str | None = None  # decide --strategy: this call only
    arms: tuple[Arm, ...] = ()  # the A/B arms, empty when no test runs for these services
    # A strategy fixed for every decision of these services (a backtest's, loaded once at its start), in place
    # of the account's strategy resolved at each decision.
    strategy: Strategy | None = None
    # Per-process caches of derived data, never of orders (:class:`CycleCache`).
    cache: CycleCache = field(default_factory=CycleCache)


@dataclass
class DecideResult:
    """A decision and what became of it (:func:`llmtrader.cycle.decide.decide`, or a decision made without a
    model: a close, a stop re-armed)."""

    record: DecisionRecord
    report: ValidationReport | None
    execution: ExecutionReport | None = None


ConfirmClose = Callable[[list[str]], bool]


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


def resolve_strategy(store: Store, settings: Settings, override: str | None = None) -> Strategy:
    """The strategy of the next decision: ``override`` (decide --strategy), else the account's persisted
    choice, else the configured one. Called for every decision, so a new choice takes effect at the next.

    A persisted choice that no longer loads is a StrategyError naming it and how to switch.
    """
    if override is not None:
        return load_strategy(override, settings.strategies_dir)
    name, source = strategy_in_force(store, settings)
    try:
        return load_strategy(name, settings.strategies_dir)
    except StrategyError as exc:
        if source == "configured":
            raise
        raise StrategyError(
            f"account {settings.account!r} uses strategy {name!r} (chosen with `llmtrader strategy use`), "
            f"which no longer loads: {exc}. Fix the file, or switch with `llmtrader strategy use NAME` "
            f"(`llmtrader strategy list` shows the available ones)"
        ) from None


@dataclass(frozen=True)
class StrategyChoice:
    account: str
    previous: str
    strategy: str


def choose_strategy(store: Store, settings: Settings, name: str, *, via: str, now_ms: int) -> StrategyChoice:
    """Persist ``name`` as the account's strategy after checking that it loads, recorded in the audit table."""
    strategy = load_strategy(name, settings.strategies_dir)
    previous, _ = strategy_in_force(store, settings)
    store.record_strategy_choice(
        account=settings.account, strategy=strategy.name, previous=previous, via=via, now_ms=now_ms
    )
    return StrategyChoice(account=settings.account, previous=previous, strategy=strategy.name)


@dataclass(frozen=True)
class CatalogEntry:
    """One available strategy, or the error that keeps its file from loading."""

    name: str
    path: Path
    source: str  # built-in, user, or user (shadows built-in)
    strategy: Strategy | None
    error: str | None
    in_force: bool


def strategy_catalog(store: Store, settings: Settings) -> tuple[list[CatalogEntry], str, StrategySource]:
    """Every available strategy (the user's shadow built-in ones of the same name), each loaded or with its
    error, the one in force for the account marked; and that one's name and where it comes from."""
    in_force, source = strategy_in_force(store, settings)
    builtin = builtin_dir().resolve()
    entries = []
    for name, path in sorted(available_strategies(settings.strategies_dir).items()):
        origin = "built-in"
        if path.resolve().parent != builtin:
            origin = "user (shadows built-in)" if (builtin / path.name).is_file() else "user"
        strategy, error = None, None
        try:
            strategy = load_strategy(name, settings.strategies_dir)
        except StrategyError as exc:
            error = str(exc)
        entries.append(CatalogEntry(name, path, origin, strategy, error, name == in_force))
    return entries, in_force, source


def choose_arm(services: Services, decision_id: str) -> Arm | None:
    """The A/B arm of a decision, derived from its id alone (None when no test runs)."""
    ab = services.settings.ab
    if ab is None or not services.arms:
        return None
    return services.arms[ab.arm_index(decision_id)]


def arm_strategy(services: Services, arm: Arm | None) -> Strategy:
    """The strategy of a decision made by ``arm`` (or by no arm)."""
    settings = services.settings
    if arm is None or arm.strategy is None:
        if services.strategy is not None:
            return services.strategy
        return resolve_strategy(services.store, settings, services.strategy_override)
    try:
        return resolve_strategy(services.store, settings, arm.strategy)
    except StrategyError as exc:
        raise StrategyError(f"A/B arm {arm.name!r} of [ab] in the config: {exc}") from None


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
    system, user = render_prompt(context, strategy) if prompt else ("", "")
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


def execution_settings(settings: Settings) -> ExecutionSettings:
    return ExecutionSettings(
        margin_type=settings.margin_type,
        protect_attempts=settings.stop_loss_attempts,
        taker_fee=Decimal(str(settings.paper_taker_fee)),
    )


def asset_row(v: AssetValidation, marks: dict[str, float]) -> AssetRow:
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


async def execute_recorded(
    services: Services,
    record: DecisionRecord,
    validations: Sequence[AssetValidation],
    rules: dict[str, SymbolRules],
    marks: dict[str, Decimal],
) -> ExecutionReport:
    """Execute a recorded decision (a model's, :func:`llmtrader.cycle.decide.execute_decision`, or one made
    without a model); its execution outcome is stored whatever happens."""
    log = services.store.execution_log(services.settings.account, services.exchange.mode, services.clock.now_ms)
    try:
        execution = await execute(
            services.exchange,
            validations,
            decision_id=record.id,
            recorder=log,
            rules=rules,
            marks=marks,
            settings=execution_settings(services.settings),
        )
    except VenueError as exc:  # the account could not be read before the first order: nothing was sent
        services.store.set_execution(record.id, "failed")
        log.event(decision_id=record.id, symbol=None, kind="error", message=f"execution did not start: {exc}")
        exc.decision_id = record.id
        raise ExecutionNotStarted(exc) from exc
    record.execution = execution.summary
    services.store.set_execution(record.id, execution.summary)
    return execution


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
                "sl_price": dec_str(stop.stop_price) if stop is not None else None,
                "sl_order_id": stop.client_order_id if stop is not None else None,
                "tp_price": dec_str(target.stop_price) if target is not None else None,
                "tp_order_id": target.client_order_id if target is not None else None,
            }
        )
    return exchange.mode, rows

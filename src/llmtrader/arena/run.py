"""Planning and running an arena: who replays, who calls a model (and at what estimated cost), concurrently
within each endpoint's limit of calls in flight."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from llmtrader.backtest.clients import RecordingClient
from llmtrader.backtest.data import History
from llmtrader.backtest.isolated import run_isolated, run_parallel, usable_cores
from llmtrader.backtest.replay import BacktestResult, run_backtest
from llmtrader.backtest.spec import BacktestSpec, budget_stop, new_run_id
from llmtrader.core.records import new_decision_id
from llmtrader.llm.port import DecisionClient, DecisionRequest, ModelAnswer
from llmtrader.storage import arena as arenas

if TYPE_CHECKING:
    from llmtrader.config.settings import Settings
    from llmtrader.core.strategy import Strategy
    from llmtrader.storage.store import Store

BASELINE = "baseline"
# Completion tokens of one answer, for the estimate when no recorded call says better.
COMPLETION_TOKENS = 400


def market_key(spec: BacktestSpec, history: History) -> str:
    """What makes two arenas face the same market: data, symbols, interval, the decision steps, the timeframes
    shown and the starting balance (not the strategy or the limits: under other ones, recorded answers are
    re-judged)."""
    parts = {
        "data": spec.data_dir,
        "symbols": list(spec.symbols),
        "interval": spec.interval,
        "fill_interval": spec.fill_interval,
        "first": int(history.steps[0]),
        "last": int(history.steps[-1]),
        "steps": len(history.steps),
        "timeframes": list(history.timeframes),
        "balance": spec.balance_usd,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Entry:
    """One contestant as planned: its model, and the run whose answers it replays (None: it calls the model)."""

    model: str
    source: str | None

    @property
    def calls_model(self) -> bool:
        return self.model != BASELINE and self.source is None


@dataclass(frozen=True)
class Estimate:
    """What calling one model over the arena is expected to cost, before it runs."""

    model: str
    calls: int
    prompt_tokens: int  # per call
    prompt_price: float | None  # USD per token; None: unknown
    completion_price: float | None

    @property
    def cost_usd(self) -> float | None:
        if self.prompt_price is None or self.completion_price is None:
            return None
        return self.calls * (self.prompt_tokens * self.prompt_price + COMPLETION_TOKENS * self.completion_price)


def plan(store: Store, key: str, models: Sequence[str]) -> list[Entry]:
    """The contestants: the baseline first, then each model, replaying the run that recorded the most of its
    answers on this market when there is one."""
    wanted = list(dict.fromkeys([BASELINE, *models]))
    return [Entry(m, None if m == BASELINE else arenas.recorded_source(store, key, m)) for m in wanted]


def prompt_tokens_estimate(strategy: Strategy, symbols: Sequence[str], timeframes: Sequence[str]) -> int:
    """Prompt tokens of one decision, estimated from the strategy's templates and what the market section
    shows per symbol and timeframe (about 4 characters a token)."""
    context = strategy.context
    per_frame = 300 + context.candles_in_prompt * 70
    chars = len(strategy.prompt.system) + len(strategy.prompt.user) + 1500
    chars += len(symbols) * (400 + len(timeframes) * per_frame)
    return chars // 4


def model_prices(settings: Settings, models: Sequence[str]) -> dict[str, tuple[float, float]]:
    """USD per prompt and completion token of each model: from the endpoint's model list (OpenRouter's
    ``pricing``), else the configured price table (LLM_PRICES, per million tokens)."""
    from llmtrader.llm.probe import listed_prices

    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key is not None else ""
    prices = listed_prices(settings.llm_base_url, key, models)
    for model in models:
        table = settings.llm_prices.get(model)
        if model not in prices and table is not None:
            prices[model] = (table.prompt / 1e6, table.completion / 1e6)
    return prices


def estimates(
    settings: Settings,
    entries: Sequence[Entry],
    steps: int,
    strategy: Strategy,
    spec: BacktestSpec,
    timeframes: Sequence[str],
) -> list[Estimate]:
    """The estimated cost of each contestant that calls its model."""
    calling = [e.model for e in entries if e.calls_model]
    prices = model_prices(settings, calling) if calling else {}
    tokens = prompt_tokens_estimate(strategy, spec.symbols, timeframes)
    out = []
    for model in calling:
        price = prices.get(model)
        out.append(Estimate(model, steps, tokens, price[0] if price else None, price[1] if price else None))
    return out


class EndpointLimit:
    """A decision client that waits for a free slot of its endpoint before each call: the contestants on one
    endpoint share ``concurrency`` calls in flight."""

    def __init__(self, inner: DecisionClient, slots: asyncio.Semaphore) -> None:
        self.inner = inner
        self.model = inner.model
        self.base_url = inner.base_url
        self.reads_prompt = getattr(inner, "reads_prompt", True)
        self.slots = slots

    async def decide(self, request: DecisionRequest) -> ModelAnswer:
        async with self.slots:
            return await self.inner.decide(request)

    async def aclose(self) -> None:
        aclose = getattr(self.inner, "aclose", None)
        if aclose is not None:
            await aclose()


@dataclass
class Outcome:
    """One contestant after the arena ran."""

    entry: Entry
    result: BacktestResult


ClientFactory = Callable[[str], DecisionClient]


async def run_arena(
    settings: Settings,
    spec: BacktestSpec,
    history: History,
    store: Store,
    entries: Sequence[Entry],
    make_client: ClientFactory,
    *,
    key: str,
    concurrency: int = 2,
    max_cost_usd: float | None = None,
    should_stop: Callable[[], str | None] | None = None,
) -> tuple[str, list[Outcome]]:
    """Run every contestant of ``entries`` on ``history`` as a backtest of arena (returned id): the ones that
    call a model concurrently (at most ``concurrency`` calls in flight per endpoint), and the ones with their
    answers at hand (the baseline, replays) each in a database of its own, copied into ``store`` when it ends
    (:mod:`llmtrader.backtest.isolated`): with ``concurrency`` above 1 (and no ``should_stop``), in up to
    ``concurrency`` worker processes (no more than the cores) while the models are called; else one after the
    other, after the baseline and the calls. Each model stops at ``max_cost_usd``."""
    arena_id = "ar-" + new_decision_id(int(time.time() * 1000))
    slots: dict[str, asyncio.Semaphore] = {}

    def stop_for(client: Any) -> Callable[[], str | None]:
        budget = budget_stop(client, max_cost_usd)

        def check() -> str | None:
            outside = should_stop() if should_stop is not None else None
            return outside if outside is not None else budget()

        return check

    refs: dict[str, Any] = {}

    def spec_of(entry: Entry) -> BacktestSpec:
        return replace(
            spec, model=entry.model, replay_of=entry.source, max_cost_usd=max_cost_usd, arena=arena_id, arena_key=key
        )

    async def one(entry: Entry) -> Outcome:
        run_id = new_run_id()
        mine = spec_of(entry)
        if not entry.calls_model:
            result = await run_isolated(settings, mine, history, store, run_id=run_id, should_stop=should_stop,
                                        references=refs)  # fmt: skip
            return Outcome(entry, result)
        inner = make_client(entry.model)
        inner = EndpointLimit(inner, slots.setdefault(inner.base_url, asyncio.Semaphore(max(1, concurrency))))
        client: Any = RecordingClient(inner, store, run_id)
        try:
            result = await run_backtest(
                settings, mine, history, store, client, run_id=run_id, should_stop=stop_for(client), references=refs
            )
        finally:
            aclose = getattr(client, "aclose", None)
            if aclose is not None:
                await aclose()
        return Outcome(entry, result)

    calling = [e for e in entries if e.calls_model]
    local = [e for e in entries if not e.calls_model and e.model != BASELINE]
    at_hand = [e for e in entries if not e.calls_model]  # the baseline first (entries start with it), then replays
    outcomes: list[Outcome] = []
    # Each run quiets the cycle's log and restores the level it found: overlapping runs would restore each
    # other's quieted level, so the arena restores the level it found itself.
    cycle_logger = logging.getLogger("llmtrader.cycle")
    level = cycle_logger.level
    try:
        if concurrency > 1 and should_stop is None and len(at_hand) > 1:
            runs = [(spec_of(e), new_run_id()) for e in at_hand]
            processes = min(concurrency, usable_cores(), len(runs))
            called, made = await asyncio.gather(
                asyncio.gather(*(one(e) for e in calling)),
                run_parallel(settings, history, store, runs, processes=processes),
            )
            outcomes += [*called, *(Outcome(e, r) for e, r in zip(at_hand, made, strict=True))]
            _join_references(store, outcomes)
        else:
            await _all(entries, calling, local, one, refs, outcomes)
    finally:
        cycle_logger.setLevel(level)
    order = {e.model: i for i, e in enumerate(entries)}
    outcomes.sort(key=lambda o: order[o.entry.model])
    return arena_id, outcomes


async def _all(
    entries: Sequence[Entry],
    calling: Sequence[Entry],
    local: Sequence[Entry],
    one: Callable[[Entry], Awaitable[Outcome]],
    refs: dict[str, Any],
    outcomes: list[Outcome],
) -> None:
    # The baseline first: its return is every other contestant's reference.
    for entry in (e for e in entries if e.model == BASELINE):
        done = await one(entry)
        refs.update(baseline_pct=done.result.metrics.get("total_return_pct"), baseline_run=done.result.run_id)
        outcomes.append(done)
    # Calls take seconds and each record commits on its own; the runs with answers at hand keep the event loop
    # busy while they step, so they run alone, after the calls.
    outcomes += await asyncio.gather(*(one(e) for e in calling))
    for entry in local:
        outcomes.append(await one(entry))


def _join_references(store: Store, outcomes: Sequence[Outcome]) -> None:
    """Give every contestant's figures the baseline's return, as a baseline run first would have (in parallel,
    a contestant can end before the baseline)."""
    base = next((o for o in outcomes if o.entry.model == BASELINE), None)
    if base is None:
        return
    refs = {"baseline_pct": base.result.metrics.get("total_return_pct"), "baseline_run": base.result.run_id}
    for o in outcomes:
        if o is not base and o.result.metrics:
            o.result.metrics.update(refs)
            arenas.add_references(store, o.result.run_id, refs)

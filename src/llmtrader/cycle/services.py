"""The services one account's cycle runs on (built by :mod:`llmtrader.cycle.compose`, the one
composition root): the ports, the store, the clock, the A/B arms and the typed cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from llmtrader.config.settings import Settings
from llmtrader.core.context import CandleLines
from llmtrader.core.filters import SymbolRules
from llmtrader.core.records import DecisionRecord
from llmtrader.core.risk import (
    ValidationReport,
)
from llmtrader.core.strategy import Strategy
from llmtrader.core.times import Clock
from llmtrader.cycle.cache import HistoryCache, KeptHistory
from llmtrader.cycle.execution import ExecutionReport, ExecutionSettings
from llmtrader.exchange.base import (
    Exchange,
    MarketData,
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
    # candle lines of the prompt rendered before: a backtest's speed-up (each step renders again all but the newest
    # candle of every frame); None on the live path, which renders each line afresh
    candle_lines: CandleLines | None = None


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


def execution_settings(settings: Settings) -> ExecutionSettings:
    return ExecutionSettings(
        margin_type=settings.margin_type,
        protect_attempts=settings.stop_loss_attempts,
        taker_fee=Decimal(str(settings.paper_taker_fee)),
    )

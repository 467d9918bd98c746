"""What a backtest is: its request and spec (checked like settings), its run id, its settings and where its
runs are stored (``backtests.db``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmtrader.config.settings import Settings
from llmtrader.config.strategies import load_strategy
from llmtrader.core.records import new_decision_id
from llmtrader.core.times import INTERVAL_MS, utc_minute
from llmtrader.cycle.strategies import strategy_in_force
from llmtrader.errors import ConfigError
from llmtrader.llm.port import DecisionClient
from llmtrader.storage import backtests as runs
from llmtrader.storage.store import Store, open_reader

if TYPE_CHECKING:
    from llmtrader.core.strategy import Strategy


# A 1h agent decides at hh:00:05 (llmtrader.scheduler.DEFAULT_OFFSET_S): so does a backtest step.
STEP_OFFSET_MS = 5_000


# Candles of the decision interval before the first step by default: EMA50, the longest indicator window.
WARMUP_CANDLES = 50


# Rules for data without exchangeInfo.json: the venue's usual minimum order value.
DEFAULT_MIN_NOTIONAL = Decimal(5)


def backtest_db_path(settings: Settings) -> Path:
    """The backtests' database: ``backtests.db`` beside the agent's database."""
    return settings.db.with_name("backtests.db")


@dataclass(frozen=True)
class BacktestSpec:
    """What to run. ``start_ms``/``end_ms`` bound the decision times (candle closes); None: the data's range
    (after :data:`WARMUP_CANDLES` candles). ``timeframes`` None: the strategy's."""

    data_dir: str
    symbols: tuple[str, ...]
    interval: str
    strategy: str
    model: str
    balance_usd: float
    start_ms: int | None = None
    end_ms: int | None = None
    timeframes: tuple[str, ...] | None = None
    fill_interval: str | None = None  # candles that trigger orders between steps (default: the interval)
    leverage: int | None = None  # overrides LEVERAGE
    max_position_usd: float | None = None  # overrides MAX_POSITION_SIZE_USD
    replay_of: str | None = None
    max_cost_usd: float | None = None
    arena: str | None = None  # the arena the run is a contestant of (llmtrader.arena)
    arena_key: str | None = None  # the market its contestants faced: see llmtrader.arena.run.market_key

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["symbols"] = list(self.symbols)
        data["timeframes"] = list(self.timeframes) if self.timeframes is not None else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BacktestSpec:
        values = dict(data)
        values["symbols"] = tuple(values["symbols"])
        if values.get("timeframes") is not None:
            values["timeframes"] = tuple(values["timeframes"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


def new_run_id(now_ms: int | None = None) -> str:
    return "bt-" + new_decision_id(now_ms if now_ms is not None else int(time.time() * 1000))


def backtest_settings(settings: Settings, spec: BacktestSpec, run_id: str, db: Path) -> Settings:
    """The settings a run's cycle sees: the run is its own paper account, with the spec's symbols, interval,
    strategy, model and balance; no A/B test (one model decides)."""
    update: dict[str, Any] = {
        "account": run_id,
        "trading_mode": "paper",
        "assets": list(spec.symbols),
        "interval": spec.interval,
        "strategy": spec.strategy,
        "llm_model": spec.model,
        "paper_balance_usd": spec.balance_usd,
        "db": db,
        "ab": None,
        # The data's rules never change during a run: read once, not again every simulated hour.
        "exchange_info_ttl_s": 10**9,
        # The decision cache reuses an answer when no new candle closed since (a restarted agent): every
        # step of a backtest has a new candle, so it could never apply, and it is off.
        "decision_cache_ttl_s": 0,
    }
    if spec.leverage is not None:
        update["leverage"] = spec.leverage
    if spec.max_position_usd is not None:
        update["max_position_size_usd"] = spec.max_position_usd
    return settings.model_copy(update=update)


@dataclass(frozen=True)
class Request:
    """What ``llmtrader backtest`` was given (None: not given; the configuration or the replayed run decides)."""

    data: str | None = None
    symbols: tuple[str, ...] | None = None
    interval: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    strategy: str | None = None
    timeframes: tuple[str, ...] | None = None
    model: str | None = None
    balance_usd: float | None = None
    leverage: int | None = None
    max_position_usd: float | None = None
    fill_interval: str | None = None
    replay: str | None = None
    max_cost_usd: float | None = None


def build_spec(settings: Settings, request: Request, store: Store) -> tuple[BacktestSpec, Strategy]:
    """The run to make: the request, else (``--replay``) the replayed run's own settings, else the
    configuration (the strategy's interval, ASSETS, LLM_MODEL, PAPER_BALANCE_USD). The strategy is loaded."""
    base: BacktestSpec | None = None
    if request.replay is not None:
        source = runs.get_run(store, request.replay)
        base = BacktestSpec.from_json(source.spec)
        if source.steps_done == 0:
            raise ConfigError(f"backtest {source.id} made no step: there is nothing to replay")
    data = request.data or (base.data_dir if base is not None else None)
    if data is None:
        raise ConfigError("backtest needs --data DIR (CSV files from `llmtrader download`), or --replay RUN")
    if request.strategy:
        strategy_name = request.strategy
    elif base is not None:
        strategy_name = base.strategy
    else:  # as the agent would use it now (its database is read, not created, for this)
        conn = open_reader(settings.db)
        try:
            strategy_name, _ = strategy_in_force(conn, settings)
        finally:
            if conn is not None:
                conn.close()
    strategy = load_strategy(strategy_name, settings.strategies_dir)
    interval = request.interval or (base.interval if base is not None else strategy.interval)
    if interval not in INTERVAL_MS:
        raise ConfigError(f"--interval {interval!r} is not one of {', '.join(INTERVAL_MS)}")
    for name, value in (("--interval", interval), ("--fill-interval", request.fill_interval)):
        if value is not None and value not in INTERVAL_MS:
            raise ConfigError(f"{name} {value!r} is not one of {', '.join(INTERVAL_MS)}")
    for tf in request.timeframes or ():
        if tf not in INTERVAL_MS:
            raise ConfigError(f"--timeframes: {tf!r} is not one of {', '.join(INTERVAL_MS)}")
    start = request.start_ms if request.start_ms is not None else (base.start_ms if base is not None else None)
    end = request.end_ms if request.end_ms is not None else (base.end_ms if base is not None else None)
    if start is not None and end is not None and end < start:
        raise ConfigError(f"--to {utc_minute(end)} is before --from {utc_minute(start)}")
    if base is not None and request.model is not None and request.model != base.model:
        raise ConfigError(
            f"--replay {request.replay} replays the answers of {base.model}; --model {request.model} cannot apply"
        )
    spec = BacktestSpec(
        data_dir=str(Path(data).expanduser()),
        symbols=request.symbols or (base.symbols if base is not None else tuple(settings.assets)),
        interval=interval,
        strategy=strategy.name,
        model=base.model if base is not None else (request.model or settings.llm_model),
        balance_usd=request.balance_usd or (base.balance_usd if base is not None else settings.paper_balance_usd),
        start_ms=start,
        end_ms=end,
        timeframes=request.timeframes or (base.timeframes if base is not None else None),
        fill_interval=request.fill_interval or (base.fill_interval if base is not None else None),
        leverage=request.leverage if request.leverage is not None else (base.leverage if base else None),
        max_position_usd=request.max_position_usd
        if request.max_position_usd is not None
        else (base.max_position_usd if base else None),
        replay_of=runs.get_run(store, request.replay).id if request.replay is not None else None,
        max_cost_usd=request.max_cost_usd,
    )
    if spec.balance_usd <= 0:
        raise ConfigError(f"--balance {spec.balance_usd} must be positive")
    return spec, strategy


def open_backtests(settings: Settings) -> Store:
    """The backtests' database (created and migrated on first use)."""

    return Store(backtest_db_path(settings), durable=False)


def budget_stop(client: DecisionClient, max_cost_usd: float | None) -> Callable[[], str | None]:
    """A ``should_stop`` that stops the run once the recorded model cost reaches ``max_cost_usd``."""

    def check() -> str | None:
        spent = float(getattr(client, "spent_usd", 0.0))
        if max_cost_usd is not None and spent >= max_cost_usd:
            return f"the model cost reached --max-cost {max_cost_usd:g} USD ({spent:.4f} USD)"
        return None

    return check

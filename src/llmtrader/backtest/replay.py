"""Backtests: history replayed through the same cycle as ``llmtrader run``, with nothing from the future.

A run steps through the decision interval's candle closes. At each step the simulated account
(:class:`~llmtrader.exchange.simulated.SimulatedExchange`, the paper account's own book) first walks the
candles that closed since the last step, so stops, targets, limits and liquidations trigger inside them
(the stop first when a candle holds both) and funding settles at its times; then
:func:`llmtrader.cycle.run.run_cycle` runs exactly as the scheduled agent runs it: reconcile, guards, context,
decision, validation, execution, recording. The cycle reads the market from :class:`HistoricalMarket`,
which only ever hands out candles closed at the step's time, the last funding rate settled by then, and
indicator values computed once per series (every value at index i uses candles up to i only) and sliced.

Every model answer is recorded by the SHA-256 of the exact request (:func:`request_hash`), so a run can be
replayed without calling the model (:class:`ReplayClient`): byte for byte when nothing changed, or under
other limits, when each step reuses the answer the model gave at that step and the validator decides anew.

Runs live in their own database (``backtests.db`` beside the agent's), so a backtest never competes with a
running agent for its database, and their commits skip the fsync a real account's orders need.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmtrader.backtest.cache import BacktestCache
from llmtrader.backtest.datafiles import EXCHANGE_INFO_FILE, candle_path, funding_path, read_candles, read_funding
from llmtrader.config.settings import Settings
from llmtrader.config.strategies import load_strategy
from llmtrader.core.decision import LenientDecision, decision_json_schema
from llmtrader.core.filters import SymbolRules, parse_exchange_info
from llmtrader.core.market import AssetMarket, Candles, MarketSnapshot
from llmtrader.core.records import new_decision_id
from llmtrader.core.stats import EquityPoint
from llmtrader.core.times import DAY_MS, INTERVAL_MS, utc_minute
from llmtrader.core.trades import sharpe
from llmtrader.cycle.strategies import strategy_in_force
from llmtrader.errors import ConfigError, DataError, ModelError
from llmtrader.llm.baseline import BaselineClient
from llmtrader.llm.port import CallRecord, DecisionClient, DecisionRequest, ModelAnswer, reads_prompt
from llmtrader.storage import backtests as runs
from llmtrader.storage.backtests import StoredAnswer, run_records
from llmtrader.storage.store import Store, open_reader

if TYPE_CHECKING:
    from llmtrader.core.strategy import Strategy
    from llmtrader.core.trades import AccountHistory
    from llmtrader.exchange.simulated import SimulatedExchange, Tape
# Steps committed together when no model is called (see run_backtest).
BATCH_STEPS = 256
# A 1h agent decides at hh:00:05 (llmtrader.scheduler.DEFAULT_OFFSET_S): so does a backtest step.
STEP_OFFSET_MS = 5_000
# Candles of the decision interval before the first step by default: EMA50, the longest indicator window.
WARMUP_CANDLES = 50
# Rules for data without exchangeInfo.json: the venue's usual minimum order value.
DEFAULT_MIN_NOTIONAL = Decimal(5)


def backtest_db_path(settings: Settings) -> Path:
    """The backtests' database: ``backtests.db`` beside the agent's database."""
    return settings.db.with_name("backtests.db")


# ---- the specification -------------------------------------------------------------------------------------


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


# ---- history -----------------------------------------------------------------------------------------------


@dataclass
class History:
    """The data of a run, read, checked, and with indicators computed once per series."""

    series: dict[tuple[str, str], Candles]  # (symbol, timeframe) -> the whole series, indicators attached
    close_times: dict[tuple[str, str], np.ndarray]  # when each candle of a series closed
    tapes: dict[str, Tape]
    funding: dict[str, tuple[np.ndarray, tuple[Decimal, ...]]]
    rules: dict[str, SymbolRules]
    steps: np.ndarray  # decision times: candle closes of the interval, int64 ms
    timeframes: tuple[str, ...]
    notes: list[str] = field(default_factory=list)
    # The strategy the run decides with, as loaded with the data: a file edited during the run changes nothing.
    strategy: Strategy | None = None


def resample(candles: Candles, interval: str) -> Candles:
    """Candles of a longer ``interval`` built from complete groups of shorter ones (open of the first, highest
    high, lowest low, close of the last, summed volume), aligned on the epoch like the venue's."""
    size = INTERVAL_MS[interval]
    step = INTERVAL_MS[candles.interval]
    per = size // step
    bucket = candles.open_time_ms // size
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    counts = np.diff(np.r_[starts, len(bucket)])
    # A group is complete when it holds every candle and starts on the boundary.
    whole = (counts == per) & (candles.open_time_ms[starts] % size == 0)
    starts, counts = starts[whole], counts[whole]
    groups = list(zip(starts.tolist(), (starts + counts).tolist(), strict=True))
    rows = np.array(
        [
            (
                candles.open_time_ms[a],
                candles.open[a],
                candles.high[a:b].max(),
                candles.low[a:b].min(),
                candles.close[b - 1],
                candles.volume[a:b].sum(),
            )
            for a, b in groups
        ],
        dtype=np.float64,
    ).reshape(-1, 6)
    return Candles.from_rows(candles.symbol, interval, rows)


def _decimal_places(values: np.ndarray) -> int:
    places = 0
    for value in values.tolist():
        text = repr(value)
        if "e" in text or "E" in text:
            text = format(Decimal(text), "f")
        if "." in text:
            places = max(places, len(text.split(".")[1].rstrip("0")))
    return places


def derived_rules(symbol: str, candles: Candles) -> SymbolRules:
    """Rules for data without the venue's exchangeInfo: the tick is the finest price step in the data, the
    step the finest volume step, and a 5 USD minimum order value."""
    tick = Decimal(1).scaleb(-_decimal_places(np.concatenate([candles.open, candles.high, candles.low, candles.close])))
    step = Decimal(1).scaleb(-_decimal_places(candles.volume))
    big = Decimal(10) ** 12
    return SymbolRules(
        symbol=symbol,
        status="TRADING",
        base_asset=symbol.removesuffix("USDT"),
        quote_asset="USDT",
        tick_size=tick,
        min_price=tick,
        max_price=big,
        step_size=step,
        min_qty=step,
        max_qty=big,
        market_step_size=step,
        market_min_qty=step,
        market_max_qty=big,
        min_notional=DEFAULT_MIN_NOTIONAL,
        percent_up=Decimal(0),
        percent_down=Decimal(0),
    )


def _funding_segments(times: np.ndarray) -> list[tuple[int, int]]:
    """Where the funding data is continuous: (first, last) settlement times of each stretch."""
    if not len(times):
        return []
    usual = float(np.median(np.diff(times))) if len(times) > 1 else float(8 * 3_600_000)
    breaks = np.flatnonzero(np.diff(times) > 1.5 * usual)
    starts = np.r_[0, breaks + 1]
    ends = np.r_[breaks, len(times) - 1]
    return [(int(times[a]), int(times[b])) for a, b in zip(starts, ends, strict=True)]


def settlement_marks(times_ms: np.ndarray, sources: Sequence[Candles]) -> tuple[list[Decimal | None], np.ndarray]:
    """The price each funding settlement is valued at, and how long before it that price was known (ms).

    The data holds no mark price at a settlement instant, so the price is the close of the newest candle
    closed at or before it, over every series of the symbol the run has loaded (the fill candles and the
    timeframes the context shows): the close of a candle ending at the instant where there is one, the
    last price known then otherwise. Never a later price: with daily fill candles, the 08:00 and 16:00
    settlements are valued from the 1h or 4h candles when the run has them, not at the day's close. On a
    tie the first source wins (the fill candles: the price the simulated account walked).
    """
    times = np.asarray(times_ms, dtype=np.int64)
    best_at = np.full(len(times), -1, dtype=np.int64)
    best: list[Decimal | None] = [None] * len(times)
    for candles in sources:
        if not len(candles):
            continue
        closes_at = candles.open_time_ms.astype(np.int64) + INTERVAL_MS[candles.interval]
        index = np.searchsorted(closes_at, times, "right") - 1
        for k, i in enumerate(index.tolist()):
            if i >= 0 and int(closes_at[i]) > best_at[k]:
                best_at[k] = int(closes_at[i])
                best[k] = Decimal(repr(float(candles.close[i])))
    stale = np.where(best_at >= 0, times - best_at, 0)
    return best, stale


def load_history(spec: BacktestSpec, strategy: Strategy) -> History:
    """Read and check the data of ``spec``: every timeframe the context shows (from its file, or built from
    the interval's candles when longer), the candles that trigger orders, funding, and the venue's rules.

    Raises DataError naming the file, the symbol and the range when data is missing or does not cover the run.
    """
    from llmtrader.core.indicators import compute_many

    directory = Path(spec.data_dir).expanduser()
    if not directory.is_dir():
        raise DataError(f"--data {directory}: no such directory (download data with `llmtrader download`)")
    interval = spec.interval
    step = INTERVAL_MS[interval]
    wanted = spec.timeframes if spec.timeframes is not None else tuple(strategy.timeframes)
    timeframes = tuple(dict.fromkeys([*wanted, interval]))
    notes: list[str] = []
    if spec.timeframes is not None and tuple(strategy.timeframes) != tuple(spec.timeframes):
        notes.append(
            f"timeframes shown: {', '.join(timeframes)} (--timeframes); strategy {strategy.name} asks for "
            f"{', '.join(strategy.timeframes)}"
        )
    fill_interval = spec.fill_interval or interval
    if INTERVAL_MS[fill_interval] > step or step % INTERVAL_MS[fill_interval]:
        raise ConfigError(f"--fill-interval {fill_interval} must divide the decision interval {interval}")

    series: dict[tuple[str, str], Candles] = {}
    for symbol in spec.symbols:
        base = _read(directory, symbol, interval)
        series[(symbol, interval)] = base
        for tf in timeframes:
            if tf == interval:
                continue
            if candle_path(directory, symbol, tf).is_file():
                series[(symbol, tf)] = _read(directory, symbol, tf)
            elif INTERVAL_MS[tf] > step and INTERVAL_MS[tf] % step == 0:
                series[(symbol, tf)] = resample(base, tf)
                if symbol == spec.symbols[0]:
                    notes.append(f"{tf} candles built from the {interval} candles (no {symbol}-{tf}.csv)")
            else:
                raise DataError(
                    f"{candle_path(directory, symbol, tf)}: no such file, and {tf} candles cannot be built from "
                    f"{interval} ones; download them (`llmtrader download --interval {tf}`) or leave {tf} out "
                    f"with --timeframes"
                )

    # The decision times: closes of the interval's candles that every symbol has, after the warm-up.
    closes = None
    for symbol in spec.symbols:
        base = series[(symbol, interval)]
        if len(base) <= WARMUP_CANDLES:
            raise DataError(
                f"{candle_path(directory, symbol, interval)}: {len(base)} candles; a backtest needs more than "
                f"{WARMUP_CANDLES} (the indicators' warm-up)"
            )
        mine = base.open_time_ms[WARMUP_CANDLES:] + step
        closes = mine if closes is None else np.intersect1d(closes, mine)
    assert closes is not None
    first_possible, last_possible = (int(closes[0]), int(closes[-1])) if len(closes) else (0, 0)
    start = spec.start_ms if spec.start_ms is not None else first_possible
    end = spec.end_ms if spec.end_ms is not None else last_possible
    steps = closes[(closes >= start) & (closes <= end)].astype(np.int64)
    if not len(steps):
        raise DataError(
            f"no {interval} candle of {', '.join(spec.symbols)} in {directory} closes between {utc_minute(start)} and "
            f"{utc_minute(end)}; the data allows decisions from {utc_minute(first_possible)} to "
            f"{utc_minute(last_possible)}"
        )
    if spec.start_ms is not None and spec.start_ms < first_possible:
        notes.append(
            f"the first decision is at {utc_minute(int(steps[0]))}: the data starts {WARMUP_CANDLES} {interval} "
            "candles (the indicators' warm-up) before it"
        )
    first, last = int(steps[0]), int(steps[-1])

    # Every other timeframe must have a closed candle at the first step and reach the last one.
    for (symbol, tf), candles in series.items():
        if tf == interval or not len(candles):
            if not len(candles):
                raise DataError(f"{symbol} {tf}: no complete candle in {directory}")
            continue
        ends = candles.open_time_ms + INTERVAL_MS[tf]
        if int(ends[0]) > first or int(ends[-1]) < last - INTERVAL_MS[tf]:
            raise DataError(
                f"{candle_path(directory, symbol, tf)}: its {tf} candles close from {utc_minute(int(ends[0]))} to "
                f"{utc_minute(int(ends[-1]))}, which does not cover the run ({utc_minute(first)} to "
                f"{utc_minute(last)}); "
                f"shorten the run with --from/--to, download the missing data, or leave {tf} out with --timeframes"
            )

    for (symbol, tf), candles in series.items():
        gaps = np.flatnonzero(np.diff(candles.open_time_ms) != INTERVAL_MS[tf])
        if len(gaps):
            first_gap = utc_minute(int(candles.open_time_ms[gaps[0]]))
            notes.append(f"{symbol} {tf}: {len(gaps)} gap(s) in the candles, the first after {first_gap}")

    # Indicators: once per series, over the whole series; a step sees a slice.
    keys = list(series)
    for key, values in zip(keys, compute_many([series[k] for k in keys]), strict=True):
        series[key] = replace(series[key], indicators=values)
    close_times = {k: c.open_time_ms + INTERVAL_MS[k[1]] for k, c in series.items()}

    from llmtrader.exchange.simulated import Tape

    tapes: dict[str, Tape] = {}
    funding: dict[str, tuple[np.ndarray, tuple[Decimal, ...]]] = {}
    for symbol in spec.symbols:
        fill = series[(symbol, interval)] if fill_interval == interval else _read(directory, symbol, fill_interval)
        if fill_interval != interval:
            fill_ends = fill.open_time_ms + INTERVAL_MS[fill_interval]
            if not len(fill) or int(fill_ends[0]) > first or int(fill_ends[-1]) < last:
                raise DataError(
                    f"{candle_path(directory, symbol, fill_interval)}: does not cover the run ({utc_minute(first)} to "
                    f"{utc_minute(last)}); use another --fill-interval"
                )
        path = funding_path(directory, symbol)
        if path.is_file():
            read = read_funding(path)
            times, rates = read.times_ms, read.rates
            inside = [(a, b) for a, b in _funding_segments(times) if b >= first and a <= last]
            covered = ", ".join(f"{utc_minute(a)} to {utc_minute(b)}" for a, b in inside) or "none of the run"
            notes.append(f"{symbol} funding data covers {covered}; no funding is charged outside it")
        else:
            times, rates = np.empty(0, dtype=np.int64), ()
            notes.append(f"{symbol}: no {path.name} in the data: no funding is charged")
        funding[symbol] = (times, rates)
        sources = [fill, *(c for (s, _), c in series.items() if s == symbol)]
        marks, stale = settlement_marks(times, sources)
        in_run = (times >= first) & (times <= last)
        late = int(stale[in_run].max(initial=0))
        if late > 0:
            notes.append(
                f"{symbol}: {int(np.count_nonzero(stale[in_run]))} funding settlement(s) fall inside a candle of "
                f"every loaded timeframe; each is valued at the last close before it (up to {late // 60_000} min "
                "earlier); a shorter timeframe (--timeframes) gives closer prices"
            )
        tapes[symbol] = Tape.of(fill, INTERVAL_MS[fill_interval], times, rates, marks)

    info = directory / EXCHANGE_INFO_FILE
    rules: dict[str, SymbolRules]
    if info.is_file():
        try:
            rules = parse_exchange_info(json.loads(info.read_text(encoding="utf-8")))
        except (ValueError, Exception) as exc:
            raise DataError(f"{info}: not a readable exchangeInfo reply ({exc})") from None
        missing = [s for s in spec.symbols if s not in rules]
        if missing:
            raise DataError(f"{info}: lists no {', '.join(missing)}")
        rules = {s: rules[s] for s in spec.symbols}
    else:
        # From the candles closed when the run starts: rules a trader could have known then.
        rules = {s: derived_rules(s, series[(s, interval)].until(first)) for s in spec.symbols}
        notes.append(
            f"no {EXCHANGE_INFO_FILE} in the data: tick and step sizes are the finest in the data "
            f"({'; '.join(f'{s} tick {r.tick_size} step {r.step_size}' for s, r in rules.items())}), "
            f"minimum order {DEFAULT_MIN_NOTIONAL} USD"
        )
    return History(series, close_times, tapes, funding, rules, steps, timeframes, notes, strategy)


def _read(directory: Path, symbol: str, interval: str) -> Candles:
    path = candle_path(directory, symbol, interval)
    if not path.is_file():
        present = sorted(p.name for p in directory.glob(f"{symbol}-*.csv"))
        listed = ", ".join(present) if present else "none"
        raise DataError(f"{path}: no such file (files of {symbol} there: {listed})")
    return read_candles(path, symbol, interval).candles


# ---- the market as it stood ------------------------------------------------------------------------------------


class HistoricalMarket:
    """The market data port of a backtest: at time ``now_ms``, only what had happened by then.

    Candles: those closed by ``now_ms`` (open + interval <= now), with their precomputed indicators sliced
    along. Mark: the close of the newest closed candle of the candles that trigger orders (the simulated
    account values and fills at the same price). Funding: the last rate settled by ``now_ms``, never the
    next one. 24h figures: from the interval's closed candles of the last 24 hours (quote volume as the sum
    of volume x close). Index price and open interest are not in the data: None.
    """

    def __init__(self, history: History, interval: str, data_dir: str) -> None:
        self.history = history
        self.interval = interval
        self.base_url = f"backtest:{data_dir}"
        # The 24h figures at every candle of the interval (over that candle and the ones of the 24 hours
        # before it, closed ones only), computed once: change %, high, low, quote volume (volume x close).
        per_day = max(1, DAY_MS // INTERVAL_MS[interval])
        self._day: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._windows: dict[tuple[str, str], tuple[int, int, Candles]] = {}
        for (symbol, tf), c in history.series.items():
            if tf != interval:
                continue
            import pandas as pd

            first_open = pd.Series(c.open).shift(per_day - 1).to_numpy(copy=True)
            first_open[: per_day - 1] = c.open[0]
            self._day[symbol] = (
                (c.close / first_open - 1) * 100,
                pd.Series(c.high).rolling(per_day, min_periods=1).max().to_numpy(),
                pd.Series(c.low).rolling(per_day, min_periods=1).min().to_numpy(),
                pd.Series(c.volume * c.close).rolling(per_day, min_periods=1).sum().to_numpy(),
            )
        # At each settlement, the usual time between settlements so far (the median of the last three
        # gaps, 8 h before there are any): when the next one is due, and whether the data still covers now.
        self._funding_every: dict[str, np.ndarray] = {}
        for symbol, (times, _) in history.funding.items():
            gaps = np.diff(times)
            usual = np.full(len(times), 8 * 3_600_000, dtype=np.int64)
            for i in range(1, len(times)):
                usual[i] = int(np.median(gaps[max(0, i - 3) : i]))
            self._funding_every[symbol] = usual

    async def exchange_info(self) -> dict[str, SymbolRules]:
        return dict(self.history.rules)

    def window(self, symbol: str, interval: str, limit: int, now_ms: int) -> Candles:
        """The newest ``limit`` candles closed by ``now_ms`` (the same object while no candle closed since:
        a longer timeframe's window serves several steps)."""
        key = (symbol, interval)
        closed = int(self.history.close_times[key].searchsorted(now_ms, "right"))
        last = self._windows.get(key)
        if last is not None and last[0] == closed and last[1] == limit:
            return last[2]
        window = self.history.series[key]._slice(max(0, closed - limit), closed)
        self._windows[key] = (closed, limit, window)
        return window

    async def klines(self, symbol: str, interval: str, limit: int, now_ms: int) -> Candles:
        if (symbol, interval) not in self.history.series:
            raise DataError(f"the backtest has no {interval} candles of {symbol}")
        return self.window(symbol, interval, limit, now_ms)

    def mark(self, symbol: str, now_ms: int) -> float:
        tape = self.history.tapes[symbol]
        i = int(tape.open_time_ms.searchsorted(now_ms - tape.interval_ms, "right")) - 1
        return float(tape.prices[max(i, 0)][3])

    def asset(self, symbol: str, timeframes: Sequence[str], limit: int, now_ms: int) -> AssetMarket:
        candles = {
            tf: self.window(symbol, tf, limit, now_ms) for tf in timeframes if (symbol, tf) in self.history.series
        }
        closed = int(self.history.close_times[(symbol, self.interval)].searchsorted(now_ms, "right")) - 1
        change, high, low, volume = self._day[symbol]
        day = closed >= 0
        mark = self.mark(symbol, now_ms)
        times, rates = self.history.funding[symbol]
        settled = int(times.searchsorted(now_ms, "right")) - 1
        rate: float | None = None
        next_time: int | None = None
        if settled >= 0:
            usual = int(self._funding_every[symbol][settled])
            if now_ms - int(times[settled]) <= usual:  # inside the data's coverage: the rate in force
                rate = float(rates[settled])
                next_time = int(times[settled]) + usual
        return AssetMarket(
            symbol=symbol,
            candles=candles,
            mark_price=mark,
            index_price=None,
            funding_rate=rate,
            next_funding_time_ms=next_time,
            last_price=mark,
            price_change_pct_24h=float(change[closed]) if day else None,
            high_24h=float(high[closed]) if day else None,
            low_24h=float(low[closed]) if day else None,
            quote_volume_24h=float(volume[closed]) if day else None,
            open_interest=None,
        )

    async def snapshot(
        self,
        symbols: Sequence[str],
        timeframes: Sequence[str],
        limit: int,
        now_ms: int,
        rules: dict[str, SymbolRules] | None = None,
    ) -> MarketSnapshot:
        return MarketSnapshot(
            as_of_ms=now_ms,
            assets={s: self.asset(s, timeframes, limit, now_ms) for s in symbols},
            rules={s: rules[s] for s in symbols if s in rules} if rules else {},
        )

    async def aclose(self) -> None:
        """Nothing to release."""


class SimulatedClock:
    """The backtest's time, moved by the run."""

    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


# ---- recorded model answers ---------------------------------------------------------------------------------


def request_hash(model: str, base_url: str, system: str, user: str) -> str:
    """SHA-256 of the exact request a decision client is given: model, endpoint, both messages and the
    decision schema (part of every request as its response format), after a version tag of this definition."""
    digest = hashlib.sha256()
    # Each part prefixed with its length: no two different requests frame to the same bytes.
    for part in (REQUEST_HASH_VERSION, model, base_url, system, user, _schema_text()):
        data = part.encode()
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


REQUEST_HASH_VERSION = "llmtrader-request-v1"
_SCHEMA_TEXT: list[str] = []


def _schema_text() -> str:
    """The decision schema's canonical JSON, built once."""
    if not _SCHEMA_TEXT:
        _SCHEMA_TEXT.append(json.dumps(decision_json_schema(), sort_keys=True, separators=(",", ":")))
    return _SCHEMA_TEXT[0]


_CALL_FIELDS = tuple(f.name for f in fields(CallRecord))


def _call_json(call: CallRecord) -> dict[str, Any]:
    return {name: getattr(call, name) for name in _CALL_FIELDS}


def _answer_json(answer: ModelAnswer) -> dict[str, Any]:
    return {
        "raw_response": answer.raw_response,
        "decision": answer.decision_json,
        "calls": [_call_json(c) for c in answer.calls],
        "reasks": answer.reasks,
        "response_format": answer.response_format,
        "parse_errors": list(answer.parse_errors),
    }


def _free(calls: Sequence[dict[str, Any]]) -> list[CallRecord]:
    """Recorded calls as replayed: what the model said, at no cost and no latency."""
    return [CallRecord(**{**c, "cost_usd": 0.0, "latency_ms": 0}) for c in calls]


class RecordingClient:
    """A decision client that records every answer (and every failure) of ``inner`` by its request hash.

    A client that reads no prompt (the baseline) is not recorded: it has no request to hash, and its answers
    follow from the context alone, so running it again gives them again.
    """

    def __init__(self, inner: DecisionClient, store: Store, run_id: str) -> None:
        self.inner = inner
        self.model = inner.model
        self.base_url = inner.base_url
        self.reads_prompt = reads_prompt(inner)
        self.store = store
        self.run_id = run_id
        self.spent_usd = 0.0

    async def decide(self, request: DecisionRequest) -> ModelAnswer:
        if not self.reads_prompt:
            return await self.inner.decide(request)
        digest = request_hash(self.model, self.base_url, request.system, request.user)
        step = request.context.as_of_ms
        try:
            answer = await self.inner.decide(request)
        except ModelError as exc:
            calls = [c for c in exc.calls if isinstance(c, CallRecord)]
            self.spent_usd += sum(c.cost_usd or 0.0 for c in calls)
            body = {"error": str(exc), "calls": [_call_json(c) for c in calls]}
            runs.record_answer(
                self.store, self.run_id, StoredAnswer(step, digest, self.model, self.base_url, "error", body)
            )
            raise
        self.spent_usd += answer.cost_usd or 0.0
        stored = StoredAnswer(step, digest, self.model, self.base_url, "answer", _answer_json(answer))
        runs.record_answer(self.store, self.run_id, stored)
        return answer

    async def aclose(self) -> None:
        aclose = getattr(self.inner, "aclose", None)
        if aclose is not None:
            await aclose()


class ReplayClient:
    """Answers from a recorded run, never from the model.

    Each step gets the answer recorded at the same time in run ``source``. When the request's hash equals
    the recorded one, the replay is exact (same prompt, same answer, byte for byte); otherwise the prompt
    changed (other limits, another strategy file, an account that took another path) and the answer is
    reused as it was given, for the validator to judge under the new limits. A step with no recorded
    answer is a ModelError (the cycle records it and holds). The answers it gives are recorded in
    ``record_to`` (default: ``store``, where the source's are read).
    """

    def __init__(self, store: Store, source: str, run_id: str, *, record_to: Store | None = None) -> None:
        self.store = record_to if record_to is not None else store
        self.source = source
        self.run_id = run_id
        self.answers = runs.answers_of(store, source)
        if not self.answers:
            if runs.get_run(store, source).spec.get("model") == "baseline":
                raise ConfigError(
                    f"backtest {source} used the baseline model, which reads no prompt and whose answers are not "
                    "recorded: run it again with --model baseline (under the new limits) instead of replaying it"
                )
            raise ConfigError(f"backtest {source} recorded no model answer: there is nothing to replay")
        first = next(iter(self.answers.values()))
        self.model = first.model
        self.base_url = first.base_url
        self.spent_usd = 0.0
        self.exact = self.differs = self.missing = 0

    async def decide(self, request: DecisionRequest) -> ModelAnswer:
        step = request.context.as_of_ms
        recorded = self.answers.get(step)
        if recorded is None:
            self.missing += 1
            raise ModelError(f"replay of {self.source}: no answer was recorded for {utc_minute(step)}", calls=[])
        digest = request_hash(self.model, self.base_url, request.system, request.user)
        exact = digest == recorded.request_hash
        if exact:
            self.exact += 1
        else:
            self.differs += 1
        kind = "replay_exact" if exact else "replay_differs"
        runs.record_answer(
            self.store,
            self.run_id,
            StoredAnswer(
                step, digest, self.model, self.base_url, kind, {**recorded.answer, "replayed_from": self.source}
            ),
        )
        body = recorded.answer
        if "error" in body:
            calls: list[object] = list(_free(body.get("calls", [])))
            raise ModelError(str(body["error"]), calls=calls)
        return ModelAnswer(
            raw_response=str(body["raw_response"]),
            decision=LenientDecision.model_validate(body["decision"]),
            calls=_free(body["calls"]),
            reasks=int(body["reasks"]),
            response_format=str(body["response_format"]),
            parse_errors=list(body.get("parse_errors", [])),
        )


# ---- the run --------------------------------------------------------------------------------------------------


@dataclass
class Sample:
    """The account after one step: equity, gross notional of the positions, number of positions."""

    time_ms: int
    equity_usd: float
    gross_usd: float
    positions: int

    def row(self) -> tuple[int, float, float, int]:
        return (self.time_ms, self.equity_usd, self.gross_usd, self.positions)


@dataclass
class BacktestResult:
    run_id: str
    status: str  # finished, interrupted, stopped, failed
    spec: BacktestSpec
    steps: int
    steps_done: int
    metrics: dict[str, Any]
    notes: list[str]
    equity: list[Sample]
    wall_s: float


Progress = Callable[[int, int], None]


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


async def run_backtest(
    settings: Settings,
    spec: BacktestSpec,
    history: History,
    store: Store,
    client: DecisionClient,
    *,
    run_id: str,
    notes: Sequence[str] = (),
    progress: Progress | None = None,
    should_stop: Callable[[], str | None] | None = None,
    references: Mapping[str, Any] | None = None,
) -> BacktestResult:
    """Step ``history`` through the scheduled agent's cycle (see the module docstring), recording everything in
    ``store`` under the account ``run_id``, and store the run's figures. ``client`` decides (wrap a model
    in :class:`RecordingClient` so that the run can be replayed). ``should_stop`` is asked after each step:
    a reason stops the run there (Ctrl-C, the model budget), and the figures cover the steps done.
    ``references`` joins the figures (the baseline's return under the same strategy: ``baseline_pct``).
    """
    from llmtrader.cycle.compose import build_services
    from llmtrader.cycle.run import run_cycle
    from llmtrader.exchange.paper import PaperConfig
    from llmtrader.exchange.simulated import SimulatedExchange

    started = time.monotonic()
    steps = [int(t) for t in history.steps]
    run_settings = backtest_settings(settings, spec, run_id, store.path)
    first = steps[0]
    clock = SimulatedClock(first + STEP_OFFSET_MS)
    exchange = SimulatedExchange(
        store,
        history.tapes,
        history.rules,
        account=run_id,
        balance=Decimal(str(spec.balance_usd)),
        config=PaperConfig(
            taker_fee=Decimal(str(run_settings.paper_taker_fee)),
            slippage_bps=Decimal(str(run_settings.paper_slippage_bps)),
        ),
        start_ms=first + STEP_OFFSET_MS,
    )
    market = HistoricalMarket(history, spec.interval, spec.data_dir)
    all_notes = [*history.notes, *notes]
    services = build_services(
        run_settings, store=store, market=market, exchange=exchange, client=client, clock=clock,
        strategy=history.strategy, cache=BacktestCache(),
    )  # fmt: skip
    runs.create_run(store, run_id, spec=spec.to_json(), notes=all_notes, replay_of=spec.replay_of,
                    now_ms=int(time.time() * 1000))  # fmt: skip
    samples: list[Sample] = []
    status, reason = "finished", None
    # One summary line per cycle is the agent's log; thousands of them would bury the progress bar.
    cycle_logger = logging.getLogger("llmtrader.cycle")
    level = cycle_logger.level
    cycle_logger.setLevel(logging.ERROR)
    # With answers at hand (baseline, replay), the steps commit in batches of BATCH_STEPS (Store.batch): their
    # records are written once instead of a page at a time, a batch is all or nothing (an error fails the run,
    # and the batch it was in is rolled back whole), and a crash loses at most a batch of a run that can be run
    # again; the write lock is held a few tenths of a second. A model call takes seconds, and no write lock may
    # be held that long (another backtest writes to the same database): then each record commits on its own.
    local = isinstance(client, ReplayClient) or client.model == "baseline"
    batch = BATCH_STEPS if local else 1
    committed = 0
    try:
        for first_of_batch in range(0, len(steps), batch):
            with store.batch() if local else contextlib.nullcontext():
                for i in range(first_of_batch, min(first_of_batch + batch, len(steps))):
                    step = steps[i]
                    now = step + STEP_OFFSET_MS
                    clock.now = now
                    exchange.advance_to(now)
                    await run_cycle(services, now_ms=now)
                    samples.append(_sample(exchange, step))
                    if progress is not None:
                        progress(i + 1, len(steps))
                    reason = should_stop() if should_stop is not None else None
                    if reason is not None:
                        break
            committed = len(samples)
            if reason is not None:
                status = "interrupted" if reason == "interrupted" else "stopped"
                break
    except BaseException as exc:
        status, reason = "failed", f"{type(exc).__name__}: {exc}"
        del samples[committed:]  # the steps of the batch that failed were rolled back
        raise
    finally:
        cycle_logger.setLevel(level)
        if reason is not None:
            all_notes.append(f"{status} after {len(samples)} of {len(steps)} steps: {reason}")
        if isinstance(client, ReplayClient):
            all_notes.append(
                f"replay of {client.source}: {client.exact} answer(s) replayed exactly, {client.differs} reused for a "
                f"prompt that differed (limits, strategy or account), {client.missing} step(s) without an answer"
            )
        metrics = None
        try:
            exchange.save_state()
            runs.write_equity(store, run_id, [s.row() for s in samples])
            recorded = (await exchange.trade_history(refresh=False, now_ms=exchange.now_ms)).history
            metrics = summarize(store, run_id, spec, history, samples, exchange, recorded) if samples else None
            if metrics is not None:
                metrics.update(references or {})
            runs.finish_run(store, run_id, status=status, notes=all_notes, metrics=metrics,
                            steps_done=len(samples), now_ms=int(time.time() * 1000))  # fmt: skip
        except Exception:
            if status != "failed":
                raise  # otherwise the error that failed the run is the one to see
    return BacktestResult(
        run_id, status, spec, len(steps), len(samples), metrics or {}, all_notes, samples, time.monotonic() - started
    )


def _sample(exchange: SimulatedExchange, step: int) -> Sample:
    book = exchange.book
    balance = book.balance()
    gross = sum(
        (abs(p.amount) * (book.mark(s) or p.entry_price) for s, p in book.positions_by_symbol.items()), Decimal(0)
    )
    return Sample(step, float(balance.equity), float(gross), len(book.positions_by_symbol))


# ---- figures --------------------------------------------------------------------------------------------------


def max_drawdown_pct(equity: Sequence[float]) -> float:
    """The largest fall from a running peak, in % of that peak."""
    values = np.asarray(equity, dtype=np.float64)
    if not len(values):
        return 0.0
    peaks = np.maximum.accumulate(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        falls = np.where(peaks > 0, (peaks - values) / peaks, 0.0)
    return float(falls.max() * 100)


def daily_sharpe(start_equity: float, samples: Sequence[Sample]) -> float | None:
    """Annualized Sharpe ratio of the daily returns of the equity (its value at each UTC day's last step)."""
    day_end: dict[int, float] = {}
    for s in samples:
        day_end[s.time_ms // DAY_MS] = s.equity_usd
    values = [start_equity, *day_end.values()]
    returns = []
    for before, after in pairwise(values):
        if before <= 0:
            return None
        returns.append(Decimal(repr(after / before - 1)))
    return sharpe(returns)


def buy_and_hold(history: History, interval: str, symbols: Sequence[str], first: int, last: int) -> dict[str, float]:
    """Each asset's return (%) from the close at the first step to the close at the last, and ``portfolio``:
    the balance split equally between them at the first step and held (no fees, no funding)."""
    out: dict[str, float] = {}
    for symbol in symbols:
        times = history.close_times[(symbol, interval)]
        close = history.series[(symbol, interval)].close
        a = int(np.searchsorted(times, first, "right")) - 1
        b = int(np.searchsorted(times, last, "right")) - 1
        out[symbol] = float((close[b] / close[a] - 1) * 100)
    out["portfolio"] = float(np.mean([out[s] for s in symbols]))
    return out


# One definition of each figure, named in every report that shows it.
FIGURE_DEFINITIONS = {
    "sharpe": "annualised (x sqrt 365) mean over standard deviation of the daily returns of the equity at each "
    "UTC day's last step",
    "max_drawdown": "largest fall of the equity marked to market at every step from its running peak, in % of "
    "that peak",
    "exposure": "gross notional of the open positions at mark over the equity, averaged over the steps",
    "slippage": "what the fills at market, stop and target lost against the mark they were triggered at",
}


def slippage_usd(fills: Sequence[Any], slip: float) -> float:
    """What the simulated slippage cost: each fill at market, stop or target executed ``slip`` (a fraction)
    against the taker, so the difference to the unslipped price, times the quantity."""
    total = 0.0
    for f in fills:
        if f.reason not in ("market", "stop_loss", "take_profit"):
            continue  # limits fill at their own price; a liquidation is the venue's
        notional = float(f.qty) * float(f.price)
        buy = str(getattr(f.side, "value", f.side)).upper() == "BUY"
        total += notional * slip / (1 + slip) if buy else notional * slip / (1 - slip)
    return total


def buy_and_hold_curve(
    history: History, interval: str, symbols: Sequence[str], start_usd: float, samples: Sequence[Sample]
) -> list[list[float]]:
    """The equal-weight buy-and-hold reference as [time ms, equity USD] at the first step and at each UTC
    day's last step (the points the daily Sharpe reads): ``start_usd`` split equally at the first step's
    closes and held, no fees, no funding."""
    times = [samples[0].time_ms]
    day_end: dict[int, int] = {}
    for s in samples:
        day_end[s.time_ms // DAY_MS] = s.time_ms
    times += [t for t in day_end.values() if t != times[0]]
    at = np.asarray(times, dtype=np.int64)
    total = np.zeros(len(at))
    for symbol in symbols:
        close = history.series[(symbol, interval)].close
        index = np.searchsorted(history.close_times[(symbol, interval)], at, "right") - 1
        total += close[np.maximum(index, 0)] / close[max(int(index[0]), 0)]
    values = total / len(symbols) * start_usd
    return [[int(t), float(v)] for t, v in zip(at.tolist(), values.tolist(), strict=True)]


def summarize(
    store: Store,
    run_id: str,
    spec: BacktestSpec,
    history: History,
    samples: Sequence[Sample],
    exchange: SimulatedExchange,
    history_rows: AccountHistory,
) -> dict[str, Any]:
    """The run's figures, from its fills and funding (``history_rows``: as the exchange answers them), its
    stored decisions and cycles, and the equity samples."""
    from llmtrader.core.trades import closed_trades, reconstruct_trades

    start = spec.balance_usd
    end = samples[-1].equity_usd
    trades = reconstruct_trades(history_rows.fills, history_rows.funding)
    closed = closed_trades(trades)
    wins = [t for t in closed if t.is_win]
    gains = sum((float(t.net_pnl) for t in wins), 0.0)
    losses = -sum((float(t.net_pnl) for t in closed if not t.is_win), 0.0)
    fees = sum((float(f.fee) for f in history_rows.fills), 0.0)
    slippage = slippage_usd(history_rows.fills, float(exchange.book.config.slippage))
    funding = -sum((float(f.amount) for f in history_rows.funding), 0.0)
    reasons: dict[str, int] = {}
    for f in history_rows.fills:
        reasons[f.reason or "market"] = reasons.get(f.reason or "market", 0) + 1
    decisions, cost, model_decisions, outcomes, statuses, guards = run_records(store, run_id)
    equity = [s.equity_usd for s in samples]
    in_market = sum(1 for s in samples if s.positions)
    exposure = [s.gross_usd / s.equity_usd for s in samples if s.equity_usd > 0]
    return {
        "start_ms": samples[0].time_ms,
        "end_ms": samples[-1].time_ms,
        "steps": len(samples),
        "start_equity_usd": start,
        "end_equity_usd": end,
        "total_return_pct": (end / start - 1) * 100,
        "buy_and_hold_pct": buy_and_hold(history, spec.interval, spec.symbols, samples[0].time_ms, samples[-1].time_ms),
        "buy_and_hold_curve": buy_and_hold_curve(history, spec.interval, spec.symbols, start, samples),
        "sharpe": daily_sharpe(start, samples),
        "max_drawdown_pct": max_drawdown_pct([start, *equity]),
        "trades": len(closed),
        "open_at_end": len(trades) - len(closed),
        "win_rate": len(wins) / len(closed) if closed else None,
        "profit_factor": gains / losses if losses > 0 else None,
        "exposure_time_pct": in_market / len(samples) * 100,
        "avg_gross_exposure_pct": float(np.mean(exposure) * 100) if exposure else 0.0,
        "fees_usd": fees,
        "slippage_usd": slippage,
        "funding_usd": funding,
        "flat_pct": 0.0,  # the third reference: cash, never traded
        # The second: the baseline under the same strategy (this run when it is the baseline; else given).
        **({"baseline_pct": (end / start - 1) * 100} if spec.model == "baseline" else {}),
        "definitions": FIGURE_DEFINITIONS,
        "funding_settlements": exchange.funding_events,
        "fills_by_reason": reasons,
        "model_cost_usd": float(cost),
        "decisions": int(decisions),
        "model_decisions": int(model_decisions or 0),
        "cycles": {str(k): int(v) for k, v in outcomes.items()},
        "asset_decisions": {str(k): int(v) for k, v in statuses.items()},
        "guard_events": guards,
    }


# ---- comparing a replay with its source ------------------------------------------------------------------------------


# ---- from the command line -------------------------------------------------------------------------------------


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


async def baseline_reference(settings: Settings, spec: BacktestSpec, history: History, store: Store) -> dict[str, Any]:
    """Run the baseline on the same steps, strategy and limits as ``spec`` (a run of its own), and return the
    reference figures for the run of ``spec``: ``baseline_pct`` and ``baseline_run``."""
    run_id = new_run_id()
    mine = replace(spec, model="baseline", replay_of=None, max_cost_usd=None)
    result = await run_backtest(settings, mine, history, store, BaselineClient(), run_id=run_id,
                                notes=["the baseline reference of a backtest of the same steps"])  # fmt: skip
    return {"baseline_pct": result.metrics.get("total_return_pct"), "baseline_run": run_id}


def budget_stop(client: DecisionClient, max_cost_usd: float | None) -> Callable[[], str | None]:
    """A ``should_stop`` that stops the run once the recorded model cost reaches ``max_cost_usd``."""

    def check() -> str | None:
        spent = float(getattr(client, "spent_usd", 0.0))
        if max_cost_usd is not None and spent >= max_cost_usd:
            return f"the model cost reached --max-cost {max_cost_usd:g} USD ({spent:.4f} USD)"
        return None

    return check


def equity_points(start_usd: float, start_ms: int, samples: Sequence[tuple[int, float, float, int]]) -> list[Any]:
    """A run's equity samples as the statistics' equity points (for the terminal chart)."""
    points = [EquityPoint(start_ms, Decimal(repr(start_usd)), Decimal(0), 0.0)]
    peak = start_usd
    for time_ms, equity, _, _ in samples:
        peak = max(peak, equity)
        down = peak - equity
        points.append(
            EquityPoint(time_ms, Decimal(repr(equity)), Decimal(repr(down)), down / peak * 100 if peak > 0 else None)
        )
    return points

"""The history a backtest steps through: candles read from the data directory (checked), resampled to the
timeframes, funding settlements, and the symbol rules derived from the data when the venue's are not saved."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from llmtrader.backtest.datafiles import EXCHANGE_INFO_FILE, candle_path, funding_path, read_candles, read_funding
from llmtrader.core.filters import SymbolRules, parse_exchange_info
from llmtrader.core.market import Candles
from llmtrader.core.times import INTERVAL_MS, utc_minute
from llmtrader.errors import ConfigError, DataError

if TYPE_CHECKING:
    from llmtrader.core.strategy import Strategy
    from llmtrader.exchange.simulated import Tape
from llmtrader.backtest.spec import DEFAULT_MIN_NOTIONAL, WARMUP_CANDLES, BacktestSpec


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

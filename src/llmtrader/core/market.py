"""Market values: candles with their indicator windows, one asset's market, the snapshot a decision sees,
and the symbol checks (pure)."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from llmtrader.core.filters import SymbolRules
from llmtrader.core.times import INTERVAL_MS
from llmtrader.errors import UnknownSymbolError


class IndicatorWindow(Mapping[str, np.ndarray]):
    """Indicator series computed once over a whole history, seen through a window ``[start, stop)`` of its
    rows: a series is sliced only when read, and :meth:`values_at` reads single values without slicing (a
    backtest's step reads the newest values of every series)."""

    __slots__ = ("series", "start", "stop")

    def __init__(self, series: Mapping[str, np.ndarray], start: int, stop: int) -> None:
        self.series = series
        self.start = start
        self.stop = stop

    def __getitem__(self, name: str) -> np.ndarray:
        return self.series[name][self.start : self.stop]

    def __iter__(self) -> Iterator[str]:
        return iter(self.series)

    def __len__(self) -> int:
        return len(self.series)

    def window(self, start: int | None, stop: int | None) -> IndicatorWindow:
        """The rows ``[start:stop]`` of this window, as a slice of it would give them."""
        first, last, _ = slice(start, stop).indices(self.stop - self.start)
        return IndicatorWindow(self.series, self.start + first, self.start + max(first, last))

    def values_at(self, index: int) -> dict[str, float | None]:
        """Every series' value at ``index`` of the window (negative: from its end), NaN and outside as None."""
        size = self.stop - self.start
        if not -size <= index < size:
            return dict.fromkeys(self.series)
        at = (self.stop if index < 0 else self.start) + index
        out: dict[str, float | None] = {}
        for name, values in self.series.items():
            value = values.item(at)  # a Python float, without the numpy scalar
            out[name] = None if value != value else value  # NaN
        return out


@dataclass(frozen=True)
class Candles:
    """Closed candles of one symbol and timeframe, oldest first, as parallel arrays.

    ``indicators``, when set, are indicator series computed once over a longer history (by the backtester)
    and aligned with these candles: slicing keeps them aligned, and the context uses them instead of
    computing its own. Each value at index i was computed from candles up to i only, so no slice holds a
    value that saw a later candle.
    """

    symbol: str
    interval: str
    open_time_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    indicators: Mapping[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.close.shape[0])

    @property
    def last_close_time_ms(self) -> int:
        """When the newest candle closed (its open time plus the interval)."""
        return int(self.open_time_ms[-1]) + INTERVAL_MS[self.interval] if len(self) else 0

    @classmethod
    def from_rows(cls, symbol: str, interval: str, rows: Sequence[Sequence[float]] | np.ndarray) -> Candles:
        """From ``[open_time_ms, open, high, low, close, volume]`` rows (the CSV format)."""
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
        return cls(
            symbol=symbol,
            interval=interval,
            open_time_ms=arr[:, 0].astype(np.int64),
            open=arr[:, 1].copy(),
            high=arr[:, 2].copy(),
            low=arr[:, 3].copy(),
            close=arr[:, 4].copy(),
            volume=arr[:, 5].copy(),
        )

    def _slice(self, start: int | None, stop: int | None) -> Candles:
        sl = slice(start, stop)
        return Candles(
            symbol=self.symbol,
            interval=self.interval,
            open_time_ms=self.open_time_ms[sl],
            open=self.open[sl],
            high=self.high[sl],
            low=self.low[sl],
            close=self.close[sl],
            volume=self.volume[sl],
            indicators=None if self.indicators is None else _window(self.indicators, len(self)).window(start, stop),
        )

    def until(self, now_ms: int) -> Candles:
        """Only the candles closed at ``now_ms`` (rows are sorted, so they are a prefix)."""
        closed = self.open_time_ms + INTERVAL_MS[self.interval] <= now_ms
        if bool(closed.all()):
            return self
        return self._slice(0, int(np.argmin(closed)))

    def tail(self, n: int) -> Candles:
        """The newest ``n`` candles."""
        return self if len(self) <= n else self._slice(len(self) - n, None)


def _window(indicators: Mapping[str, np.ndarray], size: int) -> IndicatorWindow:
    return indicators if isinstance(indicators, IndicatorWindow) else IndicatorWindow(indicators, 0, size)


@dataclass(frozen=True)
class AssetMarket:
    """One asset's market at a moment: candles per timeframe plus the venue's live figures."""

    symbol: str
    candles: dict[str, Candles]
    mark_price: float
    index_price: float | None
    funding_rate: float | None
    next_funding_time_ms: int | None
    last_price: float | None
    price_change_pct_24h: float | None
    high_24h: float | None
    low_24h: float | None
    quote_volume_24h: float | None
    open_interest: float | None


@dataclass(frozen=True)
class MarketSnapshot:
    """Everything fetched for one decision, as of ``as_of_ms``."""

    as_of_ms: int
    assets: dict[str, AssetMarket]
    rules: dict[str, SymbolRules] = field(default_factory=dict)


def closest_symbols(symbol: str, listed: Sequence[str], n: int = 3) -> list[str]:
    """The listed symbols most like ``symbol``, for a helpful refusal."""
    matches = difflib.get_close_matches(symbol, listed, n=n, cutoff=0.5)
    if not matches:
        base = symbol.removesuffix("USDT")[:3]
        matches = [s for s in listed if s.startswith(base)][:n]
    return matches


def check_symbols(symbols: Sequence[str], rules: dict[str, SymbolRules]) -> None:
    """Raise UnknownSymbolError for any symbol the venue does not list or does not trade."""
    listed = sorted(s for s, r in rules.items() if r.trading)
    problems = []
    for symbol in symbols:
        rule = rules.get(symbol)
        if rule is None:
            near = closest_symbols(symbol, listed)
            hint = f"; closest listed: {', '.join(near)}" if near else ""
            problems.append(f"{symbol} is not listed on the venue{hint}")
        elif not rule.trading:
            problems.append(f"{symbol} is listed but not trading (status {rule.status})")
    if problems:
        raise UnknownSymbolError("; ".join(problems))


NAMES = (
    "ema20",
    "ema50",
    "rsi14",
    "macd",
    "macd_signal",
    "macd_hist",
    "atr14",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "volume_ratio",
)

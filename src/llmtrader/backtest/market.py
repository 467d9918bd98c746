"""The market and the clock a backtest gives the cycle: the candles closed at the simulated time, never
later ones."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from llmtrader.core.filters import SymbolRules
from llmtrader.core.market import AssetMarket, Candles, MarketSnapshot
from llmtrader.core.times import DAY_MS, INTERVAL_MS
from llmtrader.errors import DataError

if TYPE_CHECKING:
    pass
from llmtrader.backtest.data import History


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
        # The cycle caches the venue's rules under this name in backtests.db, which recording runs share: it
        # names the run's symbols too, so a later run on the same data with other symbols gets its own.
        self.base_url = f"backtest:{data_dir}:{','.join(sorted(history.rules))}"
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

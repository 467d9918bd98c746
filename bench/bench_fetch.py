"""Market-data fetch for 10 assets with 50 ms added to every venue request: at most 3 round trips.

The fake venue (tests/fakes/aster.py) runs on loopback and sleeps ``LATENCY_S`` before answering each
request. The timed part is what ``engine.decide`` does before building the context: ``load_rules``
(exchangeInfo from the store's cache or the venue, then cached), ``check_symbols`` and
``AsterMarketData.snapshot`` with the strategy's timeframes (15m, 1h, 4h) and 200 candles. A fresh
``AsterMarketData`` (so fresh connections) is used for every run, as in one CLI process.

Two figures, in round trips (wall time / ``LATENCY_S``): exchangeInfo not cached (the worst case:
exchangeInfo, then 6 requests per asset, all at once) and exchangeInfo cached (the usual case).
"""

from __future__ import annotations

import asyncio
import bisect
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench import ALIASES, CANDLES, ROOT, TEN_SYMBOLS, TIMEFRAMES, Result, perp_dir, result

if str(ROOT) not in sys.path:  # the fakes live in tests/, importable from the project root
    sys.path.insert(0, str(ROOT))

from tests.fakes.aster import INTERVAL_MS, LISTED, FakeAster  # noqa: E402

LATENCY_S = 0.05
TARGET_ROUND_TRIPS = 3.0
RUNS = 5


class TenAssetAster(FakeAster):
    """The fake venue listing four more symbols, each served from an existing symbol's files.

    Its candle look-ups are also made cheap (a binary search, and the list of closed candles built
    once per candle period instead of once per request): the base class scans whole files on every
    request, about 10 ms of CPU per asset, which the real venue does not cost us. The replies are the same.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._times: dict[tuple[str, str], list[float]] = {}
        self._closed: dict[tuple[str, str, int, int], list[list[float]]] = {}

    def series(self, symbol: str, interval: str) -> list[list[float]]:
        return super().series(ALIASES.get(symbol, symbol), interval)

    def _count_until(self, symbol: str, interval: str, open_time_ms: int) -> int:
        """How many rows open at or before ``open_time_ms`` (rows are sorted by open time)."""
        key = (symbol, interval)
        times = self._times.get(key)
        if times is None:
            times = self._times[key] = [r[0] for r in self.series(symbol, interval)]
        return bisect.bisect_right(times, open_time_ms)

    def served_candles(self, symbol: str, interval: str, limit: int) -> list[list[float]]:
        offset = self.offset_ms
        end = self._count_until(symbol, interval, self.clock() - offset)
        rows = self.series(symbol, interval)[max(0, end - limit) : end]
        return [[r[0] + offset, *r[1:]] for r in rows]

    def closed_candles(self, symbol: str, interval: str) -> list[list[float]]:
        offset = self.offset_ms
        end = self._count_until(symbol, interval, self.clock() - offset - INTERVAL_MS[interval])
        key = (symbol, interval, end, offset)
        closed = self._closed.get(key)
        if closed is None:  # callers only read it
            closed = self._closed[key] = [[r[0] + offset, *r[1:]] for r in self.series(symbol, interval)[:end]]
        return closed

    def funding_rate(self, symbol: str) -> float:
        return super().funding_rate(ALIASES.get(symbol, symbol))

    def exchange_info(self) -> dict[str, Any]:
        info = super().exchange_info()
        for alias, source in ALIASES.items():
            tick, step, min_qty = LISTED[source]
            info["symbols"].append(self._symbol_info(alias, "TRADING", tick, step, min_qty))
        return info

    def handle(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        alias = params.get("symbol", "")
        source = ALIASES.get(alias)
        if source is None:
            return super().handle(path, params)
        # The base class checks the symbol against its module-level listing: answer as the source
        # symbol, then put the alias back into the reply.
        status, body = super().handle(path, {**params, "symbol": source})
        if isinstance(body, dict) and body.get("symbol") == source:
            body = {**body, "symbol": alias}
        return status, body


def _services(store: Any, base_url: str) -> Any:
    """The parts of engine.Services that load_rules and the fetch use."""
    from llmtrader.engine import SystemClock
    from llmtrader.market import AsterMarketData

    settings = SimpleNamespace(exchange_info_ttl_s=3600)  # the Settings default
    return SimpleNamespace(
        settings=settings, store=store, market=AsterMarketData(base_url, timeout_s=10.0), clock=SystemClock()
    )


async def _fetch(store: Any, base_url: str) -> tuple[float, Any]:
    """One fetch as engine.decide does it; returns its wall time and the snapshot."""
    from llmtrader.engine import load_rules
    from llmtrader.market import check_symbols

    services = _services(store, base_url)
    try:
        start = time.perf_counter()
        rules = await load_rules(services)
        check_symbols(TEN_SYMBOLS, rules)
        now = services.clock.now_ms()
        snapshot = await services.market.snapshot(TEN_SYMBOLS, TIMEFRAMES, CANDLES, now, rules)
        elapsed = time.perf_counter() - start
    finally:
        await services.market.aclose()
    return elapsed, snapshot


def _check(snapshot: Any) -> None:
    if sorted(snapshot.assets) != sorted(TEN_SYMBOLS):
        raise AssertionError(f"snapshot has assets {sorted(snapshot.assets)}")
    for symbol, asset in snapshot.assets.items():
        for tf in TIMEFRAMES:
            if len(asset.candles[tf]) != CANDLES:
                raise AssertionError(f"{symbol} {tf}: {len(asset.candles[tf])} candles, expected {CANDLES}")


def run() -> list[Result]:
    from llmtrader.storage.store import Store

    fake = TenAssetAster(perp_dir(), latency_s=LATENCY_S).start()
    try:
        with tempfile.TemporaryDirectory(prefix="llmtrader-bench-") as tmp:
            store = Store(Path(tmp) / "cache.db")
            try:
                # Warm-up: the fake parses its CSV files on first use; the imports happen here too.
                _elapsed, snapshot = asyncio.run(_fetch(store, fake.base_url))
                _check(snapshot)

                uncached: list[float] = []
                cached: list[float] = []
                requests: dict[str, list[int]] = {"uncached": [], "cached": []}
                for _ in range(RUNS):
                    store.db.execute("DELETE FROM venue_cache")
                    store.db.conn.commit()
                    before = len(fake.requests)
                    elapsed, snapshot = asyncio.run(_fetch(store, fake.base_url))
                    _check(snapshot)
                    uncached.append(elapsed / LATENCY_S)
                    requests["uncached"].append(len(fake.requests) - before)

                    before = len(fake.requests)  # the cache now holds exchangeInfo
                    elapsed, snapshot = asyncio.run(_fetch(store, fake.base_url))
                    _check(snapshot)
                    cached.append(elapsed / LATENCY_S)
                    requests["cached"].append(len(fake.requests) - before)
            finally:
                store.close()
    finally:
        fake.stop()

    def note(kind: str, samples: list[float]) -> str:
        n = requests[kind]
        ms = statistics.median(samples) * LATENCY_S * 1000
        return f"{ms:.0f} ms wall; {min(n)}-{max(n)} requests; 1 RTT = {LATENCY_S * 1000:.0f} ms"

    return [
        result("fetch.uncached_exchange_info", uncached, "RTT", TARGET_ROUND_TRIPS, note("uncached", uncached)),
        result("fetch.cached_exchange_info", cached, "RTT", TARGET_ROUND_TRIPS, note("cached", cached)),
    ]

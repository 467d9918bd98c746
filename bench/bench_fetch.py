"""Market-data fetch for 10 assets with 50 ms added to every venue request: at most 3 round trips.

The fake venue (tests/fakes/aster.py) runs on loopback and sleeps ``LATENCY_S`` before answering each
request. The timed part is what ``snapshot.prepare`` does before building the context: ``market_snapshot``
(exchangeInfo from the store's cache or the venue, then cached), ``check_symbols`` and
``AsterMarketData.snapshot`` with the strategy's timeframes (15m, 1h, 4h) and 200 candles. A fresh
``AsterMarketData`` (so fresh connections) is used for every run, as in one CLI process.

Two figures, in round trips (wall time / ``LATENCY_S``): exchangeInfo not cached (the worst case:
exchangeInfo, then 6 requests per asset, all at once) and exchangeInfo cached (the usual case).

The venue runs in a child process: the real venue's CPU is not ours, and an in-process fake would
take the GIL from the client for every reply it encodes. The same two figures with the fake in this
process (``FakeAster(...).start()`` as the tests use it) follow, for information only.
"""

from __future__ import annotations

import asyncio
import multiprocessing
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

from tests.fakes.aster import LISTED, FakeAster

LATENCY_S = 0.05
TARGET_ROUND_TRIPS = 3.0
RUNS = 5


class TenAssetAster(FakeAster):
    """The fake venue listing four more symbols, each served from an existing symbol's files."""

    def series(self, symbol: str, interval: str) -> list[list[float]]:
        return super().series(ALIASES.get(symbol, symbol), interval)

    def listed(self) -> list[str]:
        return [*super().listed(), *ALIASES]

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
    """The parts of services.Services that snapshot.market_snapshot uses."""
    from llmtrader.core.times import SystemClock
    from llmtrader.cycle.services import CycleCache
    from llmtrader.exchange.asterdex_market import AsterMarketData

    settings = SimpleNamespace(exchange_info_ttl_s=3600)  # the Settings default
    return SimpleNamespace(
        settings=settings,
        store=store,
        market=AsterMarketData(base_url, timeout_s=10.0),
        clock=SystemClock(),
        cache=CycleCache(),  # the cycle's per-process caches (the parsed exchangeInfo rules)
    )


async def _fetch(store: Any, base_url: str, out: list[Any]) -> float:
    """One fetch as snapshot.prepare does it: its wall time; the snapshot is appended to ``out``.

    (The snapshot is not returned: on Python 3.11 ``asyncio.run`` formats the repr of the main task,
    result included, on the way out, and the repr of numpy arrays is slow.)
    """
    from llmtrader.cycle.snapshot import market_snapshot

    services = _services(store, base_url)
    try:
        start = time.perf_counter()
        now = services.clock.now_ms()
        snapshot = await market_snapshot(services, TEN_SYMBOLS, list(TIMEFRAMES), CANDLES, now)
        elapsed = time.perf_counter() - start
    finally:
        await services.market.aclose()
    out.append(snapshot)
    return elapsed


def _check(snapshot: Any) -> None:
    if sorted(snapshot.assets) != sorted(TEN_SYMBOLS):
        raise AssertionError(f"snapshot has assets {sorted(snapshot.assets)}")
    for symbol, asset in snapshot.assets.items():
        for tf in TIMEFRAMES:
            if len(asset.candles[tf]) != CANDLES:
                raise AssertionError(f"{symbol} {tf}: {len(asset.candles[tf])} candles, expected {CANDLES}")


class _Venue:
    """The fake venue in this process or in a child process; ``requests()`` counts what it served."""

    def __init__(self, *, child: bool) -> None:
        self.child = child
        if child:
            ctx = multiprocessing.get_context("spawn")
            self._conn, theirs = ctx.Pipe()
            self._proc = ctx.Process(target=_serve, args=(theirs, str(perp_dir()), LATENCY_S), daemon=True)
            self._proc.start()
            if not self._conn.poll(60):
                self._proc.kill()
                raise RuntimeError("the fake venue did not start within 60 s")
            self.base_url = str(self._conn.recv())
        else:
            self._fake = TenAssetAster(perp_dir(), latency_s=LATENCY_S).start()
            self.base_url = self._fake.base_url

    def requests(self) -> int:
        if not self.child:
            return len(self._fake.requests)
        self._conn.send("count")
        return int(self._conn.recv())

    def stop(self) -> None:
        if not self.child:
            self._fake.stop()
            return
        try:
            self._conn.send("stop")
            self._proc.join(10)
        finally:
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()


def _serve(conn: Any, data_dir: str, latency_s: float) -> None:
    """The child process: serve until told to stop."""
    fake = TenAssetAster(Path(data_dir), latency_s=latency_s).start()
    conn.send(fake.base_url)
    try:
        while True:
            try:
                command = conn.recv()
            except EOFError:
                return
            if command == "count":
                conn.send(len(fake.requests))
            else:
                return
    finally:
        fake.stop()


def _measure(venue: _Venue, store: Any) -> dict[str, tuple[list[float], list[int]]]:
    """Round trips and request counts per run, exchangeInfo uncached then cached."""
    snapshots: list[Any] = []
    # Warm-up: the fake parses its CSV files on first use; the imports happen here too.
    asyncio.run(_fetch(store, venue.base_url, snapshots))
    out: dict[str, tuple[list[float], list[int]]] = {"uncached": ([], []), "cached": ([], [])}
    for _ in range(RUNS):
        for kind in ("uncached", "cached"):
            if kind == "uncached":
                store.db.execute("DELETE FROM venue_cache")
                store.db.conn.commit()
            before = venue.requests()
            elapsed = asyncio.run(_fetch(store, venue.base_url, snapshots))
            out[kind][0].append(elapsed / LATENCY_S)
            out[kind][1].append(venue.requests() - before)
    for snapshot in snapshots:
        _check(snapshot)
    return out


def run() -> list[Result]:
    from llmtrader.storage.store import Store

    results: list[Result] = []
    for child in (True, False):
        venue = _Venue(child=child)
        try:
            with tempfile.TemporaryDirectory(prefix="llmtrader-bench-") as tmp:
                store = Store(Path(tmp) / "cache.db")
                try:
                    measured = _measure(venue, store)
                finally:
                    store.close()
        finally:
            venue.stop()
        for kind, (samples, counts) in measured.items():
            ms = statistics.median(samples) * LATENCY_S * 1000
            where = "venue in a child process" if child else "venue in this process (GIL shared)"
            note = f"{ms:.0f} ms wall; {min(counts)}-{max(counts)} requests; 1 RTT = {LATENCY_S * 1000:.0f} ms; {where}"
            name = f"fetch.{kind}_exchange_info" + ("" if child else ".inprocess")
            results.append(result(name, samples, "RTT", TARGET_ROUND_TRIPS if child else None, note))
    return results

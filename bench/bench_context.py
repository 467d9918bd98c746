"""Context and prompt for 10 assets (every indicator, 3 timeframes, 200 candles each): at most 50 ms of CPU.

The snapshot is built in memory from the real candles (the newest 200 closed candles of each timeframe
at ``AS_OF_MS``); the four assets beyond the six with files reuse other symbols' candles. The timed part
is what ``snapshot.prepare`` does between the fetch and the model call: ``build_context`` then
``render_prompt`` with the default strategy, measured with ``time.process_time`` (CPU of this process).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

from bench import ALIASES, CANDLES, TEN_SYMBOLS, TIMEFRAMES, Result, perp_dir, repeat, result

TARGET_MS = 50.0
RUNS = 20
WARMUP = 2
AS_OF_MS = 1_765_794_000_000  # 2025-12-15 10:20 UTC, inside every file's range (the fake venue's anchor)
INTERVAL_MS = {"15m": 900_000, "1h": 3_600_000, "4h": 14_400_000}
FUNDING_PERIOD_MS = 8 * 3_600_000


def _rows(path: Path) -> list[list[float]]:
    with path.open() as fh:
        reader = csv.reader(fh)
        next(reader)
        return [[float(x) for x in row] for row in reader]


def _closed(rows: list[list[float]], interval: str, n: int) -> list[list[float]]:
    """The newest ``n`` rows closed at AS_OF_MS."""
    step = INTERVAL_MS[interval]
    return [r for r in rows if r[0] + step <= AS_OF_MS][-n:]


def build_snapshot(symbols: tuple[str, ...] = TEN_SYMBOLS) -> Any:
    """A MarketSnapshot as the venue would give it, from the CSV files."""
    from llmtrader.core.market import AssetMarket, Candles, MarketSnapshot

    data = perp_dir()
    assets = {}
    for symbol in symbols:
        source = ALIASES.get(symbol, symbol)
        candles = {
            tf: Candles.from_rows(symbol, tf, _closed(_rows(data / f"{source}-{tf}.csv"), tf, CANDLES))
            for tf in TIMEFRAMES
        }
        for tf, c in candles.items():
            if len(c) != CANDLES:
                raise AssertionError(f"{source} {tf}: only {len(c)} candles before {AS_OF_MS}")
        funding_path = data / f"{source}-funding.csv"
        funding = [r for r in _rows(funding_path) if r[0] <= AS_OF_MS] if funding_path.exists() else []
        hourly = candles["1h"]
        day_open, last = float(hourly.open[-24]), float(hourly.close[-1])
        mark = float(candles["15m"].close[-1])
        assets[symbol] = AssetMarket(
            symbol=symbol,
            candles=candles,
            mark_price=mark,
            index_price=mark * 0.9998,
            funding_rate=funding[-1][1] if funding else 0.0001,
            next_funding_time_ms=(AS_OF_MS // FUNDING_PERIOD_MS + 1) * FUNDING_PERIOD_MS,
            last_price=last,
            price_change_pct_24h=(last - day_open) / day_open * 100,
            high_24h=float(hourly.high[-24:].max()),
            low_24h=float(hourly.low[-24:].min()),
            quote_volume_24h=float((hourly.volume[-24:] * hourly.close[-24:]).sum()),
            open_interest=12345.678,
        )
    return MarketSnapshot(as_of_ms=AS_OF_MS, assets=assets)


def run() -> list[Result]:
    from llmtrader.config.strategies import load_strategy
    from llmtrader.core.account import paper_account_state
    from llmtrader.core.context import build_context, render_prompt
    from llmtrader.core.limits import Limits

    strategy = load_strategy("default")
    account = paper_account_state("bench", 10_000)
    limits = Limits.combine(5, 10_000, strategy)
    snapshot = build_snapshot(TEN_SYMBOLS)
    if tuple(strategy.timeframes) != TIMEFRAMES or strategy.context.candles != CANDLES:
        note_strategy = f"; the default strategy now asks {strategy.timeframes} × {strategy.context.candles}"
    else:
        note_strategy = ""

    def once(symbols: tuple[str, ...]) -> float:
        start = time.process_time()
        ctx = build_context(snapshot, account, strategy, limits, symbols)
        system, user = render_prompt(ctx, strategy)
        elapsed = (time.process_time() - start) * 1000
        if not system or not all(f"## {s}" in user for s in symbols):
            raise AssertionError("the prompt does not name every asset")
        return elapsed

    ten = repeat(lambda: once(TEN_SYMBOLS), RUNS, warmup=WARMUP)
    one = repeat(lambda: once(TEN_SYMBOLS[:1]), RUNS, warmup=WARMUP)
    n = len(TEN_SYMBOLS)
    ctx = build_context(snapshot, account, strategy, limits, TEN_SYMBOLS)
    chars = sum(len(part) for part in render_prompt(ctx, strategy))
    sorted_ten, sorted_one = sorted(ten), sorted(one)
    marginal = (sorted_ten[len(ten) // 2] - sorted_one[len(one) // 2]) / (n - 1)
    return [
        result(
            "context.cpu_10_assets",
            ten,
            "ms",
            TARGET_MS,
            f"build_context + render_prompt, {n} assets × {len(TIMEFRAMES)} tf × {CANDLES} candles; "
            f"prompt {chars:,} chars{note_strategy}",
        ),
        result("context.cpu_per_asset", [t / n for t in ten], "ms", None, f"the 10-asset CPU / {n}"),
        result(
            "context.cpu_1_asset",
            one,
            "ms",
            None,
            f"fixed cost + one asset; marginal cost per extra asset ≈ {marginal:.2f} ms",
        ),
    ]

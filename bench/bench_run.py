"""``llmtrader run`` over many cycles: resident memory growth, and the cycle overhead outside model and network.

Two parts, so that the whole stays under a minute:

1. **The scheduler over 2,000 cycles** (``SCHEDULER_CYCLES``): ``Scheduler.fire`` (as the APScheduler job
   calls it) with a cycle that does what every cycle does around its decision: it records its row in the
   ``cycles`` table of a real SQLite store and logs its summary line (``cycle.record_skipped_cycle``), with
   logging configured as ``run --log-json`` configures it (into a null stream). Figure ``run.rss_growth_mb``:
   resident memory (``/proc/self/statm``) after the cycles minus after a warm-up. Target < 10 MB.

2. **Real cycles** (``BENCH_RUN_CYCLES``, default 200, after ``WARMUP``): ``cycle.run_cycle`` (reconcile,
   guards, market fetch, context, decision, validation, execution, record) of one paper account with 5 assets
   (BTCUSDT ETHUSDT SOLUSDT BNBUSDT XRPUSDT) and the ``baseline`` client, fired by the scheduler, against the
   fake venue (tests/fakes/aster.py) in a child process, whose clock is the bench's clock (shared memory)
   moved one interval (1h) per cycle: every cycle sees a new closed candle, decides afresh (no cached
   decision), trades now and then, and writes its records. The kill switches are off so that every cycle
   decides (a tripped drawdown switch would turn the rest into cheap skips); the guards are still checked
   and saved. Figures:

   - ``run.cycle_overhead_ms``: wall time per cycle during which no venue request (``AsterMarketData.get``,
     the JSON decoding of its reply included) and no model call was in flight: llmtrader's own work.
     Target < 50 ms per account with 5 assets.
   - ``run.real_rss_growth_mb``, ``run.cycle_cpu_ms`` (this process's CPU per cycle, HTTP client and
     baseline model included), ``run.cycle_wall_ms``, ``run.venue_requests`` (per cycle), and
     ``run.overhead_drift_ms`` (median overhead of the last 100 cycles minus the first 100: a cycle must not
     get slower as the account's history grows): for information.

3. **Real cycles of an account with a year of history** (``BENCH_RUN_HISTORY=1``; off by default): part 2 on an
   account whose store holds a year of hourly decisions and cycles and a fill every hour before the first cycle
   (4,380 closed trades over the 5 assets, with their funding), seeded first. Figures ``run.history_*``, as in
   part 2: what the account's history costs a live cycle, which reads it again from the store every time
   (:class:`llmtrader.cycle.cache.Rebuild`).

``BENCH_RUN_CYCLES=2000 python -m bench run`` runs 2,000 real cycles (about 6 minutes).
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench import ROOT, Result, perp_dir, result

if str(ROOT) not in sys.path:  # the fakes live in tests/, importable from the project root
    sys.path.insert(0, str(ROOT))

SCHEDULER_CYCLES = 2_000
SCHEDULER_WARMUP = 200
REAL_CYCLES = int(os.environ.get("BENCH_RUN_CYCLES", "200"))
SEEDED = os.environ.get("BENCH_RUN_HISTORY", "") not in ("", "0")
SEEDED_DAYS = 365
WARMUP = 30
ASSETS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
TARGET_RSS_MB = 10.0
TARGET_OVERHEAD_MS = 50.0
HOUR_MS = 3_600_000
START_MS = 1_790_035_200_000 + 5_000  # a 1h close plus the scheduler's offset
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """Resident set size of this process, in MB (Linux: the second field of /proc/self/statm, in pages)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 1e6


class _NullStream(io.TextIOBase):
    """Drops what is written: every log line is still formatted and redacted, as in production."""

    def write(self, text: str) -> int:
        return len(text)


class Clock:
    """The bench's clock; in shared memory (``value``) so that the venue in the child process reads it too."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def now_ms(self) -> int:
        return int(self.value.value)


class Spans:
    """Wall-clock spans during which a venue request or the model call was in flight."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self.calls = 0

    def wrap(self, fn: Any) -> Any:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.spans.append((start, time.perf_counter()))

        return timed

    def take(self) -> float:
        """The length of the union of the spans since the last call (concurrent requests overlap), in s."""
        total, end = 0.0, float("-inf")
        for a, b in sorted(self.spans):
            if b > end:
                total += b - max(a, end)
                end = b
        self.spans.clear()
        return total


class TimedClient:
    """The decision client, its calls recorded as spans (the model's time)."""

    def __init__(self, client: Any, spans: Spans) -> None:
        self.model = client.model
        self.base_url = client.base_url
        self.decide = spans.wrap(client.decide)


def _serve(conn: Any, data_dir: str, clock: Any) -> None:
    """The child process: the fake venue on the shared clock, until told to stop."""
    from tests.fakes.aster import FakeAster

    fake = FakeAster(Path(data_dir), clock=lambda: int(clock.value)).start()
    fake.requests = _Discard()  # the fake keeps every request for tests; a venue does not
    conn.send(fake.base_url)
    try:
        conn.recv()
    except EOFError:
        pass
    finally:
        fake.stop()


class _Discard(list):  # type: ignore[type-arg]
    def append(self, item: Any) -> None:
        pass


def scheduler_cycles(tmp: Path) -> Result:
    """Part 1: 2,000 fires of the scheduler whose cycle records and logs itself, without venue or model."""
    from llmtrader.config.settings import settings_from_values
    from llmtrader.cycle.run import record_skipped_cycle
    from llmtrader.cycle.scheduler import Scheduler
    from llmtrader.storage.store import Store

    settings = settings_from_values({"account": "bench", "db": tmp / "scheduler.db"})
    services = SimpleNamespace(settings=settings, store=Store(settings.db))
    clock = SimpleNamespace(now_ms=lambda: now)
    now = START_MS

    async def cycle(services: Any, *, now_ms: int | None = None) -> Any:
        await asyncio.sleep(0)  # a cycle awaits; the scheduler's task and lock handling is exercised
        assert now_ms is not None
        return record_skipped_cycle(services.store, "bench", now_ms=now_ms, reason="bench: no venue, no model")

    async def close(services: Any) -> None:
        services.store.close()

    async def go() -> tuple[float, float]:
        nonlocal now
        scheduler = Scheduler(
            {"bench": services},  # type: ignore[dict-item]
            cycle=cycle,
            record_skip=record_skipped_cycle,
            close_services=close,
            clock=clock,  # type: ignore[arg-type]
        )
        before = 0.0
        try:
            for i in range(SCHEDULER_WARMUP + SCHEDULER_CYCLES):
                if i == SCHEDULER_WARMUP:
                    before = rss_mb()
                now += HOUR_MS
                if await scheduler.launch("bench") is None:
                    raise RuntimeError("a cycle was not recorded")
            return before, rss_mb()
        finally:
            await scheduler.close()

    before, after = asyncio.run(go())
    return result(
        "run.rss_growth_mb",
        [after - before],
        "MB",
        TARGET_RSS_MB,
        f"{SCHEDULER_CYCLES} scheduler cycles, each recorded and logged, after {SCHEDULER_WARMUP}; "
        f"{before:.0f} -> {after:.0f} MB",
    )


def seed_history(db: Path, account: str, until_ms: int, days: int = SEEDED_DAYS) -> int:
    """Part 3's account: ``days`` of hourly decisions and cycles before ``until_ms``, and a fill every hour: each
    asset opens a long at the hours 10n + its index and closes it 5 hours later at its target, and pays funding
    every 8 hours while open. The number of fills."""
    from decimal import Decimal

    from llmtrader.core.records import DecisionRecord, new_decision_id
    from llmtrader.exchange.base import Side
    from llmtrader.exchange.paper import Fill, FundingPayment
    from llmtrader.storage.store import Store

    store = Store(db)
    qty, opened, closed = Decimal("0.01"), Decimal(100), Decimal(101)
    fee = Decimal("0.00035")
    hours = days * 24
    first = until_ms - until_ms % HOUR_MS - hours * HOUR_MS
    fills = 0
    try:
        with store.batch():
            for h in range(hours):
                t = first + h * HOUR_MS
                did = new_decision_id(t)
                store.record_decision(
                    DecisionRecord(
                        id=did, created_at_ms=t, account=account, mode="paper", dry_run=False, strategy="default",
                        model="baseline", base_url="", symbols=list(ASSETS), outcome="executed",
                        equity_usd=10_000.0, execution="executed",
                    )
                )  # fmt: skip
                store.record_cycle(
                    account=account, started_ms=t, finished_ms=t + 50, outcome="executed", reason=None,
                    decision_id=did, equity_usd=10_000.0, cached=False, reconcile=(),
                )  # fmt: skip
                events: list[Any] = []
                k = h % 10
                if k < len(ASSETS):  # an opening
                    symbol = ASSETS[k]
                    cid = f"{did}-{symbol[:3]}_en"
                    events.append(
                        Fill(t, symbol, cid, str(h), Side.BUY, qty, opened, qty * opened * fee, Decimal(0), "market")
                    )
                else:  # the close of the long opened 5 hours ago
                    symbol = ASSETS[k - 5]
                    cid = f"{did}-{symbol[:3]}_tp"
                    pnl = qty * (closed - opened)
                    events.append(
                        Fill(t, symbol, cid, str(h), Side.SELL, qty, closed, qty * closed * fee, pnl, "take_profit")
                    )
                if h % 8 == 0:
                    held = [ASSETS[(h - j) % 10] for j in range(1, 6) if (h - j) % 10 < len(ASSETS)]
                    events += [
                        FundingPayment(t, s, Decimal("0.0001"), opened, qty, -qty * opened * Decimal("0.0001"))
                        for s in held
                    ]
                store.insert_paper_events(account, events, failure="cannot seed the bench's history")
                fills += 1
    finally:
        store.close()
    return fills


def real_cycles(tmp: Path, *, seeded: bool = False) -> list[Result]:
    """Part 2 (and 3, ``seeded``): real cycles against the fake venue in a child process (see the module
    docstring)."""
    from llmtrader.config.settings import settings_from_values
    from llmtrader.cycle.compose import build_services, close_services
    from llmtrader.cycle.run import record_skipped_cycle, run_cycle
    from llmtrader.cycle.scheduler import Scheduler

    ctx = multiprocessing.get_context("spawn")
    shared = ctx.Value("q", START_MS, lock=False)
    clock = Clock(shared)
    parent, child = ctx.Pipe()
    venue = ctx.Process(target=_serve, args=(child, str(perp_dir()), shared), daemon=True)
    venue.start()
    if not parent.poll(60):
        venue.kill()
        raise RuntimeError("the fake venue did not start within 60 s")
    settings = settings_from_values(
        {
            "account": "bench",
            "assets": list(ASSETS),
            "interval": "1h",
            "llm_model": "baseline",
            "asterdex_base_url": str(parent.recv()),
            "db": tmp / ("history.db" if seeded else "run.db"),
            "paper_candle_interval": "15m",  # the fake venue has 15m, 1h and 4h files for every asset
            "daily_loss_kill_pct": 0,
            "max_drawdown_pct": 0,
        }
    )
    seeded_note = ""
    if seeded:
        fills = seed_history(settings.db, settings.account, START_MS - 2 * 24 * HOUR_MS)
        seeded_note = f"; {SEEDED_DAYS} days of hourly decisions and {fills} fills seeded"
    prefix = "run.history_" if seeded else "run."
    outcomes: dict[str, int] = {}
    overhead_ms: list[float] = []
    cpu_ms: list[float] = []
    wall_ms: list[float] = []
    requests: list[float] = []

    async def go() -> tuple[float, float]:
        services = build_services(settings, clock=clock)
        waits = Spans()
        # Every venue request of the paper account and of the market data goes through AsterMarketData.get.
        services.market.get = waits.wrap(services.market.get)  # type: ignore[method-assign]
        services.client = TimedClient(services.client, waits)  # type: ignore[assignment]
        scheduler = Scheduler(
            {"bench": services}, cycle=run_cycle, record_skip=record_skipped_cycle, close_services=close_services,
            clock=clock,
        )  # fmt: skip
        before = 0.0
        try:
            for i in range(WARMUP + REAL_CYCLES):
                if i == WARMUP:
                    before = rss_mb()
                shared.value += HOUR_MS
                waits.take()
                calls = waits.calls
                cpu, wall = time.process_time(), time.perf_counter()
                done = await scheduler.fire("bench")
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                if done is None:
                    raise RuntimeError("a cycle raised; see the log")
                waiting = waits.take()
                if i >= WARMUP:
                    outcomes[done.outcome] = outcomes.get(done.outcome, 0) + 1
                    overhead_ms.append((wall - waiting) * 1000)
                    cpu_ms.append(cpu * 1000)
                    wall_ms.append(wall * 1000)
                    requests.append(waits.calls - calls - 1)  # one of the calls is the model's
            return before, rss_mb()
        finally:
            await scheduler.close()

    try:
        before, after = asyncio.run(go())
    finally:
        parent.send("stop")
        venue.join(10)
        if venue.is_alive():
            venue.kill()
    mix = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
    window = min(100, len(overhead_ms) // 2) or 1
    drift = statistics.median(overhead_ms[-window:]) - statistics.median(overhead_ms[:window])
    return [
        result(
            f"{prefix}cycle_overhead_ms",
            overhead_ms,
            "ms",
            TARGET_OVERHEAD_MS,
            f"wall time with no venue request or model call in flight; 5 assets; {mix}{seeded_note}",
        ),
        result(
            f"{prefix}real_rss_growth_mb",
            [after - before],
            "MB",
            None,
            f"{REAL_CYCLES} real cycles after {WARMUP}; {before:.0f} -> {after:.0f} MB",
        ),
        result(f"{prefix}cycle_cpu_ms", cpu_ms, "ms", None, "CPU of this process per cycle: HTTP client and model too"),
        result(f"{prefix}cycle_wall_ms", wall_ms, "ms", None, "wall time per cycle, loopback venue in a child process"),
        result(
            f"{prefix}venue_requests", requests, "req", None, "venue requests per cycle (market data, paper account)"
        ),
        result(
            f"{prefix}overhead_drift_ms", [drift], "ms", None, f"median of the last {window} cycles minus the first"
        ),
    ]


def run() -> list[Result]:
    from llmtrader.logs import configure_logging, reset_logging

    configure_logging(json=True, log_file=None, stream=_NullStream())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if SEEDED:
                return [*real_cycles(Path(tmp)), *real_cycles(Path(tmp), seeded=True)]
            return [scheduler_cycles(Path(tmp)), *real_cycles(Path(tmp))]
    finally:
        reset_logging()

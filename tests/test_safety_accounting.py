"""Accounting an auditor recomputes fill by fill: who pays a funding settlement, at which price, when a
stop placed at a backtest's first step can fill, and where a backtest's statistics period ends.

The backtest cases run on small synthetic candles, so that every expected amount is worked out by hand:
funding = - position held at the instant x price at the instant x rate (paid by a long when positive).
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmtrader.backtest.data import load_history
from llmtrader.backtest.replay import run_backtest
from llmtrader.backtest.spec import STEP_OFFSET_MS, BacktestSpec, open_backtests
from llmtrader.config.load import load_settings
from llmtrader.config.settings import Settings
from llmtrader.config.strategies import load_strategy
from llmtrader.core.market import Candles
from llmtrader.cycle.stats import account_stats
from llmtrader.exchange.asterdex_market import AsterMarketData
from llmtrader.exchange.base import OrderRequest, OrderType, Side
from llmtrader.exchange.paper import PaperBook, PaperConfig, PaperExchange
from llmtrader.exchange.simulated import SimulatedExchange, Tape
from llmtrader.llm.baseline import BaselineClient
from llmtrader.storage.store import Store
from tests.fakes.aster import FakeAster
from tests.helpers import FakeClock as Clock

D = Decimal
H = 3_600_000
DAY = 24 * H
DAY0 = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
SLIP = D("0.0002")  # the paper account's 2 bps against the taker
RATE = D("0.0001")  # every synthetic settlement
SYMBOL = "SYNUSDT"


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


# ---- synthetic candles -------------------------------------------------------------------------------------


def price_at(hour_of_day: int) -> int:
    """The price at each full hour of every day: 100 at 00:00, up 1 an hour to 116 at 16:00, down 2 an hour
    back to 100 at 24:00. So the 1h candle ending at 08:00 closes at 108, the one ending at 16:00 at 116, and
    the day closes at 100."""
    return 100 + hour_of_day if hour_of_day <= 16 else 116 - 2 * (hour_of_day - 16)


def hourly_rows(days: int) -> list[list[float]]:
    """1h candles from DAY0: open and close on the price path, 0.2 of wick on each side, volume 1."""
    rows = []
    for i in range(days * 24):
        o, c = price_at(i % 24), price_at(i % 24 + 1)
        rows.append([DAY0 + i * H, o, max(o, c) + 0.2, min(o, c) - 0.2, c, 1])
    return rows


def daily_rows(hourly: list[list[float]]) -> list[list[float]]:
    out = []
    for d in range(len(hourly) // 24):
        day = hourly[d * 24 : (d + 1) * 24]
        out.append([day[0][0], day[0][1], max(r[2] for r in day), min(r[3] for r in day), day[-1][4], 24])
    return out


def write_csv(path: Path, header: str, rows: list[list[Any]]) -> None:
    def text(v: Any) -> str:
        return str(int(v)) if float(v).is_integer() else repr(float(v))

    path.write_text(header + "\n" + "".join(",".join(text(v) for v in r) + "\n" for r in rows))


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    """60 days of SYNUSDT: 1h and 1d candles and a settlement every 8 hours at +0.0001."""
    data = tmp_path / "data"
    data.mkdir()
    hourly = hourly_rows(60)
    write_csv(data / f"{SYMBOL}-1h.csv", "open_time_ms,open,high,low,close,volume", hourly)
    write_csv(data / f"{SYMBOL}-1d.csv", "open_time_ms,open,high,low,close,volume", daily_rows(hourly))
    (data / f"{SYMBOL}-funding.csv").write_text(
        "funding_time_ms,funding_rate\n" + "".join(f"{DAY0 + i * 8 * H},{RATE}\n" for i in range(60 * 3))
    )
    return data


@pytest.fixture
def settings(clean_env: Path) -> Settings:
    return load_settings(None, None)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = open_backtests(settings)
    yield opened
    opened.close()


def market(side: str, qty: str, cid: str, symbol: str = SYMBOL) -> OrderRequest:
    return OrderRequest(symbol, Side(side), OrderType.MARKET, cid, quantity=D(qty))


def stop(side: str, price: str, cid: str, symbol: str = SYMBOL) -> OrderRequest:
    return OrderRequest(symbol, Side(side), OrderType.STOP_MARKET, cid, stop_price=D(price), close_position=True)


def funding_rows(store: Store, account: str) -> list[tuple[int, Decimal, Decimal, Decimal]]:
    """(time, mark, position, amount) of every stored settlement of ``account``."""
    return [
        (int(t), D(m), D(p), D(a))
        for t, m, p, a in store.db.execute(
            "SELECT time_ms, mark_price, position_amt, amount FROM paper_funding WHERE account = ? ORDER BY id",
            [account],
        ).fetchall()
    ]


def fill_rows(store: Store, account: str) -> list[tuple[int, str, Decimal, Decimal, str]]:
    return [
        (int(t), s, D(q), D(p), r)
        for t, s, q, p, r in store.db.execute(
            "SELECT time_ms, side, qty, price, reason FROM paper_fills WHERE account = ? ORDER BY id", [account]
        ).fetchall()
    ]


# ---- 14. daily fill candles: funding at the settlement instant ---------------------------------------------


def daily_exchange(settings: Settings, store: Store, data: Path, account: str) -> SimulatedExchange:
    """The simulated account of a dca-like run (1d decisions and fill candles, 1h and 1d shown), started at
    the close of day 54 with nothing open and moved to the decision at the close of day 55 (00:00:05)."""
    spec = BacktestSpec(
        data_dir=str(data), symbols=(SYMBOL,), interval="1d", strategy="dca", model="baseline",
        balance_usd=10_000.0, timeframes=("1h", "1d"), start_ms=DAY0 + 55 * DAY, end_ms=DAY0 + 58 * DAY,
    )  # fmt: skip
    history = load_history(spec, load_strategy("dca", settings.strategies_dir))
    assert history.tapes[SYMBOL].interval_ms == DAY  # the fill candles are daily
    exchange = SimulatedExchange(
        store, history.tapes, history.rules, account=account, balance=D(10_000), config=PaperConfig(),
        start_ms=DAY0 + 55 * DAY + STEP_OFFSET_MS,
    )  # fmt: skip
    exchange.advance_to(DAY0 + 56 * DAY + STEP_OFFSET_MS)
    return exchange


def test_daily_candles_value_funding_at_the_settlement_instant(
    settings: Settings, store: Store, synthetic: Path
) -> None:
    exchange = daily_exchange(settings, store, synthetic, "bt-daily")
    day = DAY0 + 56 * DAY
    # The mark at 00:00:05 is the day's close, 100; the long pays 100 × 1.0002 = 100.02.
    asyncio.run(exchange.place_order(market("BUY", "10", "long-1")))
    exchange.advance_to(day + DAY + STEP_OFFSET_MS)
    # 08:00 at the close of the 1h candle ending then (108), 16:00 at 116, the next 00:00 at the day's close
    # 100; never the day's close for the settlements inside the day. Each: −10 × price × 0.0001.
    assert funding_rows(store, "bt-daily") == [
        (day + 8 * H, D("108"), D("10"), D("-0.108")),
        (day + 16 * H, D("116"), D("10"), D("-0.116")),
        (day + 24 * H, D("100"), D("10"), D("-0.1")),
    ]
    assert exchange.book.funding == D("-0.324")


def test_daily_candles_charge_funding_on_the_position_held_at_the_instant(
    settings: Settings, store: Store, synthetic: Path
) -> None:
    exchange = daily_exchange(settings, store, synthetic, "bt-stopped")
    day = DAY0 + 56 * DAY
    asyncio.run(exchange.place_order(market("BUY", "10", "long-1")))
    asyncio.run(exchange.place_order(stop("SELL", "99.9", "long-1-sl")))
    exchange.advance_to(day + DAY + STEP_OFFSET_MS)
    # The day's low 99.8 reaches the stop; its fill is stamped at the day's last millisecond, so the 08:00
    # and 16:00 settlements are owed by the long held then, and the next 00:00 by nobody.
    assert fill_rows(store, "bt-stopped") == [
        (day + STEP_OFFSET_MS, "BUY", D("10"), D("100.02"), "market"),
        (day + DAY - 1, "SELL", D("10"), D("99.9") * (1 - SLIP), "stop_loss"),
    ]
    assert funding_rows(store, "bt-stopped") == [
        (day + 8 * H, D("108"), D("10"), D("-0.108")),
        (day + 16 * H, D("116"), D("10"), D("-0.116")),
    ]
    assert exchange.funding_events == 2


# ---- 15. the first step's stop is watched from the candle after it ------------------------------------------


def test_a_stop_placed_at_the_first_step_triggers_in_the_next_candle(tmp_path: Path) -> None:
    candles = Candles.from_rows(SYMBOL, "1h", np.array(hourly_rows(3), dtype=np.float64))
    tape = Tape.of(candles, H, np.empty(0, dtype=np.int64), ())
    from llmtrader.backtest.data import derived_rules

    store = Store(tmp_path / "bt.db", durable=False)
    first = DAY0 + DAY  # the 23:00 candle closes at 100: the first decision, at 00:00:05
    exchange = SimulatedExchange(
        store, {SYMBOL: tape}, {SYMBOL: derived_rules(SYMBOL, candles)}, account="bt-first", balance=D(10_000),
        config=PaperConfig(), start_ms=first + STEP_OFFSET_MS,
    )  # fmt: skip
    asyncio.run(exchange.place_order(market("BUY", "10", "long-1")))
    asyncio.run(exchange.place_order(stop("SELL", "99.9", "long-1-sl")))
    exchange.advance_to(first + H + STEP_OFFSET_MS)
    # The 00:00 candle (open 100, low 99.8) is the first the stop meets, exactly as at every later step.
    assert fill_rows(store, "bt-first") == [
        (first + STEP_OFFSET_MS, "BUY", D("10"), D("100.02"), "market"),
        (first + H - 1, "SELL", D("10"), D("99.9") * (1 - SLIP), "stop_loss"),
    ]
    assert exchange.book.positions_by_symbol == {}
    store.close()


# ---- 13. the paper account: a position closed after a settlement still owes it ---------------------------------


def test_the_book_charges_a_settlement_to_the_position_held_at_its_instant() -> None:
    book = PaperBook(D(10_000), PaperConfig())
    rules = load_rules()
    t = utc("2025-10-11 00:00")
    book.place(market("BUY", "0.1", "open", "BTCUSDT"), D("112995.3"), rules, t - 40 * 60_000)
    book.place(market("SELL", "0.1", "close", "BTCUSDT"), D("112314.1"), rules, t + 5_000)
    assert book.positions_by_symbol == {}
    assert book.funding_symbols() == {"BTCUSDT"}  # a settlement before the close may still be owed
    paid = book.on_funding("BTCUSDT", t, D("0.0001"), D("112714.9"))
    assert paid is not None and paid.position_amt == D("0.1") and paid.amount == D("-1.127149")
    # A settlement after the close is nobody's.
    assert book.on_funding("BTCUSDT", t + 8 * H, D("0.0001"), D("112714.9")) is None
    book.forget_changes_before("BTCUSDT", t + 8 * H)
    assert book.funding_symbols() == set()


def load_rules() -> Any:
    from llmtrader.core.filters import SymbolRules

    return SymbolRules(
        symbol="BTCUSDT", status="TRADING", base_asset="BTC", quote_asset="USDT", tick_size=D("0.1"),
        min_price=D("0.1"), max_price=D("1000000"), step_size=D("0.001"), min_qty=D("0.001"), max_qty=D("100000"),
        market_step_size=D("0.001"), market_min_qty=D("0.001"), market_max_qty=D("10000"), min_notional=D("5"),
        percent_up=D("1.05"), percent_down=D("0.95"),
    )  # fmt: skip


@contextmanager
def paper_venue(perp_dir: Path, start_ms: int) -> Iterator[tuple[FakeAster, Clock]]:
    clock = Clock(start_ms)
    fake = FakeAster(perp_dir, anchor_ms=start_ms, clock=clock).start()
    try:
        yield fake, clock
    finally:
        fake.stop()


def closes_15m(perp_dir: Path, symbol: str) -> dict[int, Decimal]:
    with (perp_dir / f"{symbol}-15m.csv").open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        return {int(r[0]): D(r[4]) for r in reader}


def test_paper_charges_the_settlement_a_position_closed_at_hh_00_05_owed(perp_dir: Path, tmp_path: Path) -> None:
    # BTCUSDT: the 2025-10-11 00:00 settlement is +0.0001. A long of 0.1 opened at 23:20 is closed at
    # 00:00:05, as the hourly cycle does, before the venue's record of the settlement is replayed (the paper
    # account replays a settlement once the candle opening at its time has closed). The venue charged it.
    settle = utc("2025-10-11 00:00")
    with paper_venue(perp_dir, settle - 40 * 60_000) as (fake, clock):

        async def go() -> None:
            data = AsterMarketData(fake.base_url, timeout_s=5)
            store = Store(tmp_path / "paper.db")
            exchange = PaperExchange(store, data, account="paper-13", candle_interval="15m", now_ms=clock)
            await exchange.place_order(market("BUY", "0.1", "open-1", "BTCUSDT"))
            clock.now = settle + 5_000
            await exchange.place_order(
                OrderRequest("BTCUSDT", Side.SELL, OrderType.MARKET, "close-1", quantity=D("0.1"), reduce_only=True)
            )
            assert await exchange.positions() == []
            assert list(store.db.query("SELECT * FROM paper_funding")) == []  # not published in the window yet
            clock.now = settle + H + 5_000  # the next cycle
            wallet_before = (await exchange.balance()).wallet
            rows = funding_rows(store, "paper-13")
            # Valued at the price of the instant, the close of the 15m candle ending at 00:00 (the 23:45 one).
            mark = closes_15m(perp_dir, "BTCUSDT")[settle - 15 * 60_000]
            assert mark == D("112714.9")
            assert rows == [(settle, mark, D("0.1"), -D("0.1") * mark * D("0.0001"))]
            assert rows[0][3] == D("-1.127149")
            # It is in the wallet, and it is charged once: later calls add nothing.
            clock.now = settle + 2 * H + 5_000
            assert (await exchange.balance()).wallet == wallet_before
            assert len(funding_rows(store, "paper-13")) == 1
            await data.aclose()
            store.close()

        asyncio.run(go())


# ---- 17. stats of a backtest end where the run ended ----------------------------------------------------------


def test_stats_of_a_backtest_run_end_at_its_last_step(settings: Settings, store: Store, perp_dir: Path) -> None:
    end = utc("2025-10-08 00:00")
    spec = BacktestSpec(
        data_dir=str(perp_dir), symbols=("BTCUSDT",), interval="1h", strategy="default", model="baseline",
        balance_usd=10_000.0, timeframes=("1h", "4h"), start_ms=end - 120 * H, end_ms=end,
    )  # fmt: skip
    history = load_history(spec, load_strategy("default", settings.strategies_dir))
    asyncio.run(run_backtest(settings, spec, history, store, BaselineClient(), run_id="bt-stats"))
    last_cycle = end + STEP_OFFSET_MS

    got = account_stats(store, account="bt-stats", mode="paper", now_ms=utc("2026-12-06 00:00"))
    assert got.end_ms == last_cycle
    assert got.start_ms == end - 120 * H + STEP_OFFSET_MS  # the first decision
    # Exposure: the time with the position open, from the fills (an open position runs to the end).
    fills = fill_rows(store, "bt-stats")
    assert len(fills) >= 4
    held, opened, exposed = D(0), 0, 0
    for time_ms, side, qty, _, _ in fills:
        after = held + (qty if side == "BUY" else -qty)
        if held == 0 and after != 0:
            opened = time_ms
        elif held != 0 and after == 0:
            exposed += time_ms - opened
        held = after
    if held != 0:
        exposed += last_cycle - opened
    assert got.trading.exposure_ms == exposed
    assert got.trading.exposure == pytest.approx(exposed / (last_cycle - got.start_ms))


def test_stats_of_an_agent_account_still_end_now(settings: Settings, store: Store) -> None:
    now = utc("2026-12-06 00:00")
    assert account_stats(store, account="default", mode="paper", now_ms=now).end_ms == now

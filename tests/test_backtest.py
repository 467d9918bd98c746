"""Backtests: history stepped through the agent's own cycle, on real Binance USDⓈ-M candles.

The data is tests/data/binance-usdm-perp (BTCUSDT and ETHUSDT 1h candles 2025-08-16 to 2025-12-16,
SOLUSDT from 2025-11-01; BTCUSDT funding 2025-09-19 to 2025-10-27). Every run shows the 1h and 4h
timeframes, because the 15m files hold only a few windows. Expected figures are worked out from the CSV
rows themselves, read here with the csv module, never from the code under test: the paper fee is 0.035 %
of the notional (taker) and the slippage 2 bps against the trader.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from llmtrader.backtest.clients import RecordingClient, ReplayClient
from llmtrader.backtest.data import load_history, resample
from llmtrader.backtest.datafiles import read_candles
from llmtrader.backtest.market import HistoricalMarket
from llmtrader.backtest.replay import BacktestResult, run_backtest
from llmtrader.backtest.spec import STEP_OFFSET_MS, BacktestSpec, open_backtests
from llmtrader.cli.app import app
from llmtrader.config.load import load_settings
from llmtrader.config.settings import Settings
from llmtrader.config.strategies import load_strategy
from llmtrader.core.decision import lenient_from_decision, parse_decision
from llmtrader.core.indicators import compute
from llmtrader.core.market import NAMES, Candles
from llmtrader.cycle.compose import build_client
from llmtrader.errors import ConfigError, StoreError
from llmtrader.llm.baseline import BaselineClient
from llmtrader.llm.port import CallRecord, DecisionClient, DecisionRequest, ModelAnswer
from llmtrader.storage import backtests as runs
from llmtrader.storage.backtests import verdict_changes
from llmtrader.storage.store import Store
from tests.conftest import TEST_KEY
from tests.fakes.llm import Behaviour, FakeLLM, answer, asset, decision

D = Decimal
H = 3_600_000
FRAME_MS = {"1h": H, "4h": 4 * H}
FEE = D("0.00035")  # PAPER_TAKER_FEE
SLIP = D("0.0002")  # PAPER_SLIPPAGE_BPS 2
BTC_TICK = D("0.1")  # BTCUSDT prices in the data have one decimal
BTC_STEP = D("0.001")  # and its volumes three


def utc(text: str) -> int:
    """``YYYY-MM-DD HH:MM`` (UTC) as epoch milliseconds."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


# ---- the data, read independently of llmtrader ----------------------------------------------------------


@cache
def candle_rows(path: Path) -> dict[int, tuple[Decimal, Decimal, Decimal, Decimal, Decimal]]:
    """open_time_ms -> (open, high, low, close, volume) exactly as written in a candle file."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        return {int(r[0]): (D(r[1]), D(r[2]), D(r[3]), D(r[4]), D(r[5])) for r in reader}


@cache
def funding_rows(path: Path) -> dict[int, Decimal]:
    """funding_time_ms -> rate exactly as written in a funding file."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        return {int(r[0]): D(r[1]) for r in reader}


def close_at(perp_dir: Path, symbol: str, time_ms: int) -> Decimal:
    """The close of the 1h candle that ended at ``time_ms`` (the mark at a decision time)."""
    return candle_rows(perp_dir / f"{symbol}-1h.csv")[time_ms - H][3]


@cache
def atr14(perp_dir: Path, symbol: str) -> dict[int, float]:
    """ATR(14) of the 1h candles over the whole file, by the time each candle closed."""
    candles = read_candles(perp_dir / f"{symbol}-1h.csv", symbol, "1h").candles
    values = compute(candles)["atr14"]
    return {int(t) + H: float(v) for t, v in zip(candles.open_time_ms, values, strict=True)}


def on_tick(value: Decimal | float, tick: Decimal = BTC_TICK) -> float:
    return float(D(str(value)).quantize(tick))


# ---- running a backtest -----------------------------------------------------------------------------------


@pytest.fixture
def settings(clean_env: Path) -> Settings:
    """The defaults, with the database in the test's directory (backtests.db beside it)."""
    return load_settings(None, None)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = open_backtests(settings)
    yield opened
    opened.close()


def make_spec(data: Path, symbols: Sequence[str], start_ms: int, end_ms: int, **kw: Any) -> BacktestSpec:
    values: dict[str, Any] = {"model": "baseline", "strategy": "default", "balance_usd": 10_000.0}
    values.update(kw)
    return BacktestSpec(
        data_dir=str(data), symbols=tuple(symbols), interval="1h", start_ms=start_ms, end_ms=end_ms,
        timeframes=("1h", "4h"), **values,
    )  # fmt: skip


def backtest(
    settings: Settings, store: Store, spec: BacktestSpec, client: DecisionClient, run_id: str, **kw: Any
) -> BacktestResult:
    history = load_history(spec, load_strategy(spec.strategy, settings.strategies_dir))
    return asyncio.run(run_backtest(settings, spec, history, store, client, run_id=run_id, **kw))


class PromptReadingBaseline(BaselineClient):
    """The baseline's answers, for a client that reads the prompt like a model: each decision's prompt is
    rendered and recorded (the baseline itself reads none)."""

    reads_prompt = True


class Scripted:
    """A decision client written for a test: the planned asset decisions at the planned decision times
    (``as_of_ms``, the candle close + 5 s), a hold for every other asset and step. The answer goes through
    the same parsing as a model's."""

    model = "scripted/test"
    base_url = "test:scripted"

    def __init__(self, plan: Mapping[int, Sequence[dict[str, Any]]]) -> None:
        self.plan = plan
        self.asked: list[int] = []

    async def decide(self, request: DecisionRequest) -> ModelAnswer:
        ctx = request.context
        self.asked.append(ctx.as_of_ms)
        planned = {a["symbol"]: a for a in self.plan.get(ctx.as_of_ms, ())}
        text = json.dumps(decision(*(planned.get(s, asset(s)) for s in ctx.symbols)))
        parsed, _ = parse_decision(text)
        call = CallRecord(attempt=1, response_format="scripted", raw_response=text, cost_usd=0.0)
        return ModelAnswer(text, lenient_from_decision(parsed), [call], 0, "scripted")


def opening(symbol: str, action: str, *, sl: float, tp: float, usd: float, leverage: int = 1) -> dict[str, Any]:
    return asset(
        symbol, action, allocation_usd=usd, leverage=leverage, sl_price=sl, tp_price=tp, confidence=0.7,
        risk_level="medium",
    )  # fmt: skip


# ---- what a run stored (ids, client order ids and wall times left out) ------------------------------------


def stored_fills(store: Store, run_id: str) -> list[tuple[Any, ...]]:
    return store.db.execute(
        "SELECT time_ms, symbol, side, qty, price, fee, realized_pnl, reason FROM paper_fills WHERE account = ? "
        "ORDER BY id",
        [run_id],
    ).fetchall()


def stored_funding(store: Store, run_id: str) -> list[tuple[Any, ...]]:
    return store.db.execute(
        "SELECT time_ms, symbol, rate, mark_price, position_amt, amount FROM paper_funding WHERE account = ? "
        "ORDER BY id",
        [run_id],
    ).fetchall()


def stored_decisions(store: Store, run_id: str) -> list[tuple[Any, ...]]:
    return store.db.execute(
        "SELECT as_of_ms, model, system_prompt, user_prompt, raw_response, parsed, outcome, marks FROM decisions "
        "WHERE account = ? ORDER BY as_of_ms, rowid",
        [run_id],
    ).fetchall()


def stored_verdicts(store: Store, run_id: str) -> list[tuple[Any, ...]]:
    return store.db.execute(
        "SELECT d.as_of_ms, a.symbol, a.action, a.status, a.reasons, a.allocation_usd, a.leverage, a.entry_price, "
        "a.tp_price, a.sl_price, a.proposed, a.mark_price FROM asset_decisions a JOIN decisions d "
        "ON d.id = a.decision_id WHERE a.account = ? ORDER BY d.as_of_ms, a.id",
        [run_id],
    ).fetchall()


def stored_orders(store: Store, run_id: str) -> list[tuple[Any, ...]]:
    out = []
    for symbol, leg, request, status, qty, price, created in store.db.execute(
        "SELECT symbol, leg, request, status, executed_qty, avg_price, created_at FROM orders WHERE account = ? "
        "ORDER BY id",
        [run_id],
    ).fetchall():
        body = json.loads(request)
        body.pop("newClientOrderId", None)  # made of the decision id, random by design
        out.append((symbol, leg, body, status, qty, price, created))
    return out


# ---- 1. nothing from the future ---------------------------------------------------------------------------

# The decision time up to which two copies of the data agree; 00:00 is on the 4h grid and a BTCUSDT and
# ETHUSDT funding settlement.
POISON_AT = utc("2025-10-08 00:00")


def copy_data(perp_dir: Path, target: Path, symbols: Sequence[str], *, poison_after: int | None = None,
              keep_format: bool = True) -> Path:  # fmt: skip
    """Copy the 1h, 4h and funding files of ``symbols``. With ``poison_after``, every candle that had not
    closed by then gets prices x 1.5 and volume x 3 (rounded to the decimals of the original figure when
    ``keep_format``), and every later funding rate becomes -3 x rate + 0.0005."""
    target.mkdir(parents=True)
    for symbol in symbols:
        for tf, frame in FRAME_MS.items():
            lines = (perp_dir / f"{symbol}-{tf}.csv").read_text().splitlines()
            # The file's finest price decimal: rounding every poisoned price to it keeps high >= open etc.
            tick = min(int(D(x).as_tuple().exponent) for line in lines[1:] for x in line.split(",")[1:5])
            out = [lines[0]]
            for line in lines[1:]:
                cells = line.split(",")
                if poison_after is not None and int(cells[0]) + frame > poison_after:
                    prices = [D(x) * D("1.5") for x in cells[1:5]]
                    if keep_format:
                        prices = [p.quantize(D(1).scaleb(tick)) for p in prices]
                    cells = [cells[0], *map(str, prices), str(D(cells[5]) * 3)]
                out.append(",".join(cells))
            (target / f"{symbol}-{tf}.csv").write_text("\n".join(out) + "\n")
        lines = (perp_dir / f"{symbol}-funding.csv").read_text().splitlines()
        out = [lines[0]]
        for line in lines[1:]:
            when, rate = line.split(",")
            if poison_after is not None and int(when) > poison_after:
                rate = str(D(rate) * -3 + D("0.0005"))
            out.append(f"{when},{rate}")
        (target / f"{symbol}-funding.csv").write_text("\n".join(out) + "\n")
    return target


def test_a_run_cannot_see_the_future_poisoned_data_after_the_end_changes_nothing(
    perp_dir: Path, tmp_path: Path, settings: Settings, store: Store
) -> None:
    symbols = ("BTCUSDT", "ETHUSDT")
    clean = copy_data(perp_dir, tmp_path / "clean", symbols)
    poisoned = copy_data(perp_dir, tmp_path / "poisoned", symbols, poison_after=POISON_AT)
    # The poisoning is real: the first candle closing after POISON_AT differs, and so does the next rate.
    assert candle_rows(clean / "BTCUSDT-1h.csv")[POISON_AT][3] != candle_rows(poisoned / "BTCUSDT-1h.csv")[POISON_AT][3]
    next_funding = POISON_AT + 8 * H
    assert (
        funding_rows(clean / "BTCUSDT-funding.csv")[next_funding]
        != funding_rows(poisoned / "BTCUSDT-funding.csv")[next_funding]
    )
    assert (
        funding_rows(clean / "BTCUSDT-funding.csv")[POISON_AT]
        == funding_rows(poisoned / "BTCUSDT-funding.csv")[POISON_AT]
    )

    start = POISON_AT - 120 * H
    spec_a, spec_b = make_spec(clean, symbols, start, POISON_AT), make_spec(poisoned, symbols, start, POISON_AT)
    a = backtest(settings, store, spec_a, PromptReadingBaseline(), "bt-clean")
    b = backtest(settings, store, spec_b, PromptReadingBaseline(), "bt-poisoned")

    assert a.steps_done == b.steps_done == 121
    decisions = stored_decisions(store, "bt-clean")
    assert len(decisions) >= 121 and decisions[-1][0] == POISON_AT + STEP_OFFSET_MS
    # Every decision's prompt was rendered and stored (a model reads it): the comparison covers the prompts.
    assert all(d[2] and "## BTCUSDT" in d[3] and "### 4h" in d[3] for d in decisions if d[1] == "baseline")
    assert decisions == stored_decisions(store, "bt-poisoned")
    assert stored_verdicts(store, "bt-clean") == stored_verdicts(store, "bt-poisoned")
    assert stored_orders(store, "bt-clean") == stored_orders(store, "bt-poisoned")
    fills = stored_fills(store, "bt-clean")
    funding = stored_funding(store, "bt-clean")
    # Something happened to compare: the baseline traded, and paid or received funding, in those 5 days.
    assert len(fills) >= 4 and funding
    assert all(f[0] <= POISON_AT + STEP_OFFSET_MS for f in fills)
    assert fills == stored_fills(store, "bt-poisoned")
    assert funding == stored_funding(store, "bt-poisoned")
    assert runs.equity_of(store, "bt-clean") == runs.equity_of(store, "bt-poisoned")
    assert a.metrics == b.metrics


def test_the_derived_tick_size_does_not_depend_on_candles_after_the_run(
    perp_dir: Path, tmp_path: Path, settings: Settings
) -> None:
    # x 1.5 written with every decimal: 108929.3 x 1.5 = 163393.95, a second decimal that no candle up to
    # POISON_AT has.
    symbols = ("BTCUSDT",)
    clean = copy_data(perp_dir, tmp_path / "clean", symbols)
    poisoned = copy_data(perp_dir, tmp_path / "poisoned", symbols, poison_after=POISON_AT, keep_format=False)
    strategy = load_strategy("default", settings.strategies_dir)
    start = POISON_AT - 24 * H
    before = load_history(make_spec(clean, symbols, start, POISON_AT), strategy)
    after = load_history(make_spec(poisoned, symbols, start, POISON_AT), strategy)
    assert before.rules["BTCUSDT"].tick_size == BTC_TICK
    # The rules come from the candles closed when the run starts (what a trader knew then): the same either way.
    assert after.rules["BTCUSDT"].tick_size == BTC_TICK
    assert after.rules == before.rules


def test_the_market_at_a_step_shows_closed_candles_settled_funding_and_causal_indicators(
    perp_dir: Path, settings: Settings
) -> None:
    spec = make_spec(perp_dir, ("BTCUSDT", "ETHUSDT"), utc("2025-10-06 00:00"), utc("2025-10-08 00:00"))
    history = load_history(spec, load_strategy("default", settings.strategies_dir))
    market = HistoricalMarket(history, "1h", spec.data_dir)
    funding = funding_rows(perp_dir / "BTCUSDT-funding.csv")
    # 15:00 is an hour before the 16:00 settlement, 16:00 is on it, and the two rates differ: a market that
    # showed the coming rate would be caught at 15:00.
    settles = utc("2025-10-07 16:00")
    assert funding[settles] != funding[settles - 8 * H]
    steps = [int(history.steps[0]), settles - H, settles, utc("2025-10-07 18:00"), int(history.steps[-1])]
    full = {(s, tf): read_candles(perp_dir / f"{s}-{tf}.csv", s, tf).candles for s in spec.symbols for tf in FRAME_MS}
    for step in steps:
        now = step + STEP_OFFSET_MS
        snapshot = asyncio.run(market.snapshot(spec.symbols, ("1h", "4h"), 200, now))
        assert snapshot.as_of_ms == now
        for symbol in spec.symbols:
            shown = snapshot.assets[symbol]
            for tf, frame in FRAME_MS.items():
                candles = shown.candles[tf]
                assert len(candles) == 200
                assert bool((candles.open_time_ms + frame <= now).all())
                # ... and the newest is the newest closed one: a 4h candle still forming is not shown.
                assert int(candles.open_time_ms[-1]) == (now // frame) * frame - frame
                prefix = full[(symbol, tf)].until(now)
                assert np.array_equal(candles.close, prefix.close[-200:])
                expected = compute(prefix)
                assert candles.indicators is not None
                for name in NAMES:
                    assert math.isclose(candles.indicators[name][-1], expected[name][-1], rel_tol=1e-9), (
                        symbol,
                        tf,
                        name,
                        step,
                    )
            assert shown.mark_price == float(close_at(perp_dir, symbol, step))
        rates = funding_rows(perp_dir / "BTCUSDT-funding.csv")
        settled = max(t for t in rates if t <= now)
        assert snapshot.assets["BTCUSDT"].funding_rate == float(rates[settled])
        assert snapshot.assets["BTCUSDT"].next_funding_time_ms == settled + 8 * H
    # The 15:00 step shows the 08:00 rate, never the one settled at 16:00.
    at_15 = asyncio.run(market.snapshot(("BTCUSDT",), ("1h",), 200, settles - H + STEP_OFFSET_MS))
    assert at_15.assets["BTCUSDT"].funding_rate == float(funding[settles - 8 * H])


# ---- 2. stops and targets inside candles ------------------------------------------------------------------


def find_candle(perp_dir: Path, pick: Callable[[Decimal, tuple[Decimal, ...], float], bool]) -> int:
    """The first BTCUSDT decision time (a 1h close) in Nov-Dec 2025 (no funding data: no funding charged)
    whose next candle satisfies ``pick(mark, next_candle, atr14)``."""
    rows = candle_rows(perp_dir / "BTCUSDT-1h.csv")
    atr = atr14(perp_dir, "BTCUSDT")
    for step in range(utc("2025-11-03 00:00"), utc("2025-12-30 00:00"), H):
        mark = rows[step - H][3]
        if pick(mark, rows[step], atr[step]):
            return step
    raise AssertionError("no such candle in the data")


def hand_fill(qty: Decimal, level: Decimal, side: str) -> tuple[Decimal, Decimal]:
    """Price and fee of a market fill of ``qty`` at ``level``, 2 bps against the trader."""
    price = level * (1 + SLIP) if side == "BUY" else level * (1 - SLIP)
    return price, qty * price * FEE


def test_a_candle_reaching_both_stop_and_target_closes_the_long_at_its_stop(
    perp_dir: Path, settings: Settings, store: Store
) -> None:
    # A candle whose low is more than 0.8 ATR under the mark and whose high is further above than
    # 1.5 x that (the default strategy's minimum reward/risk), opening between the two.
    def both(mark: Decimal, c: tuple[Decimal, ...], atr: float) -> bool:
        o, h, lo = c[0], c[1], c[2]
        down, up = float(mark - lo), float(h - mark)
        return 0.8 * atr < down < 5 * atr and up > 1.5 * down + 0.2 * atr and up > 0.002 * float(mark) and lo < o < h

    step = find_candle(perp_dir, both)
    mark = close_at(perp_dir, "BTCUSDT", step)
    _, high, low, _, _ = candle_rows(perp_dir / "BTCUSDT-1h.csv")[step]
    stop, target = low + BTC_TICK, high - BTC_TICK
    client = Scripted({step + STEP_OFFSET_MS: [opening("BTCUSDT", "buy", sl=float(stop), tp=float(target), usd=1000)]})
    result = backtest(settings, store, make_spec(perp_dir, ["BTCUSDT"], step - 2 * H, step + 3 * H), client, "bt-both")
    assert result.steps_done == 6

    qty = (D(1000) / mark).quantize(BTC_STEP, ROUND_DOWN)
    entry_price, entry_fee = hand_fill(qty, mark, "BUY")
    exit_price, exit_fee = hand_fill(qty, stop, "SELL")
    entry, exit_ = stored_fills(store, "bt-both")  # nothing else: the target never fired
    assert entry[:4] == (step + STEP_OFFSET_MS, "BTCUSDT", "BUY", str(qty))
    assert (D(entry[4]), D(entry[5]), D(entry[6]), entry[7]) == (entry_price, entry_fee, 0, "market")
    # Closed inside the next candle (stamped with its close time - 1 ms), at the stop less 2 bps.
    assert exit_[:4] == (step + H - 1, "BTCUSDT", "SELL", str(qty))
    assert exit_[7] == "stop_loss"
    assert D(exit_[4]) == exit_price == stop * D("0.9998")
    assert D(exit_[5]) == exit_fee
    realized = qty * (exit_price - entry_price)
    assert D(exit_[6]) == realized < 0
    m = result.metrics
    assert m["fills_by_reason"] == {"market": 1, "stop_loss": 1}
    assert m["trades"] == 1 and m["open_at_end"] == 0 and m["win_rate"] == 0
    assert m["fees_usd"] == pytest.approx(float(entry_fee + exit_fee), abs=1e-9)
    assert m["funding_usd"] == 0
    assert m["end_equity_usd"] == pytest.approx(float(10_000 + realized - entry_fee - exit_fee), abs=1e-6)
    orders = {leg: status for _, leg, _, status, *_ in stored_orders(store, "bt-both")}
    assert orders == {"en": "filled", "sl": "filled", "tp": "expired"}


def test_a_candle_reaching_only_the_target_closes_the_long_at_its_target(
    perp_dir: Path, settings: Settings, store: Store
) -> None:
    # A candle rising more than 1.2 ATR above the mark, whose low stays above a stop at
    # (target - mark) / 1.6 under the mark.
    def up_only(mark: Decimal, c: tuple[Decimal, ...], atr: float) -> bool:
        o, h, lo = c[0], c[1], c[2]
        up = float(h - BTC_TICK - mark)
        return up > 1.2 * atr and up > 0.002 * float(mark) and float(mark - lo) < 0.9 * up / 1.6 and o < h - BTC_TICK

    step = find_candle(perp_dir, up_only)
    mark = close_at(perp_dir, "BTCUSDT", step)
    _, high, low, _, _ = candle_rows(perp_dir / "BTCUSDT-1h.csv")[step]
    target = high - BTC_TICK
    stop = D(str(on_tick(mark - (target - mark) / D("1.6"))))
    assert stop < low
    client = Scripted({step + STEP_OFFSET_MS: [opening("BTCUSDT", "buy", sl=float(stop), tp=float(target), usd=1000)]})
    result = backtest(settings, store, make_spec(perp_dir, ["BTCUSDT"], step - H, step + 2 * H), client, "bt-tp")

    qty = (D(1000) / mark).quantize(BTC_STEP, ROUND_DOWN)
    entry_price, entry_fee = hand_fill(qty, mark, "BUY")
    exit_price, exit_fee = hand_fill(qty, target, "SELL")
    entry, exit_ = stored_fills(store, "bt-tp")
    assert (D(entry[4]), D(entry[5])) == (entry_price, entry_fee)
    assert exit_[0] == step + H - 1 and exit_[7] == "take_profit"
    assert (D(exit_[4]), D(exit_[5])) == (exit_price, exit_fee)
    assert D(exit_[6]) == qty * (exit_price - entry_price) > 0
    assert result.metrics["fills_by_reason"] == {"market": 1, "take_profit": 1}
    assert result.metrics["trades"] == 1 and result.metrics["win_rate"] == 1
    orders = {leg: status for _, leg, _, status, *_ in stored_orders(store, "bt-tp")}
    assert orders == {"en": "filled", "sl": "expired", "tp": "filled"}


# ---- 3. fees and funding ---------------------------------------------------------------------------------


def test_a_short_held_across_funding_settlements_pays_and_receives_each_rate_at_the_close(
    perp_dir: Path, settings: Settings, store: Store
) -> None:
    # A short opened at 2025-09-20 00:00 (just after that hour's settlement), its stop 5 ATR above and
    # target 8 ATR below: neither is reached by 2025-09-22 00:00, six settlements later, of both signs.
    first, last = utc("2025-09-20 00:00"), utc("2025-09-22 00:00")
    mark = close_at(perp_dir, "BTCUSDT", first)
    atr = atr14(perp_dir, "BTCUSDT")[first]
    stop, target = on_tick(float(mark) + 5 * atr), on_tick(float(mark) - 8 * atr)
    plan = {first + STEP_OFFSET_MS: [opening("BTCUSDT", "sell", sl=stop, tp=target, usd=1000, leverage=2)]}
    result = backtest(settings, store, make_spec(perp_dir, ["BTCUSDT"], first, last), Scripted(plan), "bt-funding")
    assert result.steps_done == 49

    [entry] = stored_fills(store, "bt-funding")  # the position is still open at the end
    qty = (D(2000) / mark).quantize(BTC_STEP, ROUND_DOWN)
    entry_price, entry_fee = hand_fill(qty, mark, "SELL")
    assert entry[:4] == (first + STEP_OFFSET_MS, "BTCUSDT", "SELL", str(qty)) and entry[7] == "market"
    assert (D(entry[4]), D(entry[5])) == (entry_price, entry_fee)

    rates = funding_rows(perp_dir / "BTCUSDT-funding.csv")
    settlements = sorted(t for t in rates if first < t <= last)
    assert len(settlements) == 6
    assert {rates[t] > 0 for t in settlements} == {True, False}
    position = -qty  # a short
    expected = []
    for t in settlements:
        close = close_at(perp_dir, "BTCUSDT", t)
        expected.append((t, "BTCUSDT", rates[t], close, position, -position * close * rates[t]))
    got = [(t, s, D(r), D(m), D(p), D(a)) for t, s, r, m, p, a in stored_funding(store, "bt-funding")]
    assert got == expected

    m = result.metrics
    assert m["funding_settlements"] == 6
    assert m["fees_usd"] == pytest.approx(float(entry_fee), abs=1e-12)
    assert m["fees_usd"] == pytest.approx(sum(float(f[5]) for f in stored_fills(store, "bt-funding")), abs=1e-12)
    # funding_usd is the cost: what the account paid, less what it received.
    assert m["funding_usd"] == pytest.approx(-float(sum(e[5] for e in expected)), abs=1e-12)
    assert m["open_at_end"] == 1 and m["trades"] == 0
    # The equity at the end: the balance less the fee, plus funding, plus the short's gain to the last close.
    last_close = close_at(perp_dir, "BTCUSDT", last)
    equity = 10_000 - entry_fee + sum(e[5] for e in expected) + qty * (entry_price - last_close)
    assert m["end_equity_usd"] == pytest.approx(float(equity), abs=1e-6)


# ---- 4. buy and hold ---------------------------------------------------------------------------------


def test_buy_and_hold_is_each_asset_from_the_first_close_to_the_last_and_their_mean(
    perp_dir: Path, settings: Settings, store: Store
) -> None:
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    first, last = utc("2025-11-10 00:00"), utc("2025-11-14 12:00")
    result = backtest(settings, store, make_spec(perp_dir, symbols, first, last), BaselineClient(), "bt-hold")
    expected = {
        s: (float(close_at(perp_dir, s, last)) / float(close_at(perp_dir, s, first)) - 1) * 100 for s in symbols
    }
    got = result.metrics["buy_and_hold_pct"]
    assert set(got) == {*symbols, "portfolio"}
    for s in symbols:
        assert got[s] == pytest.approx(expected[s], rel=1e-12)
    assert got["portfolio"] == pytest.approx(sum(expected.values()) / 3, rel=1e-12)
    # Stored as computed.
    assert runs.get_run(store, "bt-hold").metrics == json.loads(json.dumps(result.metrics))


# ---- 5. replay --------------------------------------------------------------------------------------------


def test_a_recorded_run_replays_without_the_model_exactly_then_under_a_lower_leverage(
    perp_dir: Path, clean_env: Path, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("LLM_MODEL", "fake/model")
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    settings = load_settings(None, None)
    store = open_backtests(settings)
    try:
        symbols = ("BTCUSDT", "ETHUSDT")
        first, last = utc("2025-11-17 00:00"), utc("2025-11-18 05:00")
        steps = list(range(first, last + H, H))
        assert len(steps) == 30
        # The model holds, except a long on BTCUSDT at the 3rd step and a short on ETHUSDT at the 6th, both at 2x
        # (the configured LEVERAGE), 2 ATR stops and 4 ATR targets.
        plan: dict[int, dict[str, Any]] = {}
        for i, symbol, side in ((2, "BTCUSDT", "buy"), (5, "ETHUSDT", "sell")):
            mark = float(close_at(perp_dir, symbol, steps[i]))
            atr = atr14(perp_dir, symbol)[steps[i]]
            sign = 1 if side == "buy" else -1
            tick = D("0.1") if symbol == "BTCUSDT" else D("0.01")
            plan[i] = opening(symbol, side, sl=on_tick(mark - sign * 2 * atr, tick),
                              tp=on_tick(mark + sign * 4 * atr, tick), usd=1500, leverage=2)  # fmt: skip
        behaviours: list[Behaviour] = []
        for i in range(len(steps)):
            planned = {plan[i]["symbol"]: plan[i]} if i in plan else {}
            behaviours.append(answer(decision(*(planned.get(s, asset(s)) for s in symbols))))
        fake_llm.push(*behaviours)

        spec = make_spec(perp_dir, symbols, first, last, model="fake/model")
        inner, note = build_client(settings, model_explicit=True)
        assert note is None and inner.base_url == fake_llm.base_url
        source = backtest(settings, store, spec, RecordingClient(inner, store, "bt-source"), "bt-source")
        assert len(fake_llm.requests) == 30
        assert runs.answer_kinds(store, "bt-source") == {"answer": 30}
        fills = stored_fills(store, "bt-source")
        assert [f[1:3] for f in fills if f[7] == "market"] == [("BTCUSDT", "BUY"), ("ETHUSDT", "SELL")]
        assert source.metrics["model_cost_usd"] == pytest.approx(30 * 0.0012)

        # 1. The same spec: every request is the recorded one, byte for byte, and the model is not asked.
        replay_spec = replace(spec, replay_of="bt-source")
        replay = backtest(settings, store, replay_spec, ReplayClient(store, "bt-source", "bt-replay"), "bt-replay")
        assert len(fake_llm.requests) == 30
        assert runs.answer_kinds(store, "bt-replay") == {"replay_exact": 30}
        assert runs.get_run(store, "bt-replay").replay_of == "bt-source"
        assert stored_decisions(store, "bt-replay") == stored_decisions(store, "bt-source")
        assert stored_verdicts(store, "bt-replay") == stored_verdicts(store, "bt-source")
        assert stored_orders(store, "bt-replay") == stored_orders(store, "bt-source")
        assert stored_fills(store, "bt-replay") == fills
        assert runs.equity_of(store, "bt-replay") == runs.equity_of(store, "bt-source")
        # The same figures, but for the model's cost: a replayed answer is free.
        assert replay.metrics["model_cost_usd"] == 0
        assert {**replay.metrics, "model_cost_usd": None} == {**source.metrics, "model_cost_usd": None}
        assert verdict_changes(store, "bt-replay", "bt-source") == []

        # 2. At 1x: the prompts differ (the limits say so), the answers are reused, the validator amends.
        strict = replace(spec, replay_of="bt-source", leverage=1)
        backtest(settings, store, strict, ReplayClient(store, "bt-source", "bt-strict"), "bt-strict")
        assert len(fake_llm.requests) == 30
        kinds = runs.answer_kinds(store, "bt-strict")
        assert sum(kinds.values()) == 30 and kinds.get("replay_differs", 0) == 30
        source_answers = runs.answers_of(store, "bt-source")
        strict_answers = runs.answers_of(store, "bt-strict")
        assert list(strict_answers) == list(source_answers)
        for when, recorded in source_answers.items():
            assert strict_answers[when].answer["raw_response"] == recorded.answer["raw_response"]
            assert strict_answers[when].request_hash != recorded.request_hash
        raw = {d[0]: d[4] for d in stored_decisions(store, "bt-source")}
        assert {d[0]: d[4] for d in stored_decisions(store, "bt-strict")} == raw
        changes = verdict_changes(store, "bt-strict", "bt-source")
        assert [(c.time_ms, c.symbol, c.action, c.before, c.after) for c in changes] == [
            (steps[2] + STEP_OFFSET_MS, "BTCUSDT", "buy", "accepted", "amended"),
            (steps[5] + STEP_OFFSET_MS, "ETHUSDT", "sell", "accepted", "amended"),
        ]
        assert all(any("leverage 2 above the limit 1" in r for r in c.reasons) for c in changes)
        # The entries were made at 1x: half the size (to the step) of the 2x ones.
        strict_entries = [f for f in stored_fills(store, "bt-strict") if f[7] == "market"]
        source_entries = [f for f in fills if f[7] == "market"]
        for a, b in zip(strict_entries, source_entries, strict=True):
            assert abs(D(a[3]) * 2 - D(b[3])) <= D("0.002")
    finally:
        store.close()


# ---- 6. the command line ----------------------------------------------------------------------------------


def test_cli_backtest_prints_the_run_and_list_and_show_agree(
    perp_dir: Path, clean_env: Path, runner: CliRunner
) -> None:
    args = ["backtest", "--data", str(perp_dir), "--symbols", "BTCUSDT,ETHUSDT", "--interval", "1h", "--from",
            "2025-11-03", "--to", "2025-11-04", "--timeframes", "1h,4h", "--model", "baseline", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["run"].startswith("bt-") and data["status"] == "finished" and data["steps_done"] == 25
    assert data["spec"]["symbols"] == ["BTCUSDT", "ETHUSDT"] and data["spec"]["model"] == "baseline"
    assert [e["time_ms"] for e in data["equity"]] == list(range(utc("2025-11-03 00:00"), utc("2025-11-04 00:01"), H))
    assert data["metrics"]["steps"] == 25
    assert data["metrics"]["end_equity_usd"] == data["equity"][-1]["equity_usd"]
    assert (clean_env.parent / "backtests.db").is_file()

    listed = runner.invoke(app, ["backtest", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["run"], row["status"], row["steps_done"]) == (data["run"], "finished", 25)
    assert row["metrics"] == data["metrics"] and row["spec"] == data["spec"]

    shown = runner.invoke(app, ["backtest", "show", "latest", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == data
    by_id = runner.invoke(app, ["backtest", "show", data["run"], "--json"])
    assert json.loads(by_id.stdout) == data


def test_cli_backtest_uses_the_strategy_in_force_for_the_account(
    perp_dir: Path, clean_env: Path, runner: CliRunner
) -> None:
    """Without --strategy, the backtest tests what the agent would use now: the choice of `strategy use`."""
    args = ["backtest", "--data", str(perp_dir), "--symbols", "BTCUSDT", "--interval", "1h", "--from", "2025-11-03",
            "--to", "2025-11-03 03:00", "--timeframes", "1h,4h", "--model", "baseline", "--json"]  # fmt: skip
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["spec"]["strategy"] == "default"
    chosen = runner.invoke(app, ["strategy", "use", "conservative"])
    assert chosen.exit_code == 0, chosen.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["spec"]["strategy"] == "conservative"
    explicit = runner.invoke(app, [*args, "--strategy", "swing", "--interval", "1h", "--timeframes", "1h,4h"])
    assert explicit.exit_code == 0, explicit.output
    assert json.loads(explicit.stdout)["spec"]["strategy"] == "swing"


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--data", "{missing}"], 2, "no such directory"),
        ([], 2, "backtest needs --data DIR"),
        (["--data", "{data}", "--timeframes", "15m,1h", "--from", "2025-09-10", "--to", "2025-09-11"], 2,
         "BTCUSDT-15m.csv: its 15m candles close from"),
        (["--replay", "bt-nosuchrun"], 1, "no backtest run 'bt-nosuchrun'"),
    ],
    ids=["missing-dir", "no-data", "15m-does-not-cover", "unknown-replay"],
)  # fmt: skip
def test_cli_backtest_errors_are_one_line_and_an_exit_code(
    perp_dir: Path, clean_env: Path, runner: CliRunner, extra: list[str], code: int, message: str
) -> None:
    given = [a.format(missing=clean_env.parent / "nowhere", data=perp_dir) for a in extra]
    result = runner.invoke(app, ["backtest", "--symbols", "BTCUSDT", "--model", "baseline", *given])
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert json.loads(runner.invoke(app, ["backtest", "list", "--json"]).stdout) == []


def test_cli_backtest_refuses_a_paid_model_without_yes_and_without_a_terminal(
    perp_dir: Path, clean_env: Path, runner: CliRunner, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("LLM_BASE_URL", fake_llm.base_url)
    args = ["backtest", "--data", str(perp_dir), "--symbols", "BTCUSDT", "--from", "2025-11-03", "--to",
            "2025-11-04", "--timeframes", "1h,4h", "--model", "some/model"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "asks some/model up to 25 times" in result.stderr and "Pass --yes" in result.stderr
    assert fake_llm.requests == []
    assert json.loads(runner.invoke(app, ["backtest", "list", "--json"]).stdout) == []


def test_a_baseline_run_records_every_decision_without_a_prompt_and_cannot_be_replayed(
    perp_dir: Path, settings: Settings, store: Store
) -> None:
    """The baseline decides from the context's numbers: no prompt is rendered or stored for it, each decision
    says so, and there is no answer to replay (running it again gives the same answers)."""
    first, last = utc("2025-11-03 00:00"), utc("2025-11-03 05:00")
    spec = make_spec(perp_dir, ["BTCUSDT", "ETHUSDT"], first, last)
    result = backtest(settings, store, spec, RecordingClient(BaselineClient(), store, "bt-base"), "bt-base")
    assert result.steps_done == 6
    rows = store.db.execute(
        "SELECT system_prompt, user_prompt, notes, parsed FROM decisions WHERE account = 'bt-base'"
    ).fetchall()
    assert len(rows) == 6
    assert all(r[0] is None and r[1] is None and json.loads(r[3])["assets"] for r in rows)
    assert all(any("reads no prompt: none was rendered" in n for n in json.loads(r[2])) for r in rows)
    assert runs.answer_kinds(store, "bt-base") == {}
    with pytest.raises(ConfigError, match="used the baseline model, which reads no prompt"):
        ReplayClient(store, "bt-base", "bt-again")
    # The same run again gives the same decisions: nothing is lost by not recording them.
    again = backtest(settings, store, spec, BaselineClient(), "bt-base-again")
    assert stored_verdicts(store, "bt-base-again") == stored_verdicts(store, "bt-base")
    assert again.metrics == result.metrics


# ---- 7. stopping ------------------------------------------------------------------------------------------


def test_fills_that_cannot_be_stored_fail_the_run_and_roll_back_its_batch(
    perp_dir: Path, settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step's records commit with their batch: when the simulated exchange cannot store a fill, the run
    fails at the next step (execution alone would only see an order of unknown outcome) and nothing of the
    batch stays, so no decision is kept without its fills."""
    import sqlite3

    import llmtrader.storage.paper as paper_rows

    writes: list[int] = []

    def broken(*args: Any, **kwargs: Any) -> None:
        writes.append(1)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(paper_rows, "insert_events", broken)
    spec = make_spec(perp_dir, ["BTCUSDT", "ETHUSDT"], POISON_AT - 120 * H, POISON_AT)
    with pytest.raises(StoreError, match=r"cannot store the fills of backtest 'bt-broken'.*disk I/O error"):
        backtest(settings, store, spec, BaselineClient(), "bt-broken")
    assert len(writes) == 1
    run = runs.get_run(store, "bt-broken")
    assert run.status == "failed" and run.steps_done == 0
    assert any("StoreError" in n for n in run.notes)
    for table in ("decisions", "cycles", "orders", "paper_fills"):
        assert store.db.execute(f"SELECT COUNT(*) FROM {table} WHERE account = 'bt-broken'").fetchone() == (0,)


@pytest.mark.parametrize(("reason", "status"), [("interrupted", "interrupted"), ("budget spent", "stopped")])
def test_a_run_stopped_after_n_steps_keeps_its_figures_over_those_steps(
    perp_dir: Path, settings: Settings, store: Store, reason: str, status: str
) -> None:
    first, last = utc("2025-11-03 00:00"), utc("2025-11-04 23:00")
    asked: list[int] = []
    progress: list[tuple[int, int]] = []

    def should_stop() -> str | None:
        asked.append(1)
        return reason if len(asked) == 7 else None

    spec = make_spec(perp_dir, ["BTCUSDT", "ETHUSDT"], first, last)
    result = backtest(settings, store, spec, BaselineClient(), "bt-stop", should_stop=should_stop,
                      progress=lambda i, n: progress.append((i, n)))  # fmt: skip
    assert (result.status, result.steps, result.steps_done) == (status, 48, 7)
    assert progress == [(i, 48) for i in range(1, 8)]
    assert result.metrics["steps"] == 7
    assert result.metrics["end_ms"] == first + 6 * H
    assert result.metrics["decisions"] == 7
    assert [t for t, *_ in runs.equity_of(store, "bt-stop")] == [first + i * H for i in range(7)]
    [row] = runs.list_runs(store)
    assert (row.id, row.status, row.steps_done) == ("bt-stop", status, 7)
    assert row.metrics == json.loads(json.dumps(result.metrics))
    assert f"{status} after 7 of 48 steps: {reason}" in row.notes


# ---- 8. resampling ----------------------------------------------------------------------------------------


def test_resampled_1h_candles_are_the_venues_4h_candles(perp_dir: Path) -> None:
    hourly = read_candles(perp_dir / "BTCUSDT-1h.csv", "BTCUSDT", "1h").candles
    four = read_candles(perp_dir / "BTCUSDT-4h.csv", "BTCUSDT", "4h").candles
    built = resample(hourly, "4h")
    assert built.interval == "4h"
    # The 1h file starts on the 4h grid (00:00) and ends at 18:00, inside the 16:00 group: that group is dropped.
    assert int(hourly.open_time_ms[0]) % (4 * H) == 0 and len(hourly) % 4 == 3
    assert len(built) == len(hourly) // 4
    assert int(built.open_time_ms[-1]) == int(hourly.open_time_ms[-1]) - 6 * H
    at = np.searchsorted(four.open_time_ms, built.open_time_ms)
    assert np.array_equal(four.open_time_ms[at], built.open_time_ms)
    for name in ("open", "high", "low", "close"):
        assert np.array_equal(getattr(built, name), getattr(four, name)[at]), name
    # Volume is a sum of floats: equal to the venue's figure up to the last bits.
    np.testing.assert_allclose(built.volume, four.volume[at], rtol=1e-12)


def test_resample_drops_groups_that_are_incomplete_or_off_the_grid(perp_dir: Path) -> None:
    hourly = read_candles(perp_dir / "BTCUSDT-1h.csv", "BTCUSDT", "1h").candles
    start = int(np.searchsorted(hourly.open_time_ms, utc("2025-11-03 01:00")))
    # 01:00-03:00 (a group without its 00:00 candle), 04:00-07:00 whole, 08:00-11:00 without 09:00,
    # 12:00-15:00 whole, then 16:00-17:00 (the file cut inside the group).
    keep = [i for i in range(start, start + 17) if hourly.open_time_ms[i] != utc("2025-11-03 09:00")]
    rows = np.column_stack([hourly.open_time_ms[keep].astype(np.float64), hourly.open[keep], hourly.high[keep],
                            hourly.low[keep], hourly.close[keep], hourly.volume[keep]])  # fmt: skip
    built = resample(Candles.from_rows("BTCUSDT", "1h", rows), "4h")
    assert built.open_time_ms.tolist() == [utc("2025-11-03 04:00"), utc("2025-11-03 12:00")]
    for group, first in zip(range(2), (utc("2025-11-03 04:00"), utc("2025-11-03 12:00")), strict=True):
        src = [candle_rows(perp_dir / "BTCUSDT-1h.csv")[first + k * H] for k in range(4)]
        assert built.open[group] == float(src[0][0])
        assert built.high[group] == float(max(c[1] for c in src))
        assert built.low[group] == float(min(c[2] for c in src))
        assert built.close[group] == float(src[3][3])
        assert built.volume[group] == pytest.approx(float(sum(c[4] for c in src)), rel=1e-12)


def test_the_venues_rules_in_the_data_round_and_refuse_orders(
    perp_dir: Path, tmp_path: Path, settings: Settings, store: Store
) -> None:
    """With exchangeInfo.json beside the CSVs (as `download` writes it), orders are rounded to its tick and
    step sizes and checked against its minimum order value, not the sizes derived from the data."""
    data = copy_data(perp_dir, tmp_path / "data", ["BTCUSDT"])
    info = {
        "symbols": [
            {
                "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
                "filters": [
                    {"filterType": "PRICE_FILTER", "tickSize": "0.5", "minPrice": "0.5", "maxPrice": "1000000"},
                    {"filterType": "LOT_SIZE", "stepSize": "0.0001", "minQty": "0.0001", "maxQty": "1000"},
                    {"filterType": "MIN_NOTIONAL", "notional": "100"},
                ],
            }
        ]
    }  # fmt: skip
    (data / "exchangeInfo.json").write_text(json.dumps(info))
    step = utc("2025-11-05 10:00")
    mark = close_at(perp_dir, "BTCUSDT", step)
    plan = {
        step + STEP_OFFSET_MS: [
            opening("BTCUSDT", "buy", sl=float(mark) * 0.98 + 0.13, tp=float(mark) * 1.05 + 0.21, usd=2000)
        ],
        step + H + STEP_OFFSET_MS: [opening("BTCUSDT", "buy", sl=float(mark) * 0.98, tp=float(mark) * 1.05, usd=40)],
    }  # fmt: skip
    result = backtest(settings, store, make_spec(data, ["BTCUSDT"], step, step + 2 * H), Scripted(plan), "bt-rules")
    assert not any("exchangeInfo.json" in note for note in result.notes)  # the file's rules, not derived ones
    orders = stored_orders(store, "bt-rules")
    entry = next(body for _, leg, body, *_ in orders if leg == "en")
    assert D(entry["quantity"]) % D("0.0001") == 0 and D(entry["quantity"]) > 0
    stops = [D(body["stopPrice"]) for _, leg, body, *_ in orders if leg in ("sl", "tp")]
    assert len(stops) == 2 and all(p % D("0.5") == 0 for p in stops)
    # 2,000 USD of BTC at the mark, rounded down to the venue's step (the data alone would give 0.001).
    assert D(entry["quantity"]) == (D(2000) / mark).quantize(D("0.0001"), ROUND_DOWN)
    # The second opening is 40 USD of notional: under the venue's 100 USD minimum, it is recorded, never sent.
    second = [(status, body) for _, leg, body, status, *_ in orders if leg == "en"][1]
    assert second[0] == "not_sent"
    events = [m for (m,) in store.db.execute("SELECT message FROM execution_events WHERE account = 'bt-rules'")]
    assert any("not sent" in m and "-4164" in m for m in events), events  # the venue's MIN_NOTIONAL code


def test_a_second_run_on_the_same_data_with_more_symbols_is_not_refused_by_the_first_runs_rules(
    perp_dir: Path, clean_env: Path, runner: CliRunner, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording runs share backtests.db, and the cycle caches the venue's rules there: a later run on the same
    data directory with another symbol list must be given its own symbols' rules, not the earlier run's."""
    monkeypatch.setenv("LLM_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    base = ["backtest", "--data", str(perp_dir), "--interval", "1h", "--from", "2025-11-03", "--to",
            "2025-11-03 03:00", "--timeframes", "1h", "--model", "fake/model", "--yes", "--json"]  # fmt: skip
    first = runner.invoke(app, [*base, "--symbols", "BTCUSDT"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, [*base, "--symbols", "BTCUSDT,ETHUSDT"])
    assert second.exit_code == 0, second.output
    run = json.loads(second.stdout)["run"]
    conn = sqlite3.connect(clean_env.parent / "backtests.db")
    try:
        # a run's rows are recorded under its id as the account
        decided = conn.execute("SELECT COUNT(*) FROM decisions WHERE account = ?", (run,)).fetchone()[0]
        assets = {r[0] for r in conn.execute("SELECT DISTINCT symbol FROM asset_decisions WHERE account = ?", (run,))}
        reasons = [r[0] for r in conn.execute("SELECT reason FROM cycles WHERE account = ?", (run,))]
    finally:
        conn.close()
    assert decided == 4 and assets == {"BTCUSDT", "ETHUSDT"}, reasons

"""The baseline client on real candles: deterministic, sensible, and always valid under the limits."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest

from llmtrader.account import AccountState, Position, paper_account_state
from llmtrader.baseline import STOP_ATR, TARGET_ATR, BaselineClient, baseline_decision
from llmtrader.context import DecisionContext, Limits, build_context, render_prompt
from llmtrader.decision import Action, lenient_from_decision, parse_decision
from llmtrader.llm import DecisionRequest
from llmtrader.market import AssetMarket, Candles, MarketSnapshot
from llmtrader.risk import Status, validate_decision
from llmtrader.strategy import load_strategy

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
TIMEFRAMES = {"15m": 900_000, "1h": 3_600_000, "4h": 14_400_000}


def read(path: Path) -> list[list[float]]:
    with path.open() as fh:
        rows = csv.reader(fh)
        next(rows)
        return [[float(x) for x in row] for row in rows]


@pytest.fixture(scope="module")
def series(perp_dir: Path) -> dict[tuple[str, str], list[list[float]]]:
    return {(s, tf): read(perp_dir / f"{s}-{tf}.csv") for s in SYMBOLS for tf in TIMEFRAMES}


def context_at(
    series: dict[tuple[str, str], list[list[float]]], now_ms: int, account: AccountState | None = None
) -> DecisionContext:
    """The context a decision at ``now_ms`` sees: 200 closed candles per timeframe, mark = last 15m close."""
    assets = {}
    for symbol in SYMBOLS:
        candles = {}
        for tf, step in TIMEFRAMES.items():
            closed = [r for r in series[(symbol, tf)] if r[0] + step <= now_ms][-200:]
            candles[tf] = Candles.from_rows(symbol, tf, closed)
        mark = float(candles["15m"].close[-1])
        assets[symbol] = AssetMarket(symbol, candles, mark, mark, 0.0001, None, mark, 0.0, None, None, None, None)
    strategy = load_strategy("default")
    limits = Limits.combine(5, 10_000, strategy)
    snapshot = MarketSnapshot(as_of_ms=now_ms, assets=assets)
    return build_context(snapshot, account or paper_account_state("t", 10_000), strategy, limits, SYMBOLS)


def test_every_baseline_decision_passes_validation_over_months_of_real_candles(series: dict) -> None:
    first = series[("BTCUSDT", "4h")][0][0]
    start = max(first + 200 * 14_400_000, series[("BTCUSDT", "15m")][0][0] + 200 * 900_000)
    end = series[("BTCUSDT", "15m")][-1][0]
    actions: dict[str, int] = {}
    for now in range(int(start), int(end), 36 * 3_600_000):  # every 36 hours, about 100 decisions
        ctx = context_at(series, now)
        decision = baseline_decision(ctx)
        assert [a.symbol for a in decision.assets] == list(SYMBOLS)
        report = validate_decision(
            lenient_from_decision(decision),
            symbols=SYMBOLS,
            marks={s: ctx.assets[s].mark_price for s in SYMBOLS},
            account=ctx.account,
            limits=ctx.limits,
        )
        for verdict in report.assets:
            assert verdict.status is Status.ACCEPTED, (now, verdict.symbol, verdict.reasons)
            actions[verdict.action] = actions.get(verdict.action, 0) + 1
    # over half a year the rules both trade (each way) and hold
    assert actions.get("buy", 0) > 0 and actions.get("sell", 0) > 0 and actions.get("hold", 0) > 0


def test_stops_and_targets_are_atr_multiples_on_the_right_side(series: dict) -> None:
    for now in range(1_760_000_000_000, 1_766_000_000_000, 12 * 3_600_000):
        ctx = context_at(series, now)
        for a in baseline_decision(ctx).assets:
            if a.action not in (Action.BUY, Action.SELL):
                continue
            mark = ctx.assets[a.symbol].mark_price
            atr = ctx.assets[a.symbol].frames["1h"].indicators["atr14"]
            assert atr is not None and a.tp_price is not None and a.sl_price is not None
            sign = 1 if a.action is Action.BUY else -1
            assert a.tp_price == pytest.approx(mark + sign * TARGET_ATR * atr, rel=1e-5)
            assert a.sl_price == pytest.approx(mark - sign * STOP_ATR * atr, rel=1e-5)
            assert a.leverage == ctx.limits.max_leverage
            return
    pytest.fail("no buy or sell in the window")


def test_the_baseline_is_deterministic_and_answers_through_the_client_protocol(series: dict) -> None:
    ctx = context_at(series, 1_763_000_000_000)
    strategy = load_strategy("default")
    system, user = render_prompt(ctx, strategy)
    request = DecisionRequest(system=system, user=user, context=ctx)
    first = asyncio.run(BaselineClient().decide(request))
    second = asyncio.run(BaselineClient().decide(request))
    assert first.raw_response == second.raw_response
    assert first.cost_usd == 0.0 and first.prompt_tokens == 0 and first.reasks == 0
    assert [a.symbol for a in first.decision.assets] == list(SYMBOLS)
    # The recorded raw answer is what the decision says: a model's parser reads it back to the same decision.
    parsed, _ = parse_decision(first.raw_response)
    assert lenient_from_decision(parsed) == first.decision
    assert not BaselineClient.reads_prompt


def test_a_position_against_the_trend_is_closed(series: dict) -> None:
    # find a moment in a 1h downtrend, then hold a long there
    for now in range(1_760_000_000_000, 1_766_000_000_000, 6 * 3_600_000):
        ctx = context_at(series, now)
        ind = ctx.assets["BTCUSDT"].frames["1h"]
        ema20, ema50 = ind.indicators["ema20"], ind.indicators["ema50"]
        if ema20 and ema50 and ind.close and ema20 < ema50 and ind.close < ema20:
            mark = ctx.assets["BTCUSDT"].mark_price
            long = Position("BTCUSDT", "long", 0.01, mark, mark, 0.0, 3, mark * 0.7)
            account = AccountState("t", "paper", 10_000, 9_000, (long,))
            decision = baseline_decision(context_at(series, now, account))
            btc = next(a for a in decision.assets if a.symbol == "BTCUSDT")
            assert btc.action is Action.CLOSE_POSITION
            return
    pytest.fail("no downtrend found")

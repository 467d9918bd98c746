"""The context and the prompt per strategy, on real candles: what is shown, what is hidden, and the limits text."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from llmtrader.config.strategies import load_strategy
from llmtrader.core.account import paper_account_state
from llmtrader.core.context import DecisionContext, build_context, render_limits, render_prompt
from llmtrader.core.formatting import fmt
from llmtrader.core.indicators import compute
from llmtrader.core.limits import Limits
from llmtrader.core.market import AssetMarket, Candles, MarketSnapshot
from llmtrader.core.strategy import PLACEHOLDERS, Strategy
from llmtrader.core.times import INTERVAL_MS
from llmtrader.core.trades import PerformanceSummary, TradeSummary

SYMBOLS = ("BTCUSDT", "ETHUSDT")
NOW = 1_765_800_780_000  # 2025-12-15 12:13 UTC, inside the data of every timeframe
HOUR = 3_600_000
# 1m and 1d are not in the test data: a context is built from the timeframes that exist there.
AVAILABLE = ("5m", "15m", "1h", "4h")


@pytest.fixture(scope="module")
def rows(perp_dir: Path) -> dict[tuple[str, str], list[list[float]]]:
    out = {}
    for symbol in SYMBOLS:
        for tf in AVAILABLE:
            with (perp_dir / f"{symbol}-{tf}.csv").open() as fh:
                reader = csv.reader(fh)
                next(reader)
                out[(symbol, tf)] = [[float(x) for x in row] for row in reader]
    return out


def context(
    rows: dict[tuple[str, str], list[list[float]]],
    strategy: Strategy,
    *,
    trades: list[TradeSummary] | None = None,
    performance: PerformanceSummary | None = None,
) -> DecisionContext:
    """The strategy's timeframes that the test data holds, 200 closed candles each, as of NOW."""
    timeframes = [tf for tf in strategy.timeframes if tf in AVAILABLE]
    assets = {}
    for symbol in SYMBOLS:
        candles = {}
        for tf in timeframes:
            closed = [r for r in rows[(symbol, tf)] if r[0] + INTERVAL_MS[tf] <= NOW][-strategy.context.candles :]
            candles[tf] = Candles.from_rows(symbol, tf, closed)
        mark = float(candles[timeframes[0]].close[-1])
        assets[symbol] = AssetMarket(
            symbol, candles, mark, mark, 0.0001, NOW + HOUR, mark, 1.5, mark * 1.02, mark * 0.97, 1e9, 12_345.6
        )
    limits = Limits.combine(10, 10_000, strategy, equity_usd=10_000)
    snapshot = MarketSnapshot(as_of_ms=NOW, assets=assets)
    return build_context(
        snapshot, paper_account_state("t", 10_000), strategy, limits, SYMBOLS, recent_trades=trades,
        performance=performance,
    )  # fmt: skip


def trade(n: int, pnl: float = 12.5) -> TradeSummary:
    return TradeSummary(
        symbol="BTCUSDT", side="long", opened_ms=NOW - (n + 3) * HOUR, closed_ms=NOW - n * HOUR, entry=100_000,
        exit=101_000, pnl_usd=pnl, reason="take_profit",
    )  # fmt: skip


def test_the_default_strategy_shows_every_indicator_funding_and_open_interest(rows: dict) -> None:
    ctx = context(rows, load_strategy("default"))
    _, user = render_prompt(ctx, load_strategy("default"))
    assert "funding 0.01% per period" in user and "open interest 12345.6 (base units)" in user
    for label in ("EMA20 ", "EMA50 ", "RSI14 ", "MACD ", " signal ", " hist ", "ATR14 ", "Bollinger ", "volume "):
        assert label in user, label
    assert "### 15m" in user and "### 1h" in user and "### 4h" in user


def test_scalping_shows_only_its_indicators_and_no_funding_or_open_interest(rows: dict) -> None:
    strategy = load_strategy("scalping")
    ctx = context(rows, strategy)
    assert set(ctx.assets["BTCUSDT"].frames) == {"5m", "15m"}
    _, user = render_prompt(ctx, strategy)
    assert "funding" not in user and "open interest" not in user
    assert "EMA50" not in user and "MACD hist " in user and "MACD signal" not in user
    assert "EMA20 " in user and "RSI14 " in user and "ATR14 " in user and "Bollinger " in user
    # the data stays complete: a client (the baseline) may still read every indicator
    assert ctx.assets["BTCUSDT"].frames["5m"].indicators["ema50"] is not None
    assert user.count("\n", user.index("### 5m")) > strategy.context.candles_in_prompt


def test_a_partial_bollinger_or_macd_selection_is_labelled(rows: dict) -> None:
    strategy = load_strategy("default").model_copy(deep=True)
    strategy.context.indicators = ["macd_signal", "bb_upper"]
    _, user = render_prompt(context(rows, strategy), strategy)
    assert "MACD signal " in user and "Bollinger upper " in user
    assert "Bollinger lower" not in user and "EMA20" not in user and "ATR14" not in user


def test_the_atr_of_the_decision_interval_comes_from_the_context(rows: dict) -> None:
    strategy = load_strategy("default")
    ctx = context(rows, strategy)
    candles = Candles.from_rows("BTCUSDT", "1h", [r for r in rows[("BTCUSDT", "1h")] if r[0] + HOUR <= NOW][-200:])
    expected = float(compute(candles)["atr14"][-1])
    assert ctx.atr("BTCUSDT") == pytest.approx(expected)
    assert ctx.atr_by_symbol() == {"BTCUSDT": pytest.approx(expected), "ETHUSDT": ctx.atr("ETHUSDT")}
    assert ctx.atr("SOLUSDT") is None


def test_recent_trades_and_performance_render_when_shown(rows: dict) -> None:
    strategy = load_strategy("default")  # 5 recent trades, performance on
    trades = [trade(n, pnl=-3.0 if n == 2 else 12.5) for n in range(1, 9)]
    performance = PerformanceSummary(trades=8, win_rate=0.875, net_pnl_usd=84.5, sharpe=1.234, since_ms=NOW - 30 * HOUR)
    _, user = render_prompt(context(rows, strategy, trades=list(reversed(trades)), performance=performance), strategy)
    section = user[user.index("# Recent closed trades") : user.index("# Performance")]
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(lines) == 5  # the newest five, newest first
    assert lines[0] == (
        "- BTCUSDT long: opened 2025-12-15 08:13 UTC, held 3 h; entry 100000 exit 101000 (+1% price move); "
        "PnL +12.5 USD, closed by take_profit"
    )
    assert "PnL -3 USD" in lines[1]
    assert "since 2025-12-14 06:13 UTC: 8 closed trades, win rate 87.5%, net PnL +84.5 USD, Sharpe 1.23" in user


def test_recent_trades_and_performance_say_when_they_are_missing_or_hidden(rows: dict) -> None:
    strategy = load_strategy("default")
    _, user = render_prompt(context(rows, strategy), strategy)
    assert "# Recent closed trades (newest first)\n(not available)" in user
    assert "# Performance\n(not available)" in user
    _, user = render_prompt(context(rows, strategy, trades=[], performance=PerformanceSummary(0, 0, 0, None, NOW)),
                            strategy)  # fmt: skip
    assert "no closed trades yet" in user and "no closed trades since 2025-12-15 12:13 UTC" in user
    hidden = strategy.model_copy(deep=True)
    hidden.context.recent_trades = 0
    hidden.context.performance = False
    _, user = render_prompt(context(rows, hidden, trades=[trade(1)], performance=PerformanceSummary(1, 1, 1, 1, 0)),
                            hidden)  # fmt: skip
    assert user.count("(not shown by this strategy)") == 2


@pytest.mark.parametrize("name", ["default", "conservative", "aggressive", "scalping", "swing", "dca"])
def test_every_preset_renders_and_its_limits_text_names_every_limit(rows: dict, name: str) -> None:
    strategy = load_strategy(name)
    ctx = context(rows, strategy)
    system, user = render_prompt(ctx, strategy)
    assert "{" not in system + user and "}" not in system + user
    text = render_limits(ctx.limits, ctx.interval)
    assert text in system
    lim = strategy.limits
    expected = [
        f"leverage at most {lim.max_leverage}",
        f"at most {fmt(lim.max_position_pct)}% of equity",
        f"at most {fmt(lim.max_total_exposure_pct)}% of equity",
        f"at most {lim.max_open_positions} open positions",
        f"reward/risk (|tp - entry| / |entry - sl|) at least {fmt(lim.min_reward_risk)}",
        f"confidence at least {fmt(lim.min_confidence)}",
        f"between {fmt(lim.min_stop_atr)} and {fmt(lim.max_stop_atr)} times ATR14 of the {strategy.interval} candles",
        f"at least {fmt(lim.min_target_fee_multiple)} times the round-trip taker fee",
        "before the liquidation price",
        f"reaches {fmt(lim.daily_loss_limit_pct)}% of the start-of-day equity",
    ]
    if lim.cooldown_minutes:
        expected.append(f"within {fmt(lim.cooldown_minutes)} min")
    if lim.min_hold_minutes:
        expected.append(f"during its first {fmt(lim.min_hold_minutes)} min")
    if strategy.dca is not None:
        expected += [
            f"at most {fmt(strategy.dca.allocation_usd)} USD of margin",
            f"every {strategy.dca.every_intervals} decision intervals",
            f"at least {fmt(strategy.dca.average_down_pct)}% below",
            f"at most {fmt(strategy.dca.max_position_usd)} USD in total",
            "long only",
        ]
    for phrase in expected:
        assert phrase in text, (name, phrase)


def test_render_prompt_provides_every_placeholder(rows: dict) -> None:
    strategy = load_strategy("default").model_copy(deep=True)
    strategy.prompt.user = "\n".join(f"<{p}>{{{p}}}" for p in sorted(PLACEHOLDERS))
    _, user = render_prompt(context(rows, strategy), strategy)
    for p in PLACEHOLDERS:
        assert f"<{p}>" in user

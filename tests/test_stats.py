"""`stats`: every figure worked out by hand on one paper account (tests/stats_scenario.py), stored through the
real Store."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmtrader.core.stats import AccountStats, AssetRow, DecisionRow, bucket_of, compute_stats, exposure_ms, percentile
from llmtrader.core.trades import TradeFill, performance, reconstruct_trades
from llmtrader.cycle.execution import client_order_id
from llmtrader.cycle.stats import account_stats
from llmtrader.exchange.base import OrderType
from llmtrader.exchange.paper import Fill, FundingPayment, PaperBook, PaperConfig
from llmtrader.storage.facts import paper_history
from llmtrader.storage.store import Store
from tests.helpers import BTC, M15, candle, market, protect
from tests.stats_scenario import ACCOUNT, DAY, JAN1, NOW, H, build, c, write_account, write_fills

D = Decimal
CENT = D("0.01")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    build(tmp_path / "stats.db")
    opened = Store(tmp_path / "stats.db")
    yield opened
    opened.close()


def stats_of(store: Store, **kwargs: Any) -> AccountStats:
    return account_stats(store, account=ACCOUNT, mode="paper", now_ms=NOW, **kwargs)


# ---- trading figures -----------------------------------------------------------------------------------
def test_trading_figures_to_the_cent(store: Store) -> None:
    t = stats_of(store).trading
    # T1..T4 closed; 2 won (T1, T4), 2 lost (T2, T3)
    assert (t.trades, t.wins, t.losses, t.breakeven, t.win_rate) == (4, 2, 2, 0, 0.5)
    # gross 250 − 100 − 300 + 50 = −100
    assert t.gross_pnl == D("-100")
    # fees 4.2875 + 6.685 + 50.7 + 0.4025 = 62.075, of which the liquidation's 50
    assert (t.fees, t.liquidation_fees, t.liquidations) == (D("62.075"), D("50"), 1)
    # funding −1.5 + 2 − 0.3 = 0.2 (the −5 before the reset and the −9 while BTC was flat belong to no trade)
    assert t.funding == D("0.2")
    # net −100 − 62.075 + 0.2 = −161.875 = 244.2125 − 104.685 − 350.7 + 49.2975
    assert t.net_pnl == D("-161.875") and c(t.net_pnl) == D("-161.88")
    # profit factor 293.51 / 455.385 = 0.64453155...
    assert (t.winning_pnl, t.losing_pnl) == (D("293.51"), D("-455.385"))
    assert t.profit_factor is not None and round(float(t.profit_factor), 6) == 0.644532
    assert (t.best_trade, t.worst_trade) == (D("244.2125"), D("-350.7"))
    # hold (4h + 4h + 2h + 5h) / 4 = 3.75h
    assert t.avg_hold_ms == 13_500_000
    assert (t.open_trades, t.trades_opened) == (1, 5)


def test_sharpe_counts_the_quiet_day_and_is_the_prompts(store: Store) -> None:
    # days: 01-01 244.2125 − 104.685 = 139.5275; 01-02 nothing: 0; 01-03 −350.7 + 49.2975 = −301.4025
    # returns 139.5275 / 10000 = 0.01395275; 0 / 10139.5275 = 0; −301.4025 / 10139.5275 = −0.0297254976
    # mean −0.0052575825, sample stdev 0.0223087193; × √365: −4.5025432
    t = stats_of(store).trading
    assert t.sharpe is not None and round(t.sharpe, 4) == -4.5025
    # The prompt's {performance} comes from the same history through the same function.
    history = paper_history(store, ACCOUNT)
    prompt = performance(
        reconstruct_trades(history.fills, history.funding),
        equity_start=history.starting_balance,
        since_ms=history.since_ms,
    )
    assert (prompt.trades, prompt.win_rate, prompt.sharpe) == (t.trades, t.win_rate, t.sharpe)
    assert prompt.net_pnl_usd == float(t.net_pnl)


def test_equity_curve_and_maximum_drawdown(store: Store) -> None:
    t = stats_of(store).trading
    # 10000 → +244.2125 → −104.685 → −350.7 → +49.2975
    assert [(p.time_ms - JAN1, p.equity) for p in t.curve] == [
        (0, D("10000")), (5 * H, D("10244.2125")), (10 * H, D("10139.5275")),
        (2 * DAY + 3 * H, D("9788.8275")), (2 * DAY + 9 * H, D("9838.125")),
    ]  # fmt: skip
    # peak 10244.2125; the deepest point 9788.8275: 455.385 = 4.4453 % of the peak
    assert [p.drawdown_usd for p in t.curve] == [D(0), D(0), D("104.685"), D("455.385"), D("406.0875")]
    assert t.max_drawdown_usd == D("455.385")
    assert t.max_drawdown_pct is not None and round(t.max_drawdown_pct, 4) == 4.4453
    assert (t.equity_start, t.equity_end) == (D("10000"), D("9838.125"))
    assert t.equity_end == t.equity_start + t.net_pnl


def test_exposure_is_the_time_with_a_position_open(store: Store) -> None:
    t = stats_of(store).trading
    # T1 4h + T2 4h + T3 2h + T4 5h + T5 open from +3d1h to +4d: 23h = 38h of the 96h since the reset
    assert t.exposure_ms == 38 * H and t.exposure == 38 / 96


# ---- decision quality ----------------------------------------------------------------------------------
def test_decision_quality(store: Store) -> None:
    q = stats_of(store).decisions
    # since the reset: A B C M V E F G H and the dry run; the close by hand is only counted, "old" not at all
    assert (q.decisions, q.dry_runs, q.manual) == (10, 1, 1)
    assert q.outcomes == {"decided": 8, "model_error": 1, "venue_error": 1}
    assert (q.model_errors, q.venue_errors) == (1, 1)
    assert q.executions == {"dry_run": 1, "executed": 7, "none": 2}
    # 10 asset rows: accepted A×2, C, E, G, H, dry run = 7; amended B, F = 2; rejected C's SOL = 1
    assert (q.asset_decisions, q.accepted, q.amended, q.rejected) == (10, 7, 2, 1)
    assert (q.accepted_share, q.amended_share, q.rejected_share) == (0.7, 0.2, 0.1)
    assert (q.reasks, q.decisions_reasked) == (3, 2)  # B once, M twice
    # latency sorted: 800 4000 4100 4200 4500 5000 6000 7000 9000 30000; nearest rank 5 and 10
    assert (q.latency_p50_ms, q.latency_p95_ms) == (4500, 30_000)
    # model latency without the venue error: 3500 3600 3800 4000 4500 5500 6500 8000 29000; ranks 5 and 9
    assert (q.model_latency_p50_ms, q.model_latency_p95_ms) == (4500, 29_000)
    # tokens 12100 in + 1830 out = 13930 over 10 decisions
    assert (q.prompt_tokens, q.completion_tokens, q.tokens_per_decision) == (12_100, 1_830, 1393.0)
    # cost 0.012 + 0.02 + 0.018 + 0.03 + 0.011 + 0.019 + 0.01 + 0.012 + 0.012 = 0.144 over the 9 with a cost;
    # per trade: 0.144 over the 5 trades opened since the reset
    assert (q.cost_usd, q.decisions_without_cost) == (D("0.144"), 1)
    assert (q.cost_per_decision_usd, q.cost_per_trade_usd) == (D("0.016"), D("0.0288"))


def test_confidence_calibration(store: Store) -> None:
    buckets = {b.label: b for b in stats_of(store).calibration}
    # T4 0.6 (won) → [0.6, 0.7); T1 0.72 (won) and T2 0.75 (lost) → [0.7, 0.8); T3 0.91 (liquidated) → [0.9, 1]
    assert list(buckets) == ["0.6-0.7", "0.7-0.8", "0.9-1.0"]
    assert [(b.trades, b.wins, b.hit_rate) for b in buckets.values()] == [(1, 1, 1.0), (2, 1, 0.5), (1, 0, 0.0)]
    assert buckets["0.7-0.8"].mean_confidence == pytest.approx(0.735)
    assert [bucket_of(x) for x in (0.0, 0.5, 0.6, 0.69999, 0.7, 0.99, 1.0)] == [0, 5, 6, 6, 7, 9, 9]


# ---- groups --------------------------------------------------------------------------------------------
def test_by_model(store: Store) -> None:
    groups = {g.key: g for g in stats_of(store, by="model").groups}
    assert list(groups) == ["m/alpha", "m/beta"]  # the close by hand has no group
    alpha, beta = groups["m/alpha"], groups["m/beta"]
    # m/alpha opened T1 (+244.2125) and T3 (−350.7): net −106.4875; m/beta T2 (−104.685), T4 (+49.2975): −55.3875
    assert (alpha.trading.trades, alpha.trading.wins, alpha.trading.net_pnl) == (2, 1, D("-106.4875"))
    assert (beta.trading.trades, beta.trading.wins, beta.trading.net_pnl) == (2, 1, D("-55.3875"))
    assert alpha.trading.net_pnl + beta.trading.net_pnl == D("-161.875")
    # the groups' equity starts at the account's 10000: alpha 10244.2125 then 9893.5125 (drawdown 350.7)
    assert alpha.trading.max_drawdown_usd == D("350.7") and beta.trading.max_drawdown_usd == D("104.685")
    # alpha: A V E G H dry run (cost 0.057 over 5 with one); beta: B C M F (0.087 over 4)
    assert (alpha.decisions.decisions, beta.decisions.decisions) == (6, 4)
    assert (alpha.decisions.cost_usd, alpha.decisions.cost_per_decision_usd) == (D("0.057"), D("0.0114"))
    assert (beta.decisions.cost_usd, beta.decisions.cost_per_decision_usd) == (D("0.087"), D("0.02175"))
    # per trade opened: alpha T1 T3 T5 → 0.057 / 3 = 0.019; beta T2 T4 → 0.087 / 2 = 0.0435
    assert (alpha.decisions.cost_per_trade_usd, beta.decisions.cost_per_trade_usd) == (D("0.019"), D("0.0435"))
    assert alpha.trading.open_trades == 1 and beta.trading.open_trades == 0
    # beta's asset rows: B amended, C accepted + rejected, F amended
    assert (beta.decisions.accepted, beta.decisions.amended, beta.decisions.rejected) == (1, 2, 1)


def test_by_arm_and_strategy(store: Store) -> None:
    arms = {g.key: g for g in stats_of(store, by="arm").groups}
    # the dry run was made without an arm
    assert list(arms) == ["a", "b", "(none)"]
    assert [arms[k].decisions.decisions for k in arms] == [5, 4, 1]
    assert [arms[k].trading.trades for k in arms] == [2, 2, 0]
    assert arms["a"].trading.net_pnl == D("-106.4875")
    strategies = {g.key: g for g in stats_of(store, by="strategy").groups}
    assert list(strategies) == ["default", "swing"]
    assert strategies["swing"].trading.net_pnl == D("-55.3875")


def test_by_asset(store: Store) -> None:
    groups = {g.key: g for g in stats_of(store, by="asset").groups}
    assert list(groups) == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
    assert [groups[k].trading.net_pnl for k in groups] == [D("-104.685"), D("244.2125"), D("-350.7"), D("49.2975")]
    # ETH's decisions: A, B, H and the dry run; BTC's: A (hold) and C
    assert groups["ETHUSDT"].decisions.decisions == 4 and groups["BTCUSDT"].decisions.decisions == 2
    assert groups["SOLUSDT"].decisions.rejected == 1 and groups["SOLUSDT"].trading.liquidations == 1


def test_since_a_day(store: Store) -> None:
    s = stats_of(store, since_ms=JAN1 + 2 * DAY)
    t = s.trading
    # only T3 and T4; the equity then: 10000 + 244.2125 − 104.685 = 10139.5275
    assert (t.trades, t.net_pnl, t.equity_start) == (2, D("-301.4025"), D("10139.5275"))
    # 10139.5275 → 9788.8275 (−350.7 = 3.4587 % of the peak) → 9838.125
    assert t.max_drawdown_usd == D("350.7") and round(t.max_drawdown_pct or 0, 4) == 3.4587
    assert t.sharpe is None  # one day: no Sharpe
    # T3 2h + T4 5h + T5 23h of the 48h since
    assert t.exposure_ms == 30 * H and t.exposure == 30 / 48
    assert s.decisions.decisions == 5  # E F G H and the dry run
    assert s.start_ms == JAN1 + 2 * DAY and s.reset_ms == JAN1


# ---- pure parts ----------------------------------------------------------------------------------------
def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 50) is None and percentile([7], 95) == 7
    assert percentile([5, 1, 3, 2, 4], 50) == 3  # rank ceil(2.5) = 3
    assert percentile(range(1, 21), 95) == 19 and percentile(range(1, 22), 95) == 20  # ranks 19 and ceil(19.95)


def test_exposure_merges_overlapping_positions() -> None:
    trades = reconstruct_trades(
        [
            TradeFill(10, "AUSDT", "BUY", D(1), D(1), D(0), "market"),
            TradeFill(20, "BUSDT", "BUY", D(1), D(1), D(0), "market"),
            TradeFill(30, "AUSDT", "SELL", D(1), D(1), D(0), "market"),
            TradeFill(40, "BUSDT", "SELL", D(1), D(1), D(0), "market"),
            TradeFill(90, "AUSDT", "BUY", D(1), D(1), D(0), "market"),
        ]
    )
    # [10, 30] ∪ [20, 40] = 30; the open one from 90 to the end 100 = 10; clipped to start 15: 25 + 10
    assert exposure_ms(trades, 0, 100) == 40 and exposure_ms(trades, 15, 100) == 35


def test_without_losses_there_is_no_profit_factor_and_an_empty_account_has_decisions() -> None:
    won = reconstruct_trades(
        [
            TradeFill(JAN1, "ETHUSDT", "BUY", D(1), D(1000), D(1), "market"),
            TradeFill(JAN1 + H, "ETHUSDT", "SELL", D(1), D(1100), D(1), "take_profit"),
        ]
    )
    s = compute_stats(won, [], [], account="x", mode="paper", starting_balance=D(1000), end_ms=JAN1 + 2 * H)
    assert s.trading.net_pnl == D(98) and s.trading.profit_factor is None
    assert s.start_ms == JAN1 and s.trading.exposure == 0.5
    asked = [DecisionRow("d1", JAN1, "m", "model_error", latency_ms=10, model_latency_ms=9)]
    empty = compute_stats([], asked, [AssetRow("d1", "ETHUSDT", "buy", "rejected")], account="x", mode="paper",
                          starting_balance=None, end_ms=JAN1 + H)  # fmt: skip
    assert empty.trading.trades == 0 and empty.trading.curve == () and empty.trading.win_rate is None
    assert (empty.decisions.decisions, empty.decisions.model_errors, empty.decisions.rejected_share) == (1, 1, 1.0)


# ---- real fills of the paper exchange ------------------------------------------------------------------
def test_stats_of_real_paper_fills_match_the_wallet(tmp_path: Path, perp_dir: Path) -> None:
    # The liquidation of test_trades on real candles (BTCUSDT 15m 2025-12-15 14:30, 50x), then a long
    # stopped out at 111700 on 2025-10-11 (test_trades' stop case, without the add): both stored the way
    # the paper exchange stores its events; the net PnL of stats is what the wallet lost.
    book = PaperBook(D("10000"), PaperConfig())
    before = book.balance().wallet
    book.place(market("BTCUSDT", "BUY", "0.1", client_order_id("mgkx0a1b2abcde", "BTCUSDT", "en")), D("114552.2"),
               BTC, 1760139899999)  # fmt: skip
    stop = protect(
        "BTCUSDT", "SELL", OrderType.STOP_MARKET, "111700", client_order_id("mgkx0a1b2abcde", "BTCUSDT", "sl")
    )
    book.place(stop, D("114552.2"), BTC, 1760139899999)
    book.on_funding("BTCUSDT", 1760140800000, D("0.0001"), D("112714.9"))
    for open_ms in (1760139900000, 1760140800000, 1760141700000):
        book.on_candle("BTCUSDT", open_ms, M15, *candle(perp_dir, "BTCUSDT", open_ms))
    book.set_leverage("BTCUSDT", 50)
    book.place(market("BTCUSDT", "BUY", "0.1", client_order_id("mgkx0a1b3fghij", "BTCUSDT", "en")), D("89221.2"),
               BTC, 1765809899999)  # fmt: skip
    book.on_candle("BTCUSDT", 1765809900000, M15, *candle(perp_dir, "BTCUSDT", 1765809900000))
    after = book.balance().wallet
    events = book.take_events()
    fills = [e for e in events if isinstance(e, Fill)]
    assert [f.reason for f in fills] == ["market", "stop_loss", "market", "liquidation"]
    store = Store(tmp_path / "real.db")
    write_fills(
        store,
        [(f.time_ms, f.symbol, f.side.value, str(f.qty), str(f.price), str(f.fee), f.reason, f.client_order_id,
          str(f.realized_pnl)) for f in fills],
        [(p.time_ms, p.symbol, str(p.amount)) for p in events if isinstance(p, FundingPayment)],
    )  # fmt: skip
    write_account(store, "10000", [])
    t = account_stats(store, account=ACCOUNT, mode="paper", now_ms=1765900000000).trading
    # the stopped long (test_trades' case without the add): entry 114552.2 × 1.0002 = 114575.11044, exit
    # 111677.66; gross 0.1 × (111677.66 − 114575.11044) = −289.745044; fees 4.0101288654 + 0.1 × 111677.66
    # × 0.00035 = 3.9087181 → 7.9188469654; funding −1.127149; net −298.7910399654.
    # the liquidation: −181.60145503 (test_trades). Together −480.3924949954.
    assert c(t.net_pnl) == D("-480.39") and t.net_pnl == after - before
    assert (t.trades, t.liquidations, t.wins) == (2, 1, 0)
    assert t.equity_end == after and t.funding == D("-1.127149")
    store.close()

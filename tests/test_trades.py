"""Trades reconstructed from fills, and the performance figures: every case worked out by hand.

Fees in the hand-made cases are AsterDEX's taker 0.035 % unless a round figure makes the arithmetic
easier to follow; the comments carry the arithmetic, the assertions hold to the cent (most of them
exactly). The last tests drive the paper exchange on real candles from tests/data and check that
the reconstructed trade adds up to the paper fills and to the wallet.
"""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from llmtrader.core.trades import (
    FillSide,
    FundingEvent,
    PerformanceSummary,
    Trade,
    TradeFill,
    TradeSummary,
    daily_pnl,
    daily_returns,
    decision_id_of,
    performance,
    reconstruct_trades,
    sharpe,
    to_summaries,
    utc_day,
)
from llmtrader.cycle.execution import client_order_id
from llmtrader.exchange.base import OrderType
from llmtrader.exchange.paper import Fill, FundingPayment, PaperBook, PaperConfig, PaperEvent
from tests.helpers import BTC, M15, candle, market, protect

D = Decimal
CENT = D("0.01")
DAY = 86_400_000
JAN1 = 1735689600000  # 2025-01-01 00:00 UTC


def c(value: Decimal | None) -> Decimal:
    assert value is not None
    return value.quantize(CENT)


def fill(
    t: int,
    side: FillSide,
    qty: str,
    price: str,
    fee: str = "0",
    reason: str = "market",
    cid: str | None = None,
    *,
    symbol: str = "ETHUSDT",
    pnl: str | None = None,
) -> TradeFill:
    return TradeFill(
        time_ms=t, symbol=symbol, side=side, qty=D(qty), price=D(price), fee=D(fee), reason=reason,
        client_order_id=cid, realized_pnl=None if pnl is None else D(pnl),
    )  # fmt: skip


def only(trades: list[Trade]) -> Trade:
    assert len(trades) == 1, trades
    return trades[0]


# ---- reconstruction ------------------------------------------------------------------------------
def test_long_two_adds_two_partial_exits() -> None:
    fills = [
        fill(1_000, "BUY", "1", "2000", "0.7", cid="lt_a_ETHUSDT_en"),  # fee 1 × 2000 × 0.00035 = 0.7
        fill(2_000, "BUY", "1", "2100", "0.735", cid="lt_b_ETHUSDT_ad"),  # fee 1 × 2100 × 0.00035 = 0.735
        # average entry (1 × 2000 + 1 × 2100) / 2 = 2050
        # target: 0.8 × (2250 − 2050) = +160, fee 0.8 × 2250 × 0.00035 = 0.63
        fill(3_000, "SELL", "0.8", "2250", "0.63", "take_profit", "lt_a_ETHUSDT_tp", pnl="160"),
        # stop: 1.2 × (2010 − 2050) = −48, fee 1.2 × 2010 × 0.00035 = 0.8442
        fill(4_000, "SELL", "1.2", "2010", "0.8442", "stop_loss", "lt_a_ETHUSDT_sl", pnl="-48"),
    ]
    t = only(reconstruct_trades(fills))
    assert (t.symbol, t.side, t.opened_ms, t.closed_ms, t.hold_ms) == ("ETHUSDT", "long", 1_000, 4_000, 3_000)
    assert t.qty == D("2") and t.entry_price == D("2050")
    # exit VWAP = (0.8 × 2250 + 1.2 × 2010) / 2 = (1800 + 2412) / 2 = 2106
    assert t.exit_price == D("2106")
    assert [(e.qty, e.realized_pnl, e.reason) for e in t.exits] == [
        (D("0.8"), D("160"), "take_profit"),
        (D("1.2"), D("-48"), "stop_loss"),
    ]
    # gross 160 − 48 = 112; fees 0.7 + 0.735 + 0.63 + 0.8442 = 2.9092; net 112 − 2.9092 = 109.0908
    assert t.gross_pnl == D("112") and t.fees == D("2.9092") and t.funding == 0
    assert t.net_pnl == D("109.0908") and c(t.net_pnl) == D("109.09")
    assert t.reported_pnl == t.gross_pnl  # the recorder's figures agree
    assert t.is_win and t.closing_reason == "stop_loss" and not t.is_open
    assert t.client_order_ids == ("lt_a_ETHUSDT_en", "lt_b_ETHUSDT_ad", "lt_a_ETHUSDT_tp", "lt_a_ETHUSDT_sl")


def test_short_with_funding_paid_and_received() -> None:
    fills = [
        fill(10_000, "SELL", "0.2", "100000", "7", symbol="BTCUSDT"),  # fee 0.2 × 100000 × 0.00035 = 7
        # realized = 0.2 × (99000 − 100000) × (−1) = +200; fee 0.2 × 99000 × 0.00035 = 6.93
        fill(40_000, "BUY", "0.2", "99000", "6.93", "take_profit", symbol="BTCUSDT"),
    ]
    funding = [
        FundingEvent(20_000, "BTCUSDT", D("3.00")),  # received (positive rate: longs pay the short)
        FundingEvent(30_000, "BTCUSDT", D("-1.25")),  # paid (negative rate)
        FundingEvent(40_000, "BTCUSDT", D("-0.50")),  # paid at the very close: still this trade's
        FundingEvent(25_000, "ETHUSDT", D("-9")),  # another symbol: not this trade's
    ]
    t = only(reconstruct_trades(fills, funding))
    assert (t.side, t.entry_price, t.exit_price) == ("short", D("100000"), D("99000"))
    # funding 3.00 − 1.25 − 0.50 = 1.25; fees 7 + 6.93 = 13.93; net 200 − 13.93 + 1.25 = 187.32
    assert [f.time_ms for f in t.funding_events] == [20_000, 30_000, 40_000]
    assert t.funding == D("1.25") and t.gross_pnl == D("200") and t.fees == D("13.93")
    assert t.net_pnl == D("187.32")
    assert t.reported_pnl is None  # the fills carried no figure of their own


def test_a_losing_short_pays_when_the_price_rises() -> None:
    # 3 × (2100 − 2000) × (−1) = −300; no fees
    t = only(reconstruct_trades([fill(1, "SELL", "3", "2000"), fill(2, "BUY", "3", "2100")]))
    assert t.gross_pnl == D("-300") and t.net_pnl == D("-300") and not t.is_win


def test_a_flip_closes_the_trade_and_opens_the_next_with_the_fee_split() -> None:
    fills = [
        fill(1, "BUY", "10", "150", "0.525", cid="lt_one_SOLUSDT_en", symbol="SOLUSDT"),  # 10 × 150 × 0.00035
        # 25 sold at 160: 10 close the long, 15 open a short. fee 25 × 160 × 0.00035 = 1.4, split by quantity:
        # closing 1.4 × 10 / 25 = 0.56, opening 1.4 − 0.56 = 0.84. realized 10 × (160 − 150) = +100.
        fill(2, "SELL", "25", "160", "1.4", cid="lt_two_SOLUSDT_en", symbol="SOLUSDT", pnl="100"),
        # the short closes: 15 × (155 − 160) × (−1) = +75; fee 15 × 155 × 0.00035 = 0.81375
        fill(3, "BUY", "15", "155", "0.81375", "take_profit", "lt_two_SOLUSDT_tp", symbol="SOLUSDT", pnl="75"),
    ]
    first, second = reconstruct_trades(fills)
    assert (first.side, first.opened_ms, first.closed_ms, first.qty) == ("long", 1, 2, D("10"))
    assert [(e.qty, e.fee) for e in first.exits] == [(D("10"), D("0.56"))]
    # first: gross 100, fees 0.525 + 0.56 = 1.085, net 98.915
    assert (first.gross_pnl, first.fees, first.net_pnl) == (D("100"), D("1.085"), D("98.915"))
    assert first.closing_reason == "market" and first.reported_pnl == D("100")

    assert (second.side, second.opened_ms, second.closed_ms, second.qty) == ("short", 2, 3, D("15"))
    assert [(e.qty, e.price, e.fee) for e in second.entries] == [(D("15"), D("160"), D("0.84"))]
    # second: gross 75, fees 0.84 + 0.81375 = 1.65375, net 73.34625
    assert (second.gross_pnl, second.fees, second.net_pnl) == (D("75"), D("1.65375"), D("73.34625"))
    # the flipping fill's fee is charged once in all: 0.56 + 0.84 = 1.4
    assert first.exits[0].fee + second.entries[0].fee == D("1.4")
    # the flipping fill links both trades to its decision
    assert first.decision_ids() == ("one", "two") and second.decision_ids() == ("two",)


def test_a_liquidation_closes_the_trade_and_its_loss_is_the_fills() -> None:
    # 1 ETH long at 2000 (fee 0.7), 20x isolated, maintenance 0.5 %: liquidation at
    # 2000 × (1 − 1/20 + 0.005) = 1910. The venue reports −100 (the whole margin 2000 / 20), fee 0:
    # the price move is 1 × (1910 − 2000) = −90 and the other 10 (the maintenance margin) is kept.
    fills = [
        fill(1, "BUY", "1", "2000", "0.7"),
        fill(2, "SELL", "1", "1910", "0", "liquidation", "autoclose-2", pnl="-100"),
    ]
    t = only(reconstruct_trades(fills))
    [exit_] = t.exits
    assert (exit_.reason, exit_.realized_pnl, exit_.reported_pnl, exit_.liquidation_fee) == (
        "liquidation",
        D("-90"),
        D("-100"),
        D("10"),
    )
    # gross −90; fees 0.7 + 0 + 10 (liquidation) = 10.7; net −100.7 = what the wallet lost (100 + 0.7)
    assert (t.gross_pnl, t.liquidation_fees, t.fees, t.net_pnl) == (D("-90"), D("10"), D("10.7"), D("-100.7"))
    assert t.closing_reason == "liquidation" and t.closed_ms == 2
    assert t.reported_pnl == t.gross_pnl - t.liquidation_fees
    assert t.decision_ids() == ()  # the venue's own order id belongs to no decision

    # Without a figure of its own, the liquidation is the price move alone: −90 − 0.7 = −90.7.
    bare = only(reconstruct_trades([fills[0], fill(2, "SELL", "1", "1910", "0", "liquidation")]))
    assert bare.net_pnl == D("-90.7") and bare.liquidation_fees == 0


def test_a_liquidation_must_reduce_the_position() -> None:
    with pytest.raises(ValueError, match=r"fill #0 .*liquidation"):
        reconstruct_trades([fill(1, "SELL", "1", "1910", reason="liquidation")])
    with pytest.raises(ValueError, match=r"fill #1 .*larger than the position"):
        reconstruct_trades([fill(1, "BUY", "1", "2000"), fill(2, "SELL", "2", "1910", reason="liquidation")])


def test_funding_while_flat_belongs_to_no_trade() -> None:
    fills = [
        fill(100, "BUY", "1", "2000"),
        fill(200, "SELL", "1", "2010"),  # +10
        fill(400, "SELL", "2", "2020"),
        fill(500, "BUY", "2", "2000"),  # 2 × (2000 − 2020) × (−1) = +40
    ]
    funding = [
        FundingEvent(50, "ETHUSDT", D("-1")),  # before anything
        FundingEvent(100, "ETHUSDT", D("-2")),  # at the moment the first trade opens: settled before it
        FundingEvent(150, "ETHUSDT", D("-0.3")),  # first trade
        FundingEvent(300, "ETHUSDT", D("-4")),  # flat between the trades
        FundingEvent(450, "ETHUSDT", D("0.6")),  # second trade (a short, received)
        FundingEvent(600, "ETHUSDT", D("-8")),  # after everything
    ]
    first, second = reconstruct_trades(fills, funding)
    assert first.funding == D("-0.3") and first.net_pnl == D("9.7")  # 10 − 0.3
    assert second.funding == D("0.6") and second.net_pnl == D("40.6")  # 40 + 0.6


def test_funding_at_a_flip_belongs_to_the_trade_that_closes() -> None:
    fills = [fill(1, "BUY", "1", "2000"), fill(5, "SELL", "3", "2000"), fill(9, "BUY", "2", "2000")]
    first, second = reconstruct_trades(fills, [FundingEvent(5, "ETHUSDT", D("-1")), FundingEvent(7, "ETHUSDT", D(2))])
    assert (first.funding, second.funding) == (D("-1"), D("2"))


def test_an_open_trade_has_no_exit_yet() -> None:
    fills = [
        fill(1, "SELL", "0.5", "3000", "0.525", cid="lt_x_ETHUSDT_en"),  # 0.5 × 3000 × 0.00035 = 0.525
        fill(2, "SELL", "0.5", "3100", "0.5425"),  # 0.5 × 3100 × 0.00035 = 0.5425
    ]
    t = only(reconstruct_trades(fills, [FundingEvent(3, "ETHUSDT", D("0.4")), FundingEvent(10**13, "ETHUSDT", D(1))]))
    assert t.is_open and t.closed_ms is None and t.hold_ms is None
    assert t.exits == () and t.exit_price is None and t.closing_reason is None
    # entry VWAP (0.5 × 3000 + 0.5 × 3100) / 1 = 3050; funding so far 0.4 + 1 = 1.4 (no close bounds it)
    assert t.entry_price == D("3050") and t.qty == D("1") and t.side == "short"
    # realized so far: 0 − (0.525 + 0.5425) + 1.4 = 0.3325
    assert t.gross_pnl == 0 and t.fees == D("1.0675") and t.net_pnl == D("0.3325")
    assert to_summaries([t], 5) == []
    assert performance([t], equity_start=D(1000)).trades == 0


def test_a_partial_exit_keeps_the_trade_open_and_later_adds_move_the_average() -> None:
    fills = [
        fill(1, "BUY", "2", "100"),
        fill(2, "SELL", "1", "110"),  # 1 × (110 − 100) = +10; the average stays 100
        fill(3, "BUY", "1", "130"),  # average (1 × 100 + 1 × 130) / 2 = 115
        fill(4, "SELL", "2", "120"),  # 2 × (120 − 115) = +10
    ]
    t = only(reconstruct_trades(fills))
    assert [e.realized_pnl for e in t.exits] == [D("10"), D("10")] and t.gross_pnl == D("20")
    # qty is the largest size reached (2), the entry VWAP is over all entries: (2 × 100 + 130) / 3 = 110
    assert t.qty == D("2") and t.entry_price == D("110")


def test_trades_of_several_symbols_interleave() -> None:
    fills = [
        fill(1, "BUY", "1", "100", symbol="AUSDT"),
        fill(2, "SELL", "1", "50", symbol="BUSDT"),
        fill(3, "SELL", "1", "101", symbol="AUSDT"),
        fill(4, "BUY", "1", "49", symbol="BUSDT"),
    ]
    a, b = reconstruct_trades(fills)
    assert (a.symbol, a.gross_pnl, b.symbol, b.gross_pnl) == ("AUSDT", D("1"), "BUSDT", D("1"))


# ---- decisions -----------------------------------------------------------------------------------
def test_decision_ids_come_from_execution_client_ids() -> None:
    opened = client_order_id("mgkx0a1b2abcde", "BTCUSDT", "en")
    protected = client_order_id("mgkx0a1b2abcde", "BTCUSDT", "sl")
    reduced = client_order_id("mgkz7q3r4vwxyz", "BTCUSDT", "rd")
    long_symbol = client_order_id("mgkz8aaaa11111", "1000SHIBUSDTPERP", "cl")  # the tag is shortened
    assert decision_id_of(opened) == "mgkx0a1b2abcde" and decision_id_of(long_symbol) == "mgkz8aaaa11111"
    for foreign in ("autoclose-1765810799999", "web_1234", "lt_only", "lt_a_b", "lt_A1_BTCUSDT_en", None, ""):
        assert decision_id_of(foreign) is None

    fills = [
        fill(1, "BUY", "0.2", "90000", cid=opened, symbol="BTCUSDT"),
        fill(2, "SELL", "0.1", "91000", cid=reduced, symbol="BTCUSDT"),
        fill(3, "BUY", "0.1", "90500", cid="manual-order-7", symbol="BTCUSDT"),
        fill(4, "SELL", "0.2", "89000", "0", "stop_loss", protected, symbol="BTCUSDT"),
    ]
    t = only(reconstruct_trades(fills))
    assert t.client_order_ids == (opened, reduced, "manual-order-7", protected)
    assert t.decision_ids() == ("mgkx0a1b2abcde", "mgkz7q3r4vwxyz")


# ---- performance ---------------------------------------------------------------------------------
def round_trip(
    symbol: str, side: FillSide, opened: int, closed: int, qty: str, entry: str, exit_: str
) -> list[TradeFill]:
    """One trade of two fills, a fee of 1 on each (round figures, to keep the arithmetic readable)."""
    back: FillSide = "SELL" if side == "BUY" else "BUY"
    return [
        fill(opened, side, qty, entry, "1", symbol=symbol),
        fill(closed, back, qty, exit_, "1", "take_profit", symbol=symbol),
    ]


def three_days() -> list[Trade]:
    """Net +130 and −30 closed on 2025-01-01, nothing on 01-02, +202 (funding included) on 01-03."""
    fills = sorted(
        [
            # 2 × (3066 − 3000) = 132, fees 2 → +130; opened the day before, closed 01-01 03:00
            *round_trip("ETHUSDT", "BUY", JAN1 - 2 * 3_600_000, JAN1 + 3 * 3_600_000, "2", "3000", "3066"),
            # 10 × (202.8 − 200) × (−1) = −28, fees 2 → −30; closed 01-01 23:59:59.999 (still that day)
            *round_trip("SOLUSDT", "SELL", JAN1 + 3_600_000, JAN1 + DAY - 1, "10", "200", "202.8"),
            # 0.1 × (97050 − 95000) = 205, fees 2; funding below; closed 01-03 05:00
            *round_trip("BTCUSDT", "BUY", JAN1 + 2 * DAY + 3_600_000, JAN1 + 2 * DAY + 5 * 3_600_000, "0.1", "95000",
                        "97050"),
        ],
        key=lambda f: f.time_ms,
    )  # fmt: skip
    # BTC: 205 − 2 + 3 − 4 = 202 (funding received 3, then paid 4, while it was open)
    funding = [
        FundingEvent(JAN1 + 2 * DAY + 2 * 3_600_000, "BTCUSDT", D(3)),
        FundingEvent(JAN1 + 2 * DAY + 4 * 3_600_000, "BTCUSDT", D(-4)),
    ]
    return reconstruct_trades(fills, funding)


def test_performance_over_three_days_with_a_quiet_day() -> None:
    trades = three_days()
    assert [t.net_pnl for t in trades] == [D("130"), D("-30"), D("202")]
    # by UTC day of close: 01-01 130 − 30 = 100, 01-02 nothing (0), 01-03 202
    days = daily_pnl(trades)
    assert days == [(date(2025, 1, 1), D("100")), (date(2025, 1, 2), D("0")), (date(2025, 1, 3), D("202"))]
    # equity 10000 → 01-01: 100 / 10000 = 0.01, equity 10100 → 01-02: 0 / 10100 = 0 → 01-03: 202 / 10100 = 0.02
    assert daily_returns(days, D(10000)) == [D("0.01"), D("0"), D("0.02")]
    # mean (0.01 + 0 + 0.02) / 3 = 0.01; deviations 0, −0.01, +0.01; sample variance (0 + 0.0001 + 0.0001) / 2
    # = 0.0001, stdev 0.01; Sharpe = 0.01 / 0.01 × √365 = √365 = 19.1049731745...
    got = performance(trades, equity_start=D(10000))
    assert got.sharpe is not None and got.sharpe == pytest.approx(math.sqrt(365), rel=1e-12)
    assert round(got.sharpe, 4) == 19.1050
    # 2 wins (130, 202) of 3; net 130 − 30 + 202 = 302
    assert got == PerformanceSummary(trades=3, win_rate=2 / 3, net_pnl_usd=302.0, sharpe=got.sharpe, since_ms=None)


def test_performance_since_a_day_and_when_sharpe_is_undefined() -> None:
    trades = three_days()
    since = JAN1 + 2 * DAY  # 2025-01-03: only the BTC trade, one day → no Sharpe
    assert performance(trades, equity_start=D(10000), since_ms=since) == PerformanceSummary(
        trades=1, win_rate=1.0, net_pnl_usd=202.0, sharpe=None, since_ms=since
    )
    assert performance(trades, equity_start=None).sharpe is None  # no equity, no returns
    assert performance(trades, equity_start=D(0)).sharpe is None  # a return on nothing
    assert performance([], equity_start=D(10000)) == PerformanceSummary(0, 0.0, 0.0, None, None)
    # Two days of +1 % each (100 on 10000, then 101 on 10100): no variance → None
    flat = reconstruct_trades(
        [
            *round_trip("ETHUSDT", "BUY", JAN1, JAN1 + 1, "1", "1000", "1102"),  # 102 − 2 = 100
            *round_trip("ETHUSDT", "BUY", JAN1 + DAY, JAN1 + DAY + 1, "1", "1000", "1103"),  # 103 − 2 = 101
        ]
    )
    assert daily_returns(daily_pnl(flat), D(10000)) == [D("0.01"), D("0.01")]
    assert performance(flat, equity_start=D(10000)).sharpe is None
    assert sharpe([D("0.01")]) is None and sharpe([]) is None


def test_a_breakeven_trade_is_not_a_win() -> None:
    even = reconstruct_trades(round_trip("ETHUSDT", "BUY", JAN1, JAN1 + 1, "1", "1000", "1002"))  # 2 − 2 = 0
    assert only(even).net_pnl == 0 and performance(even, equity_start=None).win_rate == 0.0


def test_summaries_are_the_newest_closed_trades() -> None:
    trades = three_days()
    assert utc_day(JAN1 + DAY - 1) == date(2025, 1, 1)
    [btc, sol] = to_summaries(trades, 2)
    assert btc == TradeSummary(
        symbol="BTCUSDT", side="long", opened_ms=JAN1 + 2 * DAY + 3_600_000, closed_ms=JAN1 + 2 * DAY + 5 * 3_600_000,
        entry=95000.0, exit=97050.0, pnl_usd=202.0, reason="take_profit",
    )  # fmt: skip
    assert (sol.symbol, sol.side, sol.entry, sol.exit, sol.pnl_usd) == ("SOLUSDT", "short", 200.0, 202.8, -30.0)
    assert len(to_summaries(trades, 10)) == 3 and to_summaries(trades, 0) == []


# ---- validation ----------------------------------------------------------------------------------
def test_invalid_fills_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match=r"fill #1 \(ETHUSDT SELL 0 @ 2000.*qty must be positive"):
        reconstruct_trades([fill(1, "BUY", "1", "2000"), fill(2, "SELL", "0", "2000")])
    with pytest.raises(ValueError, match=r"fill #0 .*qty must be positive"):
        reconstruct_trades([fill(1, "BUY", "-1", "2000")])
    with pytest.raises(ValueError, match=r"fill #0 .*side 'HOLD'"):
        reconstruct_trades([fill(1, "HOLD", "1", "2000")])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"fill #0 .*price must be positive"):
        reconstruct_trades([fill(1, "BUY", "1", "0")])
    with pytest.raises(ValueError, match=r"fill #2 \(ETHUSDT SELL 1 @ 2000 at 5, id late\).*older than .* at 9"):
        reconstruct_trades([fill(9, "BUY", "1", "2000"), fill(1, "BUY", "1", "5", symbol="BTCUSDT"),
                            fill(5, "SELL", "1", "2000", cid="late")])  # fmt: skip
    # Order only matters within a symbol; two fills at the same moment are in order.
    fine = [fill(9, "BUY", "1", "2000"), fill(1, "BUY", "1", "5", symbol="BTCUSDT"), fill(9, "SELL", "1", "2000")]
    assert len(reconstruct_trades(fine)) == 2


def test_stored_rows_become_fills_and_funding() -> None:
    # The shape of a paper_fills / paper_funding row: money as text, exactly as stored.
    row = {
        "id": 7, "account": "default", "time_ms": 1765799099999, "symbol": "BTCUSDT",
        "client_order_id": "lt_a_BTCUSDT_sl", "order_id": "2", "side": "SELL",
        "qty": "0.1", "price": "89582.08", "fee": "3.1353728",
        "realized_pnl": "-18.78704", "reason": "stop_loss",
    }  # fmt: skip
    assert TradeFill.from_row(row) == TradeFill(
        1765799099999, "BTCUSDT", "SELL", D("0.1"), D("89582.08"), D("3.1353728"), "stop_loss", "lt_a_BTCUSDT_sl",
        D("-18.78704"),
    )  # fmt: skip
    assert TradeFill.from_row({**row, "realized_pnl": None}).realized_pnl is None
    with pytest.raises(ValueError, match=r"fill row 7: side 'HOLD'"):
        TradeFill.from_row({**row, "side": "HOLD"})
    with pytest.raises(ValueError, match=r"fill row 7: fee is not a number"):
        TradeFill.from_row({**row, "fee": None})
    funding = {"id": 3, "time_ms": 1760140800000, "symbol": "BTCUSDT", "amount": "-1.127149", "rate": "0.0001"}
    assert FundingEvent.from_row(funding) == FundingEvent(1760140800000, "BTCUSDT", D("-1.127149"))


# ---- real fills from the paper exchange ----------------------------------------------------------
def from_paper(events: list[PaperEvent]) -> tuple[list[TradeFill], list[FundingEvent]]:
    fills = [
        TradeFill(e.time_ms, e.symbol, "BUY" if e.side.value == "BUY" else "SELL", e.qty, e.price, e.fee, e.reason,
                  e.client_order_id, e.realized_pnl)
        for e in events
        if isinstance(e, Fill)
    ]  # fmt: skip
    funding = [FundingEvent(e.time_ms, e.symbol, e.amount) for e in events if isinstance(e, FundingPayment)]
    return fills, funding


def walk(book: PaperBook, perp_dir: Path, open_ms: int) -> list[Fill]:
    return book.on_candle("BTCUSDT", open_ms, M15, *candle(perp_dir, "BTCUSDT", open_ms))


def test_a_paper_long_with_an_add_and_funding_stopped_on_real_candles(perp_dir: Path) -> None:
    # BTCUSDT 15m, 2025-10-10 23:30 closes at 114552.2 (the mark); the stop at 111700 is reached by
    # the 2025-10-11 00:15 candle (low 111580), not before (lows 112688 at 23:45 and 112200 at 00:00).
    assert candle(perp_dir, "BTCUSDT", 1760139000000)[3] == D("114552.2")
    assert [candle(perp_dir, "BTCUSDT", t)[2] for t in (1760139900000, 1760140800000, 1760141700000)] == [
        D("112688"), D("112200"), D("111580"),
    ]  # fmt: skip
    first, second = "mgkx0a1b2abcde", "mgkx9z9z9fghij"
    book = PaperBook(D("10000"), PaperConfig())
    before = book.balance().wallet
    book.place(market("BTCUSDT", "BUY", "0.1", client_order_id(first, "BTCUSDT", "en")), D("114552.2"), BTC,
               1760139899999)  # fmt: skip
    stop = protect("BTCUSDT", "SELL", OrderType.STOP_MARKET, "111700", client_order_id(first, "BTCUSDT", "sl"))
    book.place(stop, D("114552.2"), BTC, 1760139899999)
    assert walk(book, perp_dir, 1760139900000) == []  # 23:45, closes at 112714.9
    # funding 2025-10-11 00:00 at +0.0001 on the 23:45 close: −0.1 × 112714.9 × 0.0001 = −1.127149 (paid)
    book.on_funding("BTCUSDT", 1760140800000, D("0.0001"), D("112714.9"))
    assert walk(book, perp_dir, 1760140800000) == []  # 00:00, closes at 112314.1
    book.place(market("BTCUSDT", "BUY", "0.05", client_order_id(second, "BTCUSDT", "ad")), D("112314.1"), BTC,
               1760141699999)  # fmt: skip
    [exit_fill] = walk(book, perp_dir, 1760141700000)
    assert exit_fill.reason == "stop_loss"
    after = book.balance().wallet

    fills, funding = from_paper(book.take_events())
    t = only(reconstruct_trades(fills, funding))
    # entry 1: 114552.2 × 1.0002 = 114575.11044, fee 0.1 × 114575.11044 × 0.00035 = 4.0101288654
    # entry 2: 112314.1 × 1.0002 = 112336.56282, fee 0.05 × 112336.56282 × 0.00035 = 1.96588984935
    # average entry (11457.511044 + 5616.828141) / 0.15 = 113828.9279
    # exit: 111700 × 0.9998 = 111677.66, fee 0.15 × 111677.66 × 0.00035 = 5.86307715
    # gross 0.15 × (111677.66 − 113828.9279) = −322.690185
    # net −322.690185 − (4.0101288654 + 1.96588984935 + 5.86307715 = 11.83909586475) − 1.127149 = −335.65642986475
    assert (t.side, t.qty, t.opened_ms, t.closed_ms, t.closing_reason) == (
        "long", D("0.15"), 1760139899999, 1760142599999, "stop_loss",
    )  # fmt: skip
    assert t.exit_price == D("111677.66")
    assert c(t.gross_pnl) == D("-322.69") and t.gross_pnl == sum(f.realized_pnl or 0 for f in fills)
    assert c(t.fees) == D("11.84") and t.funding == D("-1.127149")
    assert c(t.net_pnl) == D("-335.66") and c(t.net_pnl) == c(after - before)
    assert t.net_pnl == D("-335.65642986475") == after - before
    assert t.decision_ids() == (first, second)


def test_a_paper_liquidation_on_real_candles_matches_the_wallet(perp_dir: Path) -> None:
    # BTCUSDT 15m 2025-12-15 14:30 closes at 89221.2; the 14:45 candle falls to 87800, through the
    # liquidation price of a 50x long (see test_paper.test_liquidation_loses_the_whole_isolated_margin).
    book = PaperBook(D("10000"), PaperConfig())
    book.set_leverage("BTCUSDT", 50)
    before = book.balance().wallet
    book.place(market("BTCUSDT", "BUY", "0.1", client_order_id("mgkx0a1b2abcde", "BTCUSDT", "en")), D("89221.2"),
               BTC, 1765809899999)  # fmt: skip
    [liq] = walk(book, perp_dir, 1765809900000)
    assert liq.reason == "liquidation"
    after = book.balance().wallet
    fills, funding = from_paper(book.take_events())
    t = only(reconstruct_trades(fills, funding))
    # entry 89221.2 × 1.0002 = 89239.04424, fee 3.12336655; liquidation at 89239.04424 × 0.985 = 87900.4585764
    # price move 0.1 × (87900.4585764 − 89239.04424) = −133.85856636
    # the paper venue takes the whole margin 0.1 × 89239.04424 / 50 = 178.47808848: the rest, the
    # maintenance margin 0.1 × 89239.04424 × 0.005 = 44.61952212, is the liquidation fee
    assert c(t.gross_pnl) == D("-133.86") and c(t.liquidation_fees) == D("44.62")
    assert t.gross_pnl - t.liquidation_fees == liq.realized_pnl == t.reported_pnl
    # net −133.85856636 − 3.12336655 − 44.61952212 = −181.60145503 = −(178.47808848 + 3.12336655)
    assert c(t.net_pnl) == D("-181.60") and c(t.net_pnl) == c(after - before)
    assert t.net_pnl == after - before
    assert t.closing_reason == "liquidation"


# ---- the incremental ledger ------------------------------------------------------------------------------


def _random_history(seed: int) -> tuple[list[TradeFill], list[FundingEvent]]:
    """Fills on three symbols (opens, adds, partial exits, closes, flips, liquidations) and funding."""
    import random

    rng = random.Random(seed)
    fills: list[TradeFill] = []
    funding: list[FundingEvent] = []
    size = {"BTCUSDT": D(0), "ETHUSDT": D(0), "SOLUSDT": D(0)}
    t = JAN1
    for _ in range(400):
        t += rng.choice([0, 1_000, 3_600_000, 8 * 3_600_000])  # equal times happen: one candle, two stops
        symbol = rng.choice(list(size))
        if rng.random() < 0.15:
            funding.append(FundingEvent(t, symbol, D(rng.randint(-500, 500)) / 100))
            continue
        pos = size[symbol]
        price = D(rng.randint(900, 1100))
        kind = rng.random()
        if pos == 0 or kind < 0.3:
            side: FillSide = "BUY" if (pos > 0 or (pos == 0 and rng.random() < 0.5)) else "SELL"
            qty = D(rng.randint(1, 5))
        elif kind < 0.8:
            side = "SELL" if pos > 0 else "BUY"
            qty = abs(pos)  # a close
        elif kind < 0.9:
            side = "SELL" if pos > 0 else "BUY"
            qty = abs(pos) + D(rng.randint(1, 3))  # a flip
        else:
            side = "SELL" if pos > 0 else "BUY"
            qty = max(D(1), abs(pos) - 1)  # a partial exit
        fee = (qty * price * D("0.00035")).quantize(D("0.00000001"))
        fills.append(fill(t, side, str(qty), str(price), str(fee), symbol=symbol, cid=f"c{len(fills)}"))
        size[symbol] += qty if side == "BUY" else -qty
    return fills, funding


@pytest.mark.parametrize("seed", range(12))
def test_the_ledger_fed_in_pieces_equals_one_reconstruction(seed: int) -> None:
    from llmtrader.core.trades import TradeLedger

    fills, funding = _random_history(seed)
    events = sorted(
        [(f.time_ms, 1, i, f) for i, f in enumerate(fills)] + [(e.time_ms, 0, i, e) for i, e in enumerate(funding)],
        key=lambda x: x[:3],
    )
    ledger = TradeLedger()
    import random

    rng = random.Random(seed)
    i = 0
    while i < len(events):
        chunk = events[i : i + rng.randint(1, 9)]
        i += len(chunk)
        ledger.add(
            [e[3] for e in chunk if isinstance(e[3], TradeFill)],
            [e[3] for e in chunk if isinstance(e[3], FundingEvent)],
        )
        seen_fills = [e[3] for e in events[:i] if isinstance(e[3], TradeFill)]
        seen_funding = [e[3] for e in events[:i] if isinstance(e[3], FundingEvent)]
        full = reconstruct_trades(seen_fills, seen_funding)
        assert ledger.trades() == full
        assert ledger.summaries(5) == to_summaries(full, 5)
        mine = ledger.performance(equity_start=D(10_000))
        theirs = performance(full, equity_start=D(10_000))
        assert (mine.trades, mine.win_rate) == (theirs.trades, theirs.win_rate)
        assert mine.net_pnl_usd == pytest.approx(theirs.net_pnl_usd, abs=1e-9)
        assert (mine.sharpe is None) == (theirs.sharpe is None)
        if mine.sharpe is not None and theirs.sharpe is not None:
            assert mine.sharpe == pytest.approx(theirs.sharpe, rel=1e-9)


def test_the_ledger_refuses_what_would_change_a_final_trade() -> None:
    from llmtrader.core.trades import TradeLedger

    ledger = TradeLedger()
    ledger.add([fill(JAN1, "BUY", "1", "100"), fill(JAN1 + 10, "SELL", "1", "110")])
    with pytest.raises(ValueError, match="older than the previous"):
        ledger.add([fill(JAN1 + 5, "BUY", "1", "100")])
    late = TradeLedger()
    late.add([fill(JAN1, "BUY", "1", "100"), fill(JAN1 + 10, "SELL", "1", "110")])
    with pytest.raises(ValueError, match="not newer than a final trade"):
        late.add([], [FundingEvent(JAN1 + 10, "ETHUSDT", D(1))])

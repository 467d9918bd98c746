"""The paper exchange: the pure simulation core on real candles, then the adapter against the fake venue.

Every figure is worked out by hand in the comments (fee 0.035 % taker, slippage 2 bps against the
trader, maintenance margin rate 0.5 %) and asserted to the cent. The candles are real Binance USDⓈ-M
rows from tests/data/binance-usdm-perp; each test names the rows it uses.
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest

from llmtrader.core.filters import SymbolRules
from llmtrader.errors import VenueRejected
from llmtrader.exchange.asterdex_market import AsterMarketData
from llmtrader.exchange.base import OrderRequest, OrderStatus, OrderType, Side
from llmtrader.exchange.paper import Fill, PaperBook, PaperConfig, PaperExchange
from llmtrader.storage.store import Store
from tests.fakes.aster import FakeAster
from tests.helpers import BTC, ETH, M15, XRP, candle, market, protect
from tests.helpers import FakeClock as Clock

D = Decimal
CENT = D("0.01")


def funding_rate(perp_dir: Path, symbol: str, time_ms: int) -> Decimal:
    with (perp_dir / f"{symbol}-funding.csv").open() as fh:
        for row in csv.reader(fh):
            if row[0] == str(time_ms):
                return D(row[1])
    raise AssertionError(f"no {symbol} funding event at {time_ms}")


def walk(book: PaperBook, perp_dir: Path, symbol: str, open_ms: int) -> list[Fill]:
    return book.on_candle(symbol, open_ms, M15, *candle(perp_dir, symbol, open_ms))


def limit(
    symbol: str,
    side: str,
    qty: str,
    price: str,
    cid: str = "lim",
    *,
    time_in_force: str = "GTC",
    reduce_only: bool = False,
) -> OrderRequest:
    return OrderRequest(
        symbol, Side(side), OrderType.LIMIT, cid, quantity=D(qty), price=D(price), time_in_force=time_in_force,
        reduce_only=reduce_only,
    )  # fmt: skip


def c(value: Decimal) -> Decimal:
    return value.quantize(CENT)


def book() -> PaperBook:
    return PaperBook(D("10000"), PaperConfig())


# ---- exits ---------------------------------------------------------------------------------------
def test_long_stopped_out_pays_fee_and_slippage_both_ways(perp_dir: Path) -> None:
    # BTCUSDT 15m 2025-12-15 11:15 closes at 89752 (the mark); the 11:30 candle is
    # O 89752  H 89782.2  L 89525  C 89537.1: its low reaches the stop at 89600, its high misses 90000.
    assert candle(perp_dir, "BTCUSDT", 1765797300000)[3] == D("89752")
    assert candle(perp_dir, "BTCUSDT", 1765798200000) == (D("89752"), D("89782.2"), D("89525"), D("89537.1"))
    b = book()
    b.set_leverage("BTCUSDT", 10)
    entry = b.place(market("BTCUSDT", "BUY", "0.1"), D("89752"), BTC, 1765798199999)
    # entry = 89752 × 1.0002 = 89769.9504; fee = 0.1 × 89769.9504 × 0.00035 = 3.14194826
    assert entry.status is OrderStatus.FILLED and entry.avg_price == D("89769.9504")
    b.place(protect("BTCUSDT", "SELL", OrderType.STOP_MARKET, "89600", "sl"), D("89752"), BTC, 1765798199999)
    b.place(protect("BTCUSDT", "SELL", OrderType.TAKE_PROFIT_MARKET, "90000", "tp"), D("89752"), BTC, 1765798199999)

    fills = walk(b, perp_dir, "BTCUSDT", 1765798200000)
    # exit = 89600 × 0.9998 = 89582.08; fee = 0.1 × 89582.08 × 0.00035 = 3.1353728
    # realized = 0.1 × (89582.08 − 89769.9504) = −18.78704
    # wallet = 10000 − 18.78704 − 3.14194826 − 3.1353728 = 9974.93563894
    [exit_fill] = fills
    assert (exit_fill.reason, exit_fill.side, exit_fill.qty) == ("stop_loss", Side.SELL, D("0.1"))
    assert exit_fill.price == D("89582.08")
    assert c(exit_fill.fee) == D("3.14") and c(exit_fill.realized_pnl) == D("-18.79")
    assert exit_fill.time_ms == 1765798200000 + M15 - 1
    assert c(b.balance().wallet) == D("9974.94")
    assert b.positions() == []
    # The take-profit of a position that is gone is EXPIRED, not left to fire later.
    tp = b.query("BTCUSDT", "tp")
    assert tp is not None and tp.status is OrderStatus.EXPIRED
    assert b.open_orders() == []
    assert [e.reason for e in b.take_events() if isinstance(e, Fill)] == ["market", "stop_loss"]


def test_short_hits_its_target(perp_dir: Path) -> None:
    # ETHUSDT 15m 2025-12-15 11:15 closes at 3158.59; the 11:30 candle is O 3158.6 H 3159.01 L 3144.68:
    # the high stays under the stop (3165), the low reaches the target (3150).
    assert candle(perp_dir, "ETHUSDT", 1765797300000)[3] == D("3158.59")
    assert candle(perp_dir, "ETHUSDT", 1765798200000)[:3] == (D("3158.6"), D("3159.01"), D("3144.68"))
    b = book()
    b.place(market("ETHUSDT", "SELL", "1.5"), D("3158.59"), ETH, 0)
    b.place(protect("ETHUSDT", "BUY", OrderType.STOP_MARKET, "3165", "sl"), D("3158.59"), ETH, 0)
    b.place(protect("ETHUSDT", "BUY", OrderType.TAKE_PROFIT_MARKET, "3150", "tp"), D("3158.59"), ETH, 0)
    [pos] = b.positions()
    # entry = 3158.59 × 0.9998 = 3157.958282 (a seller gets less); fee = 1.5 × 3157.958282 × 0.00035 = 1.65792810
    assert pos.amount == D("-1.5") and pos.entry_price == D("3157.958282")

    [tp] = walk(b, perp_dir, "ETHUSDT", 1765798200000)
    # exit = 3150 × 1.0002 = 3150.63 (a buyer pays more); fee = 1.5 × 3150.63 × 0.00035 = 1.65408075
    # realized = 1.5 × (3157.958282 − 3150.63) = 10.992423
    # wallet = 10000 + 10.992423 − 1.65792810 − 1.65408075 = 10007.68041415
    assert (tp.reason, tp.side, tp.price) == ("take_profit", Side.BUY, D("3150.63"))
    assert c(tp.realized_pnl) == D("10.99") and c(tp.fee) == D("1.65")
    assert c(b.balance().wallet) == D("10007.68")
    sl = b.query("ETHUSDT", "sl")
    assert sl is not None and sl.status is OrderStatus.EXPIRED


def test_stop_counts_first_when_stop_and_target_are_in_one_candle(perp_dir: Path) -> None:
    # BTCUSDT 15m 2025-10-10 21:00 closes at 112137.6; the 21:15 candle (the crash) is
    # O 112137.6  H 112539.5  L 101516.5: it reaches both the target 112400 and the stop 111000.
    assert candle(perp_dir, "BTCUSDT", 1760130000000)[3] == D("112137.6")
    assert candle(perp_dir, "BTCUSDT", 1760130900000)[:3] == (D("112137.6"), D("112539.5"), D("101516.5"))
    b = book()
    b.set_leverage("BTCUSDT", 10)
    b.place(market("BTCUSDT", "BUY", "0.1"), D("112137.6"), BTC, 0)
    b.place(protect("BTCUSDT", "SELL", OrderType.STOP_MARKET, "111000", "sl"), D("112137.6"), BTC, 0)
    b.place(protect("BTCUSDT", "SELL", OrderType.TAKE_PROFIT_MARKET, "112400", "tp"), D("112137.6"), BTC, 0)
    # entry = 112137.6 × 1.0002 = 112160.02752; liquidation at 10x = entry × (1 − 0.1 + 0.005)
    # = 101504.82, just under the candle's low 101516.5, so only the orders matter here.
    assert c(b.liquidation_price("BTCUSDT") or D(0)) == D("101504.82")

    [fill] = walk(b, perp_dir, "BTCUSDT", 1760130900000)
    # exit = 111000 × 0.9998 = 110977.8; realized = 0.1 × (110977.8 − 112160.02752) = −118.222752
    # wallet = 10000 − 118.222752 − 3.92560096 − 3.884223 = 9873.96742404
    assert (fill.reason, fill.price) == ("stop_loss", D("110977.8"))
    assert c(fill.realized_pnl) == D("-118.22")
    assert c(b.balance().wallet) == D("9873.97")
    tp = b.query("BTCUSDT", "tp")
    assert tp is not None and tp.status is OrderStatus.EXPIRED


def test_a_gap_through_the_stop_fills_at_the_open(perp_dir: Path) -> None:
    # BTCUSDT 15m 2025-09-22 05:45 closes at 113635.6 and the 06:00 candle OPENS at 113615, below the
    # stop at 113625: the stop cannot fill at its price, it fills at the open.
    assert candle(perp_dir, "BTCUSDT", 1758519900000)[3] == D("113635.6")
    assert candle(perp_dir, "BTCUSDT", 1758520800000)[0] == D("113615")
    b = book()
    b.set_leverage("BTCUSDT", 10)
    b.place(market("BTCUSDT", "BUY", "0.1"), D("113635.6"), BTC, 0)
    b.place(protect("BTCUSDT", "SELL", OrderType.STOP_MARKET, "113625", "sl"), D("113635.6"), BTC, 0)

    [fill] = walk(b, perp_dir, "BTCUSDT", 1758520800000)
    # entry = 113635.6 × 1.0002 = 113658.32712
    # exit = 113615 (the open) × 0.9998 = 113592.277, worse than 113625 × 0.9998 = 113602.275
    # realized = 0.1 × (113592.277 − 113658.32712) = −6.605012
    # wallet = 10000 − 6.605012 − 3.97804145 − 3.97572970 = 9985.44121686
    assert (fill.reason, fill.price) == ("stop_loss", D("113592.277"))
    assert c(fill.realized_pnl) == D("-6.61")
    assert c(b.balance().wallet) == D("9985.44")


# ---- funding -------------------------------------------------------------------------------------
def test_funding_is_charged_to_a_long_and_paid_to_a_short(perp_dir: Path) -> None:
    # BTCUSDT funding 2025-10-11 00:00 (1760140800000) is +0.0001; the mark is the close of the
    # 23:45 candle, 112714.9. A positive rate: longs pay shorts.
    rate = funding_rate(perp_dir, "BTCUSDT", 1760140800000)
    mark = candle(perp_dir, "BTCUSDT", 1760139900000)[3]
    assert (rate, mark) == (D("0.0001"), D("112714.9"))
    long_book, short_book = book(), book()
    long_book.place(market("BTCUSDT", "BUY", "0.1"), mark, BTC, 0)
    short_book.place(market("BTCUSDT", "SELL", "0.1"), mark, BTC, 0)
    long_wallet, short_wallet = long_book.balance().wallet, short_book.balance().wallet

    paid = long_book.on_funding("BTCUSDT", 1760140800000, rate, mark)
    received = short_book.on_funding("BTCUSDT", 1760140800000, rate, mark)
    # 0.1 × 112714.9 × 0.0001 = 1.127149
    assert paid is not None and paid.amount == D("-1.127149")
    assert received is not None and received.amount == D("1.127149")
    assert long_book.balance().wallet == long_wallet - D("1.127149")
    assert short_book.balance().wallet == short_wallet + D("1.127149")

    # 2025-10-12 16:00 is −0.00010915 (mark 113119, the 15:45 close): now the long is paid.
    rate2 = funding_rate(perp_dir, "BTCUSDT", 1760284800000)
    mark2 = candle(perp_dir, "BTCUSDT", 1760283900000)[3]
    got = long_book.on_funding("BTCUSDT", 1760284800000, rate2, mark2)
    # 0.1 × 113119 × 0.00010915 = 1.234693885
    assert got is not None and c(got.amount) == D("1.23")
    assert book().on_funding("BTCUSDT", 1760284800000, rate2, mark2) is None  # no position, no funding


# ---- liquidation ---------------------------------------------------------------------------------
def test_liquidation_loses_the_whole_isolated_margin(perp_dir: Path) -> None:
    # BTCUSDT 15m 2025-12-15 14:30 closes at 89221.2; the 14:45 candle falls to 87800.
    assert candle(perp_dir, "BTCUSDT", 1765809000000)[3] == D("89221.2")
    assert candle(perp_dir, "BTCUSDT", 1765809900000)[2] == D("87800")
    b = book()
    b.set_leverage("BTCUSDT", 50)
    b.place(market("BTCUSDT", "BUY", "0.1"), D("89221.2"), BTC, 0)
    # entry = 89221.2 × 1.0002 = 89239.04424; margin = 0.1 × 89239.04424 / 50 = 178.47808848
    # liquidation = 89239.04424 × (1 − 1/50 + 0.005) = 87900.45857640, above the low 87800
    [pos] = b.positions()
    assert c(pos.isolated_margin) == D("178.48") and c(pos.liquidation_price or D(0)) == D("87900.46")
    # A stop BEYOND the liquidation price comes too late: the venue liquidates first.
    b.place(protect("BTCUSDT", "SELL", OrderType.STOP_MARKET, "87850", "late-sl"), D("89221.2"), BTC, 0)

    [fill] = walk(b, perp_dir, "BTCUSDT", 1765809900000)
    # wallet = 10000 − 3.12336655 (entry fee) − 178.47808848 (the margin) = 9818.39854497
    assert (fill.reason, fill.qty, fill.fee) == ("liquidation", D("0.1"), D(0))
    assert c(fill.price) == D("87900.46") and c(fill.realized_pnl) == D("-178.48")
    assert c(b.balance().wallet) == D("9818.40") and b.positions() == []
    late = b.query("BTCUSDT", "late-sl")
    assert late is not None and late.status is OrderStatus.EXPIRED


def test_a_stop_before_the_liquidation_price_comes_first(perp_dir: Path) -> None:
    # Same entry and candle as above, with the stop at 88000, above the liquidation price 87900.46.
    b = book()
    b.set_leverage("BTCUSDT", 50)
    b.place(market("BTCUSDT", "BUY", "0.1"), D("89221.2"), BTC, 0)
    b.place(protect("BTCUSDT", "SELL", OrderType.STOP_MARKET, "88000", "sl"), D("89221.2"), BTC, 0)
    [fill] = walk(b, perp_dir, "BTCUSDT", 1765809900000)
    # exit = 88000 × 0.9998 = 87982.4; realized = 0.1 × (87982.4 − 89239.04424) = −125.664424
    # wallet = 10000 − 125.664424 − 3.12336655 − 3.0793840 = 9868.13282545
    assert (fill.reason, fill.price) == ("stop_loss", D("87982.4"))
    assert c(fill.realized_pnl) == D("-125.66")
    assert c(b.balance().wallet) == D("9868.13")


# ---- limit orders and available balance ----------------------------------------------------------
def test_limit_entry_fills_only_when_a_candle_trades_through(perp_dir: Path) -> None:
    # BTCUSDT 15m 2025-12-15: 10:45 closes at 89811.5 (the mark). Lows after it: 11:00 89744.1,
    # 11:15 89726.6 (both above the limit at 89700), 11:30 89525 (through it).
    b = book()
    b.set_leverage("BTCUSDT", 10)
    state = b.place(limit("BTCUSDT", "BUY", "0.1", "89700"), D("89811.5"), BTC, 0)
    assert state.status is OrderStatus.NEW
    # reserved = 0.1 × 89700 / 10 + 0.1 × 89700 × 0.00035 = 897 + 3.1395 = 900.1395
    assert b.balance().available == D("10000") - D("900.1395")
    assert walk(b, perp_dir, "BTCUSDT", 1765796400000) == []
    assert walk(b, perp_dir, "BTCUSDT", 1765797300000) == []
    assert [o.client_order_id for o in b.open_orders()] == ["lim"]

    [fill] = walk(b, perp_dir, "BTCUSDT", 1765798200000)
    # Fills at its own price (taker fee charged: one fee rate, erring against the account).
    # fee = 0.1 × 89700 × 0.00035 = 3.1395; wallet = 9996.8605; margin = 897
    assert (fill.reason, fill.price, fill.fee) == ("limit", D("89700"), D("3.1395"))
    bal = b.balance()
    assert bal.wallet == D("9996.8605") and bal.available == D("9099.8605")
    # unrealized at the 11:30 close 89537.1: 0.1 × (89537.1 − 89700) = −16.29
    assert bal.unrealized_pnl == D("-16.29")
    filled = b.query("BTCUSDT", "lim")
    assert filled is not None and filled.status is OrderStatus.FILLED and filled.executed_qty == D("0.1")


def test_available_balance_with_a_position_and_a_resting_limit() -> None:
    b = book()
    b.set_leverage("ETHUSDT", 5)
    b.place(market("ETHUSDT", "BUY", "1"), D("3000"), ETH, 0)
    b.place(limit("ETHUSDT", "BUY", "1", "2900"), D("3000"), ETH, 0)
    # entry 3000 × 1.0002 = 3000.6; fee 1.05021; margin 3000.6 / 5 = 600.12
    # limit reserve = 2900 / 5 + 2900 × 0.00035 = 580 + 1.015 = 581.015
    # available = (10000 − 1.05021) − 600.12 − 581.015 = 8817.81479
    assert b.balance().available == D("8817.81479")
    cancelled = b.place(limit("ETHUSDT", "SELL", "1", "3100", cid="tp", reduce_only=True), D("3000"), ETH, 0)
    assert cancelled.status is OrderStatus.NEW  # a reduce-only limit reserves nothing
    assert b.balance().available == D("8817.81479")
    gone = b.cancel("ETHUSDT", "lim", 0)
    assert gone is not None and gone.status is OrderStatus.CANCELED
    assert b.balance().available == D("8817.81479") + D("581.015")
    assert b.cancel("ETHUSDT", "lim", 0) is None  # not open any more


def test_an_opposite_market_order_larger_than_the_position_flips_it() -> None:
    b = book()
    b.place(market("ETHUSDT", "BUY", "1"), D("3000"), ETH, 0)  # long 1 @ 3000.6
    fill = b.place(market("ETHUSDT", "SELL", "3", cid="flip"), D("3100"), ETH, 0)
    # sell price 3100 × 0.9998 = 3099.38; the first 1 closes the long: 3099.38 − 3000.6 = 98.78
    [pos] = b.positions()
    assert fill.avg_price == D("3099.38")
    assert pos.amount == D("-2") and pos.entry_price == D("3099.38")
    # wallet = 10000 + 98.78 − 1.05021 − 3 × 3099.38 × 0.00035 (3.254349) = 10094.475441
    assert b.balance().wallet == D("10094.475441")


def test_a_limit_entry_and_its_stop_can_both_fill_in_one_candle(perp_dir: Path) -> None:
    # The protective stop is placed with the entry, while still flat (closePosition needs no position yet).
    # BTCUSDT 15m 2025-12-15 11:30 (O 89752 H 89782.2 L 89525 C 89537.1) falls through the limit at
    # 89700 and then through the stop at 89550: without a position at its open, a falling candle is
    # walked open → high → low, so the entry fills first and the stop after it.
    b = book()
    b.place(limit("BTCUSDT", "BUY", "0.1", "89700"), D("89811.5"), BTC, 0)
    b.place(protect("BTCUSDT", "SELL", OrderType.STOP_MARKET, "89550", "sl"), D("89811.5"), BTC, 0)
    entry, stop = walk(b, perp_dir, "BTCUSDT", 1765798200000)
    # entry at 89700 (its own price); exit = 89550 × 0.9998 = 89532.09
    # realized = 0.1 × (89532.09 − 89700) = −16.791; fees = 3.1395 + 0.1 × 89532.09 × 0.00035 (3.13362315)
    assert (entry.reason, entry.price, stop.reason, stop.price) == ("limit", D("89700"), "stop_loss", D("89532.09"))
    assert stop.realized_pnl == D("-16.791")
    assert c(b.balance().wallet) == D("9976.94")  # 10000 − 16.791 − 3.1395 − 3.13362315 = 9976.93587685


def test_limits_that_cross_the_mark() -> None:
    b = book()
    # A buy limit above the mark takes liquidity now, at the slipped mark when that is better than its
    # price: 3000 × 1.0002 = 3000.6 < 3010.
    now = b.place(limit("ETHUSDT", "BUY", "1", "3010", cid="cross"), D("3000"), ETH, 0)
    assert now.status is OrderStatus.FILLED and now.avg_price == D("3000.6")
    # An IOC limit that cannot fill now expires; a post-only one that would cross is refused (-5022).
    ioc = b.place(limit("ETHUSDT", "BUY", "1", "2990", cid="ioc", time_in_force="IOC"), D("3000"), ETH, 0)
    assert ioc.status is OrderStatus.EXPIRED and b.open_orders() == []
    assert _rejected(b, limit("ETHUSDT", "BUY", "1", "3001", cid="gtx", time_in_force="GTX"), "3000", ETH) == -5022


# ---- rejections ----------------------------------------------------------------------------------
def _rejected(b: PaperBook, request: OrderRequest, mark: str, rules_: SymbolRules = BTC) -> int | None:
    before = json.dumps(b.to_json())
    with pytest.raises(VenueRejected) as info:
        b.place(request, D(mark), rules_, 0)
    assert json.dumps(b.to_json()) == before  # a rejection changes nothing
    return info.value.code


def test_rejections_carry_the_venue_codes(perp_dir: Path) -> None:
    # XRPUSDT 15m 2025-12-15 11:15 closes at 1.9906: 2.5 XRP is 4.9765 USDT, under the 5 minimum.
    xrp_mark = candle(perp_dir, "XRPUSDT", 1765797300000)[3]
    assert xrp_mark == D("1.9906")
    b = book()
    assert _rejected(b, market("XRPUSDT", "BUY", "2.5"), str(xrp_mark), XRP) == -4164
    assert _rejected(b, market("BTCUSDT", "BUY", "0.0015"), "89752") == -1111  # step 0.001
    assert _rejected(b, limit("BTCUSDT", "BUY", "0.1", "89700.05"), "89752") == -1111  # tick 0.1
    # 0.6 BTC at 5x: 0.6 × 89769.9504 / 5 = 10772.39 of margin > 10000 available
    b.set_leverage("BTCUSDT", 5)
    assert _rejected(b, market("BTCUSDT", "BUY", "0.6"), "89752") == -2019
    # a resting limit needs its margin too: 0.6 × 89000 / 5 = 10680 > 10000
    assert _rejected(b, limit("BTCUSDT", "BUY", "0.6", "89000"), "89752") == -2019
    assert _rejected(b, market("BTCUSDT", "SELL", "0.1", reduce_only=True), "89752") == -2022  # no position
    b.place(market("BTCUSDT", "BUY", "0.1"), D("89752"), BTC, 0)
    assert _rejected(b, market("BTCUSDT", "BUY", "0.1", cid="x", reduce_only=True), "89752") == -2022  # adds
    assert _rejected(b, market("BTCUSDT", "SELL", "0.2", cid="x", reduce_only=True), "89752") == -2022  # flips
    b.place(protect("BTCUSDT", "SELL", OrderType.STOP_MARKET, "89000", "sl"), D("89752"), BTC, 0)
    assert _rejected(b, protect("BTCUSDT", "SELL", OrderType.STOP_MARKET, "88000", "sl"), "89752") == -4116
    # a sell stop above the mark would trigger at once; so would a sell take-profit below it
    assert _rejected(b, protect("BTCUSDT", "SELL", OrderType.STOP_MARKET, "89800", "s2"), "89752") == -2021
    assert _rejected(b, protect("BTCUSDT", "SELL", OrderType.TAKE_PROFIT_MARKET, "89700", "t2"), "89752") == -2021
    closing_market = OrderRequest("BTCUSDT", Side.SELL, OrderType.MARKET, "cm", close_position=True)
    assert _rejected(b, closing_market, "89752") == -1106  # closePosition is for STOP/TP orders only
    for bad in (0, 126):
        with pytest.raises(VenueRejected) as info:
            b.set_leverage("BTCUSDT", bad)
        assert info.value.code == -4028
    b.set_margin_type("BTCUSDT", "ISOLATED")  # already set: a success
    with pytest.raises(VenueRejected) as info:
        b.set_margin_type("BTCUSDT", "CROSSED")
    assert info.value.code == -4048


# ---- state -----------------------------------------------------------------------------------------
def test_state_survives_json_and_continues_identically(perp_dir: Path) -> None:
    b = book()
    b.set_leverage("BTCUSDT", 10)
    b.place(market("BTCUSDT", "BUY", "0.1"), D("89752"), BTC, 0)
    b.place(protect("BTCUSDT", "SELL", OrderType.STOP_MARKET, "89600", "sl"), D("89752"), BTC, 0)
    b.place(limit("BTCUSDT", "BUY", "0.05", "89000", cid="add"), D("89752"), BTC, 0)
    b.take_events()
    copy = PaperBook.from_json(json.loads(json.dumps(b.to_json())), PaperConfig())
    assert copy.to_json() == b.to_json()
    assert copy.balance() == b.balance() and copy.positions() == b.positions()
    assert walk(copy, perp_dir, "BTCUSDT", 1765798200000) == walk(b, perp_dir, "BTCUSDT", 1765798200000)
    assert copy.to_json() == b.to_json()


def test_reset_wipes_the_account_and_remembers_it() -> None:
    b = book()
    b.place(market("ETHUSDT", "BUY", "1"), D("3000"), ETH, 0)
    b.place(limit("ETHUSDT", "BUY", "1", "2900"), D("3000"), ETH, 0)
    b.reset(D("5000"), 123)
    assert b.balance().wallet == D("5000") and b.balance().available == D("5000")
    assert b.positions() == [] and b.open_orders() == [] and b.take_events() == []
    # wallet before = 10000 − 3000.6 × 0.00035 (1.05021) = 9998.94979
    [record] = b.resets
    assert record["time_ms"] == 123 and D(record["balance"]) == D("5000")
    assert D(record["wallet_before"]) == D("9998.94979")


# ---- the adapter against the fake venue ----------------------------------------------------------
@contextmanager
def paper_venue(perp_dir: Path, start_ms: int) -> Iterator[tuple[FakeAster, Clock]]:
    """The fake venue anchored at ``start_ms``: served times equal the data's times for a day."""
    clock = Clock(start_ms)
    fake = FakeAster(perp_dir, anchor_ms=start_ms, clock=clock).start()
    try:
        yield fake, clock
    finally:
        fake.stop()


def paper(fake: FakeAster, clock: Clock, db: Path) -> tuple[PaperExchange, AsterMarketData, Store]:
    data = AsterMarketData(fake.base_url, timeout_s=5)
    store = Store(db)
    exchange = PaperExchange(store, data, account="paper-test", candle_interval="15m", now_ms=clock)
    return exchange, data, store


def stored_fills(store: Store) -> list[dict[str, object]]:
    return list(store.db.query("SELECT * FROM paper_fills WHERE account = 'paper-test' ORDER BY id"))


def test_adapter_stop_triggers_from_the_served_candles(perp_dir: Path, tmp_path: Path) -> None:
    # At 2025-12-15 10:20 the mark is the close of the 10:00 candle, 89775.7. The stop at 89600 is
    # watched from the next candle (10:30); the 11:30 candle's low 89525 reaches it.
    with paper_venue(perp_dir, 1765794000000) as (fake, clock):

        async def go() -> None:
            exchange, data, store = paper(fake, clock, tmp_path / "paper.db")
            entry = await exchange.place_order(market("BTCUSDT", "BUY", "0.1", "e1"))
            # entry = 89775.7 × 1.0002 = 89793.65514
            assert entry.status is OrderStatus.FILLED and entry.avg_price == D("89793.65514")
            await exchange.place_order(protect("BTCUSDT", "SELL", OrderType.STOP_MARKET, "89600", "e1-sl"))
            assert [o.client_order_id for o in await exchange.open_orders("BTCUSDT")] == ["e1-sl"]

            clock.now = 1765797000000  # 11:10: candles 10:30 .. 10:45 closed, lows 89694.3 and 89765.5
            assert len(await exchange.positions()) == 1
            clock.now = 1765799400000  # 11:50: the 11:00, 11:15 and 11:30 candles have closed
            assert await exchange.positions() == []
            sl = await exchange.query_order("BTCUSDT", "e1-sl")
            assert sl is not None and sl.status is OrderStatus.FILLED and sl.avg_price == D("89582.08")
            # realized = 0.1 × (89600 × 0.9998 − 89793.65514) = 0.1 × (89582.08 − 89793.65514) = −21.157514
            # fees = 0.1 × 89793.65514 × 0.00035 + 0.1 × 89582.08 × 0.00035 = 3.14277793 + 3.1353728
            # wallet = 10000 − 21.157514 − 3.14277793 − 3.1353728 = 9972.56433527
            bal = await exchange.balance()
            assert c(bal.wallet) == D("9972.56") and bal.available == bal.wallet
            rows = stored_fills(store)
            assert [(r["client_order_id"], r["reason"]) for r in rows] == [("e1", "market"), ("e1-sl", "stop_loss")]
            assert rows[1]["time_ms"] == 1765798200000 + M15 - 1 and D(str(rows[1]["price"])) == D("89582.08")
            # The candles were asked for by window, from the candle after the entry on.
            starts = [int(p["startTime"]) for _, path, p in fake.requests if path == "/fapi/v3/klines"]
            assert starts and min(starts) == 1765794600000
            await data.aclose()
            store.close()

        asyncio.run(go())


def test_adapter_charges_funding_and_survives_a_restart(perp_dir: Path, tmp_path: Path) -> None:
    # At 2025-10-10 23:20 the mark is the 23:00 candle's close 112995.3. The 2025-10-11 00:00 funding
    # (+0.0001) is settled at the mark of that moment, the 23:45 close 112714.9.
    db = tmp_path / "paper.db"
    with paper_venue(perp_dir, 1760138400000) as (fake, clock):

        async def first() -> None:
            exchange, data, store = paper(fake, clock, db)
            await asyncio.gather(  # execution places one asset per task
                exchange.place_order(market("BTCUSDT", "BUY", "0.1", "btc-1")),
                exchange.place_order(market("ETHUSDT", "SELL", "0.5", "eth-1")),
            )
            await data.aclose()
            store.close()

        async def second() -> None:
            exchange, data, store = paper(fake, clock, db)  # a new process on the same database
            positions = {p.symbol: p for p in await exchange.positions()}
            assert positions["BTCUSDT"].amount == D("0.1") and positions["ETHUSDT"].amount == D("-0.5")
            # entry = 112995.3 × 1.0002 = 113017.89906; unrealized at the live mark (the 00:00 close 112314.1)
            # = 0.1 × (112314.1 − 113017.89906) = −70.379906
            assert positions["BTCUSDT"].entry_price == D("113017.89906")
            assert c(positions["BTCUSDT"].unrealized_pnl) == D("-70.38")
            funding = list(store.db.query("SELECT * FROM paper_funding WHERE symbol = 'BTCUSDT'"))
            assert [(r["time_ms"], D(str(r["amount"]))) for r in funding] == [(1760140800000, D("-1.127149"))]
            assert D(str(funding[0]["mark_price"])) == D("112714.9")
            balance = await exchange.reset()
            assert balance.wallet == D("10000") and await exchange.positions() == []
            assert len(stored_fills(store)) == 2  # the history stays
            await data.aclose()
            store.close()

        asyncio.run(first())
        clock.now = 1760142000000  # 00:20: the 23:30, 23:45 and 00:00 candles have closed
        asyncio.run(second())


def test_history_windows_of_the_market_client(perp_dir: Path) -> None:
    # 2025-11-27 .. 2025-12-14 is 17 days of 15m candles: 1632 rows, two pages of at most 1500.
    start, end = 1764201600000, 1765670400000
    with (perp_dir / "BTCUSDT-15m.csv").open() as fh:
        expected = [row for row in csv.reader(fh) if row[0].isdigit() and start <= int(row[0]) < end]
    with (perp_dir / "BTCUSDT-funding.csv").open() as fh:  # 2025-10-01 .. 2025-10-27
        rates = [
            (int(r[0]), D(r[1]))
            for r in csv.reader(fh)
            if r[0].isdigit() and 1759276800000 <= int(r[0]) < 1761523200000
        ]
    with paper_venue(perp_dir, 1765794000000) as (fake, _clock):

        async def go() -> None:
            async with AsterMarketData(fake.base_url, timeout_s=5) as data:
                candles = await data.candles_between("BTCUSDT", "15m", start, end)
                assert len(candles) == len(expected) == 1632
                assert candles.open_time_ms.tolist() == [int(r[0]) for r in expected]
                assert candles.close.tolist() == [float(r[4]) for r in expected]
                assert fake.count("/fapi/v3/klines") == 2
                data.FUNDING_PAGE = 10  # small pages, to page through 78 events
                assert await data.funding_between("BTCUSDT", 1759276800000, 1761523200000) == rates
                assert len(rates) == 78 and fake.count("/fapi/v3/fundingRate") == 8
                # the mark at 10:20 is the 10:00 candle's close
                assert await data.mark_prices(["BTCUSDT", "ETHUSDT"]) == {
                    "BTCUSDT": D("89775.7"),
                    "ETHUSDT": D("3156.67"),
                }
                with pytest.raises(VenueRejected) as info:
                    await data.candles_between("NOPEUSDT", "15m", start, end)
                assert info.value.code == -1121 and "NOPEUSDT" in str(info.value)

        asyncio.run(go())

"""The venue's order rules, applied before sending: rounding, every filter, margin, and the client ids."""

from __future__ import annotations

import re
from decimal import Decimal as D

import pytest

from llmtrader.core.filters import SymbolRules
from llmtrader.cycle.execution import client_order_id
from llmtrader.exchange.base import OrderRequest, OrderType, Side
from llmtrader.exchange.rules import fit_order, floor_qty, round_to, violations

BTC = SymbolRules(
    symbol="BTCUSDT", status="TRADING", base_asset="BTC", quote_asset="USDT",
    tick_size=D("0.1"), min_price=D("0.1"), max_price=D("1000000"),
    step_size=D("0.001"), min_qty=D("0.001"), max_qty=D("1000"),
    market_step_size=D("0.001"), market_min_qty=D("0.001"), market_max_qty=D("120"),
    min_notional=D("5"), percent_up=D("1.05"), percent_down=D("0.95"),
)  # fmt: skip
MARK = D("100000")


def market(qty: str, **kw: object) -> OrderRequest:
    return OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, "cid", quantity=D(qty), **kw)  # type: ignore[arg-type]


def test_rounding_helpers() -> None:
    assert floor_qty(D("0.0129"), D("0.001")) == D("0.012")
    assert floor_qty(D("17.9"), D("1")) == D("17")
    assert round_to(D("100.07"), D("0.05")) == D("100.05")
    assert round_to(D("0.12341"), D("0.0001"), "up") == D("0.1235")
    assert round_to(D("0.12349"), D("0.0001"), "down") == D("0.1234")


def test_quantity_rounds_down_and_the_amendment_is_named() -> None:
    fitted = fit_order(market("0.01239"), BTC, MARK)
    assert fitted.request is not None and fitted.request.quantity == D("0.012")
    assert fitted.amendments == ["quantity 0.01239 -> 0.012 (stepSize 0.001)"]


def test_a_stop_rounds_toward_the_mark_never_looser() -> None:
    long_stop = OrderRequest("BTCUSDT", Side.SELL, OrderType.STOP_MARKET, "c", stop_price=D("95000.04"),
                             close_position=True)  # fmt: skip
    short_stop = OrderRequest("BTCUSDT", Side.BUY, OrderType.STOP_MARKET, "c", stop_price=D("105000.06"),
                              close_position=True)  # fmt: skip
    assert fit_order(long_stop, BTC, MARK).request.stop_price == D("95000.1")  # type: ignore[union-attr]
    assert fit_order(short_stop, BTC, MARK).request.stop_price == D("105000.0")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (market("0"), -4003),
        (market("0.0005"), -1111),  # not a multiple of the step, as sent
        (market("121"), -4005),  # above the MARKET_LOT_SIZE maximum
        (OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, "c", quantity=D("0.01"), price=D("1000.05"),
                      time_in_force="GTC"), -1111),
        (OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, "c", quantity=D("0.01"), price=D("105000.1"),
                      time_in_force="GTC"), -4016),
        (OrderRequest("BTCUSDT", Side.SELL, OrderType.LIMIT, "c", quantity=D("0.01"), price=D("94999.9"),
                      time_in_force="GTC"), -4024),
    ],
)  # fmt: skip
def test_violations_carry_the_venue_codes(request_: OrderRequest, code: int) -> None:
    assert [v.code for v in violations(request_, BTC, MARK)] == [code]


def test_below_min_qty_after_rounding_is_not_sent() -> None:
    from dataclasses import replace

    coarse = replace(BTC, min_qty=D("0.002"), market_min_qty=D("0.002"))
    assert [v.code for v in violations(market("0.001"), coarse, MARK)] == [-4004]
    fitted = fit_order(market("0.0019"), coarse, MARK)  # rounds down to 0.001, below minQty 0.002
    assert fitted.request is None
    assert fitted.rejection == "quantity 0.001 below minQty 0.002 (venue code -4004)"


def test_min_notional_uses_the_mark_for_market_orders_and_exempts_reduce_only() -> None:
    small = market("0.001")  # 0.001 x 4000 = 4 USD < 5
    assert [v.code for v in violations(small, BTC, D("4000"))] == [-4164]
    assert violations(market("0.001", reduce_only=True), BTC, D("4000")) == []
    fitted = fit_order(small, BTC, D("4000"))
    assert fitted.request is None and "below the minimum 5" in (fitted.rejection or "")


def test_margin_must_fit_the_available_balance() -> None:
    ok = fit_order(market("0.02"), BTC, MARK, available=D("1000"), leverage=2)  # 2000 notional / 2 = 1000 margin
    assert ok.request is not None
    short = fit_order(market("0.021"), BTC, MARK, available=D("1000"), leverage=2)
    assert short.request is None and "needs margin 1050 USD at 2x; available 1000 USD" in (short.rejection or "")


def test_a_symbol_not_trading_is_refused() -> None:
    from dataclasses import replace

    halted = replace(BTC, status="SETTLING")
    assert -1121 in [v.code for v in violations(market("0.01"), halted, MARK)]


def test_client_order_ids_are_deterministic_and_fit_the_venue_pattern() -> None:
    pattern = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
    a = client_order_id("0abcdefghijklm", "BTCUSDT", "sl")
    assert a == client_order_id("0abcdefghijklm", "BTCUSDT", "sl")
    assert a != client_order_id("0abcdefghijklm", "BTCUSDT", "tp")
    assert a != client_order_id("0abcdefghijklm", "ETHUSDT", "sl")
    long_symbols = [client_order_id("0abcdefghijklm", s, "sl3") for s in ("1000PEPEUSDTXYZAB", "1000PEPEUSDTXYZAC")]
    assert long_symbols[0] != long_symbols[1]
    for cid in [a, *long_symbols]:
        assert pattern.match(cid) and len(cid) <= 36


def test_prices_round_onto_the_grid_that_starts_at_min_price() -> None:
    from dataclasses import replace

    from llmtrader.exchange.rules import round_price

    odd = replace(BTC, min_price=D("0.05"), tick_size=D("0.1"))  # the grid is 0.05, 0.15, 0.25, ...
    assert round_price(D("100.12"), odd) == D("100.15")
    limit = OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, "c", quantity=D("0.01"), price=D("100000.12"),
                         time_in_force="GTC")  # fmt: skip
    fitted = fit_order(limit, odd, MARK)
    assert fitted.request is not None and fitted.request.price == D("100000.15")

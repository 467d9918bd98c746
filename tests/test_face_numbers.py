"""Numbers for people: prices and sizes at the symbol's precision or by magnitude, USD at cents, in every
screen a person reads (decide, history, show, backtest), and no division tail in --json."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.core.textfmt import json_price, readable
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision
from tests.helpers import WIDTHS, at_width, lines_of

AVERAGED = Decimal("114219.1333333333333333333333")


def test_readable_by_tick_and_by_magnitude() -> None:
    assert readable(AVERAGED, Decimal("0.1")) == "114219.1"
    assert readable(Decimal("0.0123456"), Decimal("0.001")) == "0.012"
    assert readable(AVERAGED) == "114219.13"  # no tick at hand: six significant digits
    assert readable(3500.0) == "3500.00"
    assert readable(25.5) == "25.50"
    assert readable(1.23456789) == "1.23457"
    assert readable(0.000123456789) == "0.00012346"  # never an exponent
    assert readable(0.00000001234) == "0.00000001"  # at most eight decimals
    assert readable(None) == "-"


def test_json_price_rounds_an_average_to_the_tick_or_eight_decimals() -> None:
    assert json_price(AVERAGED, Decimal("0.1")) == 114219.1
    assert json_price(AVERAGED) == 114219.13333333
    assert json_price(None) is None
    assert "3333333333" not in json.dumps({"p": json_price(AVERAGED)})


@pytest.mark.parametrize("width", WIDTHS)
def test_decide_history_show_print_cents_and_readable_prices(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch,
    width: int,
) -> None:  # fmt: skip
    at_width(monkeypatch, width)
    mark = fake_aster.mark("BTCUSDT")
    tp, sl = mark * 1.0412345678, mark * 0.9812345678  # a model's prices, off the tick
    fake_llm.push(answer(decision(
        asset("BTCUSDT", "buy", allocation_usd=123.456789, leverage=2, tp_price=tp, sl_price=sl, confidence=0.7),
    )))  # fmt: skip
    result = runner.invoke(app, ["decide", "--dry-run"])
    lines = lines_of(result, width)
    text = "\n".join(lines)
    assert "123.46" in text and "123.4568" not in text  # margin at cents, not 7 significant digits
    assert readable(tp) in text and readable(sl) in text
    decision_id = json.loads(runner.invoke(app, ["history", "--json"]).stdout)[0]["decision_id"]

    text = "\n".join(lines_of(runner.invoke(app, ["history"]), width))
    assert "123.46" in text and "123.4568" not in text

    text = "\n".join(lines_of(runner.invoke(app, ["show", decision_id]), width))
    assert "123.46" in text and "123.4568" not in text
    assert readable(tp) in text and readable(sl) in text
    equity = json.loads(runner.invoke(app, ["show", decision_id, "--json"]).stdout)["equity_usd"]
    assert f"{Decimal(str(equity)):,.2f} USD" in text  # the account's equity to the cent


@pytest.mark.parametrize("width", WIDTHS)
def test_positions_show_the_stop_and_target_at_the_tick_even_on_a_round_price(
    live: Path, runner: CliRunner, fake_aster: FakeAster, monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    """89686.0 at BTCUSDT's 0.1 tick, never 89686: the same text as the other prices (it failed on a day whose
    target fell on a whole number)."""
    from decimal import Decimal

    from llmtrader.exchange.base import OrderRequest, OrderType, Side
    from tests.conftest import USER
    from tests.helpers import FakeClock, with_services

    fake_aster.set_position(USER, "BTCUSDT", "0.01")

    async def protect(services: Any) -> None:
        for kind, cid, level in ((OrderType.STOP_MARKET, "lt_x_BTCUSDT_sl", "1000"),
                                 (OrderType.TAKE_PROFIT_MARKET, "lt_x_BTCUSDT_tp", "900000")):  # fmt: skip
            await services.exchange.place_order(
                OrderRequest("BTCUSDT", Side.SELL, kind, cid, stop_price=Decimal(level), close_position=True)
            )

    with_services(FakeClock(), protect)
    at_width(monkeypatch, width)
    shown = "\n".join(lines_of(runner.invoke(app, ["positions"]), width))
    assert "1000.0" in shown and "900000.0" in shown, shown
    (row,) = json.loads(runner.invoke(app, ["positions", "--json"]).stdout)
    assert row["sl_price"] == 1000.0 and row["tp_price"] == 900000.0

"""Regressions found by the second reading of the safety merges (the money path), each through the CLI against
the fake venue and the fake model, asserting on the fake's positions and orders."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.exchange.base import OrderRequest, OrderType, Side
from llmtrader.logs import reset_logging
from tests.conftest import USER
from tests.fakes.aster import FakeAster
from tests.fakes.llm import Behaviour, FakeLLM, answer, asset, decision
from tests.helpers import place


@pytest.fixture(autouse=True)
def _no_leftover_log_handlers() -> Iterator[None]:
    yield
    reset_logging()


def decide(runner: CliRunner) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["decide", "--yes", "--json"], env={"COLUMNS": "200"})
    return result.exit_code, json.loads(result.stdout)


def while_thinking(fake: FakeAster, symbol: str, mark: Decimal, then: Behaviour) -> Behaviour:
    """The model's answer, given after the mark of ``symbol`` moved to ``mark`` (a model thinks for minutes)."""

    def run(body: dict[str, Any]) -> Any:
        fake.set_mark(symbol, mark)
        return then(body)

    return run


# ---- an adjust_position validated as a reduction never adds -------------------------------------------------


def test_a_reduction_that_the_mark_turned_into_an_addition_adds_nothing_while_openings_are_held(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation counts adjust_position against the position's margin at the decision's mark; execution sized
    it at the mark of the moment: a trim decided at 100 and sent at 95 bought more, past every check an
    addition must pass (here openings held because the venue's trade history cannot be read)."""
    monkeypatch.setenv("MAX_POSITION_SIZE_USD", "100000")
    mark = Decimal(str(fake_aster.mark("BTCUSDT")))
    fake_aster.set_position(USER, "BTCUSDT", "0.100")
    place(OrderRequest("BTCUSDT", Side.SELL, OrderType.STOP_MARKET, "owner-sl-1",
                       stop_price=(mark * Decimal("0.80")).quantize(Decimal("0.1")), close_position=True,
                       working_type="MARK_PRICE"))  # fmt: skip
    fake_aster.fail("/fapi/v3/userTrades", 500, times=50)  # openings and increases are held
    margin = Decimal("0.100") * mark / fake_aster.leverage(USER, "BTCUSDT")
    allocation = float((margin * Decimal("0.98")).quantize(Decimal("0.01")))  # a 2% trim at the decided mark
    trim = asset("BTCUSDT", "adjust_position", allocation_usd=allocation,
                 leverage=fake_aster.leverage(USER, "BTCUSDT"), confidence=0.6, risk_level="low")  # fmt: skip
    fake_llm.push(
        while_thinking(fake_aster, "BTCUSDT", mark * Decimal("0.95"), answer(decision(trim, asset("ETHUSDT"))))
    )
    code, out = decide(runner)
    assert code == 0, out
    btc = next(a for a in out["assets"] if a["symbol"] == "BTCUSDT")
    assert btc["validation"]["status"] != "rejected", btc  # a reduction passes the hold
    assert fake_aster.positions(USER)["BTCUSDT"] <= Decimal("0.100")  # never more than before
    buys = [p for p in fake_aster.order_posts() if p.get("side") == "BUY" and p.get("type") == "MARKET"]
    assert buys == []


# ---- a stop replaced beside a resting addition keeps covering it -------------------------------------------


def test_a_stop_moved_beside_a_resting_addition_still_covers_it_once_filled_on_a_one_per_side_venue(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    """A limit addition rests beside the position (a buy whose stop went in as closePosition, where the old stop
    was a reduce-only one); a later adjust_orders on a venue that keeps one closePosition order per side must
    not swap the closePosition stop for a reduce-only one sized without the addition: once the addition fills,
    that part would have no stop until the next reconcile."""
    fake_aster.one_close_position_per_side = True
    mark = Decimal(str(fake_aster.mark("BTCUSDT")))
    fake_aster.set_position(USER, "BTCUSDT", "0.010")
    level = (mark * Decimal("0.97")).quantize(Decimal("0.1"))
    place(OrderRequest("BTCUSDT", Side.SELL, OrderType.STOP_MARKET, "lt_0OLDDECISION0_BTCUSDT_sl", stop_price=level,
                       close_position=True, working_type="MARK_PRICE"))  # fmt: skip
    place(OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, "lt_0OLDDECISION0_BTCUSDT_en", quantity=Decimal("0.010"),
                       price=(mark * Decimal("0.99")).quantize(Decimal("0.1")), time_in_force="GTC"))  # fmt: skip

    moved = float((mark * Decimal("0.975")).quantize(Decimal("0.1")))
    fake_llm.push(answer(decision(asset("BTCUSDT", "adjust_orders", sl_price=moved), asset("ETHUSDT"))))
    code, out = decide(runner)
    assert code == 0, out
    (btc,) = [a for a in out["orders"] if a["symbol"] == "BTCUSDT"]
    assert not btc["emergency"], btc  # the old stop covers the position: nothing is closed
    assert fake_aster.positions(USER) == {"BTCUSDT": Decimal("0.010")}

    fake_aster.set_mark("BTCUSDT", mark * Decimal("0.985"))  # the addition fills (above every stop)
    size = fake_aster.positions(USER)["BTCUSDT"]
    assert size == Decimal("0.020")
    stops = [o for o in fake_aster.open_orders(USER) if o.symbol == "BTCUSDT" and o.type == "STOP_MARKET"]
    assert any(o.side == "SELL" and (o.close_position or o.orig_qty >= size) for o in stops), stops


# ---- an addition whose outcome is unknown may be resting: the closePosition stop stays -----------------------


def test_a_limit_addition_of_unknown_outcome_never_swaps_the_closeposition_stop_for_a_smaller_one(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The venue took the limit addition but its answer was lost and the lookup failed too: the addition may be
    resting. On a venue with one closePosition order per side, a reduce-only stop sized for the position of now
    replaced the closePosition one, and the addition, once filled, had no stop."""
    monkeypatch.setenv("ORDER_LOOKUP_GRACE_S", "0")
    fake_aster.one_close_position_per_side = True
    mark = Decimal(str(fake_aster.mark("BTCUSDT")))
    fake_aster.set_position(USER, "BTCUSDT", "0.010")
    place(OrderRequest("BTCUSDT", Side.SELL, OrderType.STOP_MARKET, "lt_0OLDDECISION0_BTCUSDT_sl",
                       stop_price=(mark * Decimal("0.97")).quantize(Decimal("0.1")), close_position=True,
                       working_type="MARK_PRICE"))  # fmt: skip
    add = asset("BTCUSDT", "buy", allocation_usd=500, leverage=2, confidence=0.7, risk_level="medium",
                entry_price=float((mark * Decimal("0.99")).quantize(Decimal("0.1"))),
                sl_price=float((mark * Decimal("0.975")).quantize(Decimal("0.1"))),
                tp_price=float((mark * Decimal("1.05")).quantize(Decimal("0.1"))))  # fmt: skip
    fake_llm.push(answer(decision(add, asset("ETHUSDT"))))
    # The entry is applied, its answer is lost, and every lookup fails: its outcome is unknown.
    fake_aster.fail("/fapi/v3/order", 503, code=-1006, msg="unknown", method="POST", after_apply=True)
    fake_aster.fail("/fapi/v3/order", 500, method="GET", times=10)
    code, out = decide(runner)
    assert code in (0, 3), out
    (entry,) = [leg for a in out["orders"] for leg in a["orders"] if leg["leg"] == "en"]
    assert entry["status"] == "unknown"
    (btc,) = [a for a in out["orders"] if a["symbol"] == "BTCUSDT"]
    assert not btc["emergency"], btc  # the held part keeps its closePosition stop: nothing is closed

    fake_aster.set_mark("BTCUSDT", mark * Decimal("0.985"))  # a resting addition would fill now
    size = fake_aster.positions(USER).get("BTCUSDT", Decimal(0))
    stops = [o for o in fake_aster.open_orders(USER) if o.symbol == "BTCUSDT" and o.type == "STOP_MARKET"]
    assert size == 0 or any(o.side == "SELL" and (o.close_position or o.orig_qty >= size) for o in stops), (
        size,
        stops,
    )


# ---- a naked position whose stop could not be sent is an unprotected cycle ---------------------------------


def test_a_naked_position_whose_stop_cannot_be_sent_makes_the_cycle_unprotected(
    live: Path, runner: CliRunner, fake_aster: FakeAster
) -> None:
    """Reconcile finds a position without a stop, and the re-arm fails before any order (the symbols' rules
    cannot be read): the cycle was recorded as an ordinary skip (exit 0), not as a position left WITHOUT A STOP
    (exit 3)."""
    fake_aster.set_position(USER, "BTCUSDT", "0.020")
    fake_aster.fail("/fapi/v3/exchangeInfo", 500, times=50)  # the symbols' rules, which every order needs
    fake_aster.fail("/fapi/v1/exchangeInfo", 500, times=50)
    result = runner.invoke(app, ["--log-json", "run", "--once"], env={"COLUMNS": "200"})
    assert fake_aster.positions(USER) == {"BTCUSDT": Decimal("0.020")}
    assert [o for o in fake_aster.open_orders(USER) if o.type == "STOP_MARKET"] == []
    assert result.exit_code == 3, result.output
    status = runner.invoke(app, ["status", "--json"])
    (row,) = json.loads(status.stdout)
    assert row["last_cycle"]["outcome"] == "unprotected"
    assert "BTCUSDT may be open WITHOUT A STOP" in row["last_cycle"]["reason"]


# ---- the mark feed is not needed to protect or to close -----------------------------------------------------


def mark_feed_down(fake: FakeAster) -> None:
    fake.fail("/fapi/v3/premiumIndex", 500, times=50)
    fake.fail("/fapi/v1/premiumIndex", 500, times=50)


def test_close_still_closes_when_the_mark_feed_is_down(live: Path, runner: CliRunner, fake_aster: FakeAster) -> None:
    """The manual escape hatch read the public mark feed before closing; the positions carry their mark."""
    fake_aster.set_position(USER, "BTCUSDT", "0.020")
    mark_feed_down(fake_aster)
    result = runner.invoke(app, ["close", "BTCUSDT", "--yes"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert fake_aster.positions(USER) == {}


def test_reconcile_still_arms_the_stop_when_the_mark_feed_is_down(
    live: Path, runner: CliRunner, fake_aster: FakeAster
) -> None:
    fake_aster.set_position(USER, "BTCUSDT", "0.020")
    mark_feed_down(fake_aster)
    runner.invoke(app, ["--log-json", "run", "--once"], env={"COLUMNS": "200"})
    (armed,) = [o for o in fake_aster.open_orders(USER) if o.type == "STOP_MARKET"]
    assert armed.side == "SELL" and armed.close_position
    assert fake_aster.positions(USER) == {"BTCUSDT": Decimal("0.020")}


def test_close_still_closes_when_the_symbols_rules_cannot_be_read(
    live: Path, runner: CliRunner, fake_aster: FakeAster
) -> None:
    """A close is sent as it is (reduce-only, the position's own size): no exchangeInfo rule fits it, so an
    unreadable (and uncached) exchangeInfo must not keep the manual escape hatch shut."""
    fake_aster.set_position(USER, "BTCUSDT", "0.020")
    fake_aster.fail("/fapi/v3/exchangeInfo", 500, times=50)
    fake_aster.fail("/fapi/v1/exchangeInfo", 500, times=50)
    result = runner.invoke(app, ["close", "BTCUSDT", "--yes"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert fake_aster.positions(USER) == {}

"""Flat means flat: a full close (by hand or the drawdown switch) cancels llmtrader's resting entries, and
reconcile cancels llmtrader's stops and targets left on symbols with no position and no entry resting.
Only llmtrader's orders (client ids ``lt_``) are ever cancelled; the owner's stay."""

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
from tests.fakes.llm import FakeLLM, answer, asset, decision
from tests.helpers import place, rows


@pytest.fixture(autouse=True)
def _no_leftover_log_handlers() -> Iterator[None]:
    """`run` configures logging onto CliRunner's stderr, which is closed once the invocation returns."""
    yield
    reset_logging()


def invoke(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def run_once(runner: CliRunner) -> Any:
    return invoke(runner, "--log-json", "run", "--once")


def limit_buy(fake: FakeAster, symbol: str, cid: str) -> OrderRequest:
    """A limit buy resting far below the mark (it does not fill while the test runs)."""
    price = Decimal(str(round(fake.mark(symbol) * 0.8, 1)))
    return OrderRequest(symbol, Side.BUY, OrderType.LIMIT, cid, quantity=Decimal("0.05"), price=price,
                        time_in_force="GTC")  # fmt: skip


def sell_stop(symbol: str, cid: str, level: float, kind: OrderType = OrderType.STOP_MARKET) -> OrderRequest:
    """A closePosition stop (or target) closing a long."""
    return OrderRequest(symbol, Side.SELL, kind, cid, stop_price=Decimal(str(round(level, 1))), close_position=True,
                        working_type="MARK_PRICE")  # fmt: skip


def open_ids(fake: FakeAster) -> list[str]:
    return sorted(o.client_order_id for o in fake.open_orders(USER))


def cancel_events(db: Path) -> list[str]:
    return [str(r["message"]) for r in rows(db, "SELECT message FROM execution_events WHERE kind = 'cancel'")]


# ---- 1. a full close cancels llmtrader's resting entries ----------------------------------------------------


def test_close_all_cancels_resting_entries_on_flat_symbols_but_never_the_owners(
    live: Path, runner: CliRunner, fake_aster: FakeAster
) -> None:
    fake_aster.set_position(USER, "BTCUSDT", "0.020")
    eth = fake_aster.mark("ETHUSDT")
    place(limit_buy(fake_aster, "ETHUSDT", "lt_0OLDDECISION0_ETHUSDT_en"))  # no position on ETHUSDT
    place(sell_stop("ETHUSDT", "lt_0OLDDECISION0_ETHUSDT_sl", eth * 0.7))  # its pre-placed stop
    place(limit_buy(fake_aster, "ETHUSDT", "owner-en-1"))
    result = invoke(runner, "close", "--all", "--yes", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["execution"] == "executed"
    assert fake_aster.positions(USER) == {}
    assert open_ids(fake_aster) == ["owner-en-1"]  # the owner's entry stays
    assert sorted(a["symbol"] for a in out["orders"]) == ["BTCUSDT", "ETHUSDT"]
    assert any("lt_0OLDDECISION0_ETHUSDT_en" in m for m in cancel_events(live))


def test_close_symbol_cancels_its_resting_entries_when_nothing_is_open(
    live: Path, runner: CliRunner, fake_aster: FakeAster
) -> None:
    place(limit_buy(fake_aster, "ETHUSDT", "lt_0OLDDECISION1_ETHUSDT_en"))
    place(limit_buy(fake_aster, "ETHUSDT", "owner-en-2"))
    result = invoke(runner, "close", "ETHUSDT", "--yes")
    assert result.exit_code == 0, result.output
    assert open_ids(fake_aster) == ["owner-en-2"]
    assert any("lt_0OLDDECISION1_ETHUSDT_en" in m for m in cancel_events(live))
    (closing,) = rows(live, "SELECT model, execution FROM decisions")
    assert closing == {"model": "manual", "execution": "executed"}


def test_drawdown_switch_cancels_resting_entries_with_no_position_open(
    live: Path, runner: CliRunner, fake_aster: FakeAster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_DRAWDOWN_PCT", "20")
    assert run_once(runner).exit_code == 0  # the model holds; the equity peak is set
    place(limit_buy(fake_aster, "BTCUSDT", "lt_0OLDDECISION2_BTCUSDT_en"))
    place(limit_buy(fake_aster, "BTCUSDT", "owner-en-3"))
    fake_aster.set_balance(USER, 6_000)  # 40% below the peak of 10,000
    result = run_once(runner)
    assert result.exit_code == 0, result.output
    assert open_ids(fake_aster) == ["owner-en-3"]
    assert fake_aster.positions(USER) == {}
    (closing,) = rows(live, "SELECT model, execution FROM decisions WHERE model = 'guards'")
    assert closing["execution"] == "executed"
    assert any("lt_0OLDDECISION2_BTCUSDT_en" in m for m in cancel_events(live))


# ---- 2. reconcile cancels stale stops and targets on flat symbols --------------------------------------------


def test_reconcile_cancels_the_target_a_filled_stop_left_so_the_next_pair_is_closeposition(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_aster.one_close_position_per_side = True
    mark = fake_aster.mark("BTCUSDT")
    first = asset("BTCUSDT", "buy", allocation_usd=1000, leverage=2, tp_price=round(mark * 1.04, 1),
                  sl_price=round(mark * 0.98, 1), confidence=0.7, risk_level="medium")  # fmt: skip
    fake_llm.push(answer(decision(first, asset("ETHUSDT"))))
    assert run_once(runner).exit_code == 0
    assert "BTCUSDT" in fake_aster.positions(USER)
    (old_tp,) = [o.client_order_id for o in fake_aster.open_orders(USER) if o.type == "TAKE_PROFIT_MARKET"]
    fake_aster.set_mark("BTCUSDT", round(mark * 0.97, 1))  # the stop fills; its target stays behind
    fake_aster.set_mark("BTCUSDT", None)
    assert fake_aster.positions(USER) == {} and open_ids(fake_aster) == [old_tp]
    owner = OrderRequest("BTCUSDT", Side.BUY, OrderType.STOP_MARKET, "owner-sl-9", close_position=True,
                         stop_price=Decimal(str(round(mark * 1.5, 1))), working_type="MARK_PRICE")  # fmt: skip
    place(owner)  # the owner's own stop (of a short), on the flat symbol too: never touched

    second = asset("BTCUSDT", "buy", allocation_usd=1000, leverage=2, tp_price=round(mark * 1.05, 1),
                   sl_price=round(mark * 0.97, 1), confidence=0.7, risk_level="medium")  # fmt: skip
    fake_llm.push(answer(decision(second, asset("ETHUSDT"))))
    result = run_once(runner)
    assert result.exit_code == 0, result.output
    assert "BTCUSDT" in fake_aster.positions(USER)
    left = fake_aster.open_orders(USER)
    assert old_tp not in [o.client_order_id for o in left]
    assert "owner-sl-9" in [o.client_order_id for o in left]
    ours = [o for o in left if o.client_order_id.startswith("lt_")]
    assert sorted(o.type for o in ours) == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
    assert all(o.close_position for o in ours)  # the new target is not squeezed into a reduce-only one
    assert any(old_tp in m and "stale" in m for m in cancel_events(live))
    (cycle,) = rows(live, "SELECT reconcile FROM cycles ORDER BY id DESC LIMIT 1")
    assert any(old_tp in n for n in json.loads(cycle["reconcile"]))


def test_reconcile_keeps_a_resting_entrys_protection_and_the_owners_orders(
    live: Path, runner: CliRunner, fake_aster: FakeAster
) -> None:
    eth = fake_aster.mark("ETHUSDT")
    btc = fake_aster.mark("BTCUSDT")
    place(limit_buy(fake_aster, "ETHUSDT", "lt_0OLDDECISION3_ETHUSDT_en"))
    place(sell_stop("ETHUSDT", "lt_0OLDDECISION3_ETHUSDT_sl", eth * 0.7))  # pre-placed: stays with its entry
    place(sell_stop("BTCUSDT", "lt_0OLDDECISION4_BTCUSDT_tp", btc * 1.2, OrderType.TAKE_PROFIT_MARKET))  # stale
    place(sell_stop("BTCUSDT", "owner-sl-8", btc * 0.5))
    result = run_once(runner)
    assert result.exit_code == 0, result.output
    assert open_ids(fake_aster) == ["lt_0OLDDECISION3_ETHUSDT_en", "lt_0OLDDECISION3_ETHUSDT_sl", "owner-sl-8"]
    (event,) = cancel_events(live)
    assert "lt_0OLDDECISION4_BTCUSDT_tp" in event

"""Protection of positions that grow, that reconcile finds badly covered, that the store cannot record, and
that cannot be protected at all; and llmtrader touching only its own orders.

Every case runs the CLI (`decide`, `close`, `run --once`) or a cycle against the fake venue with the rules
it can be given (one closePosition order per side and type, an algo-order limit, stops refused while flat),
and asserts on the fake's orders and positions and on the store.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from llmtrader.cli import render
from llmtrader.cli.app import app
from llmtrader.exchange.base import OrderRequest, OrderType, Side
from llmtrader.logs import reset_logging
from llmtrader.storage.store import Store
from tests.conftest import USER
from tests.fakes.aster import FakeAster, Order
from tests.fakes.llm import FakeLLM, answer, asset, decision
from tests.helpers import place, rows

CONDITIONAL = ("STOP_MARKET", "TAKE_PROFIT_MARKET")


@pytest.fixture(autouse=True)
def _no_leftover_log_handlers() -> Iterator[None]:
    """`run` configures logging onto CliRunner's stderr, which is closed once the invocation returns."""
    yield
    reset_logging()


def invoke(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def decide(runner: CliRunner) -> tuple[int, dict[str, Any]]:
    result = invoke(runner, "decide", "--yes", "--json")
    return result.exit_code, json.loads(result.stdout)


def levels(fake: FakeAster, symbol: str = "BTCUSDT", **kw: float) -> dict[str, Any]:
    """A long's stop and target around the fake's current mark, as fractions of it."""
    mark = fake.mark(symbol)
    return {"sl_price": round(mark * kw.get("sl", 0.98), 1), "tp_price": round(mark * kw.get("tp", 1.04), 1)}


def buy(fake: FakeAster, allocation: float = 500, **kw: float) -> dict[str, Any]:
    return asset("BTCUSDT", "buy", allocation_usd=allocation, leverage=2, confidence=0.7, risk_level="medium",
                 **levels(fake, **kw))  # fmt: skip


def protective(fake: FakeAster, symbol: str = "BTCUSDT") -> dict[str, list[Order]]:
    """The open stops and targets of ``symbol`` at the fake venue, by type."""
    out: dict[str, list[Order]] = {kind: [] for kind in CONDITIONAL}
    for order in fake.open_orders(USER):
        if order.symbol == symbol and order.type in CONDITIONAL:
            out[order.type].append(order)
    return out


def assert_one_covering_pair(fake: FakeAster, sl: float, tp: float) -> None:
    """Exactly one stop and one target on BTCUSDT, at these levels, each closing the whole position."""
    size = abs(fake.positions(USER)["BTCUSDT"])
    found = protective(fake)
    assert [o.stop_price for o in found["STOP_MARKET"]] == [Decimal(str(sl))], found
    assert [o.stop_price for o in found["TAKE_PROFIT_MARKET"]] == [Decimal(str(tp))], found
    for (order,) in found.values():
        assert order.side == "SELL"
        assert order.close_position or (order.reduce_only and order.orig_qty == size), order


# ---- 1. adding to a position keeps it protected, once ------------------------------------------------------


def test_a_buy_that_adds_replaces_the_closeposition_pair_on_a_one_per_side_venue(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_aster.one_close_position_per_side = True
    fake_llm.push(answer(decision(buy(fake_aster), asset("ETHUSDT"))))
    code, first = decide(runner)
    assert code == 0 and first["execution"] == "executed"
    held = fake_aster.positions(USER)["BTCUSDT"]

    new = levels(fake_aster, sl=0.985, tp=1.05)
    fake_llm.push(answer(decision(buy(fake_aster, sl=0.985, tp=1.05), asset("ETHUSDT"))))
    code, second = decide(runner)
    assert code == 0, second
    assert second["execution"] == "executed"
    assert fake_aster.positions(USER)["BTCUSDT"] > held  # added, and nothing was closed
    assert_one_covering_pair(fake_aster, new["sl_price"], new["tp_price"])
    events = rows(live, "SELECT kind FROM execution_events WHERE decision_id = ?", second["decision_id"])
    assert "emergency" not in [e["kind"] for e in events]


def test_buys_that_add_leave_one_pair_at_the_latest_levels_within_the_algo_order_limit(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_aster.max_algo_orders = 4  # room for the old pair and its replacement, not for stacked pairs
    for sl, tp in ((0.98, 1.04), (0.982, 1.045), (0.984, 1.05)):
        latest = levels(fake_aster, sl=sl, tp=tp)
        add = asset("BTCUSDT", "buy", allocation_usd=300, leverage=2, confidence=0.7, risk_level="medium", **latest)
        fake_llm.push(answer(decision(add, asset("ETHUSDT"))))
        code, out = decide(runner)
        assert code == 0 and out["execution"] == "executed", out
        assert_one_covering_pair(fake_aster, latest["sl_price"], latest["tp_price"])


def test_adjust_position_that_grows_covers_the_new_size_on_a_one_per_side_venue(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_aster.one_close_position_per_side = True
    fake_llm.push(answer(decision(buy(fake_aster, allocation=400), asset("ETHUSDT"))))
    assert decide(runner)[0] == 0
    held = fake_aster.positions(USER)["BTCUSDT"]

    new = levels(fake_aster, sl=0.985, tp=1.05)
    grow = asset("BTCUSDT", "adjust_position", allocation_usd=800, leverage=2, confidence=0.7, risk_level="medium",
                 **new)  # fmt: skip
    fake_llm.push(answer(decision(grow, asset("ETHUSDT"))))
    code, out = decide(runner)
    assert code == 0 and out["execution"] == "executed", out
    assert fake_aster.positions(USER)["BTCUSDT"] > held * Decimal("1.5")
    assert_one_covering_pair(fake_aster, new["sl_price"], new["tp_price"])


def test_a_resting_addition_on_a_one_per_side_venue_never_leaves_the_addition_uncovered(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_aster.one_close_position_per_side = True
    old = levels(fake_aster)
    fake_llm.push(answer(decision(buy(fake_aster), asset("ETHUSDT"))))
    assert decide(runner)[0] == 0
    held = fake_aster.positions(USER)["BTCUSDT"]

    # A limit addition rests: a reduce-only stop sized now would not cover it once it fills, and the
    # closePosition stop cannot be replaced while it is there; so the addition is cancelled, unfilled.
    mark = fake_aster.mark("BTCUSDT")
    add = asset("BTCUSDT", "buy", allocation_usd=500, leverage=2, confidence=0.7, risk_level="medium",
                entry_price=round(mark * 0.99, 1), **levels(fake_aster, sl=0.97, tp=1.05))  # fmt: skip
    fake_llm.push(answer(decision(add, asset("ETHUSDT"))))
    code, out = decide(runner)
    assert code == 0, out
    (btc,) = [a for a in out["orders"] if a["symbol"] == "BTCUSDT"]
    assert btc["outcome"] == "unfilled" and not btc["emergency"]
    assert fake_aster.positions(USER) == {"BTCUSDT": held}
    assert [o.type for o in fake_aster.open_orders(USER) if o.type == "LIMIT"] == []
    assert_one_covering_pair(fake_aster, old["sl_price"], old["tp_price"])


# ---- 10. an entry that has not filled is not an emergency ----------------------------------------------------


def test_a_resting_entry_whose_stop_is_refused_while_flat_is_cancelled_and_reported_unfilled(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_aster.refuse_stops_while_flat = True
    mark = fake_aster.mark("BTCUSDT")
    resting = asset("BTCUSDT", "buy", allocation_usd=500, leverage=2, confidence=0.7, risk_level="medium",
                    entry_price=round(mark * 0.99, 1), **levels(fake_aster, sl=0.97))  # fmt: skip
    fake_llm.push(answer(decision(resting, asset("ETHUSDT"))))
    code, out = decide(runner)
    assert code == 0, out
    assert out["execution"] == "unfilled"
    (btc,) = [a for a in out["orders"] if a["symbol"] == "BTCUSDT"]
    assert btc["outcome"] == "unfilled" and not btc["emergency"]
    entry = f"lt_{out['decision_id']}_BTCUSDT_en"
    assert fake_aster.applied_orders(entry) == 1  # it was sent, rested, and is cancelled now
    assert fake_aster.positions(USER) == {} and fake_aster.open_orders(USER) == []
    kinds = [
        e["kind"] for e in rows(live, "SELECT kind FROM execution_events WHERE decision_id = ?", out["decision_id"])
    ]
    assert "emergency" not in kinds
    (recorded,) = rows(live, "SELECT execution FROM decisions WHERE id = ?", out["decision_id"])
    assert recorded["execution"] == "unfilled"


# ---- safety 5: llmtrader cancels only orders it placed -----------------------------------------------------


def stop(cid: str, level: float, *, qty: str | None = None, kind: OrderType = OrderType.STOP_MARKET) -> OrderRequest:
    """A stop (or target) closing a long: closePosition, or ``qty`` reduce-only."""
    return OrderRequest(
        "BTCUSDT", Side.SELL, kind, cid, stop_price=Decimal(str(level)), close_position=qty is None,
        quantity=Decimal(qty) if qty is not None else None, reduce_only=qty is not None, working_type="MARK_PRICE",
    )  # fmt: skip


def test_close_position_leaves_the_owners_own_orders_alone(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_llm.push(answer(decision(buy(fake_aster), asset("ETHUSDT"))))
    assert decide(runner)[0] == 0
    mark = fake_aster.mark("BTCUSDT")
    place(stop("owner-sl-1", round(mark * 0.95, 1), qty="0.001"))
    place(stop("owner-tp-1", round(mark * 1.10, 1), qty="0.001", kind=OrderType.TAKE_PROFIT_MARKET))

    fake_llm.push(answer(decision(asset("BTCUSDT", "close_position"), asset("ETHUSDT"))))
    code, out = decide(runner)
    assert code == 0 and out["execution"] == "executed", out
    assert fake_aster.positions(USER) == {}
    left = sorted(o.client_order_id for o in fake_aster.open_orders(USER))
    assert left == ["owner-sl-1", "owner-tp-1"]  # llmtrader's own stop and target are cancelled, not these


# ---- 2. reconcile checks that protection covers the position -------------------------------------------------


def run_once(runner: CliRunner, *args: str) -> Any:
    return invoke(runner, "--log-json", "run", "--once", *args)


def test_reconcile_rearms_a_reduce_only_stop_smaller_than_the_position(
    live: Path, runner: CliRunner, fake_aster: FakeAster
) -> None:
    fake_aster.set_position(USER, "BTCUSDT", "0.020")
    mark = fake_aster.mark("BTCUSDT")
    place(stop("lt_0OLDDECISION0_BTCUSDT_slq", round(mark * 0.97, 1), qty="0.010"))  # covers half
    result = run_once(runner)
    assert result.exit_code == 0, result.output
    (covering,) = protective(fake_aster)["STOP_MARKET"]
    assert covering.client_order_id != "lt_0OLDDECISION0_BTCUSDT_slq"
    assert covering.close_position or covering.orig_qty >= Decimal("0.020")
    assert covering.side == "SELL" and covering.stop_price < Decimal(str(mark))
    (protector,) = rows(live, "SELECT * FROM decisions WHERE model = 'reconcile'")
    assert covering.client_order_id.startswith(f"lt_{protector['id']}_BTCUSDT_sl")


def test_reconcile_cancels_duplicate_protective_orders_but_never_the_owners(
    live: Path, runner: CliRunner, fake_aster: FakeAster
) -> None:
    fake_aster.set_position(USER, "BTCUSDT", "0.020")
    mark = fake_aster.mark("BTCUSDT")
    place(stop("lt_0OLDDECISION1_BTCUSDT_sl", round(mark * 0.96, 1)))
    place(stop("lt_0OLDDECISION2_BTCUSDT_sl", round(mark * 0.97, 1)))
    place(stop("lt_0OLDDECISION1_BTCUSDT_tp", round(mark * 1.04, 1), kind=OrderType.TAKE_PROFIT_MARKET))
    place(stop("lt_0OLDDECISION2_BTCUSDT_tp", round(mark * 1.05, 1), kind=OrderType.TAKE_PROFIT_MARKET))
    place(stop("owner-sl-1", round(mark * 0.90, 1)))
    result = run_once(runner)
    assert result.exit_code == 0, result.output
    left = sorted(o.client_order_id for o in fake_aster.open_orders(USER))
    assert left == ["lt_0OLDDECISION2_BTCUSDT_sl", "lt_0OLDDECISION2_BTCUSDT_tp", "owner-sl-1"]
    (cycle,) = rows(live, "SELECT reconcile FROM cycles")
    assert sum("cancelled the duplicate" in n for n in json.loads(cycle["reconcile"])) == 2


# ---- 3. protection before audit, everywhere ------------------------------------------------------------------


def fill_the_disk(db: Path) -> None:
    """Make every write to the store fail, as a full disk does (the store is created first, as by an earlier
    run). Running as root ignores file modes, so the file refuses writes through triggers instead."""
    Store(db).db.conn.close()
    conn = sqlite3.connect(db)
    try:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            if table.startswith("sqlite_"):
                continue
            for op in ("INSERT", "UPDATE", "DELETE"):
                conn.execute(
                    f'CREATE TRIGGER "full_{table}_{op}" BEFORE {op} ON "{table}" '
                    "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
                )
        conn.commit()
    finally:
        conn.close()


def test_close_still_closes_when_the_store_cannot_write_and_says_so(
    live: Path, runner: CliRunner, fake_aster: FakeAster
) -> None:
    fake_aster.set_position(USER, "BTCUSDT", "0.020")
    fill_the_disk(live)
    result = invoke(runner, "close", "BTCUSDT", "--yes")
    assert fake_aster.positions(USER) == {}  # the manual escape hatch works without the audit trail
    assert result.exit_code != 0
    assert "cannot record" in result.stderr and "database or disk is full" in result.stderr
    assert "were sent" in result.stderr


def test_reconcile_still_arms_the_stop_when_the_store_cannot_write(
    live: Path, runner: CliRunner, fake_aster: FakeAster
) -> None:
    fake_aster.set_position(USER, "BTCUSDT", "0.020")
    fill_the_disk(live)
    result = run_once(runner)
    (armed,) = protective(fake_aster)["STOP_MARKET"]
    assert armed.side == "SELL" and armed.close_position and fake_aster.positions(USER) == {"BTCUSDT": Decimal("0.020")}
    assert result.exit_code == 1  # the cycle could not be recorded: reported loudly, after the stop
    assert "database or disk is full" in result.stderr


# ---- 4. an unprotected position is never a quiet cycle --------------------------------------------------------


def test_a_position_left_without_a_stop_is_an_error_in_the_cycle_status_and_exit_code(
    live: Path, runner: CliRunner, fake_aster: FakeAster, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_aster.set_position(USER, "BTCUSDT", "0.020")
    fake_aster.reject_order({"type": "STOP_MARKET"}, -1000, "An unknown error occurred.", times=10)
    fake_aster.reject_order({"type": "MARKET"}, -1000, "An unknown error occurred.", times=10)
    result = run_once(runner)
    assert result.exit_code == 3, result.output
    assert fake_aster.positions(USER) == {"BTCUSDT": Decimal("0.020")} and protective(fake_aster)["STOP_MARKET"] == []
    (cycle,) = rows(live, "SELECT outcome, reason FROM cycles")
    assert cycle["outcome"] == "unprotected" and "BTCUSDT" in cycle["reason"] and "WITHOUT A STOP" in cycle["reason"]
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (summary,) = [e for e in logged if e["event"] == "cycle"]
    assert summary["level"] == "error" and summary["outcome"] == "unprotected"

    status = invoke(runner, "status", "--json")
    (row,) = json.loads(status.stdout)
    assert row["last_cycle"]["outcome"] == "unprotected"
    screen = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=screen, force_terminal=True, width=80))
    shown = runner.invoke(app, ["status"])
    assert shown.exit_code == 0, shown.output
    text = screen.getvalue()
    assert "UNPROTECTED" in text
    assert re.search(r"\x1b\[1;31mBTCUSDT may be open WITHOUT A STOP", text), text  # in bold red


def test_an_entry_left_without_a_stop_makes_the_cycle_unprotected(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_aster.reject_order({"type": "STOP_MARKET"}, -1000, "An unknown error occurred.", times=10)
    fake_aster.reject_order({"type": "MARKET", "reduceOnly": "true"}, -1000, "An unknown error occurred.", times=10)
    fake_llm.push(answer(decision(buy(fake_aster), asset("ETHUSDT"))))
    result = run_once(runner)
    assert result.exit_code == 3, result.output
    assert "BTCUSDT" in fake_aster.positions(USER) and protective(fake_aster)["STOP_MARKET"] == []
    (cycle,) = rows(live, "SELECT outcome, reason, decision_id FROM cycles")
    assert cycle["outcome"] == "unprotected" and cycle["reason"].startswith("BTCUSDT may be open WITHOUT A STOP")
    (recorded,) = rows(live, "SELECT execution FROM decisions WHERE id = ?", cycle["decision_id"])
    assert recorded["execution"] == "emergency"

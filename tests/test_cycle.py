"""The scheduled cycle (reconcile, guards, decide, record) against the fake venue and the fake model, in paper
and live mode, with a clock the test moves (nothing waits for real time).

Every cycle builds its services afresh, as a restart would: what carries over is only what the store and the
venue hold. Each case asserts the recorded cycle, the venue's own records, and the model calls made.
"""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from llmtrader.cycle.manual import resume_account
from llmtrader.cycle.run import CycleResult, reconcile, record_skipped_cycle, run_cycle
from llmtrader.cycle.services import Services
from llmtrader.exchange.base import OrderRequest, OrderType, Side
from llmtrader.storage import reader
from llmtrader.storage.store import Store
from tests.conftest import USER
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision, error
from tests.helpers import FakeClock as Clock
from tests.helpers import cycle, long_btc, with_services

T = TypeVar("T")
DAY_MS = 86_400_000
MINUTE_MS = 60_000


@pytest.fixture
def clock() -> Clock:
    return Clock()


def rows(db: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def recorded(db: Path, result: CycleResult) -> dict[str, Any]:
    """The cycles row of ``result`` (the newest of its account)."""
    conn = sqlite3.connect(db)
    try:
        return reader.last_cycles(conn)[result.account]
    finally:
        conn.close()


def paper_orders(clock: Clock) -> list[Any]:
    return with_services(clock, lambda s: s.exchange.open_orders())


# ---- reconcile --------------------------------------------------------------------------------------------


def test_paper_restart_rearms_a_vanished_stop_at_the_recorded_level(
    paper: Path, clock: Clock, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    opened = cycle(clock)
    assert opened.outcome == "traded" and opened.reason is None and opened.reconcile == []
    assert opened.equity_usd == pytest.approx(10_000) and not opened.cached
    (sl_row,) = rows(paper, "SELECT * FROM orders WHERE decision_id = ? AND leg = 'sl'", opened.decision_id)
    level = Decimal(json.loads(sl_row["request"])["stopPrice"])

    # The stop vanishes at the venue while the agent is down.
    clock.advance(MINUTE_MS)
    with_services(clock, lambda s: s.exchange.cancel_order("BTCUSDT", sl_row["client_order_id"]))
    assert [o.type for o in paper_orders(clock)] == [OrderType.TAKE_PROFIT_MARKET]

    clock.advance(MINUTE_MS)
    restarted = cycle(clock)
    rearmed = [n for n in restarted.reconcile if n.startswith("re-armed the stop-loss of BTCUSDT")]
    assert len(rearmed) == 1 and f"at {level} (the last recorded stop, stop-loss order" in rearmed[0]
    stops = [o for o in paper_orders(clock) if o.type is OrderType.STOP_MARKET]
    assert len(stops) == 1 and stops[0].stop_price == level and stops[0].close_position
    assert stops[0].side is Side.SELL and stops[0].raw["workingType"] == "MARK_PRICE"
    # the stop links to an audit record: a decision made by reconcile, not by the model
    (protector,) = rows(paper, "SELECT * FROM decisions WHERE model = 'reconcile'")
    assert protector["execution"] == "executed" and protector["outcome"] == "manual"
    assert stops[0].client_order_id.startswith(f"lt_{protector['id']}_BTCUSDT_sl")
    # the cancelled stop's row is marked with what the venue says
    (row,) = rows(paper, "SELECT status FROM orders WHERE id = ?", sl_row["id"])
    assert row["status"] == "canceled"
    assert any(sl_row["client_order_id"] in n and "marked canceled" in n for n in restarted.reconcile)
    assert restarted.outcome == "held"  # the fake model holds by default
    assert recorded(paper, restarted)["reconcile"] == restarted.reconcile

    # nothing left to do at the next cycle
    clock.advance(MINUTE_MS)
    assert cycle(clock).reconcile == []


def test_live_unknown_position_is_adopted_and_protected(
    live: Path, clock: Clock, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_aster.set_position(USER, "ETHUSDT", "0.5")
    mark = fake_aster.mark_price("ETHUSDT")
    result = cycle(clock)
    adopted = [n for n in result.reconcile if n.startswith("adopted ETHUSDT long 0.5")]
    assert len(adopted) == 1
    rearmed = [n for n in result.reconcile if n.startswith("re-armed the stop-loss of ETHUSDT")]
    assert len(rearmed) == 1 and "6 x ATR14" in rearmed[0] and "of 1h from the mark" in rearmed[0]
    (stop,) = [o for o in fake_aster.open_orders(USER) if o.symbol == "ETHUSDT"]
    assert stop.orig_type == "STOP_MARKET" and stop.side == "SELL" and stop.close_position
    assert stop.working_type == "MARK_PRICE" and mark * Decimal("0.8") < stop.stop_price < mark
    events = rows(live, "SELECT * FROM execution_events WHERE kind = 'adopted'")
    assert [e["symbol"] for e in events] == ["ETHUSDT"] and "no record of opening" in events[0]["message"]
    assert result.outcome == "held" and len(fake_llm.requests) == 1

    # adopted once: the next cycle knows the position, and it is protected
    clock.advance(MINUTE_MS)
    assert cycle(clock).reconcile == []


def test_live_stop_that_cannot_be_placed_closes_the_position(
    live: Path, clock: Clock, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_aster.set_position(USER, "BTCUSDT", "0.02")
    fake_aster.reject_order({"type": "STOP_MARKET"}, -2021, "Order would immediately trigger.", times=5)
    result = cycle(clock)
    emergencies = [n for n in result.reconcile if n.startswith("EMERGENCY: the stop-loss of BTCUSDT")]
    assert len(emergencies) == 1 and "position closed" in emergencies[0]
    assert fake_aster.positions(USER) == {}
    (protector,) = rows(live, "SELECT * FROM decisions WHERE model = 'reconcile'")
    assert protector["execution"] == "emergency"
    kinds = [e["kind"] for e in rows(live, "SELECT kind FROM execution_events WHERE decision_id = ?", protector["id"])]
    assert "emergency" in kinds
    legs = rows(live, "SELECT leg, status FROM orders WHERE decision_id = ? ORDER BY id", protector["id"])
    assert ("em", "filled") in [(r["leg"], r["status"]) for r in legs]
    assert result.outcome == "held"  # the cycle went on with a flat account


def test_orders_the_venue_no_longer_has_are_marked(live: Path, clock: Clock, fake_aster: FakeAster) -> None:
    async def lost_answers(services: Services) -> None:
        log = services.store.execution_log("default", "live", clock.now_ms)
        # an order the venue never heard of, believed acknowledged
        ghost = OrderRequest("ETHUSDT", Side.SELL, OrderType.TAKE_PROFIT_MARKET, "lt_ghost_ETHUSDT_tp",
                             stop_price=Decimal(5000), close_position=True)  # fmt: skip
        row = log.order_sending(decision_id="ghost", symbol="ETHUSDT", leg="tp", request=ghost)
        log.order_result(row, status="acknowledged")
        # an entry sent just before a crash: it filled, but its answer was never recorded
        entry = OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, "lt_crash_BTCUSDT_en", quantity=Decimal("0.01"))
        log.order_sending(decision_id="crash", symbol="BTCUSDT", leg="en", request=entry)
        await services.exchange.place_order(entry)

    with_services(clock, lost_answers)
    clock.advance(MINUTE_MS)
    result = cycle(clock)
    statuses = {r["client_order_id"]: r["status"] for r in rows(live, "SELECT client_order_id, status FROM orders")}
    assert statuses["lt_ghost_ETHUSDT_tp"] == "vanished" and statuses["lt_crash_BTCUSDT_en"] == "filled"
    assert any("lt_ghost_ETHUSDT_tp" in n and "has no such order: marked vanished" in n for n in result.reconcile)
    assert any("lt_crash_BTCUSDT_en" in n and "says FILLED: marked filled" in n for n in result.reconcile)
    # the entry is llmtrader's own once found filled: protected, not adopted
    assert not any(n.startswith("adopted") for n in result.reconcile)
    assert any(n.startswith("re-armed the stop-loss of BTCUSDT") for n in result.reconcile)
    events = rows(live, "SELECT kind, decision_id FROM execution_events WHERE kind = 'reconcile' ORDER BY id")
    assert {e["decision_id"] for e in events} == {"ghost", "crash"}


def test_a_reconcile_that_found_the_orders_agreeing_looks_again_when_the_venue_or_the_store_changes(
    live: Path, clock: Clock, fake_aster: FakeAster
) -> None:
    """One agent (one set of services) reconciles every cycle, and every pass compares the rows with the
    venue: an order cancelled at the venue, or a row another process rewrote, is marked at the next pass."""

    def target(cid: str, price: int) -> OrderRequest:
        return OrderRequest("ETHUSDT", Side.SELL, OrderType.TAKE_PROFIT_MARKET, cid, stop_price=Decimal(price),
                            close_position=True)  # fmt: skip

    async def agent(services: Services) -> list[list[str]]:
        log = services.store.execution_log("default", "live", clock.now_ms)
        # An entry of llmtrader's rests below the mark: the targets are its, not stale ones reconcile cancels.
        await services.exchange.place_order(OrderRequest("ETHUSDT", Side.BUY, OrderType.LIMIT, "lt_e_ETHUSDT_en",
                                                         quantity=Decimal("0.1"), price=Decimal(100),
                                                         time_in_force="GTC"))  # fmt: skip
        for cid, price in (("lt_a_ETHUSDT_tp", 5000), ("lt_b_ETHUSDT_tp", 5100)):
            row = log.order_sending(decision_id=cid[3], symbol="ETHUSDT", leg="tp", request=target(cid, price))
            state = await services.exchange.place_order(target(cid, price))
            log.order_result(row, status="acknowledged", state=state)
        passes = [await reconcile(services, clock.now_ms()), await reconcile(services, clock.now_ms())]
        # The venue side: cancelled there, behind the agent's back.
        await services.exchange.cancel_order("ETHUSDT", "lt_a_ETHUSDT_tp")
        passes.append(await reconcile(services, clock.now_ms()))
        passes.append(await reconcile(services, clock.now_ms()))  # agreeing again
        # The store side: another process rewrote a row the venue still lists.
        other = sqlite3.connect(live)
        with other:
            other.execute("UPDATE orders SET status = 'sending' WHERE client_order_id = 'lt_b_ETHUSDT_tp'")
        other.close()
        passes.append(await reconcile(services, clock.now_ms()))
        passes.append(await reconcile(services, clock.now_ms()))
        return passes

    first, second, cancelled, settled, rewritten, after = with_services(clock, agent)
    assert first == second == settled == after == []
    assert cancelled == ["order lt_a_ETHUSDT_tp (ETHUSDT tp) was acknowledged in the store; the venue says CANCELED: "
                         "marked canceled"]  # fmt: skip
    assert rewritten == ["order lt_b_ETHUSDT_tp (ETHUSDT tp) was sending in the store; the venue lists it open: "
                         "marked acknowledged"]  # fmt: skip
    statuses = {r["client_order_id"]: r["status"] for r in rows(live, "SELECT client_order_id, status FROM orders")}
    assert statuses == {"lt_a_ETHUSDT_tp": "canceled", "lt_b_ETHUSDT_tp": "acknowledged"}


def test_reconcile_failure_skips_the_cycle_and_leaves_positions(
    live: Path, clock: Clock, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_aster.set_position(USER, "BTCUSDT", "0.02")
    fake_aster.fail("/fapi/v3/positionRisk", 503, msg="maintenance", times=20)

    async def go(services: Services) -> CycleResult:
        services.exchange.BACKOFF_S = 0.001  # type: ignore[attr-defined]
        return await run_cycle(services)

    result = with_services(clock, go)
    assert result.outcome == "skipped" and result.reason is not None
    assert result.reason.startswith("reconcile failed, positions left as they are") and "503" in result.reason
    assert result.equity_usd is None and fake_llm.requests == []
    assert fake_aster.positions(USER) == {"BTCUSDT": Decimal("0.02")} and fake_aster.order_posts() == []
    assert recorded(live, result)["outcome"] == "skipped"


def test_reconcile_in_a_dry_run_places_nothing(live: Path, clock: Clock, fake_aster: FakeAster) -> None:
    fake_aster.set_position(USER, "BTCUSDT", "0.02")
    notes = with_services(clock, lambda s: reconcile(s, clock.now_ms(), dry_run=True))
    assert any(n.startswith("BTCUSDT has no stop-loss; dry run: none placed") for n in notes)
    assert fake_aster.order_posts() == []


# ---- kill switches, budget, circuit breaker ----------------------------------------------------------------


def seed_equity(db: Path, equity: float, at_ms: int) -> None:
    """An earlier cycle that saw ``equity`` (as a previous day's run would have recorded it)."""
    store = Store(db)
    try:
        store.record_cycle(account="default", started_ms=at_ms, finished_ms=at_ms + 500, outcome="held",
                           reason=None, decision_id=None, equity_usd=equity, cached=False, reconcile=[])  # fmt: skip
    finally:
        store.close()


def test_daily_loss_switch_refuses_openings(
    paper: Path, clock: Clock, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 10,000 now against 10,600 at midnight: 5.7% down, past the 5% switch but inside the strategy's own 10%.
    monkeypatch.setenv("DAILY_LOSS_KILL_PCT", "5")
    midnight = clock.now - clock.now % DAY_MS
    seed_equity(paper, 10_600, midnight - 3_600_000)
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    result = cycle(clock)
    # ETHUSDT's hold stands, so the decision is not all rejected: held, saying why nothing opened
    assert result.outcome == "held" and (result.reason or "").startswith("openings refused: daily loss switch")
    assert paper_orders(clock) == []
    (asset_row,) = rows(paper, "SELECT * FROM asset_decisions WHERE symbol = 'BTCUSDT'")
    assert asset_row["status"] == "rejected" and "daily loss switch" in asset_row["reasons"]
    assert [e["kind"] for e in rows(paper, "SELECT kind FROM guard_events")] == ["daily_loss_stop"]


def test_the_daily_loss_switch_cancels_llmtraders_resting_entries_and_leaves_the_owners(
    live: Path, clock: Clock, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry resting from an earlier decision would open a position when it fills, after the switch
    tripped: it is cancelled; the owner's own order (no llmtrader client id) is left alone."""

    def entry(cid: str) -> OrderRequest:
        return OrderRequest("ETHUSDT", Side.BUY, OrderType.LIMIT, cid, quantity=Decimal("0.1"), price=Decimal(100),
                            time_in_force="GTC")  # fmt: skip

    async def place(services: Services) -> None:
        await services.exchange.place_order(entry("lt_e_ETHUSDT_en"))
        await services.exchange.place_order(entry("owners-own-order"))

    with_services(clock, place)
    monkeypatch.setenv("DAILY_LOSS_KILL_PCT", "5")
    midnight = clock.now - clock.now % DAY_MS
    seed_equity(live, 10_600, midnight - 3_600_000)
    result = cycle(clock)
    assert (result.reason or "").startswith("openings refused: daily loss switch")
    assert [o.client_order_id for o in fake_aster.open_orders(USER)] == ["owners-own-order"]
    assert any(n.startswith("cancelled the resting entry lt_e_ETHUSDT_en of ETHUSDT") for n in result.reconcile)
    events = rows(live, "SELECT kind, symbol, message FROM execution_events WHERE kind = 'cancel'")
    assert [(e["symbol"], "lt_e_ETHUSDT_en" in e["message"]) for e in events] == [("ETHUSDT", True)]


def test_drawdown_closes_everything_and_holds_until_resume(
    live: Path, clock: Clock, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    assert cycle(clock).outcome == "traded"
    assert list(fake_aster.positions(USER)) == ["BTCUSDT"]

    fake_aster.set_balance(USER, 6_000)  # 40% below the peak of 10,000
    clock.advance(MINUTE_MS)
    asked = len(fake_llm.requests)
    stopped = cycle(clock)
    assert stopped.outcome == "skipped" and stopped.reason is not None
    assert stopped.reason.startswith("maximum drawdown reached") and "llmtrader resume default" in stopped.reason
    assert fake_aster.positions(USER) == {} and fake_aster.open_orders(USER) == []
    (closing,) = rows(live, "SELECT * FROM decisions WHERE id = ?", stopped.decision_id)
    assert closing["model"] == "guards" and closing["execution"] == "executed"
    assert len(fake_llm.requests) == asked

    clock.advance(DAY_MS)  # a new day changes nothing: only a person lifts it
    still = cycle(clock)
    assert still.outcome == "skipped" and still.decision_id is None and "maximum drawdown" in (still.reason or "")
    assert len(fake_llm.requests) == asked

    store = Store(live)
    try:
        assert resume_account(store, "default", now_ms=clock.now).resumed
    finally:
        store.close()
    clock.advance(MINUTE_MS)
    resumed = cycle(clock)
    assert resumed.outcome == "held" and len(fake_llm.requests) == asked + 1


def test_spend_budget_holds_without_a_model_call(
    paper: Path, clock: Clock, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAILY_MODEL_BUDGET_USD", "0.001")  # one fake answer costs 0.0012
    assert cycle(clock).outcome == "held"
    clock.advance(MINUTE_MS)
    held = cycle(clock)
    assert held.outcome == "skipped" and (held.reason or "").startswith("daily model budget reached")
    assert held.equity_usd == pytest.approx(10_000) and len(fake_llm.requests) == 1


def test_circuit_breaker_opens_then_half_opens_after_the_cool_down(
    paper: Path, clock: Clock, fake_llm: FakeLLM
) -> None:
    fake_llm.push(*(error(402, "insufficient credits") for _ in range(3)))
    for _ in range(3):
        failed = cycle(clock)
        assert failed.outcome == "model_error" and "402" in (failed.reason or "") and failed.decision_id
        clock.advance(1_000)
    assert len(fake_llm.requests) == 3
    skipped = cycle(clock)
    assert skipped.outcome == "skipped" and (skipped.reason or "").startswith("circuit open until")
    assert len(fake_llm.requests) == 3 and skipped.decision_id is None

    clock.advance(15 * MINUTE_MS)  # the cool-down: one trial call is allowed, and it succeeds
    trial = cycle(clock)
    assert trial.outcome == "held" and len(fake_llm.requests) == 4
    kinds = [e["kind"] for e in rows(paper, "SELECT kind FROM guard_events ORDER BY id")]
    assert kinds == ["circuit_open", "circuit_half_open", "circuit_closed"]


# ---- the decision cache --------------------------------------------------------------------------------------


def test_identical_context_reuses_the_decision_without_a_model_call(
    paper: Path, clock: Clock, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="llmtrader.cycle")
    first = cycle(clock)
    assert first.outcome == "held" and not first.cached and len(fake_llm.requests) == 1
    clock.advance(1)  # same closed candles, same account, same strategy and model
    second = cycle(clock)
    assert second.outcome == "held" and second.cached and len(fake_llm.requests) == 1
    assert recorded(paper, second)["cached"] is True
    (reused,) = rows(paper, "SELECT * FROM decisions WHERE id = ?", second.decision_id)
    assert f"cached: reuses decision {first.decision_id}" in json.loads(reused["notes"])
    assert reused["cost_usd"] is None and reused["parsed"] is not None
    assert rows(paper, "SELECT * FROM llm_calls WHERE decision_id = ?", second.decision_id) == []
    # one summary line per cycle
    lines = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "cycle"]
    assert [(line["outcome"], line.get("cached")) for line in lines] == [("held", None), ("held", True)]
    assert lines[1]["decision_id"] == second.decision_id and lines[1]["account"] == "default"
    assert lines[0]["model"] == "fake/model" and lines[0]["cost_usd"] == pytest.approx(0.0012)


def test_a_cached_decision_is_reused_while_the_circuit_is_open(
    paper: Path, clock: Clock, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIRCUIT_FAILURES", "1")
    assert cycle(clock).outcome == "held"  # cached for the interval
    clock.advance(1)
    monkeypatch.setenv("LLM_MODEL", "fake/other")  # another model: another context, and it fails
    fake_llm.push(error(402, "insufficient credits"))
    assert cycle(clock).outcome == "model_error"
    monkeypatch.setenv("LLM_MODEL", "fake/model")  # the first context again, the circuit open
    clock.advance(1)
    reused = cycle(clock)
    assert reused.outcome == "held" and reused.cached and len(fake_llm.requests) == 2


# ---- outcomes and records ----------------------------------------------------------------------------------


def test_risk_veto_and_exchange_reject(
    live: Path, clock: Clock, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DECISION_CACHE_TTL_S", "0")  # the same context twice: without it, the veto is reused
    mark = fake_aster.mark("BTCUSDT")
    wrong_side = long_btc(fake_aster, sl_price=round(mark * 1.01, 1))  # a long's stop above the mark
    fake_llm.push(answer(decision(wrong_side, long_btc(fake_aster, "ETHUSDT", confidence=0.1))))
    vetoed = cycle(clock)
    assert vetoed.outcome == "risk_veto" and (vetoed.reason or "").startswith("every asset decision was rejected")
    assert "BTCUSDT: " in (vetoed.reason or "") and "ETHUSDT: " in (vetoed.reason or "")
    assert fake_aster.order_posts() == []

    fake_aster.reject_order({"type": "MARKET"}, -2019, "Margin is insufficient.")
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    clock.advance(MINUTE_MS)
    rejected = cycle(clock)
    assert rejected.outcome == "exchange_reject" and "Margin is insufficient" in (rejected.reason or "")
    assert fake_aster.positions(USER) == {} and len(fake_llm.requests) == 2


def test_skipped_cycles_and_the_last_cycle_per_account(paper: Path, clock: Clock) -> None:
    store = Store(paper)
    try:
        overlap = record_skipped_cycle(store, "main", now_ms=clock.now, reason="overlap")
        assert (overlap.outcome, overlap.reason, overlap.duration_ms) == ("skipped", "overlap", 0)
        record_skipped_cycle(store, "other", now_ms=clock.now - 1000, reason="overlap")
        last = store.last_cycle("main")
        assert last is not None and last["outcome"] == "skipped" and last["reason"] == "overlap"
        assert last["reconcile"] == [] and last["cached"] is False and last["equity_usd"] is None
        assert store.last_cycle("nobody") is None
    finally:
        store.close()
    conn = sqlite3.connect(paper)
    try:
        assert list(reader.last_cycles(conn)) == ["main", "other"]
        assert list(reader.last_cycles(conn, ["other", "nobody"])) == ["other"]
    finally:
        conn.close()


def test_day_start_equity_comes_from_cycles_too(paper: Path, clock: Clock) -> None:
    from llmtrader.storage.facts import account_facts

    midnight = clock.now - clock.now % DAY_MS
    store = Store(paper)
    try:
        assert account_facts(store, "default", clock.now).day_start_equity is None
        seed_equity(paper, 9_000, midnight + 60_000)  # the first equity of today, before any decision
        assert account_facts(store, "default", clock.now).day_start_equity == 9_000
        seed_equity(paper, 8_000, midnight - 60_000)  # the last one before midnight wins
        assert account_facts(store, "default", clock.now).day_start_equity == 8_000
    finally:
        store.close()

"""Execution on the live adapter against the fake AsterDEX venue, over real HTTP with real signatures.

Every fault the venue can throw at an order is injected: 5xx, timeouts, 503 after the order was applied,
429, -2019, -4164, -1111, -4225, and a stop-loss rejected after the entry filled. The assertions are the
safety rules: no order is ever applied twice, no position is left without a stop, every amendment and
rejection is recorded, and no secret reaches the store.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmtrader.core.decision import Action, AssetDecision, RiskLevel
from llmtrader.cycle.execution import client_order_id
from llmtrader.errors import VenueBanned, VenueUnavailable
from llmtrader.exchange.base import OrderType
from llmtrader.exchange.credentials import V1Credentials
from tests.fakes.aster import FakeAster
from tests.helpers import KEY, SIGNER, USER, V1_KEY, V1_SECRET, Harness, buy, protected

ORDER = "/fapi/v3/order"


@pytest.fixture
def venue(fake_aster: FakeAster) -> FakeAster:
    fake_aster.add_v3_account(USER, SIGNER)
    fake_aster.set_balance(USER, 10_000)
    return fake_aster


@pytest.fixture
def harness(venue: FakeAster, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(venue, tmp_path / "t.db")
    yield h
    h.store.close()


def other(symbol: str, action: Action, **kw: Any) -> AssetDecision:
    base: dict[str, Any] = {"allocation_usd": 0, "leverage": 1}
    base.update(kw)
    return AssetDecision(symbol=symbol, action=action, rationale="t", confidence=0.8, risk_level=RiskLevel.LOW, **base)


def assert_never_naked(venue: FakeAster) -> None:
    for symbol in venue.positions(USER):
        assert protected(venue, symbol)["STOP_MARKET"], f"{symbol} is open without a stop"


def test_a_long_is_entered_then_protected_and_every_leg_is_recorded(harness: Harness, venue: FakeAster) -> None:
    did, report = harness.run(buy(venue))
    (btc,) = report.assets
    assert btc.outcome == "executed" and report.summary == "executed"
    assert [leg.name for leg in btc.legs] == ["margin", "leverage", "en", "sl", "tp"]
    assert venue.leverage(USER, "BTCUSDT") == 3 and venue.margin_type(USER, "BTCUSDT") == "ISOLATED"
    qty = venue.positions(USER)["BTCUSDT"]
    assert qty > 0 and qty * venue.mark_price("BTCUSDT") <= Decimal(3000)  # allocation x leverage, rounded down
    stops = protected(venue, "BTCUSDT")
    (sl,) = stops["STOP_MARKET"]
    (tp,) = stops["TAKE_PROFIT_MARKET"]
    assert sl.close_position and sl.working_type == "MARK_PRICE" and sl.side == "SELL"
    assert tp.close_position and tp.side == "SELL"
    assert sl.stop_price % Decimal("0.1") == 0 and sl.stop_price >= Decimal(str(venue.mark("BTCUSDT") * 0.98))
    rows = harness.orders(did)
    assert [(r["leg"], r["status"]) for r in rows] == [("en", "filled"), ("sl", "acknowledged"), ("tp", "acknowledged")]
    assert rows[0]["client_order_id"] == client_order_id(did, "BTCUSDT", "en")
    assert Decimal(rows[0]["executed_qty"]) == qty and rows[0]["order_id"]
    for leg in ("en", "sl", "tp"):
        assert venue.applied_orders(client_order_id(did, "BTCUSDT", leg)) == 1


def test_the_quantity_amendment_is_recorded_beside_the_decision(harness: Harness, venue: FakeAster) -> None:
    did, _ = harness.run(buy(venue))
    amendments = [m for kind, m in harness.events(did) if kind == "amendment"]
    assert any(m.startswith("en: quantity ") and "(stepSize 0.001)" in m for m in amendments)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda v: v.fail(ORDER, 503, code=-1006, msg="unknown", method="POST", after_apply=True),
                     id="503-after-apply"),
        pytest.param(lambda v: v.fail(ORDER, 500, method="POST", after_apply=True), id="500-after-apply"),
        pytest.param(lambda v: v.stall(ORDER, 1.0, method="POST", after_apply=True), id="timeout-after-apply"),
    ],
)  # fmt: skip
def test_an_applied_order_whose_reply_is_lost_is_looked_up_never_sent_again(
    venue: FakeAster, tmp_path: Path, fault: Any
) -> None:
    harness = Harness(venue, tmp_path / "t.db", timeout_s=0.4)
    fault(venue)
    did, report = harness.run(buy(venue))
    entry = client_order_id(did, "BTCUSDT", "en")
    assert len(venue.order_posts(entry)) == 1 and venue.applied_orders(entry) == 1
    assert report.assets[0].outcome == "executed"
    assert harness.orders(did)[0]["status"] == "filled"  # the lookup found it filled
    assert_never_naked(venue)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda v: v.fail(ORDER, 500, method="POST"), id="500-not-applied"),
        pytest.param(lambda v: v.fail(ORDER, 503, code=-1007, msg="timeout", method="POST"), id="503-not-applied"),
        pytest.param(lambda v: v.stall(ORDER, 1.0, method="POST", after_apply=False), id="timeout-not-applied"),
        pytest.param(lambda v: v.fail(ORDER, 429, code=-1003, msg="too many", method="POST",
                                      headers={"Retry-After": "2"}), id="429"),
    ],
)  # fmt: skip
def test_a_confirmed_absence_allows_exactly_one_new_attempt(venue: FakeAster, tmp_path: Path, fault: Any) -> None:
    harness = Harness(venue, tmp_path / "t.db", timeout_s=0.4)
    fault(venue)
    did, report = harness.run(buy(venue))
    entry = client_order_id(did, "BTCUSDT", "en")
    assert len(venue.order_posts(entry)) == 2 and venue.applied_orders(entry) == 1
    assert report.assets[0].outcome == "executed"
    assert_never_naked(venue)


def test_an_order_still_queued_at_the_first_lookup_is_found_by_a_later_one_not_sent_again(
    venue: FakeAster, tmp_path: Path
) -> None:
    # The entry waits 1 s in the venue's queue; the client times out at 0.3 s and looks it up at 0.6 s
    # (absent), then at 1.2 s (found). One lookup and a re-send would have bought twice.
    harness = Harness(venue, tmp_path / "t.db", timeout_s=0.3, real_sleep=True)
    venue.queue(ORDER, 1.0, method="POST")
    did, report = harness.run(buy(venue))
    entry = client_order_id(did, "BTCUSDT", "en")
    assert len(venue.order_posts(entry)) == 1 and venue.applied_orders(entry) == 1
    assert report.assets[0].outcome == "executed"
    assert_never_naked(venue)


def test_429_waits_as_long_as_the_venue_asks(venue: FakeAster, tmp_path: Path) -> None:
    harness = Harness(venue, tmp_path / "t.db")
    venue.fail(ORDER, 429, code=-1003, msg="too many", method="POST", headers={"Retry-After": "2"})
    harness.run(buy(venue))
    assert 2.0 in harness.sleeps


def test_an_unknown_outcome_that_cannot_be_looked_up_is_never_resent_and_still_protected(
    venue: FakeAster, tmp_path: Path
) -> None:
    harness = Harness(venue, tmp_path / "t.db", timeout_s=0.4)
    venue.fail(ORDER, 503, code=-1006, msg="unknown", method="POST", after_apply=True)
    venue.fail(ORDER, 500, method="GET", times=10)  # every lookup fails too
    did, report = harness.run(buy(venue))
    entry = client_order_id(did, "BTCUSDT", "en")
    assert len(venue.order_posts(entry)) == 1 and venue.applied_orders(entry) == 1
    assert harness.orders(did)[0]["status"] == "unknown"
    assert_never_naked(venue)  # the stop was placed although the entry's outcome was unknown
    assert report.assets[0].outcome == "partial"  # not "executed": the user is told to check
    assert any("may or may not exist" in m for _, m in harness.events(did))


@pytest.mark.parametrize(
    ("code", "msg"),
    [(-2019, "Margin is insufficient."), (-4164, "Order's notional must be no smaller than 5.0"),
     (-1111, "Precision is over the maximum defined for this asset.")],
)  # fmt: skip
def test_a_rejected_entry_is_recorded_with_the_venue_code_and_nothing_else_is_sent(
    harness: Harness, venue: FakeAster, code: int, msg: str
) -> None:
    venue.reject_order({"type": "MARKET"}, code, msg)
    did, report = harness.run(buy(venue))
    assert report.assets[0].outcome == "rejected" and report.summary == "failed"
    rows = harness.orders(did)
    assert [(r["leg"], r["status"], r["venue_code"]) for r in rows] == [("en", "rejected", code)]
    assert rows[0]["venue_message"] == msg
    assert any(kind == "rejection" and msg in m for kind, m in harness.events(did))
    assert venue.positions(USER) == {} and venue.open_orders(USER) == []


def test_an_order_below_the_minimum_notional_is_not_sent_and_the_reason_is_recorded(
    harness: Harness, venue: FakeAster
) -> None:
    did, report = harness.run(buy(venue, "DOGEUSDT", allocation=1, leverage=2))  # 2 USD of notional < 5
    assert report.assets[0].outcome == "rejected"
    (row,) = harness.orders(did)
    assert row["status"] == "not_sent" and "below the minimum 5" in row["venue_message"]
    assert venue.order_posts() == []


def test_margin_above_the_available_balance_is_not_sent(harness: Harness, venue: FakeAster) -> None:
    venue.set_balance(USER, 100)
    did, _report = harness.run(buy(venue, allocation=1000, leverage=2))
    (row,) = harness.orders(did)
    assert row["status"] == "not_sent" and "needs margin" in row["venue_message"]
    assert venue.order_posts() == []


def test_a_rejected_nonce_gets_a_fresh_nonce_and_one_new_attempt(harness: Harness, venue: FakeAster) -> None:
    venue.fail(ORDER, 400, code=-4225, msg="Nonce Expired", method="POST")
    did, report = harness.run(buy(venue))
    entry = client_order_id(did, "BTCUSDT", "en")
    assert len(venue.order_posts(entry)) == 2 and venue.applied_orders(entry) == 1
    assert report.assets[0].outcome == "executed"
    nonces = venue.nonces[SIGNER]
    assert len(set(nonces)) == len(nonces)  # concurrent legs may arrive out of order, never twice
    first, second = (int(p["nonce"]) for p in venue.order_posts(entry))
    assert second > first  # the new attempt was signed again with a fresh nonce


def test_a_stop_loss_rejected_after_the_entry_filled_flattens_the_position(harness: Harness, venue: FakeAster) -> None:
    venue.reject_order({"type": "STOP_MARKET"}, -1000, "An unknown error occurred while processing the request.", 3)
    did, report = harness.run(buy(venue))
    (btc,) = report.assets
    assert btc.emergency and btc.outcome == "emergency" and report.summary == "emergency"
    assert venue.positions(USER) == {}  # closed reduce-only at once
    assert venue.open_orders(USER) == []  # the take-profit of the closed position was cancelled
    legs = [(r["leg"], r["status"]) for r in harness.orders(did)]
    assert legs[0] == ("en", "filled")
    assert [leg for leg in legs if leg[0].startswith("sl")] == [("sl", "rejected"), ("sl2", "rejected"),
                                                                 ("sl3", "rejected")]  # fmt: skip
    assert ("em", "filled") in legs
    close = venue.order_posts(client_order_id(did, "BTCUSDT", "em"))[0]
    assert close["reduceOnly"] == "true" and close["side"] == "SELL"
    emergencies = [m for kind, m in harness.events(did) if kind == "emergency"]
    assert emergencies and "closing the position reduce-only" in emergencies[0]


def test_a_stop_loss_that_would_trigger_at_once_is_not_retried_before_flattening(
    harness: Harness, venue: FakeAster
) -> None:
    venue.reject_order({"type": "STOP_MARKET"}, -2021, "Order would immediately trigger.", 5)
    _did, report = harness.run(buy(venue))
    assert report.assets[0].emergency and venue.positions(USER) == {}
    assert len([p for p in venue.order_posts() if p["type"] == "STOP_MARKET"]) == 1


def test_a_stop_loss_accepted_on_the_second_try_is_no_emergency(harness: Harness, venue: FakeAster) -> None:
    venue.reject_order({"type": "STOP_MARKET"}, -1000, "busy", 1)
    did, report = harness.run(buy(venue))
    assert report.assets[0].outcome == "executed" and not report.assets[0].emergency
    assert len(protected(venue, "BTCUSDT")["STOP_MARKET"]) == 1
    assert venue.applied_orders(client_order_id(did, "BTCUSDT", "sl2")) == 1


def test_a_failed_take_profit_leaves_the_stop_and_is_recorded(harness: Harness, venue: FakeAster) -> None:
    venue.reject_order({"type": "TAKE_PROFIT_MARKET"}, -1000, "busy", 1)
    did, report = harness.run(buy(venue))
    assert report.assets[0].outcome == "partial" and not report.assets[0].emergency
    assert len(protected(venue, "BTCUSDT")["STOP_MARKET"]) == 1
    assert any(kind == "rejection" and "take-profit not placed" in m for kind, m in harness.events(did))


def test_an_opening_whose_stop_the_price_crossed_while_deciding_is_not_entered(
    harness: Harness, venue: FakeAster
) -> None:
    decided = buy(venue)  # stop 2 % under the mark at decision time
    assert decided.sl_price is not None
    venue.set_mark("BTCUSDT", Decimal(str(decided.sl_price)) - 50)  # then the price fell through the stop
    did, report = harness.run(decided)
    assert report.assets[0].outcome == "rejected"
    assert not [p for p in venue.order_posts() if p["type"] == "MARKET"]  # no entry was sent
    assert venue.positions(USER) == {}
    assert any("not entered: the mark moved" in m and "sl_price" in m for _, m in harness.events(did))


def test_closes_run_before_opens(harness: Harness, venue: FakeAster) -> None:
    venue.set_position(USER, "ETHUSDT", "1.5")
    _did, report = harness.run(buy(venue), other("ETHUSDT", Action.CLOSE_POSITION))
    posts = venue.order_posts()
    assert posts[0]["symbol"] == "ETHUSDT" and posts[0]["reduceOnly"] == "true" and posts[0]["quantity"] == "1.5"
    assert [p["symbol"] for p in posts[1:]] == ["BTCUSDT"] * 3
    assert set(venue.positions(USER)) == {"BTCUSDT"}
    assert {a.symbol: a.outcome for a in report.assets} == {"BTCUSDT": "executed", "ETHUSDT": "executed"}


def test_close_cancels_the_protective_orders_after_the_close(harness: Harness, venue: FakeAster) -> None:
    harness.run(buy(venue))
    did, report = harness.run(other("BTCUSDT", Action.CLOSE_POSITION))
    assert report.assets[0].outcome == "executed"
    assert venue.positions(USER) == {} and venue.open_orders(USER) == []
    assert [r["leg"] for r in harness.orders(did)] == ["cl"]


def test_adjust_orders_places_the_new_stop_before_cancelling_the_old(harness: Harness, venue: FakeAster) -> None:
    first, _ = harness.run(buy(venue))
    old_sl = client_order_id(first, "BTCUSDT", "sl")
    mark = venue.mark("BTCUSDT")
    did, report = harness.run(other("BTCUSDT", Action.ADJUST_ORDERS, sl_price=mark * 0.99))
    assert report.assets[0].outcome == "executed"
    (sl,) = protected(venue, "BTCUSDT")["STOP_MARKET"]
    assert sl.client_order_id == client_order_id(did, "BTCUSDT", "sln")
    assert venue.orders[next(o for o, x in venue.orders.items() if x.client_order_id == old_sl)].status == "CANCELED"
    assert len(protected(venue, "BTCUSDT")["TAKE_PROFIT_MARKET"]) == 1  # the target was not touched


def test_a_rejected_new_stop_keeps_the_old_one(harness: Harness, venue: FakeAster) -> None:
    first, _ = harness.run(buy(venue))
    venue.reject_order({"type": "STOP_MARKET"}, -1000, "busy", 5)
    _did, report = harness.run(other("BTCUSDT", Action.ADJUST_ORDERS, sl_price=venue.mark("BTCUSDT") * 0.99))
    assert report.assets[0].outcome == "rejected"
    (sl,) = protected(venue, "BTCUSDT")["STOP_MARKET"]
    assert sl.client_order_id == client_order_id(first, "BTCUSDT", "sl")


def test_adjust_position_reduces_reduce_only_and_keeps_the_stop(harness: Harness, venue: FakeAster) -> None:
    harness.run(buy(venue, allocation=1000, leverage=3))
    before = venue.positions(USER)["BTCUSDT"]
    did, report = harness.run(other("BTCUSDT", Action.ADJUST_POSITION, allocation_usd=500, leverage=3))
    assert report.assets[0].outcome == "executed"
    after = venue.positions(USER)["BTCUSDT"]
    assert Decimal(0) < after < before
    (post,) = venue.order_posts(client_order_id(did, "BTCUSDT", "rd"))
    assert post["reduceOnly"] == "true" and post["side"] == "SELL"
    assert_never_naked(venue)


def test_assets_fail_independently(harness: Harness, venue: FakeAster) -> None:
    venue.reject_order({"symbol": "ETHUSDT", "type": "MARKET"}, -2019, "Margin is insufficient.")
    _did, report = harness.run(buy(venue), buy(venue, "ETHUSDT"))
    assert {a.symbol: a.outcome for a in report.assets} == {"BTCUSDT": "executed", "ETHUSDT": "rejected"}
    assert report.summary == "partial" and set(venue.positions(USER)) == {"BTCUSDT"}


def test_v1_hmac_keys_work_and_a_stale_timestamp_resyncs_the_clock(venue: FakeAster, tmp_path: Path) -> None:
    venue.add_v1_key(V1_KEY, V1_SECRET)
    harness = Harness(venue, tmp_path / "t.db", credentials=V1Credentials(V1_KEY, V1_SECRET))
    venue.fail("/fapi/v1/order", 400, code=-1021, msg="Timestamp for this request is outside of the recvWindow.",
               method="POST")  # fmt: skip
    did, report = harness.run(buy(venue))
    assert report.assets[0].outcome == "executed"
    assert venue.positions(V1_KEY) and venue.applied_orders(client_order_id(did, "BTCUSDT", "en")) == 1
    sent = [r for r in venue.signed_requests if r.path == "/fapi/v1/order"]
    assert sent and all({k.lower(): v for k, v in r.headers.items()}["x-mbx-apikey"] == V1_KEY for r in sent)


def test_418_stops_every_request_on_the_account(venue: FakeAster, harness: Harness) -> None:
    venue.fail("/fapi/v3/positionRisk", 418, code=-1003, msg="IP banned")

    async def go() -> None:
        ex = harness.exchange()
        try:
            with pytest.raises(VenueBanned, match="banned"):
                await ex.positions()
            before = len(venue.signed_requests)
            with pytest.raises(VenueBanned, match="trading on this account has stopped"):
                await ex.balance()
            assert len(venue.signed_requests) == before  # nothing more was sent
        finally:
            await ex.aclose()
            await ex.market.aclose()

    asyncio.run(go())


def test_used_weight_near_the_limit_waits_for_the_next_minute(venue: FakeAster, harness: Harness) -> None:
    async def go() -> None:
        ex = harness.exchange()
        ex.WEIGHT_LIMIT_1M = 3  # the fake counts one per request: the limit is reached at once
        try:
            for _ in range(4):
                await ex.open_orders("BTCUSDT")
        finally:
            await ex.aclose()
            await ex.market.aclose()

    asyncio.run(go())
    assert any(s > 0.1 for s in harness.sleeps), harness.sleeps


def test_no_secret_reaches_the_store_or_the_orders(harness: Harness, venue: FakeAster) -> None:
    venue.reject_order({"type": "STOP_MARKET"}, -1000, "busy", 1)
    harness.run(buy(venue), buy(venue, "ETHUSDT"))
    conn = sqlite3.connect(harness.store.path)
    secret = KEY.removeprefix("0x")
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in conn.execute(f"SELECT * FROM {table}"):
            for cell in row:
                if isinstance(cell, str):
                    assert secret not in cell.lower() and "signature" not in cell, (table, cell[:80])
    for r in venue.signed_requests:
        assert secret not in (r.query + r.body).lower()


def test_the_open_orders_feed_the_account_state(harness: Harness, venue: FakeAster) -> None:
    harness.run(buy(venue))

    async def go() -> Any:
        ex = harness.exchange()
        try:
            return await asyncio.gather(ex.positions(), ex.open_orders(), ex.balance())
        finally:
            await ex.aclose()
            await ex.market.aclose()

    positions, orders, balance = asyncio.run(go())
    (p,) = positions
    assert p.symbol == "BTCUSDT" and p.side == "long" and p.leverage == 3 and p.liquidation_price is not None
    assert {str(o.type) for o in orders} == {OrderType.STOP_MARKET.value, OrderType.TAKE_PROFIT_MARKET.value}
    assert balance.available < balance.wallet <= Decimal(10_000)


@pytest.mark.parametrize(
    "body",
    [pytest.param([], id="a list"), pytest.param({"orderId": 7, "symbol": "BTCUSDT"}, id="no status")],
)
def test_a_malformed_success_reply_to_an_applied_entry_is_looked_up(
    harness: Harness, venue: FakeAster, body: Any
) -> None:
    venue.fail(ORDER, 200, body=body, method="POST", after_apply=True)
    did, report = harness.run(buy(venue))
    entry = client_order_id(did, "BTCUSDT", "en")
    assert len(venue.order_posts(entry)) == 1 and venue.applied_orders(entry) == 1
    assert report.assets[0].outcome == "executed" and harness.orders(did)[0]["status"] == "filled"
    assert_never_naked(venue)


def test_an_entry_that_expired_unfilled_gets_no_protective_orders(harness: Harness, venue: FakeAster) -> None:
    expired = {"orderId": 99, "clientOrderId": "x", "symbol": "BTCUSDT", "status": "EXPIRED", "side": "BUY",
               "type": "MARKET", "origQty": "0.01", "executedQty": "0", "avgPrice": "0"}  # fmt: skip
    venue.fail(ORDER, 200, body=expired, method="POST")
    did, report = harness.run(buy(venue))
    assert report.assets[0].outcome == "rejected"
    assert [r["leg"] for r in harness.orders(did)] == ["en"]
    assert venue.open_orders(USER) == []


def test_a_margin_type_the_venue_refuses_stops_the_opening(harness: Harness, venue: FakeAster) -> None:
    venue.fail("/fapi/v3/marginType", 400, code=-4168, msg="Isolated margin is not allowed in multi-assets mode.")
    _did, report = harness.run(buy(venue))
    assert report.assets[0].outcome == "rejected"
    assert venue.order_posts() == [] and venue.positions(USER) == {}


def test_adding_to_a_position_without_a_stop_needs_a_stop(harness: Harness, venue: FakeAster) -> None:
    venue.set_position(USER, "BTCUSDT", "0.01")
    did, report = harness.run(other("BTCUSDT", Action.ADJUST_POSITION, allocation_usd=3000, leverage=20))
    assert report.assets[0].outcome == "rejected"
    assert venue.order_posts() == [] and venue.positions(USER) == {"BTCUSDT": Decimal("0.01")}
    assert any("has no stop-loss" in m for _, m in harness.events(did))


def test_a_failed_new_stop_on_a_position_without_one_flattens_it(harness: Harness, venue: FakeAster) -> None:
    venue.set_position(USER, "BTCUSDT", "0.01")
    venue.reject_order({"type": "STOP_MARKET"}, -1000, "busy", 10)
    _did, report = harness.run(other("BTCUSDT", Action.ADJUST_ORDERS, sl_price=venue.mark("BTCUSDT") * 0.98))
    assert report.assets[0].emergency and venue.positions(USER) == {}


def test_a_second_close_position_stop_refused_is_replaced_by_a_reduce_only_one(
    harness: Harness, venue: FakeAster
) -> None:
    _first, _ = harness.run(buy(venue))
    size = venue.positions(USER)["BTCUSDT"]
    message = "An open stop or take profit order with GTE and closePosition in the direction is existing."
    venue.reject_order({"type": "STOP_MARKET", "closePosition": "true"}, -4130, message)
    did, report = harness.run(other("BTCUSDT", Action.ADJUST_ORDERS, sl_price=venue.mark("BTCUSDT") * 0.99))
    assert report.assets[0].outcome == "executed"
    (sl,) = protected(venue, "BTCUSDT")["STOP_MARKET"]
    assert sl.client_order_id == client_order_id(did, "BTCUSDT", "slnq")
    assert sl.reduce_only and not sl.close_position and sl.orig_qty == size


def test_a_429_longer_than_the_cap_is_not_retried_early(harness: Harness, venue: FakeAster) -> None:
    venue.fail("/fapi/v3/balance", 429, code=-1003, msg="too many", headers={"Retry-After": "120"}, times=5)

    async def go() -> None:
        ex = harness.exchange()
        try:
            with pytest.raises(VenueUnavailable, match="for 120 s"):
                await ex.balance()
        finally:
            await ex.aclose()
            await ex.market.aclose()

    asyncio.run(go())
    assert venue.count("/fapi/v3/balance") == 1


def test_a_ban_outlives_the_process_that_hit_it(harness: Harness, venue: FakeAster) -> None:
    venue.fail("/fapi/v3/balance", 418, code=-1003, msg="IP banned", headers={"Retry-After": "600"})

    async def go() -> None:
        for _ in range(2):  # a second exchange object over the same store: a new process
            ex = harness.exchange()
            try:
                with pytest.raises(VenueBanned):
                    await ex.balance()
            finally:
                await ex.aclose()
                await ex.market.aclose()

    asyncio.run(go())
    assert venue.count("/fapi/v3/balance") == 1


def test_protective_orders_never_wait_for_the_weight_budget(harness: Harness, venue: FakeAster) -> None:
    from llmtrader.exchange.base import OrderRequest, Side

    harness.run(buy(venue))

    async def go() -> None:
        ex = harness.exchange()
        await ex.sync_time()
        ex.used_weight_1m, ex._weight_minute = 10_000, ex._now_ms() // 60_000  # far above the limit
        try:
            stop = OrderRequest("BTCUSDT", Side.SELL, OrderType.STOP_MARKET, "lt_manual_sl", close_position=True,
                                stop_price=Decimal(str(round(venue.mark("BTCUSDT") * 0.9, 1))),
                                working_type="MARK_PRICE")  # fmt: skip
            await ex.place_order(stop)
        finally:
            await ex.aclose()
            await ex.market.aclose()

    before = len(harness.sleeps)
    asyncio.run(go())
    assert not [s for s in harness.sleeps[before:] if s > 1]


def test_a_new_opening_cancels_the_symbols_resting_limit_entry(harness: Harness, venue: FakeAster) -> None:
    mark = venue.mark("BTCUSDT")
    first, _ = harness.run(buy(venue, entry_price=round(mark * 0.99, 1)))  # rests below the mark
    resting = client_order_id(first, "BTCUSDT", "en")
    assert [o.client_order_id for o in venue.open_orders(USER) if o.orig_type == "LIMIT"] == [resting]
    did, report = harness.run(buy(venue))
    assert report.assets[0].outcome == "executed"
    assert not [o for o in venue.open_orders(USER) if o.orig_type == "LIMIT"]  # superseded, not stacked
    assert any(kind == "cancel" and resting in m for kind, m in harness.events(did))

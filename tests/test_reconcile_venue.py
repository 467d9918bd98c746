"""Reconcile trusts the venue, not a memo: every pass compares the order rows the store believes open with
what the venue lists, whatever an earlier pass of the same agent found (habit 21: the live path stays simple).
"""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal
from pathlib import Path

from llmtrader.config.load import load_settings
from llmtrader.cycle.compose import build_services, close_services
from llmtrader.cycle.run import reconcile
from llmtrader.cycle.services import Services
from llmtrader.exchange.base import OrderRequest, OrderType, Side
from tests.fakes.aster import FakeAster
from tests.helpers import FakeClock


def _target(cid: str, price: int) -> OrderRequest:
    return OrderRequest("ETHUSDT", Side.SELL, OrderType.TAKE_PROFIT_MARKET, cid, stop_price=Decimal(price),
                        close_position=True)  # fmt: skip


def test_reconcile_compares_the_rows_with_the_venue_at_every_pass_whatever_the_store_counter_says(
    live: Path, fake_aster: FakeAster
) -> None:
    """One agent reconciles twice with the same services. Between the passes another writer rewrites an order
    row without the store's change counter moving (a repair, a restored backup): the venue still lists the
    order open, so the second pass marks the row as the venue says. A pass that skipped the rows because
    "nothing changed since the last agreeing pass" would leave it 'sending'."""
    clock = FakeClock()

    async def agent(services: Services) -> list[list[str]]:
        log = services.store.execution_log("default", "live", clock.now_ms)
        # An entry of llmtrader's rests below the mark: the target is its, not a stale one reconcile cancels.
        await services.exchange.place_order(OrderRequest("ETHUSDT", Side.BUY, OrderType.LIMIT, "lt_e_ETHUSDT_en",
                                                         quantity=Decimal("0.1"), price=Decimal(100),
                                                         time_in_force="GTC"))  # fmt: skip
        row = log.order_sending(decision_id="b", symbol="ETHUSDT", leg="tp", request=_target("lt_b_ETHUSDT_tp", 5100))
        state = await services.exchange.place_order(_target("lt_b_ETHUSDT_tp", 5100))
        log.order_result(row, status="acknowledged", state=state)
        first = await reconcile(services, clock.now_ms())
        other = sqlite3.connect(live)
        with other:
            # the counter is set back by one, and the rewrite's trigger moves it to where the first pass saw it
            other.execute("UPDATE trading_versions SET n = n - 1 WHERE account = 'default'")
            other.execute("UPDATE orders SET status = 'sending' WHERE client_order_id = 'lt_b_ETHUSDT_tp'")
        other.close()
        second = await reconcile(services, clock.now_ms())
        third = await reconcile(services, clock.now_ms())
        return [first, second, third]

    async def go() -> list[list[str]]:
        services = build_services(load_settings(), clock=clock)
        try:
            return await agent(services)
        finally:
            await close_services(services)

    first, second, third = asyncio.run(go())
    assert first == third == []
    assert second == ["order lt_b_ETHUSDT_tp (ETHUSDT tp) was sending in the store; the venue lists it open: "
                      "marked acknowledged"]  # fmt: skip
    conn = sqlite3.connect(live)
    try:
        status = conn.execute("SELECT status FROM orders WHERE client_order_id = 'lt_b_ETHUSDT_tp'").fetchone()[0]
    finally:
        conn.close()
    assert status == "acknowledged"

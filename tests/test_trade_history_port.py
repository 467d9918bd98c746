"""Trade history is a method of the Exchange port: the paper account, the backtest's simulated exchange and the
live venue (the loopback FakeAster) each answer ``trade_history`` with the fills they recorded, so nothing
past the composition root asks which mode it trades in."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmtrader.backtest.data import load_history
from llmtrader.backtest.spec import BacktestSpec
from llmtrader.config.load import load_settings
from llmtrader.config.strategies import load_strategy
from llmtrader.core.trades import TradeFill
from llmtrader.cycle.compose import build_services, close_services
from llmtrader.exchange.base import HistoryRead, OrderRequest, OrderType, Side
from llmtrader.exchange.paper import PaperConfig
from llmtrader.exchange.simulated import SimulatedExchange
from llmtrader.storage.store import Store
from tests.conftest import USER
from tests.fakes.aster import FakeAster
from tests.helpers import rows


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def _buy(cid: str, qty: str = "0.01") -> OrderRequest:
    return OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, cid, quantity=Decimal(qty))


def _history_fills(fills: list[TradeFill]) -> list[tuple[str, str, Decimal, str | None]]:
    return [(f.symbol, f.side, f.qty, f.client_order_id) for f in fills]


def _fills(read: HistoryRead) -> list[tuple[str, str, Decimal, str | None]]:
    return _history_fills(read.history.fills)


def test_the_paper_account_answers_its_trade_history_through_the_port(paper: Path) -> None:
    async def go() -> dict[str, Any]:
        services = build_services(load_settings(None, None), need_model=False)
        try:
            exchange, now = services.exchange, services.clock.now_ms()
            before = await exchange.trade_history(refresh=True, now_ms=now)
            seen = {"before": _fills(before), "said": (before.problem, before.notes)}
            version, _ = before.changes(None)
            await exchange.place_order(_buy("lt_port_BTC_en"))
            after = await exchange.trade_history(refresh=True, now_ms=now)
            new_version, new = after.changes(version)
            return {
                **seen, "after": _fills(after), "balance": after.history.starting_balance,
                "changed": new_version != version, "new": None if new is None else _history_fills(new.fills),
            }  # fmt: skip
        finally:
            await close_services(services)

    seen = asyncio.run(go())
    assert seen["said"] == (None, ()) and seen["before"] == []
    assert seen["after"] == [("BTCUSDT", "BUY", Decimal("0.01"), "lt_port_BTC_en")]
    assert seen["balance"] == Decimal(10_000)
    # What changed since the first read: the one fill, read alone.
    assert seen["changed"] and seen["new"] == seen["after"]


def test_the_simulated_exchange_answers_its_trade_history_through_the_port(perp_dir: Path, tmp_path: Path) -> None:
    first, last = utc("2025-10-01 00:00"), utc("2025-10-01 06:00")
    spec = BacktestSpec(
        data_dir=str(perp_dir), symbols=("BTCUSDT",), interval="1h", start_ms=first, end_ms=last,
        timeframes=("1h", "4h"), model="baseline", strategy="default", balance_usd=10_000.0,
    )  # fmt: skip
    history = load_history(spec, load_strategy("default"))
    store = Store(tmp_path / "backtests.db")
    try:
        start = int(history.steps[0]) + 5_000
        exchange = SimulatedExchange(
            store, history.tapes, history.rules, account="bt-port", balance=Decimal(10_000), config=PaperConfig(),
            start_ms=start,
        )  # fmt: skip

        async def go() -> tuple[list[Any], HistoryRead]:
            before = await exchange.trade_history(refresh=True, now_ms=start)
            assert before.problem is None and before.notes == ()
            seen = _fills(before)
            await exchange.place_order(_buy("lt_sim_BTC_en", "0.001"))
            return seen, await exchange.trade_history(refresh=False, now_ms=start)

        before, after = asyncio.run(go())
        assert before == []
        assert _fills(after) == [("BTCUSDT", "BUY", Decimal("0.001"), "lt_sim_BTC_en")]
        assert after.history.starting_balance == Decimal(10_000)
        # The same rows the store holds for the run.
        assert [r["client_order_id"] for r in rows(store.path, "SELECT * FROM paper_fills")] == ["lt_sim_BTC_en"]
    finally:
        store.close()


def _live_services() -> Any:
    return build_services(load_settings(None, None), need_model=False)


def test_the_live_venue_answers_its_trade_history_through_the_port(live: Path, fake_aster: FakeAster) -> None:
    """AsterDEX syncs the venue's fills into the store when asked to refresh, then reads them back; without a
    refresh it reads what is stored and sends no request."""
    fake_aster.set_balance(USER, 10_000)

    async def go() -> dict[str, Any]:
        services = _live_services()
        try:
            exchange, clock = services.exchange, services.clock
            empty = await exchange.trade_history(refresh=True, now_ms=clock.now_ms())
            await exchange.place_order(_buy("lt_live_BTC_en", "0.002"))
            stored = await exchange.trade_history(refresh=False, now_ms=clock.now_ms())
            seen = {"empty": (empty.problem, _fills(empty)), "stored": _fills(stored)}
            sent = len(fake_aster.signed_requests)
            synced = await exchange.trade_history(refresh=True, now_ms=fake_aster.clock())
            history = synced.history
            return {
                **seen, "problem": synced.problem, "synced": _fills(synced),
                "requests": len(fake_aster.signed_requests) - sent, "since_ms": history.since_ms,
                "balance": history.starting_balance,
            }  # fmt: skip
        finally:
            await close_services(services)

    seen = asyncio.run(go())
    assert seen["empty"] == (None, []) and seen["problem"] is None
    assert seen["stored"] == []  # not synced yet: nothing stored
    assert seen["synced"] == [("BTCUSDT", "BUY", Decimal("0.002"), "lt_live_BTC_en")]
    assert seen["since_ms"] is None and seen["balance"] is None
    assert seen["requests"] > 0  # the refresh asked the venue
    assert len(rows(live, "SELECT * FROM venue_fills")) == 1


def test_a_failed_live_sync_is_the_reads_problem_and_what_is_stored_is_read(live: Path, fake_aster: FakeAster) -> None:
    fake_aster.set_balance(USER, 10_000)
    fake_aster.fail("/fapi/v3/income", 400, code=-1000, msg="income is down", times=5)

    async def go() -> tuple[str | None, tuple[str, ...], list[Any]]:
        services = _live_services()
        try:
            await services.exchange.place_order(_buy("lt_fail_BTC_en", "0.002"))
            read = await services.exchange.trade_history(refresh=True, now_ms=fake_aster.clock())
            return read.problem, read.notes, _fills(read)
        finally:
            await close_services(services)

    problem, notes, fills = asyncio.run(go())
    assert problem is not None and problem.startswith("the venue's trade history could not be read (")
    (note,) = notes
    assert note.startswith("venue history not synced (") and "income is down" in note
    assert note.endswith("); recent trades use what is stored")
    # The trades were synced before the income failed: they are read all the same.
    assert fills == [("BTCUSDT", "BUY", Decimal("0.002"), "lt_fail_BTC_en")]


def test_the_trades_a_process_keeps_equal_a_fresh_rebuild_after_every_fill_and_a_reset(paper: Path) -> None:
    """KeptHistory feeds its ledger only the rows recorded since (HistoryRead.changes); after every fill, and
    after a reset of the paper account (read whole again), its figures are those of a new reading."""
    from llmtrader.cycle.cache import KeptHistory

    async def go() -> list[tuple[bool, int]]:
        services = build_services(load_settings(None, None), need_model=False)
        kept, same = KeptHistory(), []
        try:
            exchange, store, account = services.exchange, services.store, services.settings.account
            sides = [Side.BUY, Side.SELL, Side.SELL, Side.BUY, Side.BUY, Side.SELL]
            for i, side in enumerate(sides):
                if i == 4:
                    await exchange.reset()  # type: ignore[attr-defined]
                request = OrderRequest("BTCUSDT", side, OrderType.MARKET, f"lt_k{i}_BTC_en", quantity=Decimal("0.01"))
                await exchange.place_order(request)
                read = await exchange.trade_history(refresh=False, now_ms=services.clock.now_ms())
                mine = kept.trade_figures(store, account, 5, read)
                same.append((mine == KeptHistory().trade_figures(store, account, 5, read), len(mine[0])))
        finally:
            await close_services(services)
        return same

    # Closed trades: the long, then the short (opened by the 2nd sell) closed; after the reset, from none again.
    assert asyncio.run(go()) == [(True, 0), (True, 1), (True, 1), (True, 2), (True, 0), (True, 1)]

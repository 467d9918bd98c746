"""The live account's history synced from the fake AsterDEX venue, over real HTTP with V3 signatures.

A long is executed through the live adapter, pays and receives funding, and is stopped out at the venue;
the sync stores the venue's fills and funding payments, each fill linked to the decision that sent its
order, and the trade rebuilt from them is what the wallet gained or lost, to the cent.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from typer.testing import CliRunner

from llmtrader.core.times import iso_utc
from llmtrader.core.trades import reconstruct_trades
from llmtrader.cycle.execution import client_order_id
from llmtrader.errors import VenueError
from llmtrader.exchange.asterdex import HISTORY_WINDOW_MS
from llmtrader.exchange.credentials import V1Credentials
from llmtrader.storage.facts import account_history
from llmtrader.storage.venue_history import SyncReport, sync_venue_history
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision
from tests.helpers import KEY, SIGNER, USER, V1_KEY, V1_SECRET, Harness, buy, decide, long_btc, protected, show

CENT = Decimal("0.01")
E8 = Decimal("1e-8")


@pytest.fixture
def venue(fake_aster: FakeAster) -> FakeAster:
    fake_aster.add_v3_account(USER, SIGNER)
    fake_aster.set_balance(USER, 10_000)
    return fake_aster


@pytest.fixture
def harness(venue: FakeAster, tmp_path: Path) -> Any:
    h = Harness(venue, tmp_path / "t.db")
    yield h
    h.store.close()


def sync(h: Harness, symbols: tuple[str, ...] = ("BTCUSDT",), **kw: Any) -> SyncReport:
    async def go() -> SyncReport:
        ex = h.exchange()
        try:
            return await sync_venue_history(ex, h.store, "main", symbols, h.venue.clock(), **kw)
        finally:
            await ex.aclose()
            await ex.market.aclose()

    return asyncio.run(go())


def rows(h: Harness, table: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(h.store.path)
    conn.row_factory = sqlite3.Row
    return [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY id")]


def tick() -> None:
    """Let the venue's millisecond clock move on, so that two events never share a moment."""
    time.sleep(0.003)


def stop_out(venue: FakeAster, symbol: str = "BTCUSDT") -> Decimal:
    """Move the mark through the position's stop (which fills at its stop price); the stop price."""
    (stop,) = protected(venue, symbol)["STOP_MARKET"]
    venue.set_mark(symbol, stop.stop_price - 10)
    assert symbol not in venue.positions(USER)
    return Decimal(stop.stop_price)


def history_requests(venue: FakeAster, path: str) -> list[dict[str, str]]:
    return [dict(parse_qsl(r.query)) for r in venue.signed_requests if r.path == path]


def test_a_stopped_long_is_rebuilt_from_the_venue_history_to_the_cent(harness: Harness, venue: FakeAster) -> None:
    before = venue.balance(USER)
    did, report = harness.run(buy(venue))
    assert report.summary == "executed"
    tick()
    paid = venue.charge_funding(USER, "BTCUSDT", "0.0001")  # a long pays a positive rate
    tick()
    received = venue.charge_funding(USER, "BTCUSDT", "-0.00005")  # and receives a negative one
    tick()
    stop_price = stop_out(venue)
    after = venue.balance(USER)
    assert paid < 0 < received

    first = sync(harness)
    assert (first.fills_added, first.funding_added, first.complete) == (2, 2, True)
    fills = rows(harness, "venue_fills")
    assert [(f["side"], f["reason"], f["client_order_id"], f["decision_id"]) for f in fills] == [
        ("BUY", "market", client_order_id(did, "BTCUSDT", "en"), did),
        ("SELL", "stop_loss", client_order_id(did, "BTCUSDT", "sl"), did),
    ]
    venue_fills = venue.fills(USER)
    assert [f["trade_id"] for f in fills] == [f.trade_id for f in venue_fills]
    assert [f["order_id"] for f in fills] == [str(f.order_id) for f in venue_fills]
    assert [Decimal(f["fee"]) for f in fills] == [f.commission.quantize(E8) for f in venue_fills]
    assert all(Decimal(f["fee"]) > 0 and f["fee_asset"] == "USDT" and f["maker"] == 0 for f in fills)
    assert Decimal(fills[1]["price"]) == stop_price
    funding = rows(harness, "venue_funding")
    assert [(f["symbol"], Decimal(f["amount"])) for f in funding] == [
        ("BTCUSDT", paid.quantize(E8)),
        ("BTCUSDT", received.quantize(E8)),
    ]

    again = sync(harness)  # nothing new at the venue: nothing new in the store
    assert (again.fills_added, again.funding_added) == (0, 0)
    assert len(rows(harness, "venue_fills")) == 2 and len(rows(harness, "venue_funding")) == 2

    history = account_history(harness.store, "main", "live")
    assert history.since_ms is None and history.starting_balance is None
    (trade,) = reconstruct_trades(history.fills, history.funding)
    assert trade.side == "long" and not trade.is_open and trade.closing_reason == "stop_loss"
    assert trade.decision_ids() == (did,)
    # The venue reports each fee and funding payment to 8 decimals: the trade adds those (the sum of the
    # rounded amounts, which the rounded sum of the exact ones can miss by 1e-8).
    assert trade.funding == paid.quantize(E8) + received.quantize(E8)
    assert trade.fees == sum((f.commission.quantize(E8) for f in venue_fills), Decimal(0))
    assert trade.reported_pnl == trade.gross_pnl  # the venue's realized PnL agrees with the rebuilt one
    assert trade.net_pnl.quantize(CENT) == (after - before).quantize(CENT)
    assert abs(trade.net_pnl - (after - before)) < Decimal("1e-6")

    # the store holds the venue's business fields only: no key, anywhere
    conn = sqlite3.connect(harness.store.path)
    text = "\n".join(
        str(value)
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        for row in conn.execute(f"SELECT * FROM {table}")
        for value in row
    )
    assert KEY.lower().removeprefix("0x") not in text.lower()
    assert "signature" not in text and "nonce" not in text


def test_history_is_paged_by_id_and_read_in_windows_of_at_most_7_days(harness: Harness, venue: FakeAster) -> None:
    decisions = []
    for n in range(3):
        did, report = harness.run(buy(venue))
        assert report.summary == "executed"
        decisions.append(did)
        if n == 0:
            for rate in ("0.0001", "0.0002", "-0.0001", "0.00005", "0.0003"):
                tick()
                venue.charge_funding(USER, "BTCUSDT", rate)
        tick()
        stop_out(venue)
    # llmtrader's first live order on the account, 20 days ago: the history is read from there
    with sqlite3.connect(harness.store.path) as conn:
        conn.execute("UPDATE orders SET created_at = ? WHERE id = 1", [iso_utc(venue.clock() - 20 * 86_400_000)])

    report = sync(harness, ("BTCUSDT", "ETHUSDT"), limit=2)
    assert report.complete and report.fills_added == 6 and report.funding_added == 5
    trades = history_requests(venue, "/fapi/v3/userTrades")
    btc = [q for q in trades if q["symbol"] == "BTCUSDT"]
    # three windows to find the first trade, then pages of 2 by id until one comes back short
    assert [("startTime" in q, "fromId" in q) for q in btc] == [(True, False)] * 3 + [(False, True)] * 3
    assert [q["fromId"] for q in btc[3:]] == [str(venue.fills(USER)[i].trade_id) for i in (2, 4)] + [
        str(venue.fills(USER)[-1].trade_id + 1)
    ]
    windows = [q for q in trades + history_requests(venue, "/fapi/v3/income") if "startTime" in q]
    assert all(int(q["endTime"]) - int(q["startTime"]) < HISTORY_WINDOW_MS for q in windows)
    assert all(r.status == 200 for r in venue.signed_requests if r.method == "GET")
    assert len(history_requests(venue, "/fapi/v3/income")) > 3  # funding came in pages of 2 as well

    fills = rows(harness, "venue_fills")
    assert [f["trade_id"] for f in fills] == [f.trade_id for f in venue.fills(USER)]
    assert [f["decision_id"] for f in fills] == [d for d in decisions for _ in range(2)]
    assert [f["reason"] for f in fills] == ["market", "stop_loss"] * 3
    assert sorted(f["tran_id"] for f in rows(harness, "venue_funding")) == sorted(
        str(i.tran_id) for i in venue.income_rows(USER) if i.income_type == "FUNDING_FEE"
    )
    history = account_history(harness.store, "main", "live")
    trades_rebuilt = reconstruct_trades(history.fills, history.funding)
    assert [t.decision_ids() for t in trades_rebuilt] == [(d,) for d in decisions]
    assert sum(t.net_pnl for t in trades_rebuilt).quantize(CENT) == (venue.balance(USER) - 10_000).quantize(CENT)


def test_a_sync_cut_short_resumes_where_it_stopped(harness: Harness, venue: FakeAster) -> None:
    for _ in range(2):
        harness.run(buy(venue))
        tick()
        stop_out(venue)
    short = sync(harness, limit=1, max_requests=2)
    assert not short.complete and short.requests == 2 and short.fills_added == 2
    assert "the next sync resumes" in short.notes[0]
    rest = sync(harness, limit=1)
    assert rest.complete and rest.fills_added == 2
    assert [f["trade_id"] for f in rows(harness, "venue_fills")] == [f.trade_id for f in venue.fills(USER)]


def test_a_symbol_the_venue_no_longer_lists_is_skipped_with_a_note(harness: Harness, venue: FakeAster) -> None:
    harness.run(buy(venue))
    tick()
    venue.charge_funding(USER, "BTCUSDT", "0.0001")
    report = sync(harness, ("LUNAUSDT", "BTCUSDT"))
    assert not report.complete and report.notes[0].startswith("LUNAUSDT trades not synced: ")
    assert (report.fills_added, report.funding_added) == (1, 1)


def test_a_liquidation_by_the_venue_is_told_from_our_orders(harness: Harness, venue: FakeAster) -> None:
    before = venue.balance(USER)
    did, _ = harness.run(buy(venue))
    tick()
    venue.set_mark("BTCUSDT", venue.mark_price("BTCUSDT") * Decimal("0.99"))
    order = venue.force_close(USER, "BTCUSDT")
    sync(harness)
    entry, liquidation = rows(harness, "venue_fills")
    assert entry["decision_id"] == did and entry["reason"] == "market"
    assert liquidation["reason"] == "liquidation" and liquidation["decision_id"] is None
    assert liquidation["client_order_id"] == order.client_order_id and order.client_order_id.startswith("autoclose-")
    # the order llmtrader did not send was looked up by the venue's id, once
    lookups = [q for q in history_requests(venue, "/fapi/v3/order") if "orderId" in q]
    assert [q["orderId"] for q in lookups] == [str(order.order_id)]
    history = account_history(harness.store, "main", "live")
    (trade,) = reconstruct_trades(history.fills, history.funding)
    assert trade.closing_reason == "liquidation" and trade.decision_ids() == (did,)
    assert trade.net_pnl < 0 and trade.net_pnl.quantize(CENT) == (venue.balance(USER) - before).quantize(CENT)


def test_an_order_whose_answer_was_lost_is_linked_by_its_client_id(harness: Harness, venue: FakeAster) -> None:
    did, _ = harness.run(buy(venue))
    with sqlite3.connect(harness.store.path) as conn:  # as if the entry's reply never came back
        conn.execute("UPDATE orders SET order_id = NULL, status = 'unknown' WHERE leg = 'en'")
    sync(harness)
    (fill,) = rows(harness, "venue_fills")
    assert fill["client_order_id"] == client_order_id(did, "BTCUSDT", "en") and fill["decision_id"] == did
    assert fill["reason"] == "market"


def test_legacy_v1_keys_read_the_history_at_the_v1_paths(venue: FakeAster, tmp_path: Path) -> None:
    venue.add_v1_key(V1_KEY, V1_SECRET)
    h = Harness(venue, tmp_path / "v1.db", credentials=V1Credentials(V1_KEY, V1_SECRET))
    try:
        did, _ = h.run(buy(venue))
        tick()
        paid = venue.charge_funding(V1_KEY, "BTCUSDT", "0.0001")
        report = sync(h)
        assert (report.fills_added, report.funding_added) == (1, 1)
        assert rows(h, "venue_fills")[0]["decision_id"] == did
        assert Decimal(rows(h, "venue_funding")[0]["amount"]) == paid.quantize(E8)
        paths = {r.path for r in venue.signed_requests if r.method == "GET"}
        assert {"/fapi/v1/userTrades", "/fapi/v1/income"} <= paths
        assert not any(p.startswith("/fapi/v3/") for p in paths)
    finally:
        h.store.close()


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/fapi/v3/userTrades", {"code": 200}, "userTrades: the reply is not a list"),
        ("/fapi/v3/userTrades", [{"id": 1, "orderId": 2, "symbol": "BTCUSDT", "side": "BUY", "price": "1",
                                  "qty": "1", "time": 3}], "userTrades: row 0 has no 'commission'"),
        ("/fapi/v3/userTrades", [{"id": 1, "orderId": 2, "symbol": "BTCUSDT", "side": "BUY", "price": "x",
                                  "qty": "1", "commission": "0", "time": 3}], "row 0 has 'x' for 'price'"),
        ("/fapi/v3/income", [{"incomeType": "FUNDING_FEE", "income": "NaN", "time": 1, "tranId": 9}],
         "income: row 0 has 'NaN' for 'income'"),
        ("/fapi/v3/income", [{"incomeType": "FUNDING_FEE", "income": "1", "time": "soon", "tranId": 9}],
         "income: row 0 has 'soon' for 'time'"),
    ],
)  # fmt: skip
def test_a_malformed_history_reply_is_a_venue_error_naming_the_field(
    harness: Harness, venue: FakeAster, path: str, body: Any, expected: str
) -> None:
    venue.fail(path, 200, body=body)
    with pytest.raises(VenueError, match=re.escape(expected)):
        sync(harness)
    assert rows(harness, "venue_fills") == [] and rows(harness, "venue_funding") == []


# ---- the prompt of the next decision ----------------------------------------------------------------------
@pytest.fixture
def live(env: Path, fake_aster: FakeAster, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRADING_MODE", "live")
    monkeypatch.setenv("ASTERDEX_USER", USER)
    monkeypatch.setenv("ASTERDEX_SIGNER", SIGNER)
    monkeypatch.setenv("ASTERDEX_SIGNER_PRIVATE_KEY", KEY)
    monkeypatch.setenv("ASSETS", "BTCUSDT")
    fake_aster.add_v3_account(USER, SIGNER)
    return env


def test_the_next_live_decision_sees_the_trade_the_venue_stopped_out(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster))))
    code, out, stderr = decide(runner, "--yes")
    assert code == 0 and out is not None and out["execution"] == "executed", stderr
    tick()
    fake_aster.charge_funding(USER, "BTCUSDT", "0.0001")
    tick()
    stop_out(fake_aster)
    fake_llm.push(answer(decision(asset("BTCUSDT"))))
    code, out, stderr = decide(runner, "--dry-run")
    assert code == 0 and out is not None, stderr
    user = show(runner, out["decision_id"])["prompt"]["user"]
    trades = user.split("# Recent closed trades (newest first)\n", 1)[1].split("\n# ", 1)[0]
    (line,) = trades.strip().splitlines()
    assert line.startswith("- BTCUSDT long: opened ") and ", closed by stop_loss" in line and "PnL -" in line
    assert ": 1 closed trades, win rate 0%, net PnL -" in user.split("# Performance\n", 1)[1]


def test_a_failed_sync_does_not_stop_the_decision(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_aster.fail("/fapi/v3/income", 400, code=-1000, msg="income is down", times=5)
    fake_llm.push(answer(decision(asset("BTCUSDT"))))
    code, out, stderr = decide(runner, "--dry-run")
    assert code == 0 and out is not None, stderr
    record = show(runner, out["decision_id"])
    assert any("venue history not synced" in n and "income is down" in n for n in record["notes"])

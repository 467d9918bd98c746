"""The paper account's rows through the PaperStore methods of the store: compare-and-swap of the state and
the fills written with it (the SQL moved out of exchange/ into storage/; the behaviour is pinned here)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from llmtrader.exchange.base import Side
from llmtrader.exchange.paper import Fill, PaperStore
from llmtrader.storage.store import Store

FILL = Fill(
    time_ms=1_700_000_000_000,
    symbol="BTCUSDT",
    client_order_id="lt-x",
    order_id="1",
    side=Side.BUY,
    qty=Decimal("0.01"),
    price=Decimal(50_000),
    fee=Decimal("0.175"),
    realized_pnl=Decimal(0),
    reason="market",
)


def test_the_state_is_written_only_over_what_the_writer_read(tmp_path: Path) -> None:
    store: PaperStore = Store(tmp_path / "paper.db")
    assert store.read_paper_state("a") is None
    assert store.write_paper_state("a", '{"v":1}', 1, expected=None, events=[FILL])
    # A second first write, or a write over a state that moved meanwhile, changes nothing and says so.
    assert not store.write_paper_state("a", '{"v":2}', 2, expected=None, events=[FILL])
    assert not store.write_paper_state("a", '{"v":2}', 2, expected='{"v":0}', events=[FILL])
    assert store.read_paper_state("a") == '{"v":1}'
    assert store.write_paper_state("a", '{"v":2}', 3, expected='{"v":1}', events=[])
    assert store.read_paper_state("a") == '{"v":2}'
    assert isinstance(store, Store)
    rows = store.db.execute("SELECT account, symbol, side, qty, price FROM paper_fills").fetchall()
    assert rows == [("a", "BTCUSDT", "BUY", "0.01", "50000")]  # the fill of the refused writes is not kept


def test_a_backtest_account_state_is_upserted_and_its_fills_added(tmp_path: Path) -> None:
    store = Store(tmp_path / "paper.db")
    store.upsert_paper_state("bt", '{"v":1}', 1)
    store.upsert_paper_state("bt", '{"v":2}', 2)
    assert store.read_paper_state("bt") == '{"v":2}'
    store.insert_paper_events("bt", [FILL, FILL], failure="unused")
    assert store.db.execute("SELECT COUNT(*) FROM paper_fills WHERE account = 'bt'").fetchone() == (2,)

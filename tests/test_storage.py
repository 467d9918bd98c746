"""The store: pinned schema, named migrations, WAL, atomic records, and the history/show read paths."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.core.records import AssetRow, CallRow, DecisionRecord, new_decision_id
from llmtrader.core.times import iso_utc
from llmtrader.errors import NotFoundError
from llmtrader.storage import reader
from llmtrader.storage.migrations import migration_names
from llmtrader.storage.store import Store, open_reader

EXPECTED_SCHEMA = {
    "decisions": [
        "id", "created_at", "account", "mode", "dry_run", "strategy", "model", "base_url", "symbols", "outcome",
        "error", "as_of_ms", "marks", "system_prompt", "user_prompt", "raw_response", "parsed", "parse_errors",
        "portfolio_rationale", "notes", "response_format", "reasks", "prompt_tokens", "completion_tokens",
        "cost_usd", "model_latency_ms", "latency_ms", "execution", "arm", "equity_usd",
    ],
    "asset_decisions": [
        "id", "decision_id", "created_at", "account", "symbol", "action", "status", "allocation_usd", "leverage",
        "entry_price", "tp_price", "sl_price", "confidence", "risk_level", "rationale", "reasons", "proposed",
        "mark_price",
    ],
    "llm_calls": [
        "id", "decision_id", "attempt", "response_format", "raw_response", "error", "prompt_tokens",
        "completion_tokens", "reasoning_tokens", "cost_usd", "latency_ms", "finish_reason", "generation_id",
    ],
    "venue_cache": ["key", "fetched_at_ms", "body"],
    "orders": [
        "id", "decision_id", "account", "mode", "symbol", "leg", "client_order_id", "request", "status", "order_id",
        "venue_code", "venue_message", "executed_qty", "avg_price", "response", "created_at", "updated_at",
        "change_seq",
    ],
    "execution_events": ["id", "decision_id", "account", "symbol", "kind", "message", "created_at"],
    "paper_accounts": ["account", "state", "updated_at_ms"],
    "paper_fills": [
        "id", "account", "time_ms", "symbol", "client_order_id", "order_id", "side", "qty", "price", "fee",
        "realized_pnl", "reason",
    ],
    "paper_funding": ["id", "account", "time_ms", "symbol", "rate", "mark_price", "position_amt", "amount"],
    "strategy_choices": ["id", "account", "strategy", "previous", "chosen_at", "via"],
    "venue_fills": [
        "id", "account", "symbol", "trade_id", "order_id", "client_order_id", "decision_id", "side", "qty", "price",
        "fee", "fee_asset", "realized_pnl", "reason", "maker", "time_ms",
    ],
    "venue_funding": ["id", "account", "symbol", "tran_id", "asset", "amount", "time_ms"],
    "venue_sync": ["account", "stream", "last_id", "last_time_ms", "updated_at_ms"],
    "guard_state": ["account", "state", "updated_at"],
    "guard_events": ["id", "account", "kind", "message", "created_at"],
    "decision_cache": ["key", "account", "decision_id", "answer", "created_at_ms", "expires_at_ms"],
    "cycles": [
        "id", "account", "started_at", "finished_at", "duration_ms", "outcome", "reason", "decision_id", "equity_usd",
        "cached", "reconcile",
    ],
    "backtest_runs": [
        "id", "created_at", "finished_at", "status", "spec", "notes", "metrics", "replay_of", "steps_done",
    ],
    "backtest_equity": ["run_id", "time_ms", "equity_usd", "gross_usd", "positions"],
    "model_answers": ["run_id", "step_ms", "request_hash", "model", "base_url", "kind", "answer"],
    "trading_versions": ["account", "n"],
    "venue_transfers": ["id", "account", "tran_id", "asset", "amount", "time_ms"],
    "adoptions": ["id", "account", "mode", "symbol", "amount", "entry_price", "time_ms"],
    "positions_snapshots": ["id", "account", "mode", "time_ms", "positions"],
    "control_requests": ["id", "account", "action", "source", "requested_at", "status", "done_at", "result"],
    "notify_outbox": [
        "id", "dedupe_key", "kind", "account", "ref_table", "ref_id", "payload", "created_at_ms", "status",
        "done_at_ms",
    ],
    "notify_deliveries": [
        "outbox_id", "target", "status", "attempts", "next_attempt_ms", "last_error", "updated_at_ms",
    ],
    "_sqlite_migrations": ["id", "migration_set", "name", "applied_at"],
    "fill_rewrites": ["account", "n"],
}  # fmt: skip
EXPECTED_TRIGGERS = {
    "orders_insert_version", "orders_update_version", "paper_fills_insert_version", "venue_fills_insert_version",
    "paper_fills_notify", "venue_fills_notify", "execution_events_notify", "guard_events_notify", "cycles_notify",
    "venue_cache_insert_notify", "venue_cache_update_notify", "venue_fills_rewrite_version",
}  # fmt: skip
EXPECTED_INDEXES = {
    "decisions": {
        ("created_at",),
        ("account", "created_at"),
        ("account", "model_latency_ms", "prompt_tokens", "completion_tokens", "cost_usd"),
    },
    "asset_decisions": {("symbol", "created_at"), ("action", "created_at"), ("decision_id",), ("account", "status")},
    "llm_calls": {("decision_id",)},
    "orders": {
        ("client_order_id",),
        ("decision_id",),
        ("account", "symbol", "created_at"),
        ("account", "status"),
        ("account", "change_seq"),
    },
    "execution_events": {("decision_id",), ("kind", "created_at")},
    "paper_fills": {("account", "time_ms")},
    "paper_funding": {("account", "time_ms")},
    "strategy_choices": {("account",)},
    "venue_fills": {("account", "symbol", "trade_id"), ("account", "time_ms")},
    "venue_funding": {("account", "symbol", "tran_id"), ("account", "time_ms")},
    "guard_events": {("account", "created_at")},
    "decision_cache": {("expires_at_ms",)},
    "cycles": {("account", "started_at")},
    "model_answers": {("request_hash",)},
    "venue_transfers": {("account", "tran_id"), ("account", "time_ms")},
    "adoptions": {("account", "mode", "time_ms")},
    "positions_snapshots": {("account", "time_ms")},
    "control_requests": {("account", "status")},
    "notify_outbox": {("dedupe_key",), ("status", "id")},
    "notify_deliveries": {("status", "updated_at_ms")},
}


def make_record(n: int, symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"), action: str = "hold") -> DecisionRecord:
    now = 1_790_000_000_000 + n * 3_600_000
    return DecisionRecord(
        id=new_decision_id(now),
        created_at_ms=now,
        account="main",
        mode="paper",
        dry_run=False,
        strategy="default",
        model="fake/model",
        base_url="http://x/v1",
        symbols=list(symbols),
        outcome="decided",
        system_prompt="sys",
        user_prompt=f"user {n}",
        raw_response="{}",
        parsed={"assets": []},
        prompt_tokens=10,
        completion_tokens=5,
        cost_usd=0.001,
        assets=[AssetRow(s, action, "accepted", [], {"symbol": s}, allocation_usd=0.0, leverage=1) for s in symbols],
        calls=[CallRow(1, "json_schema", "{}", None, 10, 5, 0, 0.001, 12, "stop", "gen-1")],
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "sub" / "t.db")


def test_schema_is_pinned(store: Store) -> None:
    conn = sqlite3.connect(store.path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == set(EXPECTED_SCHEMA)
    for table, columns in EXPECTED_SCHEMA.items():
        assert [r[1] for r in conn.execute(f"PRAGMA table_info({table})")] == columns, table
    for table, expected in EXPECTED_INDEXES.items():
        indexes = {
            tuple(c[2] for c in conn.execute(f"PRAGMA index_info({name})"))
            for _, name, *_ in conn.execute(f"PRAGMA index_list({table})")
            if not name.startswith("sqlite_autoindex")
        }
        assert indexes == expected, table
    assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")} == EXPECTED_TRIGGERS


def test_migrations_are_named_recorded_and_idempotent(store: Store) -> None:
    conn = sqlite3.connect(store.path)
    applied = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    assert applied == migration_names() == [
        "m001_decisions", "m002_venue_cache", "m003_execution", "m004_paper", "m005_strategies",
        "m006_venue_history", "m007_guards", "m008_cycles", "m009_backtests", "m010_trading_versions",
        "m011_transfers_adoptions", "m012_web", "m013_notify_outbox", "m014_fill_rewrites",
    ]  # fmt: skip
    store.close()
    Store(store.path).close()  # opening again applies nothing new
    assert [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")] == applied


def test_wal_mode(store: Store) -> None:
    assert sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_record_is_written_whole_or_not_at_all(store: Store) -> None:
    rec = make_record(1)
    store.record_decision(rec)
    duplicate = make_record(2)
    duplicate.id = rec.id  # a primary-key clash on the decision row
    with pytest.raises(Exception, match="cannot record decision"):
        store.record_decision(duplicate)
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT count(*) FROM asset_decisions").fetchone()[0] == 2
    assert conn.execute("SELECT count(*) FROM llm_calls").fetchone()[0] == 1


def test_writes_store_exact_rows(store: Store) -> None:
    """Every column of what the write paths store, with its SQLite type: JSON compact, booleans as 0/1,
    Decimals as the sqlite-utils writes before stored them, upserts replacing the row."""
    from decimal import Decimal

    from llmtrader.core.guards import GuardEvent, GuardState
    from llmtrader.exchange.base import OrderRequest, OrderState, OrderStatus, OrderType, Side

    t = 1_790_000_000_000
    rec = DecisionRecord(
        id="d1", created_at_ms=t, account="main", mode="paper", dry_run=True, strategy="s", model="m",
        base_url="u", symbols=["BTCUSDT", "ETHUSDT"], outcome="decided", marks={"BTCUSDT": 100.5},
        parsed={"a": [1]}, parse_errors=["e"], cost_usd=0.25, arm="b", equity_usd=1000.0,
        assets=[
            AssetRow("BTCUSDT", "buy", "accepted", ["r"], {"q": Decimal("0.010")}, allocation_usd=Decimal("1.5"),
                     leverage=3, sl_price=90.0, rationale="é"),
            AssetRow("ETHUSDT", "hold", "rejected", [], None),
        ],
        calls=[CallRow(1, "json_schema", "{}", None, 10, 5, 0, None, 12, "stop", "g")],
    )  # fmt: skip
    store.record_decision(rec)
    store.set_execution("d1", "executed")
    assert store.record_cycle(
        account="main", started_ms=t, finished_ms=t + 250, outcome="held", reason=None, decision_id="d1",
        equity_usd=1000.0, cached=True, reconcile=("ok",),
    ) == 1  # fmt: skip
    store.save_guard_state("main", GuardState(), [GuardEvent("trip", "stop")], now_ms=t)
    store.save_guard_state("main", GuardState(), now_ms=t + 1)  # an upsert: still one row
    store.cache_put("k", "old", t)
    store.cache_put("k", "new", t + 1)
    store.cache_decision("c", account="main", decision_id="d1", answer={"x": 1}, now_ms=t, ttl_ms=1000)
    log = store.execution_log("main", "paper", lambda: t + 2)
    request = OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, "cid", quantity=Decimal("0.010"), price=Decimal("5"))
    row = log.order_sending(decision_id="d1", symbol="BTCUSDT", leg="entry", request=request)
    assert row == 1
    state = OrderState("BTCUSDT", "cid", "42", OrderStatus.NEW, Side.BUY, OrderType.LIMIT,
                       executed_qty=Decimal("0.005"), avg_price=Decimal("5"), raw={"orderId": 42})  # fmt: skip
    log.order_result(row, status="acknowledged", state=state)
    store.mark_order(row, status="filled", state=None, now_ms=t + 3)
    log.event(decision_id="d1", symbol=None, kind="k", message="m")

    conn = sqlite3.connect(store.path)

    def rows(sql: str) -> list[tuple[object, ...]]:
        return [tuple(r) for r in conn.execute(sql)]

    at, at1, at2, at3 = (iso_utc(t + i) for i in range(4))
    assert rows("SELECT * FROM decisions") == [(
        "d1", at, "main", "paper", 1, "s", "m", "u", '["BTCUSDT","ETHUSDT"]', "decided", None, None,
        '{"BTCUSDT":100.5}', None, None, None, '{"a":[1]}', '["e"]', None, "[]", None, 0, 0, 0, 0.25, 0, 0,
        "executed", "b", 1000.0,
    )]  # fmt: skip
    assert rows("SELECT * FROM asset_decisions") == [
        (1, "d1", at, "main", "BTCUSDT", "buy", "accepted", 1.5, 3, None, None, 90.0, None, None, "é", '["r"]',
         '{"q":"0.010"}', None),
        (2, "d1", at, "main", "ETHUSDT", "hold", "rejected", None, None, None, None, None, None, None, None, "[]",
         None, None),
    ]  # fmt: skip
    assert rows("SELECT typeof(allocation_usd) FROM asset_decisions WHERE id = 1") == [("real",)]
    assert rows("SELECT * FROM llm_calls") == [(1, "d1", 1, "json_schema", "{}", None, 10, 5, 0, None, 12, "stop", "g")]
    assert rows("SELECT * FROM cycles") == [
        (1, "main", at, iso_utc(t + 250), 250, "held", None, "d1", 1000.0, 1, '["ok"]')
    ]
    state_json = json.dumps(GuardState().to_json(), separators=(",", ":"))
    assert rows("SELECT * FROM guard_state") == [("main", state_json, at1)]
    assert rows("SELECT * FROM guard_events") == [(1, "main", "trip", "stop", at)]
    assert rows("SELECT * FROM venue_cache") == [("k", t + 1, "new")]
    assert rows("SELECT * FROM decision_cache") == [("c", "main", "d1", '{"x":1}', t, t + 1000)]
    request_json = json.dumps(dict(request.params()), separators=(",", ":"))
    assert rows("SELECT * FROM orders") == [(
        1, "d1", "main", "paper", "BTCUSDT", "entry", "cid", request_json, "filled", "42", None, None, "0.005",
        "5", '{"orderId":42}', at2, at3, 3,
    )]  # fmt: skip
    assert rows("SELECT * FROM execution_events") == [(1, "d1", "main", None, "k", "m", at2)]


def test_history_filters_and_order(store: Store) -> None:
    for n in range(6):
        store.record_decision(make_record(n, action="buy" if n % 2 else "hold"))
    store.record_decision(make_record(10, symbols=("SOLUSDT",)))
    conn = open_reader(store.path)
    assert conn is not None
    all_rows = reader.history(conn, limit=50)
    assert [r["created_at"] for r in all_rows] == sorted((r["created_at"] for r in all_rows), reverse=True)
    assert len(all_rows) == 7
    sol = reader.history(conn, symbol="SOLUSDT")
    assert len(sol) == 1 and [a["symbol"] for a in sol[0]["assets"]] == ["SOLUSDT"]
    btc = reader.history(conn, symbol="BTCUSDT", limit=2)
    assert len(btc) == 2 and all([a["symbol"] for a in r["assets"]] == ["BTCUSDT"] for r in btc)
    buys = reader.history(conn, action="buy")
    assert len(buys) == 3 and all(a["action"] == "buy" for r in buys for a in r["assets"])
    since = reader.history(conn, since=iso_utc(1_790_000_000_000 + 4 * 3_600_000))
    assert len(since) == 3
    assert reader.history(conn, symbol="XRPUSDT") == []


def test_show_by_id_and_unique_prefix(store: Store) -> None:
    rec = make_record(1)
    store.record_decision(rec)
    conn = open_reader(store.path)
    assert conn is not None
    record = reader.show(conn, rec.id)
    assert record["prompt"] == {"system": "sys", "user": "user 1"}
    assert record["raw_response"] == "{}" and record["parsed"] == {"assets": []}
    assert [a["symbol"] for a in record["assets"]] == ["BTCUSDT", "ETHUSDT"]
    assert record["llm_calls"][0]["generation_id"] == "gen-1"
    assert reader.show(conn, rec.id[:-2])["decision_id"] == rec.id
    with pytest.raises(NotFoundError, match="no decision with id 'nope'"):
        reader.show(conn, "nope")


def test_decision_ids_are_unique_and_time_sorted() -> None:
    ids = [new_decision_id(1_790_000_000_000 + i) for i in range(200)]
    assert len(set(ids)) == 200 and ids == sorted(ids)
    assert all(len(i) == 14 and i.isalnum() for i in ids)


def test_history_on_a_missing_database_is_empty(tmp_path: Path) -> None:
    assert open_reader(tmp_path / "none.db") is None


def test_history_and_show_cli(clean_env: Path, runner: CliRunner) -> None:
    store = Store(clean_env)
    records = [make_record(n) for n in range(3)]
    for rec in records:
        store.record_decision(rec)
    out = json.loads(runner.invoke(app, ["history", "--json", "--symbol", "ethusdt", "--limit", "2"]).stdout)
    assert [r["decision_id"] for r in out] == [records[2].id, records[1].id]
    assert {"decision_id", "created_at", "assets"} <= set(out[0])
    table = runner.invoke(app, ["history"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and records[0].id in table.stdout
    view = runner.invoke(app, ["show", records[0].id], env={"COLUMNS": "200"})
    assert view.exit_code == 0 and "user 0" in view.stdout and "Model calls" in view.stdout
    missing = runner.invoke(app, ["show", "zzz"])
    assert missing.exit_code == 1 and "no decision with id 'zzz'" in missing.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--action", "yolo"], "--action 'yolo' is not an action"),
        (["--since", "last tuesday"], "--since 'last tuesday' is not a date"),
        (["--symbol", "BTC/USDT"], "--symbol: malformed symbol"),
    ],
)
def test_history_bad_arguments_exit_2(clean_env: Path, runner: CliRunner, args: list[str], expected: str) -> None:
    result = runner.invoke(app, ["history", *args])
    assert result.exit_code == 2 and expected in result.stderr


def test_history_reads_while_a_writer_holds_a_transaction(clean_env: Path) -> None:
    store = Store(clean_env)
    store.record_decision(make_record(1))
    writer = sqlite3.connect(clean_env)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO venue_cache VALUES ('k', 1, 'b')")
    conn = open_reader(clean_env)  # WAL: the reader is not blocked by the open write
    assert conn is not None and len(reader.history(conn)) == 1
    writer.rollback()


def old_database(path: Path, migrations: int) -> Path:
    """A database written by an older release: the first ``migrations`` migrations, and one decision."""
    from sqlite_utils import Database, Migrations

    from llmtrader.storage.migrations import MIGRATION_SET, MIGRATIONS

    db = Database(str(path))
    old = Migrations(MIGRATION_SET)
    for name, fn in MIGRATIONS[:migrations]:
        old(name=name)(fn)
    old.apply(db)
    db.table("decisions").insert({"id": "0old", "created_at": "2026-01-01T00:00:00Z", "account": "a",
                                  "outcome": "decided", "model": "m", "strategy": "default"})  # fmt: skip
    db.close()
    return path


def test_a_database_from_the_previous_release_is_upgraded_in_place(tmp_path: Path) -> None:
    """A store written before execution existed (m001, m002) gains the new tables; its rows stay."""
    path = old_database(tmp_path / "old.db", 2)
    store = Store(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT id, execution FROM decisions").fetchall() == [("0old", None)]
    assert {"orders", "execution_events", "paper_accounts"} <= {
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    store.close()


def test_a_database_before_strategy_choices_is_upgraded_in_place(tmp_path: Path) -> None:
    """A store written through m004 gains the choice audit table and the arm and equity columns; rows stay."""
    conn = open_reader(old_database(tmp_path / "m004.db", 4))  # the read path migrates an old file first
    assert conn is not None
    assert [tuple(r) for r in conn.execute("SELECT id, arm, equity_usd FROM decisions")] == [("0old", None, None)]
    assert reader.history(conn)[0]["arm"] is None
    assert reader.strategy_choice(conn, "a") is None


def test_processes_opening_an_old_database_at_once_all_get_it_migrated(tmp_path: Path) -> None:
    """The agent starting while `status` or `history` reads: whoever loses the race for the migration
    retries and finds it done, instead of failing with 'database is locked'."""
    import threading

    path = tmp_path / "old.db"
    old_database(path, 2)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_it() -> None:
        try:
            barrier.wait()
            Store(path).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    applied = [r[0] for r in sqlite3.connect(path).execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    assert applied == migration_names()


def test_account_facts_see_a_fill_written_by_another_connection(tmp_path: Path) -> None:
    """Facts are remembered between calls (KeptHistory); the triggers' version makes a write by any process
    visible."""
    from llmtrader.cycle.cache import KeptHistory
    from llmtrader.storage.facts import trading_version

    path = tmp_path / "facts.db"
    mine, other = Store(path), Store(path)
    t = 1_790_000_000_000
    account_facts = KeptHistory().account_facts

    def fill(store: Store, when: int, cid: str, reason: str) -> None:
        with store.db.conn:
            store.db.conn.execute(
                "INSERT INTO paper_fills (account, time_ms, symbol, client_order_id, order_id, side, qty, price, fee,"
                " realized_pnl, reason) VALUES ('main', ?, 'BTCUSDT', ?, '1', 'BUY', '1', '100', '0', '0', ?)",
                [when, cid, reason],
            )

    try:
        assert account_facts(mine, "main", t).opened_at_ms == {}
        before = trading_version(mine, "main")
        fill(other, t - 1000, "lt_abc_BTC_en", "market")
        assert trading_version(mine, "main") == before + 1
        assert account_facts(mine, "main", t).opened_at_ms == {"BTCUSDT": t - 1000}
        fill(other, t - 500, "lt_abc_BTC_sl", "stop_loss")
        facts = account_facts(mine, "main", t)
        assert (facts.opened_at_ms, facts.last_close_ms) == ({}, {"BTCUSDT": t - 500})
        fill(other, t + 5000, "lt_def_BTC_en", "market")  # after now: left out, and not remembered as seen
        assert account_facts(mine, "main", t).opened_at_ms == {}
        assert account_facts(mine, "main", t + 6000).opened_at_ms == {"BTCUSDT": t + 5000}
    finally:
        mine.close()
        other.close()


@pytest.mark.parametrize("seed", range(6))
def test_remembered_facts_equal_a_fresh_reading_after_every_write(tmp_path: Path, seed: int) -> None:
    """Entries, closes, stops, limit entries that fill later, fills out of order and in the future: after
    every write, the facts a long-lived store keeps up to date equal those a new store reads whole."""
    import random
    from decimal import Decimal

    from llmtrader.backtest.cache import BacktestCache
    from llmtrader.cycle.cache import KeptHistory
    from llmtrader.exchange.base import OrderRequest, OrderType, Side
    from llmtrader.storage.facts import account_facts

    rng = random.Random(seed)
    kept = (KeptHistory if seed % 2 else BacktestCache)()
    path = tmp_path / "facts.db"
    mine = Store(path)
    clock = [1_790_000_000_000]
    log = mine.execution_log("main", "paper", lambda: clock[0])
    symbols = ["BTCUSDT", "ETHUSDT"]
    resting: list[int] = []
    try:
        for n in range(150):
            clock[0] += rng.choice([0, 1, 1000, 2000, 60_000])
            symbol = rng.choice(symbols)
            kind = rng.random()
            if kind < 0.35:  # an entry or a close sent and filled (the legs execution uses)
                leg = rng.choice(["en", "ad", "cl", "em"])
                request = OrderRequest(symbol, Side.BUY, OrderType.MARKET, f"lt_d{n}_X_{leg}", quantity=Decimal(1))
                row = log.order_sending(decision_id=f"d{n}", symbol=symbol, leg=leg, request=request)
                log.order_result(row, status=rng.choice(["filled", "filled", "rejected"]))
            elif kind < 0.5:  # a limit entry resting, filled later
                request = OrderRequest(
                    symbol, Side.BUY, OrderType.LIMIT, f"lt_d{n}_X_en", quantity=Decimal(1), price=Decimal(5)
                )
                resting.append(log.order_sending(decision_id=f"d{n}", symbol=symbol, leg="en", request=request))
                log.order_result(resting[-1], status="acknowledged")
            elif kind < 0.6 and resting:
                mine.mark_order(resting.pop(0), status="filled", state=None, now_ms=clock[0])
            else:  # a fill recorded by the paper account: a stop or target, an entry's fill; now and then late
                when = clock[0] - rng.choice([0, 0, 500, 5_000]) + rng.choice([0, 0, 0, 0, 10_000_000])
                reason = rng.choice(["stop_loss", "take_profit", "market", "liquidation"])
                cid = f"lt_f{n}_X_{rng.choice(['en', 'sl', 'tp', 'ad'])}"
                with mine.db.conn:
                    mine.db.conn.execute(
                        "INSERT INTO paper_fills (account, time_ms, symbol, client_order_id, order_id, side, qty,"
                        " price, fee, realized_pnl, reason) VALUES ('main', ?, ?, ?, '1', 'SELL', '1', '1', '0',"
                        " '0', ?)",
                        [when, symbol, cid, reason],
                    )
            now = clock[0] + rng.choice([0, 3_600_000])
            fresh = Store(path)
            try:
                assert kept.account_facts(mine, "main", now) == account_facts(fresh, "main", now), n
            finally:
                fresh.close()
    finally:
        mine.close()


def test_iso_utc_is_the_datetime_text_of_the_millisecond() -> None:
    import random
    from datetime import UTC, datetime

    draw = random.Random(5)
    edges = [0, 1, 999, 1_000, 59_999, 3_599_999, 3_600_000, 86_399_999, 1_763_000_000_123, 4_102_444_799_999]
    for ms in edges + [draw.randrange(0, 4_102_444_800_000) for _ in range(20_000)]:
        expected = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"
        assert iso_utc(ms) == expected, ms


def test_decision_ids_sort_by_time_and_do_not_repeat() -> None:
    # 50 ids per millisecond (a five-character draw alone would repeat in about 1 run of 100), then 100,000
    # in one millisecond: ids made in one process never repeat and sort in the order they were made.
    ids = [new_decision_id(1_763_000_000_000 + i // 50) for i in range(20_000)]
    ids += [new_decision_id(1_763_000_001_000) for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    # A new millisecond draws anew rather than counting on.
    draws = sorted(int(new_decision_id(1_763_000_002_000 + i)[9:], 36) for i in range(1_000))
    assert len(set(draws)) > 990 and draws[-1] - draws[0] > 36**5 // 4
    assert all(len(i) == 14 and i.isalnum() and i == i.lower() for i in ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_process_draws_its_own_decision_ids() -> None:
    made = new_decision_id(1_763_000_003_000)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's next id of the same millisecond, had it not forked
        os.write(write, new_decision_id(1_763_000_003_000).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    ours = new_decision_id(1_763_000_003_000)
    assert child != ours and child[:9] == made[:9]


def test_a_venue_fill_relinked_to_a_stop_loss_is_a_close_for_the_facts_kept_between_cycles(tmp_path: Path) -> None:
    """The venue sync stores a fill whose order it cannot link yet as a plain market fill (an entry), and links
    it later (``relink``: its reason becomes stop_loss): the facts a running agent keeps must count the close,
    as a fresh read does (the cooldown after a stop-out), not keep the older entry."""
    from llmtrader.cycle.cache import KeptHistory
    from llmtrader.storage.facts import account_facts

    path = tmp_path / "facts.db"
    store = Store(path)
    t = 1_790_000_000_000
    kept = KeptHistory()
    try:
        with store.db.conn:
            # our entry, linked; then a fill whose order is not known yet (stored unlinked)
            for trade, when, cid in ((1, t - 60_000, "lt_abc_BTCUSDT_en"), (2, t - 1000, None)):
                store.db.conn.execute(
                    "INSERT INTO venue_fills (account, symbol, trade_id, order_id, client_order_id, side, qty, price,"
                    " fee, reason, time_ms) VALUES ('main', 'BTCUSDT', ?, ?, ?, 'BUY', '1', '100', '0', 'market', ?)",
                    [trade, str(trade), cid, when],
                )
        assert kept.account_facts(store, "main", t).opened_at_ms == {"BTCUSDT": t - 60_000}
        with store.db.conn:  # what relink writes once the second fill's order is known: our stop-loss
            store.db.conn.execute(
                "UPDATE venue_fills SET client_order_id = 'lt_abc_BTCUSDT_sl', decision_id = 'abc', "
                "reason = 'stop_loss' WHERE trade_id = 2"
            )
        facts = kept.account_facts(store, "main", t)
        assert facts == account_facts(store, "main", t)
        assert facts.last_close_ms == {"BTCUSDT": t - 1000} and facts.opened_at_ms == {}
    finally:
        store.close()

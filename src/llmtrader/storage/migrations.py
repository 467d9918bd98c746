"""Named, append-only migrations of the store. Never edit or reorder one; add a new one at the end.

The names are plain data so that fast read paths can tell whether the file is current without
importing sqlite-utils (which imports pandas).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_utils import Database

MIGRATION_SET = "llmtrader"
MIGRATIONS: list[tuple[str, Callable[[Database], None]]] = []


def migration(fn: Callable[[Database], None]) -> Callable[[Database], None]:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_decisions(db: Database) -> None:
    db.table("decisions").create(
        {
            "id": str,
            "created_at": str,
            "account": str,
            "mode": str,
            "dry_run": int,
            "strategy": str,
            "model": str,
            "base_url": str,
            "symbols": str,
            "outcome": str,
            "error": str,
            "as_of_ms": int,
            "marks": str,
            "system_prompt": str,
            "user_prompt": str,
            "raw_response": str,
            "parsed": str,
            "parse_errors": str,
            "portfolio_rationale": str,
            "notes": str,
            "response_format": str,
            "reasks": int,
            "prompt_tokens": int,
            "completion_tokens": int,
            "cost_usd": float,
            "model_latency_ms": int,
            "latency_ms": int,
        },
        pk="id",
        not_null={"created_at", "account", "outcome", "model"},
    )
    db.table("decisions").create_index(["created_at"])
    db.table("decisions").create_index(["account", "created_at"])
    db.table("asset_decisions").create(
        {
            "id": int,
            "decision_id": str,
            "created_at": str,
            "account": str,
            "symbol": str,
            "action": str,
            "status": str,
            "allocation_usd": float,
            "leverage": int,
            "entry_price": float,
            "tp_price": float,
            "sl_price": float,
            "confidence": float,
            "risk_level": str,
            "rationale": str,
            "reasons": str,
            "proposed": str,
            "mark_price": float,
        },
        pk="id",
        foreign_keys=[("decision_id", "decisions", "id")],
        not_null={"decision_id", "created_at", "symbol", "action", "status"},
    )
    db.table("asset_decisions").create_index(["symbol", "created_at"])
    db.table("asset_decisions").create_index(["action", "created_at"])
    db.table("asset_decisions").create_index(["decision_id"])
    db.table("llm_calls").create(
        {
            "id": int,
            "decision_id": str,
            "attempt": int,
            "response_format": str,
            "raw_response": str,
            "error": str,
            "prompt_tokens": int,
            "completion_tokens": int,
            "reasoning_tokens": int,
            "cost_usd": float,
            "latency_ms": int,
            "finish_reason": str,
            "generation_id": str,
        },
        pk="id",
        foreign_keys=[("decision_id", "decisions", "id")],
        not_null={"decision_id", "attempt"},
    )
    db.table("llm_calls").create_index(["decision_id"])


@migration
def m002_venue_cache(db: Database) -> None:
    db.table("venue_cache").create({"key": str, "fetched_at_ms": int, "body": str}, pk="key")


@migration
def m003_execution(db: Database) -> None:
    """Orders sent (or not) for each decision, and what happened around them."""
    db.table("decisions").add_column("execution", str)
    db.table("orders").create(
        {
            "id": int,
            "decision_id": str,
            "account": str,
            "mode": str,
            "symbol": str,
            "leg": str,
            "client_order_id": str,
            "request": str,
            "status": str,
            "order_id": str,
            "venue_code": int,
            "venue_message": str,
            "executed_qty": str,
            "avg_price": str,
            "response": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"account", "symbol", "leg", "client_order_id", "status", "created_at"},
    )
    db.table("orders").create_index(["client_order_id"])
    db.table("orders").create_index(["decision_id"])
    db.table("orders").create_index(["account", "symbol", "created_at"])
    db.table("execution_events").create(
        {
            "id": int,
            "decision_id": str,
            "account": str,
            "symbol": str,
            "kind": str,
            "message": str,
            "created_at": str,
        },
        pk="id",
        not_null={"account", "kind", "message", "created_at"},
    )
    db.table("execution_events").create_index(["decision_id"])
    db.table("execution_events").create_index(["kind", "created_at"])


@migration
def m004_paper(db: Database) -> None:
    """The paper exchange: account state, and an append-only record of its fills and funding."""
    db.table("paper_accounts").create(
        {"account": str, "state": str, "updated_at_ms": int}, pk="account", not_null={"state"}
    )
    db.table("paper_fills").create(
        {
            "id": int,
            "account": str,
            "time_ms": int,
            "symbol": str,
            "client_order_id": str,
            "order_id": str,
            "side": str,
            "qty": str,
            "price": str,
            "fee": str,
            "realized_pnl": str,
            "reason": str,
        },
        pk="id",
        not_null={"account", "time_ms", "symbol", "side", "qty", "price"},
    )
    db.table("paper_fills").create_index(["account", "time_ms"])
    db.table("paper_funding").create(
        {
            "id": int,
            "account": str,
            "time_ms": int,
            "symbol": str,
            "rate": str,
            "mark_price": str,
            "position_amt": str,
            "amount": str,
        },
        pk="id",
        not_null={"account", "time_ms", "symbol", "amount"},
    )
    db.table("paper_funding").create_index(["account", "time_ms"])


@migration
def m005_strategies(db: Database) -> None:
    """The strategy chosen per account (an append-only audit: the latest row is in force), and per
    decision its A/B arm and the account equity it saw."""
    db.table("decisions").add_column("arm", str)
    db.table("decisions").add_column("equity_usd", float)
    db.table("strategy_choices").create(
        {"id": int, "account": str, "strategy": str, "previous": str, "chosen_at": str, "via": str},
        pk="id",
        not_null={"account", "strategy", "chosen_at", "via"},
    )
    # The index holds the rowid, so "latest row of an account" is one index seek.
    db.table("strategy_choices").create_index(["account"])


@migration
def m006_venue_history(db: Database) -> None:
    """The live account's fills and funding as the venue reports them (userTrades and FUNDING_FEE income),
    each linked to the order llmtrader sent when it is one; and where each sync of them stopped."""
    db.table("venue_fills").create(
        {
            "id": int,
            "account": str,
            "symbol": str,
            "trade_id": int,
            "order_id": str,
            "client_order_id": str,
            "decision_id": str,
            "side": str,
            "qty": str,
            "price": str,
            "fee": str,
            "fee_asset": str,
            "realized_pnl": str,
            "reason": str,
            "maker": int,
            "time_ms": int,
        },
        pk="id",
        not_null={"account", "symbol", "trade_id", "order_id", "side", "qty", "price", "fee", "reason", "time_ms"},
    )
    # The venue numbers trades per symbol: the same trade seen twice is the same row.
    db.table("venue_fills").create_index(["account", "symbol", "trade_id"], unique=True)
    db.table("venue_fills").create_index(["account", "time_ms"])
    db.table("venue_funding").create(
        {"id": int, "account": str, "symbol": str, "tran_id": str, "asset": str, "amount": str, "time_ms": int},
        pk="id",
        not_null={"account", "symbol", "tran_id", "amount", "time_ms"},
    )
    db.table("venue_funding").create_index(["account", "symbol", "tran_id"], unique=True)
    db.table("venue_funding").create_index(["account", "time_ms"])
    db.table("venue_sync").create(
        {"account": str, "stream": str, "last_id": int, "last_time_ms": int, "updated_at_ms": int},
        pk=("account", "stream"),
    )


@migration
def m007_guards(db: Database) -> None:
    """The guards of the scheduled cycle (:mod:`llmtrader.core.guards`): their state per account (one JSON
    document), an append-only record of every trip, reset, resume and circuit transition, and the
    decision cache (a context key -> the decision it produced, until it expires)."""
    db.table("guard_state").create(
        {"account": str, "state": str, "updated_at": str}, pk="account", not_null={"state", "updated_at"}
    )
    db.table("guard_events").create(
        {"id": int, "account": str, "kind": str, "message": str, "created_at": str},
        pk="id",
        not_null={"account", "kind", "message", "created_at"},
    )
    db.table("guard_events").create_index(["account", "created_at"])
    db.table("decision_cache").create(
        {
            "key": str,
            "account": str,
            "decision_id": str,
            "answer": str,
            "created_at_ms": int,
            "expires_at_ms": int,
        },
        pk="key",
        not_null={"account", "decision_id", "answer", "created_at_ms", "expires_at_ms"},
    )
    db.table("decision_cache").create_index(["expires_at_ms"])


@migration
def m008_cycles(db: Database) -> None:
    """One row per scheduled cycle of an account (``llmtrader run``), skipped ones too: when it ran, its
    outcome (traded, held, model_error, risk_veto, exchange_reject, skipped) and why, its decision, the
    account equity it saw, whether the decision was reused from the cache, and what reconcile did (JSON)."""
    db.table("cycles").create(
        {
            "id": int,
            "account": str,
            "started_at": str,
            "finished_at": str,
            "duration_ms": int,
            "outcome": str,
            "reason": str,
            "decision_id": str,
            "equity_usd": float,
            "cached": int,
            "reconcile": str,
        },
        pk="id",
        not_null={"account", "started_at", "finished_at", "duration_ms", "outcome", "cached"},
    )
    db.table("cycles").create_index(["account", "started_at"])


@migration
def m009_backtests(db: Database) -> None:
    """Backtest runs (``llmtrader backtest``), kept in their own database file: each run's specification,
    status, notes and figures (JSON), its equity at every step, and every model answer by the SHA-256 of
    the exact request, so that a run can be replayed without calling the model."""
    db.table("backtest_runs").create(
        {
            "id": str,
            "created_at": str,
            "finished_at": str,
            "status": str,
            "spec": str,
            "notes": str,
            "metrics": str,
            "replay_of": str,
            "steps_done": int,
        },
        pk="id",
        not_null={"created_at", "status", "spec", "steps_done"},
    )
    db.table("backtest_equity").create(
        {"run_id": str, "time_ms": int, "equity_usd": float, "gross_usd": float, "positions": int},
        pk=("run_id", "time_ms"),
        not_null={"equity_usd", "gross_usd", "positions"},
    )
    db.table("model_answers").create(
        {
            "run_id": str,
            "step_ms": int,
            "request_hash": str,
            "model": str,
            "base_url": str,
            "kind": str,
            "answer": str,
        },
        pk=("run_id", "step_ms"),
        not_null={"request_hash", "model", "base_url", "kind", "answer"},
    )
    db.table("model_answers").create_index(["request_hash"])


@migration
def m010_trading_versions(db: Database) -> None:
    """A counter per account that triggers bump whenever an order row is written or a fill recorded (paper
    or venue): what the facts of an account are computed from. Each order row also keeps the counter of its
    last write (``change_seq``), so a reader that remembers the facts reads only the rows written since,
    whoever wrote them (another process included). And an index for the orders whose outcome reconcile
    checks (by status)."""
    db.table("trading_versions").create({"account": str, "n": int}, pk="account", not_null={"n"})
    db.execute("ALTER TABLE orders ADD COLUMN change_seq INTEGER")
    bump = (
        "INSERT INTO trading_versions (account, n) VALUES (NEW.account, 1) "
        "ON CONFLICT(account) DO UPDATE SET n = n + 1;"
    )
    stamp = (
        "UPDATE orders SET change_seq = (SELECT n FROM trading_versions WHERE account = NEW.account) WHERE id = NEW.id;"
    )
    db.execute(f"CREATE TRIGGER orders_insert_version AFTER INSERT ON orders BEGIN {bump} {stamp} END")
    # Every column but change_seq, so that the stamp itself does not fire the trigger again.
    columns = [c.name for c in db.table("orders").columns if c.name not in ("id", "change_seq")]
    db.execute(
        f"CREATE TRIGGER orders_update_version AFTER UPDATE OF {', '.join(columns)} ON orders BEGIN {bump} {stamp} END"
    )
    for table in ("paper_fills", "venue_fills"):
        db.execute(f"CREATE TRIGGER {table}_insert_version AFTER INSERT ON {table} BEGIN {bump} END")
    db.table("orders").create_index(["account", "status"])
    db.table("orders").create_index(["account", "change_seq"])


@migration
def m011_transfers_adoptions(db: Database) -> None:
    """The live account's deposits and withdrawals (the venue's TRANSFER income), which move the equity
    baselines of the kill switches; and the positions reconcile adopted, each an opening of the trade ledger
    at the venue's entry price."""
    db.table("venue_transfers").create(
        {"id": int, "account": str, "tran_id": str, "asset": str, "amount": str, "time_ms": int},
        pk="id",
        not_null={"account", "tran_id", "amount", "time_ms"},
    )
    db.table("venue_transfers").create_index(["account", "tran_id"], unique=True)
    db.table("venue_transfers").create_index(["account", "time_ms"])
    db.table("adoptions").create(
        {"id": int, "account": str, "mode": str, "symbol": str, "amount": str, "entry_price": str, "time_ms": int},
        pk="id",
        not_null={"account", "mode", "symbol", "amount", "entry_price", "time_ms"},
    )
    db.table("adoptions").create_index(["account", "mode", "time_ms"])


@migration
def m012_web(db: Database) -> None:
    """For ``llmtrader serve``: the open positions as the agent saw them at the end of each cycle (JSON rows
    of ``llmtrader positions --json``, with the time of that read), and the control requests made from the
    dashboard or its API (pause, resume, close_all), each an audit row naming its source, which the running
    agent carries out at its next cycle (``status``: pending, done, or failed with ``result`` saying why)."""
    db.table("positions_snapshots").create(
        {"id": int, "account": str, "mode": str, "time_ms": int, "positions": str},
        pk="id",
        not_null={"account", "mode", "time_ms", "positions"},
    )
    db.table("positions_snapshots").create_index(["account", "time_ms"])
    db.table("control_requests").create(
        {
            "id": int,
            "account": str,
            "action": str,
            "source": str,
            "requested_at": str,
            "status": str,
            "done_at": str,
            "result": str,
        },
        pk="id",
        not_null={"account", "action", "source", "requested_at", "status"},
    )
    db.table("control_requests").create_index(["account", "status"])
    # /metrics sums these per account at every scrape: covering indexes read a few MB, not the decisions
    # with their prompts (measured on 1,000,000 asset rows: 2 s by the tables).
    db.table("decisions").create_index(
        ["account", "model_latency_ms", "prompt_tokens", "completion_tokens", "cost_usd"], index_name="decisions_spend"
    )
    db.table("asset_decisions").create_index(["account", "status"])


@migration
def m013_notify_outbox(db: Database) -> None:
    """The notifications' outbox (:mod:`llmtrader.notify`): one row per thing to tell, written by TRIGGERS in
    the very transaction of the record that causes it (a fill, an emergency, a guard event, a failed cycle, a
    venue ban), or by the agent itself (started, stopped, the daily summary). ``dedupe_key`` is unique: the
    same record never gives two rows. ``notify_deliveries`` keeps, per row and per target (a hash of the
    URL, never the URL), what was sent or how it failed, so a restart resends only what was not acknowledged."""
    db.table("notify_outbox").create(
        {
            "id": int,
            "dedupe_key": str,
            "kind": str,
            "account": str,
            "ref_table": str,
            "ref_id": int,
            "payload": str,
            "created_at_ms": int,
            "status": str,
            "done_at_ms": int,
        },
        pk="id",
        not_null={"dedupe_key", "kind", "account", "created_at_ms", "status"},
    )
    db.table("notify_outbox").create_index(["dedupe_key"], unique=True)
    db.table("notify_outbox").create_index(["status", "id"])
    db.table("notify_deliveries").create(
        {
            "outbox_id": int,
            "target": str,
            "status": str,
            "attempts": int,
            "next_attempt_ms": int,
            "last_error": str,
            "updated_at_ms": int,
        },
        pk=("outbox_id", "target"),
        not_null={"status", "attempts", "updated_at_ms"},
    )
    db.table("notify_deliveries").create_index(["status", "updated_at_ms"])
    now = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"

    def outbox(kind: str, account: str, ref_table: str, ref_id: str, key: str, payload: str = "NULL") -> str:
        return (
            "INSERT OR IGNORE INTO notify_outbox (dedupe_key, kind, account, ref_table, ref_id, payload, "
            f"created_at_ms, status) VALUES ({key}, '{kind}', {account}, '{ref_table}', {ref_id}, {payload}, "
            f"{now}, 'pending');"
        )

    for table in ("paper_fills", "venue_fills"):
        row = outbox("fill", "NEW.account", table, "NEW.id", f"'{table}:' || NEW.id")
        db.execute(f"CREATE TRIGGER {table}_notify AFTER INSERT ON {table} BEGIN {row} END")
    row = outbox("emergency", "NEW.account", "execution_events", "NEW.id", "'execution_events:' || NEW.id")
    db.execute(
        f"CREATE TRIGGER execution_events_notify AFTER INSERT ON execution_events WHEN NEW.kind = 'emergency' "
        f"BEGIN {row} END"
    )
    guards = "('drawdown_stop', 'resume', 'daily_loss_stop', 'daily_loss_reset', 'budget_stop', 'budget_reset', " \
        "'circuit_open', 'circuit_closed')"  # fmt: skip
    row = outbox("guard", "NEW.account", "guard_events", "NEW.id", "'guard_events:' || NEW.id")
    db.execute(
        f"CREATE TRIGGER guard_events_notify AFTER INSERT ON guard_events WHEN NEW.kind IN {guards} BEGIN {row} END"
    )
    row = outbox("cycle_failed", "NEW.account", "cycles", "NEW.id", "'cycles:' || NEW.id")
    failed = "('model_error', 'exchange_reject', 'skipped', 'unprotected')"
    db.execute(f"CREATE TRIGGER cycles_notify AFTER INSERT ON cycles WHEN NEW.outcome IN {failed} BEGIN {row} END")
    # A ban is kept in the venue cache (storage.bans), written by an upsert: an insert or an update.
    ban = outbox(
        "venue_ban", "'*'", "venue_cache", "NULL", "NEW.key || ':' || json_extract(NEW.body, '$.until_ms')",
        "json_object('key', NEW.key, 'body', json(NEW.body))",
    )  # fmt: skip
    for op in ("INSERT", "UPDATE"):
        db.execute(
            f"CREATE TRIGGER venue_cache_{op.lower()}_notify AFTER {op} ON venue_cache "
            f"WHEN NEW.key LIKE 'ban:%' BEGIN {ban} END"
        )


@migration
def m014_fill_rewrites(db: Database) -> None:
    """A counter per account that a TRIGGER bumps whenever a venue fill already recorded is rewritten (the
    sync links a fill stored before its order's venue id was known: its reason may turn into a stop-loss),
    with the trading version: facts kept between cycles read only rows written since, so a rewrite of an older
    row must make them read the whole aggregate again (:func:`llmtrader.storage.facts.caught_up`)."""
    db.table("fill_rewrites").create({"account": str, "n": int}, pk="account", not_null={"n"})
    bump = (
        "INSERT INTO fill_rewrites (account, n) VALUES (NEW.account, 1) ON CONFLICT(account) DO UPDATE SET n = n + 1;"
        " INSERT INTO trading_versions (account, n) VALUES (NEW.account, 1) "
        "ON CONFLICT(account) DO UPDATE SET n = n + 1;"
    )
    db.execute(
        "CREATE TRIGGER venue_fills_rewrite_version AFTER UPDATE OF reason, client_order_id, decision_id, time_ms "
        f"ON venue_fills BEGIN {bump} END"
    )


def migration_names() -> list[str]:
    return [name for name, _ in MIGRATIONS]


def apply(db: Database) -> None:
    """Apply every pending migration, all under one write lock.

    Which migrations are pending is decided after the lock is taken (``BEGIN IMMEDIATE``): two processes
    opening an old file at once would otherwise both see a migration pending, and the second would fail
    on what the first had just done ("duplicate column"). Each migration runs in its own savepoint.
    """
    from sqlite_utils import Migrations

    migrations = Migrations(MIGRATION_SET)
    for name, fn in MIGRATIONS:
        migrations(name=name)(fn)
    if db["_sqlite_migrations"].exists() and not migrations.pending(db):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        migrations.apply(db)
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")

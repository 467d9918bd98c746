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


def migration_names() -> list[str]:
    return [name for name, _ in MIGRATIONS]


def apply(db: Database) -> None:
    """Apply every pending migration, each in its own transaction."""
    from sqlite_utils import Migrations

    migrations = Migrations(MIGRATION_SET)
    for name, fn in MIGRATIONS:
        migrations(name=name)(fn)
    migrations.apply(db)

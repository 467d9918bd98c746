"""Copying backtest runs made in a database of their own into the backtests' database
(:mod:`llmtrader.backtest.isolated`).

A run with its answers at hand (the baseline, a replay) writes every record of its steps to a private file, so
it never holds the write lock of ``backtests.db`` while it steps (another backtest writes there too); at the end
its rows are copied over in one short transaction. Integer row ids are renumbered after the ones already there
(in their order); the text ids (runs, decisions, accounts) are unique already. The rows triggers make are not
copied but made again by the same triggers firing on the copied rows, and what those triggers also stamp
(``trading_versions``, ``orders.change_seq``) is set back to the run's own values afterwards.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from llmtrader.errors import StoreError

if TYPE_CHECKING:
    from llmtrader.storage.store import Store

# Tables with an integer ``id``, renumbered. Nothing a run writes refers to these ids but the rows triggers make
# (notify_outbox.ref_id), which the triggers make again with the new ids.
RENUMBERED = (
    "asset_decisions", "llm_calls", "orders", "execution_events", "paper_fills", "paper_funding", "guard_events",
    "cycles", "strategy_choices", "venue_fills", "venue_funding", "venue_transfers", "adoptions",
    "positions_snapshots", "control_requests",
)  # fmt: skip
# Tables keyed by text (run ids, decision ids, accounts): copied as they are; a clash is an error.
KEPT = ("backtest_runs", "backtest_equity", "model_answers", "decisions", "paper_accounts", "guard_state",
        "decision_cache", "venue_sync")  # fmt: skip
# A cache every run shares (the data's exchange rules): the row already there wins, as when runs share a file.
SHARED = ("venue_cache",)
# Made by triggers (m010, m013, m014) as the copied rows go in: never copied.
TRIGGERED = ("trading_versions", "notify_outbox", "notify_deliveries", "fill_rewrites")
_NOT_DATA = ("_sqlite_migrations", "sqlite_sequence")
_ALIAS = "run_copy"


def copy_database(store: Store, source: Path) -> None:
    """Copy every row of the database at ``source`` (made by the same migrations, and closed) into ``store``
    in one transaction, which waits for the write lock as long as the store's busy timeout allows."""
    conn = store.db.conn
    if conn.in_transaction:
        raise StoreError(f"cannot copy {source} into {store.path} inside an open transaction")
    try:
        conn.execute(f"ATTACH DATABASE ? AS {_ALIAS}", [str(source)])
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the backtest database {source}: {exc}") from exc
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            _copy(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot copy the backtest rows of {source} into {store.path}: {exc}") from exc
    finally:
        conn.execute(f"DETACH DATABASE {_ALIAS}")


def _copy(conn: sqlite3.Connection) -> None:
    tables = [str(r[0]) for r in conn.execute(f"SELECT name FROM {_ALIAS}.sqlite_master WHERE type = 'table'")]
    known = set(RENUMBERED) | set(KEPT) | set(SHARED) | set(TRIGGERED) | set(_NOT_DATA)
    for table in tables:
        if table not in known and conn.execute(f"SELECT 1 FROM {_ALIAS}.[{table}] LIMIT 1").fetchone():
            # A table added by a later migration must be classified above before runs can be copied.
            raise StoreError(f"table {table} is not known to the backtest copy")
    for table in tables:
        if table in KEPT or table in SHARED:
            columns = ", ".join(f"[{c}]" for c in _columns(conn, table))
            verb = "INSERT OR IGNORE" if table in SHARED else "INSERT"
            conn.execute(f"{verb} INTO main.[{table}] ({columns}) SELECT {columns} FROM {_ALIAS}.[{table}]")
        elif table in RENUMBERED:
            _renumber(conn, table)
    # The triggers bumped each account's counter once per copied order and fill, and stamped each order with
    # it: the run's own counts are the ones its rows were written with.
    conn.execute(
        f"INSERT INTO main.trading_versions (account, n) SELECT account, n FROM {_ALIAS}.trading_versions "
        "WHERE true ON CONFLICT(account) DO UPDATE SET n = excluded.n"
    )


def _renumber(conn: sqlite3.Connection, table: str) -> None:
    offset = int(conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM main.[{table}]").fetchone()[0])
    others = [c for c in _columns(conn, table) if c != "id"]
    columns = ", ".join(f"[{c}]" for c in others)
    conn.execute(
        f"INSERT INTO main.[{table}] (id, {columns}) SELECT id + ?, {columns} FROM {_ALIAS}.[{table}] ORDER BY id",
        [offset],
    )
    if table == "orders":
        conn.execute(
            f"UPDATE main.orders SET change_seq = s.change_seq FROM {_ALIAS}.orders AS s "
            "WHERE main.orders.id = s.id + ?",
            [offset],
        )


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in conn.execute(f"PRAGMA {_ALIAS}.table_info([{table}])")]

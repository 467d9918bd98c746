"""The SQLite store over sqlite-utils: migrated on open, WAL mode, one transaction per record."""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from llmtrader.core.guards import CachedDecision, GuardEvent, GuardState
from llmtrader.core.records import AssetRow, CallRow, DecisionRecord
from llmtrader.core.times import iso_utc, ms_of_iso
from llmtrader.core.trades import AccountHistory
from llmtrader.errors import StoreError
from llmtrader.privatefiles import create_private_file, make_private_dirs, narrow_if_present
from llmtrader.storage import migrations, reader
from llmtrader.storage.migrations import MIGRATION_SET, migration_names

if TYPE_CHECKING:
    from llmtrader.exchange.base import OrderRequest, OrderState
    from llmtrader.exchange.paper import PaperEvent


# Order rows whose outcome reconcile checks against the venue (llmtrader.cycle.reconcile).
PENDING_ORDER_STATUSES = ("sending", "acknowledged", "partially_filled", "unknown")


MIGRATE_ATTEMPTS = 20
# How long a writer of the backtests' database waits for another's transaction before "database is locked".
BACKTESTS_BUSY_TIMEOUT_MS = 60_000


# Built once: json.dumps with options builds a new encoder at every call (a backtest step writes dozens).
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


def _json(value: Any) -> str | None:
    return None if value is None else _ENCODER.encode(value)


# The hot write paths (a backtest records thousands of cycles) use plain parameterized SQL rather than
# sqlite-utils' table methods, which introspect the schema (table_names, PRAGMA table_info...) on every
# call. Table and column names below always come from this module, never from input.

# Values SQLite takes as they are; anything else gets the conversion sqlite-utils applied before.
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})


def _sql_value(value: Any) -> Any:
    if type(value) in _PLAIN_TYPES:
        return value
    from sqlite_utils.db import jsonify_if_needed  # Decimal as float, containers as JSON, as before

    return jsonify_if_needed(value)


def _params(row: Mapping[str, Any], columns: Sequence[str]) -> list[Any]:
    return [_sql_value(row[c]) for c in columns]


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...], conflict: tuple[str, ...] = ()) -> str:
    """``INSERT INTO table (columns) VALUES (?, ...)``; with ``conflict`` (the primary key), an upsert
    that sets every other column of an existing row."""
    sql = f"INSERT INTO [{table}] ({', '.join(f'[{c}]' for c in columns)}) VALUES ({', '.join('?' * len(columns))})"
    if conflict:
        sets = ", ".join(f"[{c}] = excluded.[{c}]" for c in columns if c not in conflict)
        sql += f" ON CONFLICT({', '.join(f'[{c}]' for c in conflict)}) DO UPDATE SET {sets}"
    return sql


def _insert(conn: sqlite3.Connection, table: str, row: Mapping[str, Any]) -> int:
    """Insert one row; returns its rowid."""
    columns = tuple(row)
    rowid = conn.execute(_insert_sql(table, columns), _params(row, columns)).lastrowid
    assert rowid is not None
    return rowid


def _insert_many(conn: sqlite3.Connection, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows that all have the keys of the first one."""
    if rows:
        columns = tuple(rows[0])
        conn.executemany(_insert_sql(table, columns), [_params(row, columns) for row in rows])


def _upsert(conn: sqlite3.Connection, table: str, row: Mapping[str, Any], pk: str) -> None:
    columns = tuple(row)
    conn.execute(_insert_sql(table, columns, (pk,)), _params(row, columns))


def _update(conn: sqlite3.Connection, table: str, row_id: int, values: Mapping[str, Any]) -> bool:
    """Set ``values`` on the row whose ``id`` is ``row_id``; False when there is no such row."""
    sets = ", ".join(f"[{c}] = ?" for c in values)
    cursor = conn.execute(f"UPDATE [{table}] SET {sets} WHERE [id] = ?", [*_params(values, tuple(values)), row_id])
    return cursor.rowcount == 1


# The record dataclasses are flat: a field read replaces dataclasses.asdict and its recursive copy.
_ASSET_FIELDS = tuple(f.name for f in fields(AssetRow))
_CALL_FIELDS = tuple(f.name for f in fields(CallRow))


class _Transaction:
    """One unit of writes, all or nothing: BEGIN ... COMMIT, or a savepoint inside a transaction already open
    (a backtest runs each step in one transaction; each record inside stays all or nothing). Cheaper than
    sqlite_utils' ``atomic()``, which costs a random savepoint name and a generator per record."""

    __slots__ = ("conn", "nested")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.nested = False

    def __enter__(self) -> sqlite3.Connection:
        self.nested = self.conn.in_transaction
        self.conn.execute("SAVEPOINT llmtrader_record" if self.nested else "BEGIN")
        return self.conn

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        conn = self.conn
        if kind is None:
            try:
                conn.execute("RELEASE llmtrader_record" if self.nested else "COMMIT")
                return
            except BaseException:
                self._undo()
                raise
        self._undo()

    def _undo(self) -> None:
        # An error can already have ended the transaction; then there is nothing to undo.
        if not self.conn.in_transaction:
            return
        if self.nested:
            self.conn.execute("ROLLBACK TO llmtrader_record")
            self.conn.execute("RELEASE llmtrader_record")
        else:
            self.conn.execute("ROLLBACK")


def _facts() -> ModuleType:
    """:mod:`llmtrader.storage.facts`, which reads the store in turn: imported when first used, not at the top."""
    from llmtrader.storage import facts

    return facts


class Store:
    """The writer side of the store (readers use :mod:`llmtrader.storage.reader`)."""

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        """Open (creating and migrating) the store at ``path``. ``durable`` False skips the fsync of each
        commit: for the backtest database only, whose runs can be re-run; an order row of a real account
        must survive a power cut."""
        from sqlite_utils import Database

        self.path = path
        self._guard_states: dict[str, tuple[str | None, GuardState]] = {}
        self._batched = False
        try:
            # Owner-only: SQLite gives the WAL and SHM files it creates the mode of the database file.
            make_private_dirs(path.parent)
            create_private_file(path)
            for extra in ("-wal", "-shm", "-journal"):
                narrow_if_present(path.with_name(path.name + extra))
            self.db = Database(str(path))
            # The backtests' database (not durable) is written by several backtests at once, one copying a run's
            # rows in a transaction of a few seconds (llmtrader.storage.run_copy): its writers wait longer.
            self.db.execute(f"PRAGMA busy_timeout = {5000 if durable else BACKTESTS_BUSY_TIMEOUT_MS}")
            self.db.enable_wal()
            if not durable:
                self.db.execute("PRAGMA synchronous = OFF")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the database {path}: {exc}") from exc

    def _migrate(self) -> None:
        """Apply pending migrations. Two processes opening an old file at once (the agent starting while
        ``status`` runs) race for the write lock, and SQLite answers "locked" at once rather than waiting
        when a read transaction would have to become a write: the loser retries, and finds the work done."""
        for attempt in range(MIGRATE_ATTEMPTS):
            try:
                migrations.apply(self.db)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt + 1 == MIGRATE_ATTEMPTS:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def close(self) -> None:
        self.db.close()

    def transaction(self) -> _Transaction | contextlib.nullcontext[sqlite3.Connection]:
        """``with store.transaction():`` writes all or nothing (a savepoint when a transaction is open; nothing
        of its own inside :meth:`batch`, which is all or nothing as a whole)."""
        if self._batched:
            return contextlib.nullcontext(self.db.conn)
        return _Transaction(self.db.conn)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction for many records (a backtest's steps): committed together, or rolled back together
        when anything inside raises. Every error inside must end the batch: a caller that caught one and went
        on would commit a record half written."""
        if self._batched:
            raise RuntimeError("store batches do not nest")
        with _Transaction(self.db.conn):
            self._batched = True
            try:
                yield
            finally:
                self._batched = False

    def check_writable(self) -> None:
        """Take the write lock and let it go at once (``doctor``); a StoreError in SQLite's own words when the
        database cannot be written."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    # ---- the paper account: exchange.paper.PaperStore ------------------------------------------------------
    def read_paper_state(self, account: str) -> str | None:
        """The stored state of a paper account (its JSON text), None when it has none yet."""
        rows = list(self.db.query("SELECT state FROM paper_accounts WHERE account = ?", [account]))
        return str(rows[0]["state"]) if rows else None

    def write_paper_state(
        self, account: str, text: str, now_ms: int, *, expected: str | None, events: Sequence[PaperEvent]
    ) -> bool:
        """Replace the state of a paper account that still reads ``expected`` (None: it has none) and add the
        book's new fills and funding, in one transaction; False, with nothing written, when another writer
        changed the state meanwhile."""
        from llmtrader.storage import paper  # its book types load numpy, which `history` never needs

        conn = self.db.conn
        try:
            with conn:
                if expected is None:
                    cursor = conn.execute(
                        "INSERT OR IGNORE INTO paper_accounts (account, state, updated_at_ms) VALUES (?, ?, ?)",
                        [account, text, now_ms],
                    )
                else:
                    cursor = conn.execute(
                        "UPDATE paper_accounts SET state = ?, updated_at_ms = ? WHERE account = ? AND state = ?",
                        [text, now_ms, account, expected],
                    )
                if cursor.rowcount != 1:
                    raise paper._Conflict
                paper.insert_events(conn, account, events)
        except paper._Conflict:
            return False
        except sqlite3.Error as exc:
            raise StoreError(f"cannot store paper account {account!r} in {self.path}: {exc}") from exc
        return True

    def upsert_paper_state(self, account: str, text: str, now_ms: int) -> None:
        """Write the state of a paper account whatever it was (a backtest's own account)."""
        with self.transaction():
            self.db.conn.execute(
                "INSERT INTO paper_accounts (account, state, updated_at_ms) VALUES (?, ?, ?) "
                "ON CONFLICT(account) DO UPDATE SET state = excluded.state, updated_at_ms = excluded.updated_at_ms",
                [account, text, now_ms],
            )

    def insert_paper_events(self, account: str, events: Sequence[PaperEvent], *, failure: str) -> None:
        """Add a book's fills and funding payments in a transaction of their own; a database error is raised
        as a StoreError reading ``failure: <the error>``."""
        from llmtrader.storage import paper

        try:
            with self.transaction():
                paper.insert_events(self.db.conn, account, events)
        except sqlite3.Error as exc:
            raise StoreError(f"{failure}: {exc}") from exc

    def paper_history(self, account: str) -> AccountHistory:
        """The paper account's fills and funding since its last reset (adopted positions opened in them)."""
        history: AccountHistory = _facts().paper_account_history(self, account)
        return history

    def paper_history_changes(
        self, account: str, since: tuple[int, ...] | None
    ) -> tuple[tuple[int, ...], AccountHistory | None]:
        """The version of :meth:`paper_history` now, and the rows recorded since version ``since`` (None: they
        cannot be read alone)."""
        changes: tuple[tuple[int, ...], AccountHistory | None] = _facts().paper_history_changes(self, account, since)
        return changes

    def record_decision(self, rec: DecisionRecord) -> None:
        """Write a decision with its asset rows and model calls, all or nothing."""
        created = iso_utc(rec.created_at_ms)
        row = {
            "id": rec.id,
            "created_at": created,
            "account": rec.account,
            "mode": rec.mode,
            "dry_run": int(rec.dry_run),
            "strategy": rec.strategy,
            "model": rec.model,
            "base_url": rec.base_url,
            "symbols": _json(rec.symbols),
            "outcome": rec.outcome,
            "error": rec.error,
            "as_of_ms": rec.as_of_ms,
            "marks": _json(rec.marks),
            "system_prompt": rec.system_prompt,
            "user_prompt": rec.user_prompt,
            "raw_response": rec.raw_response,
            "parsed": _json(rec.parsed),
            "parse_errors": _json(rec.parse_errors),
            "portfolio_rationale": rec.portfolio_rationale,
            "notes": _json(rec.notes),
            "response_format": rec.response_format,
            "reasks": rec.reasks,
            "prompt_tokens": rec.prompt_tokens,
            "completion_tokens": rec.completion_tokens,
            "cost_usd": rec.cost_usd,
            "model_latency_ms": rec.model_latency_ms,
            "latency_ms": rec.latency_ms,
            "execution": rec.execution,
            "arm": rec.arm,
            "equity_usd": rec.equity_usd,
        }
        assets = []
        for a in rec.assets:
            data = {name: getattr(a, name) for name in _ASSET_FIELDS}
            data.update(
                decision_id=rec.id,
                created_at=created,
                account=rec.account,
                reasons=_json(a.reasons),
                proposed=_json(a.proposed),
            )
            assets.append(data)
        calls = [{**{name: getattr(c, name) for name in _CALL_FIELDS}, "decision_id": rec.id} for c in rec.calls]
        conn = self.db.conn
        try:
            with self.transaction():
                _insert(conn, "decisions", row)
                _insert_many(conn, "asset_decisions", assets)
                _insert_many(conn, "llm_calls", calls)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record decision {rec.id} in {self.path}: {exc}") from exc

    def record_strategy_choice(
        self, *, account: str, strategy: str, previous: str | None, via: str, now_ms: int
    ) -> None:
        """Append a strategy choice for ``account`` to the audit table; the latest row is the one in force."""
        row = {
            "account": account,
            "strategy": strategy,
            "previous": previous,
            "chosen_at": iso_utc(now_ms),
            "via": via,
        }
        try:
            with self.transaction():
                _insert(self.db.conn, "strategy_choices", row)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record the strategy choice of account {account!r} in {self.path}: {exc}") from exc

    def strategy_choice(self, account: str) -> str | None:
        """The strategy last chosen for ``account`` with ``strategy use``, or None."""
        return reader.strategy_choice(self.db.conn, account)

    def cache_get(self, key: str, max_age_ms: int, now_ms: int) -> str | None:
        """A cached venue reply no older than ``max_age_ms``."""
        row = self.db.conn.execute(
            "SELECT body FROM venue_cache WHERE key = ? AND fetched_at_ms >= ?", [key, now_ms - max_age_ms]
        ).fetchone()
        return str(row[0]) if row is not None else None

    def cache_put(self, key: str, body: str, now_ms: int) -> None:
        try:
            with self.transaction():
                _upsert(self.db.conn, "venue_cache", {"key": key, "fetched_at_ms": now_ms, "body": body}, pk="key")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot cache {key} in {self.path}: {exc}") from exc

    # ---- Guards (llmtrader.guards): their state, events, what they count, and the decision cache ----------

    def load_guard_state(self, account: str) -> GuardState:
        """The persisted guard state of ``account`` (a fresh one when none was saved yet)."""
        row = self.db.execute("SELECT state FROM guard_state WHERE account = ?", [account]).fetchone()
        text = row[0] if row is not None else None
        known = self._guard_states.get(account)
        if known is not None and known[0] == text:
            return known[1]  # the same stored text: parsed already (GuardState is immutable)
        state = GuardState.from_json(json.loads(text) if text is not None else None)
        self._guard_states[account] = (text, state)
        return state

    def save_guard_state(
        self, account: str, state: GuardState, events: Sequence[GuardEvent] = (), *, now_ms: int
    ) -> None:
        """Persist ``state`` and append ``events``, all or nothing."""
        created = iso_utc(now_ms)
        row = {"account": account, "state": _json(state.to_json()), "updated_at": created}
        rows = [{"account": account, "kind": e.kind, "message": e.message, "created_at": created} for e in events]
        try:
            with self.transaction():
                _upsert(self.db.conn, "guard_state", row, pk="account")
                _insert_many(self.db.conn, "guard_events", rows)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot save the guard state of account {account!r} in {self.path}: {exc}") from exc

    def guard_events(self, account: str, limit: int = 50) -> list[dict[str, Any]]:
        """The latest guard events of ``account``, newest first."""
        cursor = self.db.execute(
            "SELECT id, account, kind, message, created_at FROM guard_events WHERE account = ? "
            "ORDER BY id DESC LIMIT ?",
            [account, limit],
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]

    def model_spend_usd(self, account: str, *, since_ms: int) -> float:
        """The model cost (USD) of the decisions of ``account`` made at or after ``since_ms``."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM decisions WHERE account = ? AND created_at >= ?",
            [account, iso_utc(since_ms)],
        ).fetchone()
        return float(row[0])

    def model_call_times(self, account: str, *, since_ms: int) -> list[int]:
        """One time (epoch ms) per model call attempt of ``account`` since ``since_ms``: its decision's time
        (``llm_calls`` has no time of its own), oldest first."""
        # julianday() reads the stored ISO time; 2440587.5 is the Unix epoch as a Julian day.
        rows = self.db.execute(
            "SELECT CAST(ROUND((julianday(d.created_at) - 2440587.5) * 86400000) AS INTEGER) "
            "FROM llm_calls c JOIN decisions d ON d.id = c.decision_id "
            "WHERE d.account = ? AND d.created_at >= ? ORDER BY d.created_at",
            [account, iso_utc(since_ms)],
        ).fetchall()
        return [int(r[0]) for r in rows]

    def cached_decision(self, key: str, *, now_ms: int) -> CachedDecision | None:
        """The decision stored under the context ``key``, unless it expired by ``now_ms``."""
        row = self.db.execute(
            "SELECT key, account, decision_id, answer, created_at_ms, expires_at_ms FROM decision_cache "
            "WHERE key = ? AND expires_at_ms > ?",
            [key, now_ms],
        ).fetchone()
        if row is None:
            return None
        return CachedDecision(
            key=row[0],
            account=row[1],
            decision_id=row[2],
            answer=json.loads(row[3]),
            created_at_ms=int(row[4]),
            expires_at_ms=int(row[5]),
        )

    def cache_decision(
        self, key: str, *, account: str, decision_id: str, answer: dict[str, Any], now_ms: int, ttl_ms: int
    ) -> None:
        """Store a decision under its context ``key`` for ``ttl_ms`` (nothing when ``ttl_ms`` <= 0), and
        drop expired entries so the table stays small."""
        if ttl_ms <= 0:
            return
        row = {
            "key": key,
            "account": account,
            "decision_id": decision_id,
            "answer": _json(answer),
            "created_at_ms": now_ms,
            "expires_at_ms": now_ms + ttl_ms,
        }
        try:
            with self.transaction():
                self.db.conn.execute("DELETE FROM decision_cache WHERE expires_at_ms <= ?", [now_ms])
                _upsert(self.db.conn, "decision_cache", row, pk="key")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot cache decision {decision_id} in {self.path}: {exc}") from exc

    # ---- Cycles (llmtrader.cycle), and what reconcile reads and marks ------------------------------------

    def record_cycle(
        self,
        *,
        account: str,
        started_ms: int,
        finished_ms: int,
        outcome: str,
        reason: str | None,
        decision_id: str | None,
        equity_usd: float | None,
        cached: bool,
        reconcile: Sequence[str],
    ) -> int:
        """Append one cycle of ``account``; returns its row id."""
        row = {
            "account": account,
            "started_at": iso_utc(started_ms),
            "finished_at": iso_utc(finished_ms),
            "duration_ms": max(0, finished_ms - started_ms),
            "outcome": outcome,
            "reason": reason,
            "decision_id": decision_id,
            "equity_usd": equity_usd,
            "cached": int(cached),
            "reconcile": _json(list(reconcile)),
        }
        try:
            with self.transaction():
                return _insert(self.db.conn, "cycles", row)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record a cycle of account {account!r} in {self.path}: {exc}") from exc

    def last_cycle(self, account: str) -> dict[str, Any] | None:
        """The latest recorded cycle of ``account`` (as :func:`llmtrader.storage.reader.last_cycles` gives it)."""
        return reader.last_cycles(self.db.conn, [account]).get(account)

    def pending_orders(self, account: str, mode: str) -> list[dict[str, Any]]:
        """The orders of ``account`` in ``mode`` the store still believes open, or whose outcome it does not
        know: status sending, acknowledged, partially_filled or unknown. Oldest first."""
        cursor = self.db.execute(
            "SELECT id, decision_id, symbol, leg, client_order_id, status FROM orders WHERE account = ? AND mode = ? "
            f"AND status IN ({','.join('?' * len(PENDING_ORDER_STATUSES))}) ORDER BY id",
            [account, mode, *PENDING_ORDER_STATUSES],
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]

    def mark_order(self, row_id: int, *, status: str, state: OrderState | None, now_ms: int) -> None:
        """Set an order row's status to what the venue says now (``state``; None: the venue has no such order).
        The venue's update time, when it gives one, becomes ``updated_at`` (a fill's time for the limits);
        the code and message of the original answer are kept."""
        update: dict[str, Any] = {"status": status, "updated_at": iso_utc(now_ms)}
        if state is not None:
            if state.update_time_ms > 0:
                update["updated_at"] = iso_utc(state.update_time_ms)
            update.update(
                order_id=state.order_id,
                executed_qty=str(state.executed_qty),
                avg_price=str(state.avg_price),
                response=_json(state.raw),
            )
        try:
            with self.transaction():
                found = _update(self.db.conn, "orders", row_id, update)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot mark order row {row_id} as {status}: {exc}") from exc
        if not found:
            raise StoreError(f"cannot mark order row {row_id} as {status}: no such row")

    def last_stop_level(self, account: str, mode: str, symbol: str, *, since_ms: int) -> tuple[float, str] | None:
        """The stop-loss level llmtrader last set on ``symbol`` at or after ``since_ms``, and where it comes from:
        the newest stop-loss order the venue acknowledged (an ``sl*`` leg with an order id), else the newest
        accepted asset decision (not a dry run) that gave an ``sl_price``. None when there is neither."""
        since = iso_utc(since_ms)
        row = self.db.execute(
            "SELECT request, client_order_id FROM orders WHERE account = ? AND symbol = ? AND created_at >= ? "
            "AND mode = ? AND leg LIKE 'sl%' AND order_id IS NOT NULL ORDER BY created_at DESC, id DESC LIMIT 1",
            [account, symbol, since, mode],
        ).fetchone()
        if row is not None:
            stop = (json.loads(row[0]) if row[0] else {}).get("stopPrice")
            if stop is not None:
                return float(stop), f"stop-loss order {row[1]}"
        row = self.db.execute(
            "SELECT a.sl_price, a.decision_id FROM asset_decisions a JOIN decisions d ON d.id = a.decision_id "
            "WHERE a.symbol = ? AND a.created_at >= ? AND a.account = ? AND d.mode = ? AND d.dry_run = 0 "
            "AND a.status != 'rejected' AND a.sl_price IS NOT NULL "
            "AND a.action IN ('buy', 'sell', 'adjust_orders', 'adjust_position') "
            "ORDER BY a.created_at DESC, a.id DESC LIMIT 1",
            [symbol, since, account, mode],
        ).fetchone()
        return (float(row[0]), f"decision {row[1]}") if row is not None else None

    def last_event_ms(self, account: str, symbol: str, kind: str) -> int | None:
        """When the newest execution event of ``kind`` on ``symbol`` of ``account`` was recorded (epoch ms)."""
        row = self.db.execute(
            "SELECT MAX(created_at) FROM execution_events WHERE kind = ? AND account = ? AND symbol = ?",
            [kind, account, symbol],
        ).fetchone()
        if row is None or row[0] is None:
            return None

        return ms_of_iso(str(row[0]))

    def record_adoption(
        self, *, account: str, mode: str, symbol: str, amount: str, entry_price: str, time_ms: int
    ) -> None:
        """A position reconcile adopted (``amount`` signed, as the venue gives it): the trade ledger opens it
        at ``entry_price`` (:func:`llmtrader.storage.facts.account_history`)."""
        with self.transaction():
            self.db.conn.execute(
                "INSERT INTO adoptions (account, mode, symbol, amount, entry_price, time_ms) VALUES (?, ?, ?, ?, ?, ?)",
                [account, mode, symbol, amount, entry_price, time_ms],
            )

    def set_execution(self, decision_id: str, summary: str) -> None:
        """The one-word outcome of a decision's execution (executed, partial, failed, emergency…)."""
        with self.transaction():
            self.db.conn.execute("UPDATE decisions SET execution = ? WHERE id = ?", [summary, decision_id])

    def execution_log(self, account: str, mode: str, now_ms: Callable[[], int]) -> ExecutionLog:
        """A recorder of orders and execution events for one account."""
        return ExecutionLog(self, account, mode, now_ms)


class ExecutionLog:
    """Writes every order request before it is sent, then its answer; and execution events.

    Only the order's business parameters are stored: no nonce, signature or key ever reaches the store.
    """

    def __init__(self, store: Store, account: str, mode: str, now_ms: Callable[[], int]) -> None:
        self.store = store
        self.account = account
        self.mode = mode
        self.now_ms = now_ms

    def order_sending(self, *, decision_id: str, symbol: str, leg: str, request: OrderRequest) -> int:
        now = iso_utc(self.now_ms())
        row = {
            "decision_id": decision_id,
            "account": self.account,
            "mode": self.mode,
            "symbol": symbol,
            "leg": leg,
            "client_order_id": request.client_order_id,
            "request": _json(dict(request.params())),
            "status": "sending",
            "created_at": now,
            "updated_at": now,
        }
        conn = self.store.db.conn
        try:
            with self.store.transaction():
                return _insert(conn, "orders", row)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record order {request.client_order_id}: {exc}") from exc

    def order_result(
        self,
        row_id: int,
        *,
        status: str,
        state: OrderState | None = None,
        code: int | None = None,
        message: str | None = None,
    ) -> None:
        update: dict[str, Any] = {
            "status": status,
            "venue_code": code,
            "venue_message": message,
            "updated_at": iso_utc(self.now_ms()),
        }
        if state is not None:
            update.update(
                order_id=state.order_id,
                executed_qty=str(state.executed_qty),
                avg_price=str(state.avg_price),
                response=_json(state.raw),
            )
        try:
            with self.store.transaction():
                found = _update(self.store.db.conn, "orders", row_id, update)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record the answer to order row {row_id}: {exc}") from exc
        if not found:
            raise StoreError(f"cannot record the answer to order row {row_id}: no such row")

    def event(self, *, decision_id: str | None, symbol: str | None, kind: str, message: str) -> None:
        row = {
            "decision_id": decision_id,
            "account": self.account,
            "symbol": symbol,
            "kind": kind,
            "message": message,
            "created_at": iso_utc(self.now_ms()),
        }
        try:
            with self.store.transaction():
                _insert(self.store.db.conn, "execution_events", row)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record an execution event: {exc}") from exc


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=5.0)
    conn.row_factory = sqlite3.Row
    return conn


def _is_current(conn: sqlite3.Connection) -> bool:
    try:
        rows = conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = ?", [MIGRATION_SET]).fetchall()
    except sqlite3.OperationalError:
        return False
    return set(migration_names()) <= {r["name"] for r in rows}


def open_reader(path: Path) -> sqlite3.Connection | None:
    """A connection for reading, or None when no database exists yet. Migrates an old file first."""
    if not path.exists():
        return None
    try:
        conn = _connect(path)
        if not _is_current(conn):
            conn.close()
            Store(path).close()
            conn = _connect(path)
        return conn
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the database {path}: {exc}") from exc

"""The backtest tables (migration m009): runs, their equity at every step, and recorded model answers."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmtrader.core.times import iso_utc
from llmtrader.errors import NotFoundError, StoreError

if TYPE_CHECKING:
    from llmtrader.storage.store import Store


@dataclass(frozen=True)
class RunRow:
    """One stored backtest run."""

    id: str
    created_at: str
    finished_at: str | None
    status: str  # running, finished, interrupted, stopped, failed
    spec: dict[str, Any]
    notes: list[str]
    metrics: dict[str, Any] | None
    replay_of: str | None
    steps_done: int


@dataclass(frozen=True)
class StoredAnswer:
    """A model answer recorded by a run: at which step, for which exact request, and what came back."""

    step_ms: int
    request_hash: str
    model: str
    base_url: str
    kind: str  # answer, error; replayed answers: replay_exact, replay_differs
    answer: dict[str, Any]


def _write(store: Store, what: str, sql: str, params: Sequence[Any]) -> None:
    try:
        with store.transaction():
            store.db.conn.execute(sql, params)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot {what} in {store.path}: {exc}") from exc


def create_run(store: Store, run_id: str, *, spec: dict[str, Any], notes: list[str], replay_of: str | None,
               now_ms: int) -> None:  # fmt: skip
    _write(
        store,
        f"record backtest {run_id}",
        "INSERT INTO backtest_runs (id, created_at, status, spec, notes, replay_of, steps_done) "
        "VALUES (?, ?, 'running', ?, ?, ?, 0)",
        [run_id, iso_utc(now_ms), json.dumps(spec, sort_keys=True), json.dumps(notes), replay_of],
    )


def finish_run(
    store: Store, run_id: str, *, status: str, notes: list[str], metrics: dict[str, Any] | None, steps_done: int,
    now_ms: int,
) -> None:  # fmt: skip
    _write(
        store,
        f"record the end of backtest {run_id}",
        "UPDATE backtest_runs SET status = ?, notes = ?, metrics = ?, steps_done = ?, finished_at = ? WHERE id = ?",
        [status, json.dumps(notes), json.dumps(metrics, sort_keys=True) if metrics is not None else None,
         steps_done, iso_utc(now_ms), run_id],
    )  # fmt: skip


def write_equity(store: Store, run_id: str, samples: Sequence[tuple[int, float, float, int]]) -> None:
    """Store ``(time_ms, equity_usd, gross_usd, positions)`` samples of a run."""
    try:
        with store.transaction():
            store.db.conn.executemany(
                "INSERT OR REPLACE INTO backtest_equity (run_id, time_ms, equity_usd, gross_usd, positions) "
                "VALUES (?, ?, ?, ?, ?)",
                [(run_id, *s) for s in samples],
            )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot store the equity of backtest {run_id} in {store.path}: {exc}") from exc


def equity_of(store: Store, run_id: str) -> list[tuple[int, float, float, int]]:
    return [
        (int(r[0]), float(r[1]), float(r[2]), int(r[3]))
        for r in store.db.execute(
            "SELECT time_ms, equity_usd, gross_usd, positions FROM backtest_equity WHERE run_id = ? ORDER BY time_ms",
            [run_id],
        ).fetchall()
    ]


def _run(row: Sequence[Any]) -> RunRow:
    return RunRow(
        id=str(row[0]),
        created_at=str(row[1]),
        finished_at=row[2],
        status=str(row[3]),
        spec=json.loads(row[4]),
        notes=json.loads(row[5]) if row[5] else [],
        metrics=json.loads(row[6]) if row[6] else None,
        replay_of=row[7],
        steps_done=int(row[8]),
    )


_RUN_COLUMNS = "id, created_at, finished_at, status, spec, notes, metrics, replay_of, steps_done"


def list_runs(store: Store, limit: int = 50) -> list[RunRow]:
    """The newest runs first."""
    rows = store.db.execute(
        f"SELECT {_RUN_COLUMNS} FROM backtest_runs ORDER BY created_at DESC, id DESC LIMIT ?", [limit]
    ).fetchall()
    return [_run(r) for r in rows]


def get_run(store: Store, run_id: str) -> RunRow:
    """The run ``run_id`` ("latest": the newest); NotFoundError names the newest ones otherwise."""
    if run_id == "latest":
        newest = list_runs(store, 1)
        if not newest:
            raise NotFoundError(f"no backtest has been run yet (database {store.path})")
        return newest[0]
    row = store.db.execute(f"SELECT {_RUN_COLUMNS} FROM backtest_runs WHERE id = ?", [run_id]).fetchone()
    if row is None:
        known = ", ".join(r.id for r in list_runs(store, 5)) or "none yet"
        raise NotFoundError(f"no backtest run {run_id!r} in {store.path}; the newest: {known}")
    return _run(row)


def run_end_ms(store: Store, account: str) -> int | None:
    """When the backtest run ``account`` ended in its own (simulated) time: the start of its last cycle, else
    its last equity sample. None when ``account`` is not a backtest run of this database."""
    if store.db.execute("SELECT 1 FROM backtest_runs WHERE id = ?", [account]).fetchone() is None:
        return None
    from llmtrader.core.times import ms_of_iso

    last_cycle = store.db.execute("SELECT MAX(started_at) FROM cycles WHERE account = ?", [account]).fetchone()[0]
    if last_cycle is not None:
        return ms_of_iso(str(last_cycle))
    last_sample = store.db.execute("SELECT MAX(time_ms) FROM backtest_equity WHERE run_id = ?", [account]).fetchone()
    return int(last_sample[0]) if last_sample[0] is not None else None


def record_answer(store: Store, run_id: str, answer: StoredAnswer) -> None:
    _write(
        store,
        f"record a model answer of backtest {run_id}",
        "INSERT OR REPLACE INTO model_answers (run_id, step_ms, request_hash, model, base_url, kind, answer) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [run_id, answer.step_ms, answer.request_hash, answer.model, answer.base_url, answer.kind,
         json.dumps(answer.answer, separators=(",", ":"))],
    )  # fmt: skip


def answers_of(store: Store, run_id: str) -> dict[int, StoredAnswer]:
    """Every model answer run ``run_id`` recorded, by step."""
    rows = store.db.execute(
        "SELECT step_ms, request_hash, model, base_url, kind, answer FROM model_answers WHERE run_id = ? "
        "ORDER BY step_ms",
        [run_id],
    ).fetchall()
    return {
        int(r[0]): StoredAnswer(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), json.loads(r[5])) for r in rows
    }


def answer_kinds(store: Store, run_id: str) -> dict[str, int]:
    rows = store.db.execute(
        "SELECT kind, COUNT(*) FROM model_answers WHERE run_id = ? GROUP BY kind", [run_id]
    ).fetchall()
    return {str(k): int(n) for k, n in rows}


@dataclass(frozen=True)
class VerdictChange:
    """One asset decision the validator judged differently in a replay than in its source run."""

    time_ms: int
    symbol: str
    action: str
    before: str
    after: str
    reasons: list[str]


def verdict_changes(store: Store, run_id: str, source: str) -> list[VerdictChange]:
    """The asset decisions of run ``run_id`` whose validation status differs from run ``source`` at the same
    step (the same model answer judged under the replay's limits and account)."""
    sql = (
        "SELECT d.as_of_ms, a.symbol, a.action, a.status, a.reasons FROM asset_decisions a "
        "JOIN decisions d ON d.id = a.decision_id WHERE d.account = ? AND d.model != 'reconcile' "
        "AND d.outcome != 'manual'"
    )
    before = {(int(r[0]), str(r[1])): (str(r[2]), str(r[3])) for r in store.db.execute(sql, [source]).fetchall()}
    changes = []
    for when, symbol, action, status, reasons in store.db.execute(sql + " ORDER BY d.as_of_ms", [run_id]).fetchall():
        was = before.get((int(when), str(symbol)))
        if was is not None and was[1] != status:
            changes.append(
                VerdictChange(int(when), str(symbol), str(action), was[1], str(status), json.loads(reasons or "[]"))
            )
    return changes


def run_records(
    store: Store, run_id: str
) -> tuple[int, float, int | None, dict[Any, Any], dict[Any, Any], list[dict[str, str]]]:
    """What a run recorded, for its figures: the decisions, their model cost, those the model made; cycles by
    outcome; non-hold asset decisions by status; the guard events."""
    decisions, cost, model_decisions = store.db.execute(
        "SELECT COUNT(*), COALESCE(SUM(cost_usd), 0), SUM(CASE WHEN outcome NOT IN ('manual') THEN 1 ELSE 0 END) "
        "FROM decisions WHERE account = ?",
        [run_id],
    ).fetchone()
    outcomes = dict(
        store.db.execute("SELECT outcome, COUNT(*) FROM cycles WHERE account = ? GROUP BY outcome", [run_id]).fetchall()
    )
    statuses = dict(
        store.db.execute(
            "SELECT status, COUNT(*) FROM asset_decisions WHERE account = ? AND action != 'hold' GROUP BY status",
            [run_id],
        ).fetchall()
    )
    guards = [
        {"time": str(r[0]), "kind": str(r[1]), "message": str(r[2])}
        for r in store.db.execute(
            "SELECT created_at, kind, message FROM guard_events WHERE account = ? ORDER BY created_at", [run_id]
        ).fetchall()
    ]
    return decisions, cost, model_decisions, outcomes, statuses, guards

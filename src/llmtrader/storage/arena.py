"""Reading arenas (``llmtrader arena``) from the backtests' database.

An arena is no table of its own: each contestant is a backtest run whose specification names the arena
(``arena``) and the market every contestant faced (``arena_key``: data, symbols, interval, steps, timeframes,
balance), so the runs of earlier arenas on the same market serve as recorded answers for a new one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmtrader.errors import NotFoundError
from llmtrader.storage.backtests import _RUN_COLUMNS, RunRow, _run, _write

if TYPE_CHECKING:
    from llmtrader.storage.store import Store


def arena_runs(store: Store, arena_id: str) -> list[RunRow]:
    """The contestant runs of arena ``arena_id`` ("latest": the newest arena), in the order they were made."""
    if arena_id == "latest":
        newest = list_arenas(store, 1)
        if not newest:
            raise NotFoundError("no arena yet: run `llmtrader arena --data DIR --models A,B`")
        arena_id = str(newest[0]["arena"])
    rows = store.db.execute(
        f"SELECT {_RUN_COLUMNS} FROM backtest_runs WHERE json_extract(spec, '$.arena') = ? ORDER BY created_at, id",
        [arena_id],
    ).fetchall()
    if not rows:
        known = ", ".join(str(a["arena"]) for a in list_arenas(store, 5)) or "none yet"
        raise NotFoundError(f"no arena {arena_id!r} (newest: {known})")
    return [_run(r) for r in rows]


def list_arenas(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """The arenas, newest first: id, when, and their contestants' models."""
    rows = store.db.execute(
        "SELECT json_extract(spec, '$.arena') AS arena, MIN(created_at), group_concat(json_extract(spec, '$.model'), "
        "',') FROM backtest_runs WHERE json_extract(spec, '$.arena') IS NOT NULL GROUP BY arena "
        "ORDER BY MIN(created_at) DESC, arena DESC LIMIT ?",
        [limit],
    ).fetchall()
    return [{"arena": str(r[0]), "created_at": str(r[1]), "models": str(r[2] or "").split(",")} for r in rows]


def recorded_source(store: Store, arena_key: str, model: str) -> str | None:
    """The run that recorded the most answers of ``model`` on the market ``arena_key`` (newest on a tie)."""
    row = store.db.execute(
        "SELECT r.id, COUNT(a.step_ms) AS n FROM backtest_runs r JOIN model_answers a ON a.run_id = r.id "
        "WHERE json_extract(r.spec, '$.arena_key') = ? AND json_extract(r.spec, '$.model') = ? "
        "GROUP BY r.id ORDER BY n DESC, r.created_at DESC, r.id DESC LIMIT 1",
        [arena_key, model],
    ).fetchone()
    return str(row[0]) if row is not None else None


def answer_bodies(store: Store, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(kind, recorded answer) of every model answer of run ``run_id``, by step."""
    rows = store.db.execute(
        "SELECT kind, answer FROM model_answers WHERE run_id = ? ORDER BY step_ms", [run_id]
    ).fetchall()
    return [(str(r[0]), json.loads(r[1])) for r in rows]


def openings(store: Store, run_id: str) -> list[tuple[int, str, str, float | None, str]]:
    """(step ms, symbol, action, stated confidence, verdict) of every buy and sell the run's model proposed."""
    rows = store.db.execute(
        "SELECT d.as_of_ms, a.symbol, a.action, a.confidence, a.status FROM asset_decisions a "
        "JOIN decisions d ON d.id = a.decision_id WHERE d.account = ? AND a.action IN ('buy', 'sell') "
        "ORDER BY d.as_of_ms",
        [run_id],
    ).fetchall()
    return [(int(r[0]), str(r[1]), str(r[2]), None if r[3] is None else float(r[3]), str(r[4])) for r in rows]


def verdict_counts(store: Store, run_id: str) -> dict[str, int]:
    """How many non-hold asset decisions of the run were accepted, amended and rejected."""
    rows = store.db.execute(
        "SELECT status, COUNT(*) FROM asset_decisions WHERE account = ? AND action != 'hold' GROUP BY status",
        [run_id],
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def opening_rationales(store: Store, run_id: str) -> list[tuple[int, str, str]]:
    """(step ms, symbol, rationale) of the run's accepted and amended buys and sells, newest first."""
    rows = store.db.execute(
        "SELECT d.as_of_ms, a.symbol, a.rationale FROM asset_decisions a JOIN decisions d ON d.id = a.decision_id "
        "WHERE d.account = ? AND a.action IN ('buy', 'sell') AND a.status IN ('accepted', 'amended') "
        "ORDER BY d.as_of_ms DESC",
        [run_id],
    ).fetchall()
    return [(int(r[0]), str(r[1]), str(r[2] or "")) for r in rows]


def paper_decision_marks(store: Store, account: str) -> list[tuple[Any, Any, Any]]:
    """(created_at, equity_usd, marks JSON) of the account's paper decisions but manual closes, oldest first
    (``arena --live``)."""
    rows = store.db.execute(
        "SELECT created_at, equity_usd, marks FROM decisions WHERE account = ? AND mode = 'paper' "
        "AND outcome != 'manual' ORDER BY created_at, id",
        [account],
    ).fetchall()
    return [tuple(r) for r in rows]


def add_references(store: Store, run_id: str, references: Mapping[str, Any]) -> None:
    """Join ``references`` (the baseline's return and run) to the stored figures of run ``run_id``, if it has any."""
    row = store.db.execute("SELECT metrics FROM backtest_runs WHERE id = ?", [run_id]).fetchone()
    if row is None or row[0] is None:
        return
    metrics = {**json.loads(row[0]), **references}
    _write(store, f"record the references of backtest {run_id}", "UPDATE backtest_runs SET metrics = ? WHERE id = ?",
           [json.dumps(metrics, sort_keys=True), run_id])  # fmt: skip

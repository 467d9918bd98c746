"""Backtests with their answers at hand run each in a database of their own: an arena replays its contestants in
worker processes and gets exactly what one after the other gives, and two backtests writing the same
``backtests.db`` at once both finish."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from tests.fakes.llm import FakeLLM, asked_symbols, asset, completion, decision

WINDOW = ["--from", "2025-10-01", "--to", "2025-10-11"]


def trader(body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    """Buys BTC with a stop and a target at every 12th hour (fake/a) or every 8th (fake/b); holds otherwise."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    hour = int(user.split("Time: ", 1)[1][11:13])
    assets = [asset(s) for s in asked_symbols(body)]
    if hour % (12 if body["model"] == "fake/a" else 8) == 0:
        mark = float(user.split("## BTCUSDT", 1)[1].split("mark ", 1)[1].split(";")[0])
        assets[0] = asset("BTCUSDT", "buy", allocation_usd=500, leverage=2, tp_price=round(mark * 1.03, 1),
                          sl_price=round(mark * 0.98, 1), confidence=0.8, rationale="a try")  # fmt: skip
    return 200, {}, completion(json.dumps(decision(*assets)), cost=0.001)


def arena(runner: CliRunner, perp_dir: Path, *extra: str) -> dict[str, Any]:
    result = runner.invoke(
        app,
        ["arena", "--data", str(perp_dir), "--models", "fake/a,fake/b", "--symbols", "BTCUSDT,ETHUSDT",
         "--timeframes", "1h,4h", "--strategy", "default", *WINDOW, "--yes", "--json", *extra],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def without_ids(doc: dict[str, Any]) -> dict[str, Any]:
    """A leaderboard without what names the runs and the arena."""
    out = {k: v for k, v in doc.items() if k not in ("arena", "created_at")}
    out["contestants"] = [{k: v for k, v in c.items() if k not in ("run", "replay_of")} for c in doc["contestants"]]
    out["references"] = {**doc["references"], "baseline": {**doc["references"]["baseline"], "run": None}}
    return out


# A run id. The two arenas replay different runs of the same answers: the second one's newest recording of them
# is the first one's replay.
RUN_ID = re.compile(r"bt-[0-9a-z]{14}")


def shown(runner: CliRunner, run: str) -> dict[str, Any]:
    """``backtest show RUN --json`` without what names a run or says when it was made."""
    result = runner.invoke(app, ["backtest", "show", run, "--json"])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(RUN_ID.sub("bt-?", result.stdout))
    for key in ("run", "created_at", "finished_at"):
        doc.pop(key, None)
    doc["spec"].pop("arena")
    doc["metrics"].pop("baseline_run", None)
    return doc


# Columns that hold row ids, or wall-clock times: when a row was written (not the run's simulated time), how long
# something took.
IDS = {"id", "ref_id", "dedupe_key"}
WALL_CLOCK = {
    "backtest_runs": {"created_at", "finished_at"},
    "notify_outbox": {"created_at_ms"},
    "decisions": {"latency_ms", "model_latency_ms"},
    "llm_calls": {"latency_ms"},
    "cycles": {"finished_at", "duration_ms"},
}
# Each table a backtest writes, and how its rows name their run.
OF_RUN = {
    "backtest_runs": "id = :run", "backtest_equity": "run_id = :run", "model_answers": "run_id = :run",
    "decisions": "account = :run", "asset_decisions": "account = :run", "orders": "account = :run",
    "execution_events": "account = :run", "paper_accounts": "account = :run", "paper_fills": "account = :run",
    "paper_funding": "account = :run", "guard_state": "account = :run", "guard_events": "account = :run",
    "cycles": "account = :run", "trading_versions": "account = :run", "notify_outbox": "account = :run",
    "llm_calls": "decision_id IN (SELECT id FROM decisions WHERE account = :run)",
}  # fmt: skip


def stored(db: Path, run: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of run ``run`` in each table, in id order, with the run's and its decisions' ids replaced by
    placeholders, and without row ids and wall-clock times."""
    conn = sqlite3.connect(db)
    try:
        names = {run: "RUN"}
        order = "SELECT id FROM decisions WHERE account = ? ORDER BY as_of_ms, created_at, id"
        for n, (decision_id,) in enumerate(conn.execute(order, [run]).fetchall()):
            names[str(decision_id)] = f"D{n}"
        for (arena_id,) in conn.execute("SELECT json_extract(spec, '$.arena') FROM backtest_runs"):
            if arena_id is not None:
                names[str(arena_id)] = "ARENA"
        out = {}
        for table, where in OF_RUN.items():
            cursor = conn.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY rowid", {"run": run})
            columns = [d[0] for d in cursor.description]
            drop = IDS | WALL_CLOCK.get(table, set())
            rows = []
            for row in cursor.fetchall():
                values = []
                for column, value in zip(columns, row, strict=True):
                    if column in drop:
                        continue
                    if isinstance(value, str):
                        for old, new in names.items():
                            value = value.replace(old, new)
                        value = RUN_ID.sub("bt-?", value)
                    values.append(value)
                rows.append(tuple(values))
            out[table] = rows
        return out
    finally:
        conn.close()


@pytest.fixture
def model(env: Path, fake_llm: FakeLLM) -> FakeLLM:
    fake_llm.push(*([trader] * 2000))
    return fake_llm


def test_a_parallel_replay_equals_the_same_replay_one_run_after_the_other(
    model: FakeLLM, perp_dir: Path, runner: CliRunner, env: Path
) -> None:
    arena(runner, perp_dir)  # records both models
    asked = len(model.requests)
    one_by_one = arena(runner, perp_dir, "--concurrency", "1")
    parallel = arena(runner, perp_dir, "--concurrency", "2")
    assert len(model.requests) == asked  # both replayed every answer
    assert [c["replayed"] for c in parallel["contestants"]] == [
        0,
        *[c["steps_done"] for c in parallel["contestants"][1:]],
    ]
    assert parallel["contestants"][1]["trades"] > 0 and parallel["contestants"][2]["trades"] > 0
    assert without_ids(parallel) == without_ids(one_by_one)
    # Each run as `backtest show` tells it, and every row it stored, are the same but for ids and wall-clock times.
    db = env.with_name("backtests.db")
    for mine, theirs in zip(parallel["contestants"], one_by_one["contestants"], strict=True):
        assert shown(runner, mine["run"]) == shown(runner, theirs["run"])
        ours, others = stored(db, mine["run"]), stored(db, theirs["run"])
        assert {t: len(r) for t, r in ours.items()} == {t: len(r) for t, r in others.items()}
        assert ours == others
        assert ours["paper_fills"] and ours["notify_outbox"] and ours["orders"]


def test_backtests_writing_the_same_database_at_once_all_finish(clean_env: Path, perp_dir: Path) -> None:
    # Four at once: with the steps committed in batches straight into backtests.db, at least one of them failed
    # with "database is locked" in every try (two at once: in some); each in a database of its own, none does.
    command = [sys.executable, "-m", "llmtrader", "backtest", "--data", str(perp_dir), "--symbols", "BTCUSDT,ETHUSDT",
               "--from", "2025-09-20", "--to", "2025-12-15", "--timeframes", "1h,4h", "--model", "baseline",
               "--json"]  # fmt: skip
    environ = {**os.environ, "CI": "true"}
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ)
        for _ in range(4)
    ]
    done = [proc.communicate(timeout=300) for proc in runs]
    for proc, (out, err) in zip(runs, done, strict=True):
        assert proc.returncode == 0, err
        assert json.loads(out)["status"] == "finished"
    db = clean_env.with_name("backtests.db")
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT status, steps_done FROM backtest_runs").fetchall()
        runs_ids = [r[0] for r in conn.execute("SELECT id FROM backtest_runs")]
    finally:
        conn.close()
    assert len(rows) == 4 and len(set(rows)) == 1 and rows[0][0] == "finished" and rows[0][1] > 1000
    # Each run's rows joined the file whole, the same as the others' but for ids, and no private file is left.
    first = stored(db, runs_ids[0])
    assert all(stored(db, run) == first for run in runs_ids[1:])
    assert sorted(p.name for p in db.parent.iterdir() if p.name.startswith(".backtest-")) == []


def test_a_run_whose_copy_fails_keeps_its_database_and_says_where(tmp_path: Path) -> None:
    from llmtrader.backtest.isolated import private_store
    from llmtrader.errors import StoreError
    from llmtrader.storage.store import Store

    store = Store(tmp_path / "backtests.db", durable=False)
    try:
        with pytest.raises(StoreError) as info, private_store(store) as mine:
            # a table the copy does not know, holding a row: the copy refuses it rather than drop it
            mine.db.execute("CREATE TABLE stray (x INTEGER)")
            mine.db.execute("INSERT INTO stray VALUES (1)")
            mine.db.conn.commit()
        message = str(info.value)
        kept = Path(message.rsplit("kept at ", 1)[1])
        assert kept.is_file() and "stray" in message
        with sqlite3.connect(kept) as conn:
            assert conn.execute("SELECT x FROM stray").fetchall() == [(1,)]
    finally:
        store.close()

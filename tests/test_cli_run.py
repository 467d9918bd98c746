"""`llmtrader run` and `llmtrader status` through the CLI: start-up checks, one cycle per account with
`--once` against the fake venue, the status of every account, and reading while the agent writes."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.core.guards import CircuitState, GuardState, KillState
from llmtrader.core.times import iso_utc
from llmtrader.cycle.scheduler import NO_MODEL_KEY, next_fire_ms
from llmtrader.logs import configure_logging, reset_logging
from llmtrader.storage.store import Store
from tests.conftest import TEST_KEY
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision

TWO_ACCOUNTS = """
assets = ["BTCUSDT", "ETHUSDT"]

[accounts.alpha]
strategy = "conservative"

[accounts.beta]
interval = "4h"
assets = ["SOLUSDT"]
"""


@pytest.fixture(autouse=True)
def _no_leftover_log_handlers() -> Iterator[None]:
    """`run` configures logging onto CliRunner's stderr, which is closed once the invocation returns."""
    yield
    reset_logging()


def status(runner: CliRunner, *args: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, [*args, "status", "--json"])
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


# ---- status ---------------------------------------------------------------------------------------------


def test_status_before_anything_ran(clean_env: Path, runner: CliRunner) -> None:
    assert not clean_env.exists()
    [row] = status(runner)
    assert row["account"] == "default" and row["mode"] == "paper"
    assert row["strategy"] == "default" and row["strategy_source"] == "configured"
    assert row["model"] == NO_MODEL_KEY and row["baseline_fallback"] is True
    assert row["last_cycle"] is None and row["equity_usd"] is None and row["open_positions"] == 0
    assert row["guards"]["drawdown"]["stopped"] is False and row["guards"]["circuit"]["state"] == "closed"
    next_ms = json.dumps(row["next_cycle"])
    assert row["next_cycle"].endswith(":00:05.000Z"), next_ms
    assert not clean_env.exists()  # status never creates the database

    human = runner.invoke(app, ["status"])
    assert human.exit_code == 0, human.output
    assert "no model key" in human.stderr and "baseline" in human.stderr  # the warning panel
    assert "none yet" in human.stdout and "all clear" in human.stdout


def test_status_with_a_model_key_names_the_model(clean_env: Path, runner: CliRunner, monkeypatch: Any) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-status-key-0123456789")
    [row] = status(runner)
    assert row["model"] == "x-ai/grok-4" and row["baseline_fallback"] is False


def seed(db: Path, now_ms: int) -> None:
    """What a running agent leaves behind: a cycle of alpha, its guard state, and its paper positions."""
    store = Store(db)
    try:
        state = GuardState(
            kill=KillState(peak_equity=11_000.0, stopped_at_ms=now_ms - 60_000, stopped_reason="maximum drawdown"),
            circuit=CircuitState(status="open", failures=3, open_until_ms=now_ms + 600_000, last_error="timeout"),
        )
        store.save_guard_state("alpha", state, now_ms=now_ms - 60_000)
        with store.db.conn:
            store.db.execute(
                "INSERT INTO cycles (account, started_at, finished_at, duration_ms, outcome, reason, decision_id, "
                "equity_usd, cached, reconcile) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ["alpha", iso_utc(now_ms - 120_000), iso_utc(now_ms - 117_500), 2500, "traded", None, "abc123",
                 9_876.5, 1, json.dumps(["adopted ETHUSDT"])],
            )  # fmt: skip
            book = {"book": {"positions": {"BTCUSDT": {}, "ETHUSDT": {}}}}
            store.db.execute(
                "INSERT INTO paper_accounts (account, state, updated_at_ms) VALUES (?, ?, ?)",
                ["alpha", json.dumps(book), now_ms],
            )
    finally:
        store.close()


def test_status_of_two_accounts_from_the_database(clean_env: Path, runner: CliRunner, tmp_path: Path) -> None:
    import time

    config = write_config(tmp_path, TWO_ACCOUNTS)
    seed(clean_env, int(time.time() * 1000))
    alpha, beta = status(runner, "--config", str(config))
    assert (alpha["account"], beta["account"]) == ("alpha", "beta")
    assert alpha["strategy"] == "conservative" and beta["interval"] == "4h" and beta["assets"] == ["SOLUSDT"]
    last = alpha["last_cycle"]
    assert last["outcome"] == "traded" and last["duration_ms"] == 2500 and last["decision_id"] == "abc123"
    assert last["cached"] is True and last["reconcile"] == ["adopted ETHUSDT"]
    assert alpha["equity_usd"] == 9_876.5 and alpha["open_positions"] == 2
    assert alpha["guards"]["drawdown"]["stopped"] is True
    assert alpha["guards"]["circuit"]["state"] == "open" and alpha["guards"]["circuit"]["consecutive_failures"] == 3
    assert beta["last_cycle"] is None and beta["open_positions"] == 0
    assert beta["guards"]["drawdown"]["stopped"] is False
    hour = int(beta["next_cycle"][11:13])
    assert hour % 4 == 0 and beta["next_cycle"][13:] == ":00:05.000Z"

    human = runner.invoke(app, ["--config", str(config), "status"])
    assert human.exit_code == 0, human.output
    for text in ("Account alpha", "Account beta", "traded", "STOPPED", "open", "abc123", "9,876.50"):
        assert text in human.stdout, text


def test_next_cycle_matches_the_scheduler(clean_env: Path, runner: CliRunner) -> None:
    import time

    before = int(time.time() * 1000)
    [row] = status(runner)
    after = int(time.time() * 1000)
    assert row["next_cycle"] in {iso_utc(next_fire_ms(before, "1h")), iso_utc(next_fire_ms(after, "1h"))}


# ---- run: start-up checks -------------------------------------------------------------------------------


def test_live_start_without_credentials_exits_2_naming_the_variables(
    clean_env: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADING_MODE", "live")
    result = runner.invoke(app, ["run", "--once"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: cannot start live trading")
    for name in ("OPENROUTER_API_KEY", "ASTERDEX_USER", "ASTERDEX_SIGNER", "ASTERDEX_API_KEY"):
        assert name in result.stderr
    assert not clean_env.exists()  # nothing was built, nothing recorded


def test_a_live_account_table_names_its_missing_variables(clean_env: Path, runner: CliRunner, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        """
[accounts.main]
trading_mode = "live"
env.llm_api_key = "MAIN_MODEL_KEY"
env.asterdex_api_key = "MAIN_ASTER_KEY"
env.asterdex_api_secret = "MAIN_ASTER_SECRET"
""",
    )
    result = runner.invoke(app, ["--config", str(config), "run", "--live"])
    assert result.exit_code == 2, result.output
    for name in ("MAIN_MODEL_KEY", "MAIN_ASTER_KEY", "MAIN_ASTER_SECRET"):
        assert name in result.stderr


def test_run_an_unknown_account_exits_2(clean_env: Path, runner: CliRunner, tmp_path: Path) -> None:
    config = write_config(tmp_path, TWO_ACCOUNTS)
    result = runner.invoke(app, ["--config", str(config), "run", "--once", "--account", "gamma"])
    assert result.exit_code == 2
    assert "unknown account 'gamma'" in result.stderr and "alpha, beta" in result.stderr


def _cycles(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM cycles ORDER BY id")]
    finally:
        conn.close()


# ---- run --once against the fake venue ------------------------------------------------------------------


def test_run_once_records_a_cycle_per_account_and_exits_0(
    clean_env: Path, fake_aster: FakeAster, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASTERDEX_BASE_URL", fake_aster.base_url)
    config = write_config(tmp_path, TWO_ACCOUNTS)
    result = runner.invoke(app, ["--config", str(config), "--log-json", "run", "--once"])
    assert result.exit_code == 0, result.output
    assert "no model key" in result.stderr and "baseline" in result.stderr  # the warning panel
    cycles = _cycles(clean_env)
    assert sorted(c["account"] for c in cycles) == ["alpha", "beta"]
    assert all(c["outcome"] in ("traded", "held", "risk_veto") for c in cycles), cycles
    assert all(c["decision_id"] for c in cycles)
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    starts = {e["account"]: e for e in events if e["event"] == "start"}
    assert set(starts) == {"alpha", "beta"}
    assert starts["alpha"]["strategy"] == "conservative" and starts["alpha"]["model"] == NO_MODEL_KEY
    assert starts["beta"]["interval"] == "4h" and starts["beta"]["mode"] == "paper"
    assert sorted(e["account"] for e in events if e["event"] == "cycle") == ["alpha", "beta"]  # one line each

    # status after it: every account's last cycle, its equity, the paper positions it left
    rows = {r["account"]: r for r in status(runner, "--config", str(config))}
    for name, cycle in {c["account"]: c for c in cycles}.items():
        last = rows[name]["last_cycle"]
        assert last["outcome"] == cycle["outcome"] and last["decision_id"] == cycle["decision_id"]
        assert last["duration_ms"] == cycle["duration_ms"]
        assert rows[name]["equity_usd"] == cycle["equity_usd"] == pytest.approx(10_000)
        assert rows[name]["running"] is False and rows[name]["pid"] is None
    traded = [c["account"] for c in cycles if c["outcome"] == "traded"]
    for name in traded:
        assert rows[name]["open_positions"] >= 1

    # the decisions are in history, with the account
    history = runner.invoke(app, ["history", "--json"])
    assert history.exit_code == 0
    assert sorted(d["account"] for d in json.loads(history.stdout)) == ["alpha", "beta"]


def test_run_once_dry_run_executes_nothing(
    clean_env: Path, fake_aster: FakeAster, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASTERDEX_BASE_URL", fake_aster.base_url)
    monkeypatch.setenv("ASSETS", "SOLUSDT")
    monkeypatch.setenv("INTERVAL", "4h")
    result = runner.invoke(app, ["run", "--once", "--dry-run"])
    assert result.exit_code == 0, result.output
    [cycle] = _cycles(clean_env)
    assert cycle["outcome"] in ("held", "risk_veto") and cycle["account"] == "default"
    [decision] = json.loads(runner.invoke(app, ["history", "--json"]).stdout)
    assert decision["execution"] in ("dry_run", None)
    assert status(runner)[0]["open_positions"] == 0


def test_a_second_agent_on_the_same_account_is_refused(
    clean_env: Path, fake_aster: FakeAster, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmtrader.cycle.scheduler import RunLock

    monkeypatch.setenv("ASTERDEX_BASE_URL", fake_aster.base_url)
    held = RunLock(clean_env, "default")  # what a running `llmtrader run` holds
    held.acquire()
    try:
        result = runner.invoke(app, ["run", "--once"])
        assert result.exit_code == 2, result.output
        assert f"already run by another llmtrader process (pid {os.getpid()}" in result.stderr
        [row] = status(runner)
        assert row["running"] is True and row["pid"] == os.getpid()
        assert "running (pid" in runner.invoke(app, ["status"]).stdout
    finally:
        held.release()
    assert _cycles(clean_env) == [] if clean_env.exists() else True
    assert status(runner)[0]["running"] is False


def test_history_and_status_read_while_run_writes(
    clean_env: Path, fake_aster: FakeAster, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent writes cycles (decisions, orders, paper state, cycle rows) in a thread while `history`
    and `status` read through the CLI: SQLite WAL lets readers in; nothing reports a locked database."""
    import asyncio
    import threading

    from llmtrader.config.load import load_settings
    from llmtrader.cycle.scheduler import run_agent, select_accounts

    monkeypatch.setenv("ASTERDEX_BASE_URL", fake_aster.base_url)
    config = write_config(tmp_path, TWO_ACCOUNTS)
    selection = select_accounts(load_settings(config))
    # The database exists and is migrated, as for an agent that has run before: the steady state. (Two
    # processes migrating one file at the same moment is another matter: storage.migrations.apply.)
    Store(clean_env).close()
    # The agent's own log stream: CliRunner swaps sys.stderr for the whole process while it invokes.
    configure_logging(json=True, log_file=None, stream=io.StringIO())
    rounds = 4
    codes: list[int] = []
    errors: list[BaseException] = []

    def agent() -> None:
        try:
            for _ in range(rounds):
                codes.append(asyncio.run(run_agent(selection, once=True)))
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=agent)
    writer.start()
    reads = 0
    try:
        while writer.is_alive() or reads < 3:
            for args in (["history", "--json", "-n", "5"], ["--config", str(config), "status", "--json"]):
                result = runner.invoke(app, args)
                assert result.exit_code == 0, result.output
                assert "locked" not in result.output
                json.loads(result.stdout)
                reads += 1
    finally:
        writer.join(timeout=120)
    assert not errors and codes == [0] * rounds
    assert len(_cycles(clean_env)) == 2 * rounds
    assert reads >= 3


def test_run_with_a_model_logs_no_credential(
    env: Path, fake_llm: FakeLLM, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model key of the environment (and a secret-looking error from the model endpoint) never reaches
    the log lines of `run`, on stderr or in --log-file."""
    fake_llm.push(answer(decision(asset("BTCUSDT"), asset("ETHUSDT"))))
    log_file = tmp_path / "run.log"
    result = runner.invoke(app, ["--log-json", "--log-file", str(log_file), "-v", "run", "--once"])
    assert result.exit_code == 0, result.output
    assert "no model key" not in result.stderr  # a key is set: no baseline warning
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    [start] = [e for e in events if e["event"] == "start"]
    assert start["model"] == "fake/model"
    assert [e["outcome"] for e in events if e["event"] == "cycle"] == ["held"]
    assert TEST_KEY not in result.output and TEST_KEY not in log_file.read_text()
    assert fake_llm.requests  # the model was asked, with the key, which the logs never show

"""One answer to "which strategy is this account on", whoever asks: the cycle (through its store), `status`
(a read connection, or no database yet) and a backtest without --strategy."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.config.load import load_settings
from llmtrader.cycle.strategies import strategy_in_force
from llmtrader.storage.store import Store, open_reader


def test_store_read_connection_and_no_database_agree(clean_env: Path, runner: CliRunner) -> None:
    settings = load_settings()
    assert strategy_in_force(None, settings) == ("default", "configured")
    store = Store(settings.db)
    try:
        assert strategy_in_force(store, settings) == ("default", "configured")
    finally:
        store.close()
    assert runner.invoke(app, ["strategy", "use", "conservative"]).exit_code == 0
    store = Store(settings.db)
    conn = open_reader(settings.db)
    assert conn is not None
    try:
        assert strategy_in_force(store, settings) == ("conservative", "chosen")
        assert strategy_in_force(conn, settings) == ("conservative", "chosen")
    finally:
        store.close()
        conn.close()


def test_status_names_the_strategy_in_force_and_where_it_comes_from(clean_env: Path, runner: CliRunner) -> None:
    (row,) = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert (row["strategy"], row["strategy_source"]) == ("default", "configured")
    assert not clean_env.exists()  # status reads the database; it does not create one
    assert runner.invoke(app, ["strategy", "use", "swing"]).exit_code == 0
    (row,) = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert (row["strategy"], row["strategy_source"]) == ("swing", "chosen")
    assert row["interval"] == "4h"  # the chosen strategy's interval


def test_a_backtest_reads_the_choice_without_creating_the_agents_database(
    perp_dir: Path, clean_env: Path, runner: CliRunner, tmp_path: Path
) -> None:
    args = ["backtest", "--data", str(perp_dir), "--symbols", "BTCUSDT", "--interval", "1h", "--from", "2025-11-03",
            "--to", "2025-11-03 02:00", "--timeframes", "1h,4h", "--model", "baseline", "--json"]  # fmt: skip
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["spec"]["strategy"] == "default"
    assert not clean_env.exists()

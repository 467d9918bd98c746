"""Strategies do what their names say: the user's strategies beside config.toml are found without a setting,
and `strategy list` shows the leverage in force after the settings' cap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.config.strategies import builtin_dir


def test_strategies_in_the_user_config_directory_are_found(clean_env: Path, runner: CliRunner, tmp_path: Path) -> None:
    user_dir = tmp_path / "xdg-config" / "llmtrader" / "strategies"  # clean_env's XDG_CONFIG_HOME
    user_dir.mkdir(parents=True)
    text = (builtin_dir() / "swing.toml").read_text().replace('name = "swing"', 'name = "mine"')
    (user_dir / "mine.toml").write_text(text)
    result = runner.invoke(app, ["strategy", "list", "--json"])
    assert result.exit_code == 0, result.output
    entries = {e["name"]: e for e in json.loads(result.stdout)}
    assert entries["mine"]["source"] == "user" and entries["mine"]["error"] is None
    used = runner.invoke(app, ["strategy", "use", "mine"])
    assert used.exit_code == 0, used.output


def test_strategy_list_shows_the_leverage_in_force(
    clean_env: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEVERAGE", "2")
    result = runner.invoke(app, ["strategy", "list"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if " aggressive " in x)
    assert " 2x " in line and " 10x " not in line


def test_the_strategy_in_force_sets_the_interval_of_run_and_status(
    paper: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmtrader.logs import reset_logging

    assert runner.invoke(app, ["strategy", "use", "swing"]).exit_code == 0  # a 4h preset
    try:
        ran = runner.invoke(app, ["--log-json", "run", "--once", "--dry-run"])
    finally:
        reset_logging()
    starts = [json.loads(x) for x in ran.stderr.splitlines() if x.startswith("{") and '"start"' in x]
    assert starts and starts[0]["interval"] == "4h", ran.stderr
    (row,) = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert row["interval"] == "4h" and row["next_cycle"][11:13] in ("00", "04", "08", "12", "16", "20")
    # an interval the user set wins over the strategy's
    monkeypatch.setenv("INTERVAL", "15m")
    (row,) = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert row["interval"] == "15m"

"""Every account-scoped command takes --account; with [accounts.*] configured and none named it uses the only
account or refuses with the list, never an undefined `default`; an unknown account is an error everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from tests.fakes.llm import FakeLLM, answer, asset, decision

TWO = """
[accounts.main]
paper_balance_usd = 5000

[accounts.exp]
paper_balance_usd = 1000
"""

ONE = """
[accounts.main]
paper_balance_usd = 5000
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def hold(fake_llm: FakeLLM) -> None:
    fake_llm.push(answer(decision(asset("BTCUSDT"), asset("ETHUSDT"))))


def test_only_account_is_used_without_account(
    paper: Path, runner: CliRunner, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    config = write(tmp_path, ONE)
    hold(fake_llm)
    result = runner.invoke(app, ["--config", str(config), "decide", "--json", "--dry-run"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["account"] == "main" and out["equity_usd"] == pytest.approx(5000)
    positions = runner.invoke(app, ["--config", str(config), "positions", "--json"])
    assert positions.exit_code == 0, positions.output


def test_env_account_gets_its_own_settings(
    paper: Path, runner: CliRunner, tmp_path: Path, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path, TWO)
    monkeypatch.setenv("LLMTRADER_ACCOUNT", "exp")
    hold(fake_llm)
    result = runner.invoke(app, ["--config", str(config), "decide", "--json", "--dry-run"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["account"] == "exp" and out["equity_usd"] == pytest.approx(1000)


@pytest.mark.parametrize(
    "command",
    [
        ["decide", "--dry-run"],
        ["positions"],
        ["stats"],
        ["strategy", "list"],
        ["strategy", "use", "default"],
        ["paper", "reset"],
    ],
)
def test_several_accounts_and_none_named_is_an_error_listing_them(
    paper: Path, runner: CliRunner, tmp_path: Path, command: list[str]
) -> None:
    config = write(tmp_path, TWO)
    result = runner.invoke(app, ["--config", str(config), *command])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "main" in line and "exp" in line and "--account" in line


@pytest.mark.parametrize(
    "command",
    [
        ["stats", "--account", "foo"],
        ["history", "--account", "foo"],
        ["positions", "--account", "foo"],
        ["strategy", "list", "--account", "foo"],
        ["strategy", "use", "default", "--account", "foo"],
        ["strategy", "show", "--account", "foo"],
        ["paper", "reset", "--account", "foo"],
        ["backtest", "--account", "foo", "--model", "baseline"],
    ],
)
def test_unknown_account_is_an_error_everywhere(
    paper: Path, runner: CliRunner, tmp_path: Path, command: list[str]
) -> None:
    config = write(tmp_path, TWO)
    result = runner.invoke(app, ["--config", str(config), *command])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "'foo'" in line and "main" in line, line


def test_named_account_commands_act_on_it(paper: Path, runner: CliRunner, tmp_path: Path) -> None:
    config = write(tmp_path, TWO)
    reset = runner.invoke(app, ["--config", str(config), "paper", "reset", "--account", "exp"])
    assert reset.exit_code == 0, reset.output
    assert "'exp'" in reset.stdout and "1,000.00" in reset.stdout
    use = runner.invoke(app, ["--config", str(config), "strategy", "use", "swing", "--account", "exp"])
    assert use.exit_code == 0, use.output
    listed = runner.invoke(app, ["--config", str(config), "strategy", "list", "--json", "--account", "exp"])
    assert listed.exit_code == 0, listed.output
    assert [e["name"] for e in json.loads(listed.stdout) if e["in_force"]] == ["swing"]
    stats = runner.invoke(app, ["--config", str(config), "stats", "--json", "--account", "main"])
    assert stats.exit_code == 0 and json.loads(stats.stdout)["account"] == "main"


def test_history_lists_a_backtest_runs_decisions(perp_dir: Path, clean_env: Path, runner: CliRunner) -> None:
    window = ["--from", "2025-11-03", "--to", "2025-11-03T05:00", "--timeframes", "1h,4h"]
    args = ["backtest", "--data", str(perp_dir), "--symbols", "BTCUSDT", "--interval", "1h", *window]
    args += ["--model", "baseline", "--json"]
    ran = runner.invoke(app, args)
    assert ran.exit_code == 0, ran.output
    run_id = json.loads(ran.stdout)["run"]
    listed = runner.invoke(app, ["history", "--run", run_id, "--json", "-n", "100"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert rows and all(r["account"] == run_id for r in rows)
    assert runner.invoke(app, ["history", "--json"]).stdout.strip() == "[]"  # the live store is apart
    missing = runner.invoke(app, ["history", "--run", "bt-nope"])
    assert missing.exit_code != 0 and "bt-nope" in missing.stderr

"""The command line's frame: help, version, module entry point, config errors, unexpected errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app


def test_help_lists_every_command(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("decide", "history", "show", "config"):
        assert command in result.stdout


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("llmtrader ")


def test_python_dash_m_runs_the_same_app(clean_env: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "llmtrader", "history", "--json"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"INTERVAL": "7m"}, "setting interval = '7m' (environment variable INTERVAL) is invalid"),
        ({"LEVERAGE": "-3"}, "setting leverage = '-3' (environment variable LEVERAGE) is invalid"),
        ({"ASSETS": "BTC-USDT"}, "malformed symbol 'BTC-USDT'"),
        ({"TRADING_MODE": "yolo"}, "Input should be 'paper' or 'live'"),
    ],
)
def test_bad_settings_exit_2_with_one_line(
    clean_env: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for args in (["config", "show"], ["decide"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert expected in result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_an_unreadable_config_file_exits_2(clean_env: Path, runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("assets = [\n")
    result = runner.invoke(app, ["--config", str(bad), "config", "show"])
    assert result.exit_code == 2 and f"config file {bad} is not valid TOML" in result.stderr
    result = runner.invoke(app, ["--config", str(tmp_path / "missing.toml"), "decide"])
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_unknown_strategy_exits_2_listing_the_available_ones(clean_env: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["decide", "--strategy", "moonshot"])
    assert result.exit_code == 2
    available = "aggressive, conservative, dca, default, scalping, swing"
    assert f"unknown strategy 'moonshot'; available: {available}" in result.stderr


def test_a_custom_strategy_with_an_unknown_placeholder_is_refused(
    clean_env: Path, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "mine.toml").write_text(
        'name = "mine"\ndescription = "x"\n[prompt]\nsystem = "s {funding_curve}"\nuser = "u {market}"\n'
    )
    monkeypatch.setenv("LLMTRADER_STRATEGIES_DIR", str(folder))
    result = runner.invoke(app, ["decide", "--strategy", "mine"])
    assert result.exit_code == 2
    assert "mine.toml: prompt.system: placeholder {funding_curve} is not provided by the context" in result.stderr


def test_a_deliberate_exit_code_survives_outside_the_tests(clean_env: Path) -> None:
    """doctor exits 1 on a failed check as itself, not as an 'unexpected' error (guarded() re-raises
    under pytest, so only a real process shows this)."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env.update(ASTERDEX_BASE_URL="http://127.0.0.1:9", LLM_MODEL="baseline", HTTP_TIMEOUT_S="2")
    done = subprocess.run(
        [sys.executable, "-m", "llmtrader", "doctor"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "unexpected" not in done.stderr and "check(s) failed: venue" in done.stdout

"""Live trading is opted into per process: TRADING_MODE=live in its environment, or --live. A config file
alone never makes an account live (it refuses to start, naming the file and the account), TRADING_MODE=paper
keeps every account on paper, `decide` and `run` agree on an account's mode, a live start line is a WARNING,
and `doctor` checks every configured account."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.logs import reset_logging
from tests.conftest import SIGNER, SIGNER_KEY, USER
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision
from tests.helpers import long_btc

# One live account with its own V3 credentials (registered at the fake venue), one paper account.
ACCOUNTS = """
[accounts.main]
trading_mode = "live"
env.asterdex_user = "MAIN_USER"
env.asterdex_signer = "MAIN_SIGNER"
env.asterdex_signer_private_key = "MAIN_SIGNER_KEY"

[accounts.side]
paper_balance_usd = 5000
"""


@pytest.fixture(autouse=True)
def _no_leftover_log_handlers() -> Iterator[None]:
    """`run` configures logging onto CliRunner's stderr, which is closed once the invocation returns."""
    yield
    reset_logging()


@pytest.fixture
def config(env: Path, fake_aster: FakeAster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The two-account config file; main's credentials in the environment and known to the fake venue."""
    monkeypatch.setenv("PAPER_CANDLE_INTERVAL", "15m")
    monkeypatch.setenv("MAIN_USER", USER)
    monkeypatch.setenv("MAIN_SIGNER", SIGNER)
    monkeypatch.setenv("MAIN_SIGNER_KEY", SIGNER_KEY)
    fake_aster.add_v3_account(USER, SIGNER)
    path = tmp_path / "accounts.toml"
    path.write_text(ACCOUNTS, encoding="utf-8")
    yield path


def invoke(runner: CliRunner, config: Path, *args: str) -> Any:
    return runner.invoke(app, ["--config", str(config), *args], env={"COLUMNS": "200"})


def log_events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_trading_mode_paper_keeps_a_live_account_table_on_paper(
    config: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `make run` sets: the account the file says is live trades on its paper account, no question."""
    monkeypatch.setenv("TRADING_MODE", "paper")
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    result = invoke(runner, config, "--log-json", "run", "--once", "--account", "main")
    assert result.exit_code == 0, result.output
    [start] = [e for e in log_events(result.stderr) if e["event"] == "start"]
    assert start["account"] == "main" and start["mode"] == "paper" and start["level"] == "info"
    assert fake_aster.order_posts() == [] and fake_aster.signed_requests == []  # nothing reached the venue
    assert fake_aster.positions(USER) == {}

    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    result = invoke(runner, config, "decide", "--account", "main", "--yes", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["mode"] == "paper" and out["execution"] == "executed"
    assert fake_aster.order_posts() == [] and fake_aster.signed_requests == []


@pytest.mark.parametrize(
    "args",
    [
        ("run", "--once"),
        ("run", "--once", "--account", "main"),
        ("decide", "--account", "main", "--yes"),
        ("close", "--all", "--yes", "--account", "main"),
        ("positions", "--account", "main"),
    ],
)
def test_a_file_alone_that_says_live_refuses_to_start(
    config: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, args: tuple[str, ...]
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    result = invoke(runner, config, *args)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert str(config) in line and "'main'" in line and "'side'" not in line
    assert "TRADING_MODE=live" in line and "--live" in line
    assert fake_llm.requests == [] and fake_aster.signed_requests == [] and fake_aster.order_posts() == []


def test_a_top_level_live_mode_in_the_file_alone_refuses_to_start(
    env: Path, runner: CliRunner, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    path = tmp_path / "live.toml"
    path.write_text('trading_mode = "live"\naccount = "solo"\n', encoding="utf-8")
    result = invoke(runner, path, "decide", "--yes")
    assert result.exit_code == 2
    assert str(path) in result.stderr and "'solo'" in result.stderr and "TRADING_MODE=live" in result.stderr
    assert fake_llm.requests == []


def test_live_needs_the_process_opt_in_and_its_start_line_is_a_warning(
    config: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    result = invoke(runner, config, "--log-json", "run", "--once", "--live", "--account", "main")
    assert result.exit_code == 0, result.output
    [start] = [e for e in log_events(result.stderr) if e["event"] == "start"]
    assert start["account"] == "main" and start["mode"] == "live" and start["level"] == "warning"
    assert fake_aster.order_posts() != [] and "BTCUSDT" in fake_aster.positions(USER)

    # TRADING_MODE=live in the environment is the same opt-in.
    monkeypatch.setenv("TRADING_MODE", "live")
    fake_llm.push(answer(decision(asset("BTCUSDT"), asset("ETHUSDT"))))
    result = invoke(runner, config, "decide", "--account", "main", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mode"] == "live"


def test_live_flag_contradicting_trading_mode_paper_is_refused(
    config: Path, runner: CliRunner, fake_aster: FakeAster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADING_MODE", "paper")
    result = invoke(runner, config, "run", "--once", "--live")
    assert result.exit_code == 2
    assert "--live contradicts TRADING_MODE=paper" in result.stderr
    assert fake_aster.signed_requests == []


def test_decide_and_run_agree_on_an_accounts_mode(
    config: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The opt-in lets the account the file sets live trade live; it turns no other account live."""
    monkeypatch.setenv("TRADING_MODE", "live")
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    result = invoke(runner, config, "decide", "--account", "side", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mode"] == "paper"
    fake_llm.push(answer(decision(asset("BTCUSDT"), asset("ETHUSDT"))))
    result = invoke(runner, config, "--log-json", "run", "--once", "--account", "side")
    assert result.exit_code == 0, result.output
    [start] = [e for e in log_events(result.stderr) if e["event"] == "start"]
    assert start["mode"] == "paper"
    assert fake_aster.order_posts() == [] and fake_aster.signed_requests == []
    rows = {r["account"]: r for r in json.loads(invoke(runner, config, "status", "--json").stdout)}
    assert (rows["main"]["mode"], rows["side"]["mode"]) == ("live", "paper")

    result = invoke(runner, config, "decide", "--account", "main", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mode"] == "live"
    # With [accounts] tables, decide acts on one of them, never on the top-level settings.
    result = invoke(runner, config, "decide", "--dry-run")
    assert result.exit_code == 2 and "several accounts (main, side): choose one with --account" in result.stderr


def test_doctor_checks_every_account(
    config: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_aster.set_balance(USER, "4321.5")
    # Without the opt-in, doctor fails on the config, as `run` would: never "mode paper".
    result = invoke(runner, config, "doctor", "--json")
    assert result.exit_code == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["config"]["status"] == "fail" and "'main'" in checks["config"]["detail"]

    result = invoke(runner, config, "doctor", "--live", "--json")
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert result.exit_code == 0, checks
    assert "main (live)" in checks["config"]["detail"] and "side (paper)" in checks["config"]["detail"]
    assert checks["account main"]["detail"].startswith("mode live")
    assert checks["account side"]["detail"].startswith("mode paper")
    assert "signed read works (V3)" in checks["credentials (main)"]["detail"]
    assert "4321.5" in checks["credentials (main)"]["detail"]
    assert "paper mode" in checks["credentials (side)"]["detail"]
    assert {"strategy (main)", "symbols (main)", "model (main)", "model (side)"} <= set(checks)
    assert checks["position mode (main)"]["status"] == "ok"
    assert fake_aster.order_posts() == []

    # Each live account's position mode is read: hedge mode fails that account's check.
    fake_aster.set_position_mode(USER, dual=True)
    result = invoke(runner, config, "doctor", "--live", "--json")
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert result.exit_code == 1
    assert checks["position mode (main)"]["status"] == "fail"
    fake_aster.set_position_mode(USER, dual=False)

    # A live account whose named variable is unset fails its own credentials check.
    monkeypatch.delenv("MAIN_SIGNER_KEY")
    result = invoke(runner, config, "doctor", "--live", "--json")
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert result.exit_code == 1
    assert checks["credentials (main)"]["status"] == "fail"
    assert "MAIN_SIGNER_KEY, which is not set" in checks["credentials (main)"]["detail"]

"""One-line errors, never a traceback: bad symbols, bad backtest options, near misses (the terminal face)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from llmtrader.cli.app import app
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision


def one_line_error(result: object, *needles: str) -> str:
    out = result.stdout + result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in out and "RuntimeError" not in out and "coroutine" not in out, out
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]  # type: ignore[attr-defined]
    assert len(errors) == 1, result.stderr  # type: ignore[attr-defined]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _open_long(runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM) -> None:
    mark = fake_aster.mark("BTCUSDT")
    fake_llm.push(answer(decision(
        asset("BTCUSDT", "buy", allocation_usd=1000, leverage=2, tp_price=round(mark * 1.04, 1),
              sl_price=round(mark * 0.98, 1), confidence=0.7, risk_level="medium"),
        asset("ETHUSDT"),
    )))  # fmt: skip
    result = runner.invoke(app, ["decide", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["execution"] == "executed"


def test_decide_unknown_symbol_with_open_positions_is_one_line(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    _open_long(runner, fake_aster, fake_llm)
    result = runner.invoke(app, ["decide", "--symbols", "BTCUSD"])
    assert result.exit_code == 2
    one_line_error(result, "BTCUSD", "BTCUSDT")


def test_symbol_near_miss_suggests_the_listed_one(paper: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["decide", "--symbols", "btc", "--dry-run"])
    assert result.exit_code == 2
    one_line_error(result, "BTC", "did you mean BTCUSDT")


def test_backtest_bad_leverage_and_balance_are_one_line(clean_env: Path, runner: CliRunner, perp_dir: Path) -> None:
    for args, needle in (
        (["--leverage", "0"], "--leverage"),
        (["--leverage", "-1"], "--leverage"),
        (["--leverage", "500"], "--leverage"),
        (["--balance", "0"], "--balance"),
        (["--balance", "-5"], "--balance"),
    ):
        result = runner.invoke(
            app, ["backtest", "--data", str(perp_dir), "--symbols", "BTCUSDT", "--model", "baseline", *args]
        )
        assert result.exit_code == 2, (args, result.output)
        line = one_line_error(result, needle)
        assert "https://" not in line and "ZeroDivision" not in line


def test_config_key_near_miss(clean_env: Path, runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('intervall = "1h"\n')
    result = runner.invoke(app, ["--config", str(config), "config", "show"])
    assert result.exit_code == 2
    one_line_error(result, "intervall", "did you mean 'interval'")

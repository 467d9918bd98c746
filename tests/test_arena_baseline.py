"""The baseline as a yardstick: it stays inside every preset's limits, so it trades under each of them, and
under ``dca`` it accumulates; a run's report names slippage and the flat reference beside fees and funding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app

# Interval and timeframes per preset, as the excerpt allows (it has 1h and 4h candles, no 1d).
PRESETS = {
    "default": ("1h", "1h,4h"),
    "conservative": ("1h", "1h,4h"),
    "swing": ("4h", "1h,4h"),
    "aggressive": ("1h", "1h,4h"),
    "scalping": ("1h", "1h,4h"),
    "dca": ("4h", "1h,4h"),
}


def run(runner: CliRunner, perp_dir: Path, strategy: str, start: str, end: str) -> dict:
    interval, frames = PRESETS[strategy]
    result = runner.invoke(
        app,
        ["backtest", "--data", str(perp_dir), "--symbols", "BTCUSDT,ETHUSDT", "--from", start, "--to", end,
         "--strategy", strategy, "--interval", interval, "--timeframes", frames, "--model", "baseline", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data: dict = json.loads(result.stdout)
    return data


@pytest.mark.parametrize("strategy", sorted(PRESETS))
def test_the_baseline_trades_under_every_preset_and_none_of_its_openings_is_rejected(
    clean_env: Path, perp_dir: Path, runner: CliRunner, strategy: str
) -> None:
    data = run(runner, perp_dir, strategy, "2025-09-25", "2025-10-25")
    m = data["metrics"]
    opened = m["fills_by_reason"].get("market", 0)
    assert opened >= 3, m
    # It reads the limits: nothing it proposes is refused (amendments of a rounding are allowed).
    assert m["asset_decisions"].get("rejected", 0) == 0, m["asset_decisions"]


def test_under_dca_the_baseline_accumulates_long_positions_and_its_exposure_grows(
    clean_env: Path, perp_dir: Path, runner: CliRunner
) -> None:
    data = run(runner, perp_dir, "dca", "2025-09-25", "2025-11-20")
    equity = data["equity"]
    share = [e["gross_usd"] / e["equity_usd"] for e in equity]
    third = len(share) // 3
    early, late = sum(share[:third]) / third, sum(share[-third:]) / third
    assert late > early * 1.5, (early, late)
    # Several buys on each asset: accumulation, not one trade.
    assert data["metrics"]["fills_by_reason"]["market"] >= 8


def test_a_report_shows_slippage_beside_fees_and_funding_the_flat_reference_and_its_definitions(
    clean_env: Path, perp_dir: Path, runner: CliRunner
) -> None:
    data = run(runner, perp_dir, "default", "2025-10-01", "2025-10-08")
    m = data["metrics"]
    assert m["slippage_usd"] > 0 and m["fees_usd"] > 0 and m["flat_pct"] == 0.0
    # 2 bps on every market, stop and target fill: the fees (3.5 bps of every fill) bound it from above.
    assert m["slippage_usd"] < m["fees_usd"]
    assert set(m["definitions"]) >= {"sharpe", "max_drawdown", "exposure", "slippage"}
    shown = CliRunner().invoke(app, ["backtest", "show", data["run"]], env={"COLUMNS": "80"})
    assert shown.exit_code == 0
    assert "Slippage paid" in shown.stdout and "Flat (cash)" in shown.stdout
    assert max(len(line) for line in shown.stdout.splitlines()) <= 80


def test_a_model_backtest_reports_the_baseline_under_the_same_strategy_as_its_reference(
    env: Path, perp_dir: Path, runner: CliRunner
) -> None:
    result = runner.invoke(
        app,
        ["backtest", "--data", str(perp_dir), "--symbols", "BTCUSDT", "--from", "2025-10-01", "--to", "2025-10-03",
         "--timeframes", "1h,4h", "--strategy", "conservative", "--yes", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)["metrics"]
    reference = runner.invoke(app, ["backtest", "show", m["baseline_run"], "--json"])
    base = json.loads(reference.stdout)
    assert base["spec"]["model"] == "baseline" and base["spec"]["strategy"] == "conservative"
    assert m["baseline_pct"] == base["metrics"]["total_return_pct"] == base["metrics"]["baseline_pct"]
    shown = runner.invoke(app, ["backtest", "show", "latest"], env={"COLUMNS": "80"})
    assert "Baseline (same strategy)" in shown.stdout and "Buy and hold" in shown.stdout

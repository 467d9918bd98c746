"""`llmtrader stats` and the outcome column of `history`, through the CLI, on the account of test_stats.

The arithmetic of every figure is in tests/test_stats.py's docstring and tests; here the command's JSON
must carry the same figures to the cent (USD amounts as numbers at the cent), and the chart, the CSV
and the history column must show them. The period ends at the wall clock's now, so the one figure that
depends on it (the exposure, with T5 still open) is checked against the period the command reports.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from tests.stats_scenario import DAY, JAN1, H, build, c

D = __import__("decimal").Decimal


@pytest.fixture
def db(clean_env: Path) -> Path:
    build(clean_env)
    return clean_env


def invoke(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def stats_json(runner: CliRunner, *args: str) -> dict[str, Any]:
    result = invoke(runner, "stats", "--json", *args)
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def test_stats_json_to_the_cent(db: Path, runner: CliRunner) -> None:
    out = stats_json(runner)
    assert (out["account"], out["mode"], out["note"]) == ("default", "paper", None)
    assert out["period"]["start_ms"] == JAN1 and out["period"]["reset"] == "2025-01-01T00:00:00.000Z"
    t = out["trading"]
    assert (t["trades"], t["wins"], t["losses"], t["win_rate"]) == (4, 2, 2, 0.5)
    # at the cent, half up: gross −100, fees 62.075 (liquidation 50), funding +0.2, net −161.875
    assert (t["gross_pnl_usd"], t["fees_usd"], t["liquidation_fees_usd"], t["funding_usd"], t["net_pnl_usd"]) == (
        -100, 62.08, 50, 0.2, -161.88,
    )  # fmt: skip
    assert c(str(t["net_pnl_usd"])) == D("-161.88") and c(str(t["fees_usd"])) == D("62.08")
    assert round(t["profit_factor"], 6) == 0.644532 and round(t["sharpe"], 4) == -4.5025
    assert (t["equity_start_usd"], t["equity_end_usd"]) == (10000, 9838.13)
    assert t["max_drawdown_usd"] == 455.39 and round(t["max_drawdown_pct"], 4) == 4.4453
    assert (t["avg_hold_ms"], t["liquidations"], t["open_trades"], t["trades_opened"]) == (13_500_000, 1, 1, 5)
    # closed trades held 15h; T5 has been open since +3d1h up to the end of the period
    end = out["period"]["end_ms"]
    assert t["exposure_ms"] == 15 * H + end - (JAN1 + 3 * DAY + H)
    assert t["exposure"] == pytest.approx(t["exposure_ms"] / (end - JAN1), rel=1e-12)
    q = out["decisions"]
    assert (q["decisions"], q["dry_runs"], q["manual_closes"], q["model_errors"], q["venue_errors"]) == (10, 1, 1, 1, 1)
    assert (q["accepted_share"], q["amended_share"], q["rejected_share"]) == (0.7, 0.2, 0.1)
    assert (q["latency_p50_ms"], q["latency_p95_ms"], q["model_latency_p50_ms"], q["model_latency_p95_ms"]) == (
        4500, 30_000, 4500, 29_000,
    )  # fmt: skip
    assert (q["reasks"], q["tokens_per_decision"]) == (3, 1393.0)
    assert (q["cost_usd"], q["cost_per_decision_usd"], q["cost_per_trade_usd"]) == (0.144, 0.016, 0.0288)
    assert [(b["bucket"], b["trades"], b["wins"], b["hit_rate"]) for b in out["calibration"]] == [
        ("0.6-0.7", 1, 1, 1.0), ("0.7-0.8", 2, 1, 0.5), ("0.9-1.0", 1, 0, 0.0),
    ]  # fmt: skip
    curve = out["equity_curve"]
    assert [(p["equity_usd"], p["drawdown_usd"], p["symbol"]) for p in curve] == [
        (10000, 0, None), (10244.21, 0, "ETHUSDT"), (10139.53, 104.69, "BTCUSDT"),
        (9788.83, 455.39, "SOLUSDT"), (9838.13, 406.09, "XRPUSDT"),
    ]  # fmt: skip
    assert curve[3]["net_pnl_usd"] == -350.7 and curve[3]["time"] == "2025-01-03T03:00:00.000Z"
    assert out["by"] is None and out["groups"] == []


def test_stats_by_model_and_arm(db: Path, runner: CliRunner) -> None:
    out = stats_json(runner, "--by", "model")
    groups = {g["key"]: g for g in out["groups"]}
    assert out["by"] == "model" and list(groups) == ["m/alpha", "m/beta"]
    assert groups["m/alpha"]["trading"]["net_pnl_usd"] == -106.49
    assert groups["m/beta"]["trading"]["net_pnl_usd"] == -55.39
    assert groups["m/beta"]["decisions"]["cost_per_trade_usd"] == 0.0435  # 0.087 / 2
    assert out["trading"]["net_pnl_usd"] == -161.88  # the whole account is still there
    arms = {g["key"]: g for g in stats_json(runner, "--by", "arm")["groups"]}
    assert list(arms) == ["a", "b", "(none)"]
    assert [arms[k]["decisions"]["decisions"] for k in arms] == [5, 4, 1]
    assert [arms[k]["trading"]["trades"] for k in arms] == [2, 2, 0]


def test_stats_since_a_date(db: Path, runner: CliRunner) -> None:
    out = stats_json(runner, "--since", "2025-01-03")
    t = out["trading"]
    assert out["period"]["since"] == "2025-01-03T00:00:00.000Z" and out["period"]["start_ms"] == JAN1 + 2 * DAY
    # T3 and T4 only, from 10000 + 244.2125 − 104.685
    assert (t["trades"], t["net_pnl_usd"], t["equity_start_usd"], t["max_drawdown_usd"]) == (
        2, -301.4, 10139.53, 350.7,
    )  # fmt: skip
    assert t["sharpe"] is None and out["decisions"]["decisions"] == 5


def test_stats_table_and_plot(db: Path, runner: CliRunner) -> None:
    result = invoke(runner, "stats", "--plot", "--by", "asset")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("Trading", "-161.88", "62.08", "455.39 (4.45%)", "Decision quality", "Confidence calibration",
                 "Trading by asset", "XRPUSDT", "Equity curve"):  # fmt: skip
        assert text in out, text
    chart = out[out.index("Equity curve") :].splitlines()
    # the axis labels are the highest and lowest equity; the line steps down (╮ … ╰) after the first trade
    assert "10,244.21 ┤" in out and "9,788.83 ┤" in out
    assert any("╮" in line for line in chart) and any("╰" in line for line in chart)
    assert "2025-01-01" in chart[-1]


def test_stats_json_with_plot_keeps_stdout_one_object(db: Path) -> None:
    result = CliRunner().invoke(app, ["stats", "--json", "--plot"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["trading"]["trades"] == 4 and "Equity curve" in result.stderr


def test_stats_csv(db: Path, runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "equity.csv"
    result = invoke(runner, "stats", "--csv", str(path))
    assert result.exit_code == 0, result.output
    with path.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["time", "time_ms", "equity_usd", "drawdown_usd", "drawdown_pct"]
    assert [r[2:4] for r in rows[1:]] == [
        ["10000", "0"], ["10244.2125", "0"], ["10139.5275", "104.685"], ["9788.8275", "455.385"],
        ["9838.125", "406.0875"],
    ]  # fmt: skip
    assert rows[4][0] == "2025-01-03T03:00:00.000Z" and rows[4][4] == "4.445290"
    bad = invoke(runner, "stats", "--csv", str(tmp_path / "missing" / "x.csv"))
    assert bad.exit_code == 2 and "--csv" in bad.stderr


def test_stats_of_an_empty_account(clean_env: Path, runner: CliRunner) -> None:
    result = invoke(runner, "stats")
    assert result.exit_code == 0, result.output
    assert "No closed trades yet." in result.stdout and "Decision quality" in result.stdout
    out = stats_json(runner, "--plot")
    assert out["note"] == "no closed trades yet" and out["trading"]["trades"] == 0 and out["equity_curve"] == []
    assert out["decisions"]["decisions"] == 0
    plotted = invoke(runner, "stats", "--plot")
    assert "no equity curve to draw" in plotted.stdout


def test_stats_of_another_account_and_live(db: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    other = stats_json(runner, "--account", "other")
    assert other["account"] == "other" and other["trading"]["trades"] == 0 and other["decisions"]["decisions"] == 0
    monkeypatch.setenv("TRADING_MODE", "live")
    live = stats_json(runner)
    # no live fills synced and no live decision in this database: nothing, and no paper figure leaks in
    assert live["mode"] == "live" and live["trading"]["trades"] == 0 and live["decisions"]["decisions"] == 0


def test_stats_bad_arguments_exit_2(db: Path, runner: CliRunner) -> None:
    result = invoke(runner, "stats", "--by", "moon")
    assert result.exit_code == 2 and "--by 'moon' is not a grouping; accepted: asset, strategy, model, arm" in (
        result.stderr
    )
    assert invoke(runner, "stats", "--since", "soon").exit_code == 2


# ---- history's outcome column ------------------------------------------------------------------------
def test_history_shows_what_became_of_each_trade(db: Path, runner: CliRunner) -> None:
    result = invoke(runner, "history", "--json")
    assert result.exit_code == 0, result.output
    trades = {(r["decision_id"], a["symbol"]): a["trade"] for r in json.loads(result.stdout) for a in r["assets"]}
    seen = {k: (v["status"], v["role"], v["net_pnl_usd"]) for k, v in trades.items() if v is not None}
    assert seen == {
        ("deca", "ETHUSDT"): ("closed", "opened", 244.21),  # 244.2125 at the cent
        ("decb", "ETHUSDT"): ("closed", "changed", 244.21),  # its partial close is part of T1
        ("decc", "BTCUSDT"): ("closed", "opened", -104.69),  # -104.685, half away from zero
        ("dece", "SOLUSDT"): ("closed", "opened", -350.7),
        ("decf", "XRPUSDT"): ("closed", "opened", 49.3),
        ("decg", "XRPUSDT"): ("closed", "closed", 49.3),
        ("dech", "ETHUSDT"): ("open", "opened", None),
        ("old", "ETHUSDT"): ("reset", "opened", None),  # open when the account was reset
    }
    # no order, no trade: a hold, a rejection, a model error, the dry run
    assert trades[("deca", "BTCUSDT")] is None and trades[("decc", "SOLUSDT")] is None
    assert trades[("decdry", "ETHUSDT")] is None
    assert trades[("dece", "SOLUSDT")]["closing_reason"] == "liquidation"
    table = invoke(runner, "history", "--symbol", "ETHUSDT")
    assert table.exit_code == 0 and "Trade" in table.stdout
    for cell in ("+244.21", "open", "reset"):
        assert cell in table.stdout, cell


def test_history_stays_off_the_heavy_imports(db: Path) -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from llmtrader.cli.app import app; "
        "r = CliRunner().invoke(app, ['history', '--json']); assert r.exit_code == 0, r.output; "
        "assert any(a['trade'] for d in __import__('json').loads(r.stdout) for a in d['assets']); "
        "print(sorted(m for m in ('pandas', 'sqlite_utils', 'numpy', 'httpx') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_history_pages_read_only_what_they_need_and_agree(db: Path, runner: CliRunner) -> None:
    # A page of newer decisions rebuilds their trades from the last flat moment before them, not from the
    # reset: the outcomes are the same as those of the whole history, page after page.
    whole = json.loads(invoke(runner, "history", "--json").stdout)
    everything = {(r["decision_id"], a["symbol"]): a["trade"] for r in whole for a in r["assets"]}
    for n in range(1, len(whole) + 1):
        page = json.loads(invoke(runner, "history", "--json", "--limit", str(n)).stdout)
        assert {(r["decision_id"], a["symbol"]): a["trade"] for r in page for a in r["assets"]} == {
            k: v for k, v in everything.items() if k[0] in {r["decision_id"] for r in page}
        }
    [newest_eth] = json.loads(invoke(runner, "history", "--json", "--symbol", "ETHUSDT", "--limit", "2").stdout)[1:]
    assert newest_eth["decision_id"] == "dech" and newest_eth["assets"][0]["trade"]["status"] == "open"

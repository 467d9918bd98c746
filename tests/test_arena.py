"""``llmtrader arena`` against the loopback model: every answer recorded, a re-run free and identical, a new
model the only one called, ``--max-cost`` stopping a model, and the leaderboard agreeing with ``backtest
show``; then the pictures (80 columns, an offline HTML page with the model's text escaped)."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from tests.fakes.llm import FakeLLM, asked_symbols, asset, completion, decision

WINDOW = ["--from", "2025-10-01", "--to", "2025-10-11"]


def trader(body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    """A model that buys BTC when the prompt's hour is even and holds otherwise, with text to escape."""
    if body["model"] == "fake/b":
        time.sleep(0.01)  # fake/b answers slower: of two models run at once, fake/a finishes first
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    hour = int(user.split("Time: ", 1)[1][11:13])
    symbols = asked_symbols(body)
    assets = [asset(s) for s in symbols]
    if hour % 12 == 0 and body["model"] == "fake/a":
        mark = float(user.split("## BTCUSDT", 1)[1].split("mark ", 1)[1].split(";")[0])
        assets[0] = asset(
            "BTCUSDT", "buy", allocation_usd=500, leverage=2, tp_price=round(mark * 1.03, 1),
            sl_price=round(mark * 0.98, 1), confidence=0.8, rationale="<script>alert(1)</script>",
        )  # fmt: skip
    return 200, {}, completion(json.dumps(decision(*assets)), cost=0.001)


def models_asked(fake: FakeLLM) -> Counter[str]:
    return Counter(str(r["model"]) for r in fake.requests)


def arena(runner: CliRunner, perp_dir: Path, models: str, *extra: str) -> dict[str, Any]:
    result = runner.invoke(
        app,
        ["arena", "--data", str(perp_dir), "--models", models, "--symbols", "BTCUSDT,ETHUSDT", "--timeframes",
         "1h,4h", "--strategy", "default", *WINDOW, "--yes", "--json", *extra],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


@pytest.fixture
def model(env: Path, fake_llm: FakeLLM) -> FakeLLM:
    fake_llm.push(*([trader] * 5000))
    return fake_llm


def figures(doc: dict[str, Any]) -> dict[str, Any]:
    """The leaderboard without what names the runs."""
    keep = {}
    for c in doc["contestants"]:
        keep[c["model"]] = {k: v for k, v in c.items() if k not in ("run", "replay_of", "replayed")}
    return keep


def test_an_arena_records_every_answer_and_its_rerun_is_free_and_identical(
    model: FakeLLM, perp_dir: Path, runner: CliRunner
) -> None:
    level = logging.getLogger("llmtrader.cycle").level
    first = arena(runner, perp_dir, "fake/a,fake/b")
    # Two runs at once quieted the cycle's log: the arena leaves it as it found it.
    assert logging.getLogger("llmtrader.cycle").level == level
    asked = models_asked(model)
    steps = first["contestants"][0]["steps_done"]
    assert steps > 200 and asked == {"fake/a": steps, "fake/b": steps}
    assert [c["model"] for c in first["contestants"]] == ["baseline", "fake/a", "fake/b"]
    a = next(c for c in first["contestants"] if c["model"] == "fake/a")
    assert a["answers"] == steps and a["trades"] > 0 and a["model_cost_usd"] == pytest.approx(0.001 * steps)

    second = arena(runner, perp_dir, "fake/a,fake/b")
    assert models_asked(model) == asked  # not one request more
    assert second["arena"] != first["arena"]
    assert figures(second) == figures(first)
    assert all(c["replayed"] == steps for c in second["contestants"] if c["model"] != "baseline")

    # A third model joins: only it is called.
    third = arena(runner, perp_dir, "fake/a,fake/b,fake/c")
    assert models_asked(model) == {**asked, "fake/c": steps}
    assert figures(third)["fake/a"] == figures(first)["fake/a"]


def test_max_cost_stops_a_model_at_its_budget_and_keeps_what_ran(
    model: FakeLLM, perp_dir: Path, runner: CliRunner
) -> None:
    doc = arena(runner, perp_dir, "fake/a", "--max-cost", "0.005")
    assert models_asked(model) == {"fake/a": 5}
    a = next(c for c in doc["contestants"] if c["model"] == "fake/a")
    assert a["status"] == "stopped" and a["steps_done"] == 5 and "--max-cost" in a["stop_reason"]
    base = next(c for c in doc["contestants"] if c["model"] == "baseline")
    assert base["status"] == "finished" and base["steps_done"] > 200


def test_the_leaderboard_of_a_contestant_equals_backtest_show_of_its_run(
    model: FakeLLM, perp_dir: Path, runner: CliRunner
) -> None:
    doc = arena(runner, perp_dir, "fake/a")
    for c in doc["contestants"]:
        shown = runner.invoke(app, ["backtest", "show", c["run"], "--json"])
        m = json.loads(shown.stdout)["metrics"]
        assert c["return_pct"] == m["total_return_pct"] and c["sharpe"] == m["sharpe"]
        assert c["max_drawdown_pct"] == m["max_drawdown_pct"] and c["trades"] == m["trades"]
        assert (c["fees_usd"], c["funding_usd"], c["slippage_usd"]) == (m["fees_usd"], m["funding_usd"],
                                                                        m["slippage_usd"])  # fmt: skip
        # Every report shows the baseline under the same strategy beside it.
        assert m["baseline_pct"] == doc["references"]["baseline"]["return_pct"]
        assert c["excess_over_buy_and_hold_pct"] == pytest.approx(
            m["total_return_pct"] - m["buy_and_hold_pct"]["portfolio"]
        )
    assert set(doc["references"]) == {"buy_and_hold", "baseline", "flat"}
    for c in doc["contestants"]:
        for edge in (c["edge_over_baseline"], c["edge_over_buy_and_hold"]):
            low, high = edge["ci95_pct"]
            assert low <= edge["excess_pct"] <= high and edge["verdict"] in ("better", "worse", "noise")


def test_other_limits_rejudge_the_recorded_answers_without_calling_a_model(
    model: FakeLLM, perp_dir: Path, runner: CliRunner
) -> None:
    arena(runner, perp_dir, "fake/a")
    asked = models_asked(model)
    doc = arena(runner, perp_dir, "fake/a", "--strategy", "conservative")
    assert models_asked(model) == asked
    a = next(c for c in doc["contestants"] if c["model"] == "fake/a")
    # The answers buy at 2 % below with confidence 0.8: conservative wants 2 to 4 ATR and 2.0 reward/risk.
    assert a["replay_of"] and a["verdict_changes"] > 0


def test_arena_list_show_the_chart_in_80_columns_and_an_offline_html_report(
    model: FakeLLM, perp_dir: Path, runner: CliRunner, tmp_path: Path
) -> None:
    doc = arena(runner, perp_dir, "fake/a")
    listed = runner.invoke(app, ["arena", "list", "--json"])
    assert json.loads(listed.stdout)[0]["arena"] == doc["arena"]
    shown = runner.invoke(app, ["arena", "show", "latest"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any("buy-and-hold" in line for line in lines) and any("flat" in line for line in lines)
    page = tmp_path / "arena.html"
    written = runner.invoke(app, ["arena", "show", doc["arena"], "--html", str(page), "--json"])
    assert written.exit_code == 0, written.output
    text = page.read_text()
    assert "<svg" in text and "fake/a" in text and "Trades of fake/a" in text
    assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    # Nothing to fetch: the only address is the SVG namespace, an identifier.
    assert "://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "default-src 'none'" in text  # and the page forbids loading anything


def test_an_arena_without_a_terminal_needs_yes_and_names_the_estimated_cost(
    model: FakeLLM, perp_dir: Path, runner: CliRunner
) -> None:
    result = runner.invoke(app, ["arena", "--data", str(perp_dir), "--models", "fake/a", "--symbols", "BTCUSDT",
                                 "--timeframes", "1h,4h", *WINDOW])  # fmt: skip
    assert result.exit_code != 0
    assert "fake/a:" in result.output and "calls" in result.output and "--yes" in result.output
    assert models_asked(model) == {}

"""``llmtrader arena --live``: two paper accounts, one model each, run through real cycles against the loopback
venue and model; the leaderboard's figures are each account's ``stats --account NAME --json`` figures, the
screen fits 80 columns and says which figures a live arena has not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.logs import reset_logging
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, asked_symbols, asset, completion, decision

CONFIG = """
assets = ["BTCUSDT", "ETHUSDT"]
decision_cache_ttl_s = 0

[accounts.alpha]
llm_model = "fake/alpha"

[accounts.beta]
llm_model = "fake/beta"
paper_balance_usd = 5000
"""


@pytest.fixture(autouse=True)
def _no_leftover_log_handlers() -> Iterator[None]:
    """`run` configures logging onto CliRunner's stderr, which is closed once the invocation returns."""
    yield
    reset_logging()


def trader(body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    """fake/alpha buys BTC when flat and closes it when it holds it; fake/beta holds ETH long throughout."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    assets = [asset(s) for s in asked_symbols(body)]
    btc = float(user.split("## BTCUSDT", 1)[1].split("mark ", 1)[1].split(";")[0])
    eth = float(user.split("## ETHUSDT", 1)[1].split("mark ", 1)[1].split(";")[0])
    holds_btc = "- BTCUSDT long" in user
    if body["model"] == "fake/alpha":
        if holds_btc:
            assets[0] = asset("BTCUSDT", "close_position", confidence=0.7)
        else:
            assets[0] = asset("BTCUSDT", "buy", allocation_usd=1000, leverage=2, tp_price=round(btc * 1.04, 1),
                              sl_price=round(btc * 0.98, 1), confidence=0.8)  # fmt: skip
    elif "- ETHUSDT long" not in user:
        assets[1] = asset("ETHUSDT", "buy", allocation_usd=800, leverage=1, tp_price=round(eth * 1.04, 2),
                          sl_price=round(eth * 0.98, 2), confidence=0.6)  # fmt: skip
    return 200, {}, completion(json.dumps(decision(*assets)), cost=0.002)


@pytest.fixture
def accounts(
    env: Path, fake_aster: FakeAster, fake_llm: FakeLLM, runner: CliRunner, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:  # fmt: skip
    monkeypatch.setenv("PAPER_CANDLE_INTERVAL", "15m")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    fake_llm.push(*([trader] * 50))
    marks = {"BTCUSDT": (86_000, 86_900, 86_300, 87_100), "ETHUSDT": (2_930, 2_960, 2_900, 3_000)}
    for i in range(4):
        for symbol, path in marks.items():
            fake_aster.set_mark(symbol, path[i])
        result = runner.invoke(app, ["--config", str(config), "run", "--once"])
        assert result.exit_code == 0, result.output
    return config


def stats_of(runner: CliRunner, config: Path, account: str, *extra: str) -> dict[str, Any]:
    result = runner.invoke(app, ["--config", str(config), "stats", "--account", account, "--json", *extra])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def live(runner: CliRunner, config: Path, *extra: str) -> Any:
    return runner.invoke(app, ["--config", str(config), "arena", "--live", *extra])


def test_the_live_arena_shows_each_accounts_stats_figures(accounts: Path, runner: CliRunner) -> None:
    result = live(runner, accounts, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # one document
    board = {c["model"]: c for c in doc["contestants"]}
    assert sorted(board) == ["alpha", "beta"]
    assert board["alpha"]["llm_model"] == "fake/alpha" and board["beta"]["llm_model"] == "fake/beta"
    for name in ("alpha", "beta"):
        s = stats_of(runner, accounts, name)
        t, d, c = s["trading"], s["decisions"], board[name]
        assert c["trades"] == t["trades"]
        assert c["win_rate"] == t["win_rate"] and c["profit_factor"] == t["profit_factor"]
        assert c["sharpe"] == t["sharpe"] and c["max_drawdown_pct"] == t["max_drawdown_pct"]
        assert c["fees_usd"] == float(t["fees_usd"]) and c["funding_usd"] == float(t["funding_usd"])
        start, end = float(t["equity_start_usd"]), float(t["equity_end_usd"])
        assert c["return_pct"] == pytest.approx((end / start - 1) * 100)
        assert c["model_cost_usd"] == float(d["cost_usd"]) > 0
        assert c["answers"] == d["decisions"] == 4
        assert c["prompt_tokens"] == d["prompt_tokens"] and c["completion_tokens"] == d["completion_tokens"]
        assert c["latency_p50_ms"] == d["model_latency_p50_ms"] and c["reasks"] == d["reasks"]
        assert c["verdicts"] == {k: d[k] for k in ("accepted", "amended", "rejected")}
    # alpha bought and closed BTC; beta still holds its ETH
    assert board["alpha"]["trades"] >= 1 and board["beta"]["trades"] == 0
    assert stats_of(runner, accounts, "beta")["trading"]["open_trades"] == 1
    # buy-and-hold, equal weight over BTC and ETH at the marks the decisions saw: first to last
    bh = doc["references"]["buy_and_hold"]["return_pct"]
    assert bh == pytest.approx(((87_100 / 86_000 + 3_000 / 2_930) / 2 - 1) * 100, rel=1e-3)
    assert board["alpha"]["excess_over_buy_and_hold_pct"] == pytest.approx(board["alpha"]["return_pct"] - bh)
    assert set(doc["not_available_live"]) == {"slippage_usd", "brier", "avg_gross_exposure_pct"}
    assert all(board[n]["slippage_usd"] is None and board[n]["brier"] is None for n in board)


def test_the_live_arena_screen_fits_80_columns_and_names_what_is_missing(accounts: Path, runner: CliRunner) -> None:
    result = live(runner, accounts)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any(line.startswith("Not available live") and "slippage" in line for line in lines)
    assert "alpha: fake/alpha" in result.stdout and "Results" in result.stdout
    assert "not available yet" not in result.output


def test_since_narrows_the_live_arena_like_stats(accounts: Path, runner: CliRunner) -> None:
    result = live(runner, accounts, "--since", "2099-01-01", "--json")
    assert result.exit_code == 0, result.output
    board = {c["model"]: c for c in json.loads(result.stdout)["contestants"]}
    for name in ("alpha", "beta"):
        s = stats_of(runner, accounts, name, "--since", "2099-01-01")
        assert board[name]["trades"] == s["trading"]["trades"] == 0
        assert board[name]["answers"] == s["decisions"]["decisions"] == 0


def test_the_live_arena_needs_two_paper_accounts(env: Path, runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["arena", "--live"])
    assert result.exit_code == 2
    assert "two or more paper accounts" in result.output
    bad = runner.invoke(app, ["arena", "--live", "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since 'yesterday' is not a date" in bad.output

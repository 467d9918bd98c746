"""The limits that need history, end to end: cooldown, minimum hold and the daily loss limit read what the
store recorded, and the prompt shows the paper account's closed trades and performance."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.config.strategies import builtin_dir
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision
from tests.helpers import decide, long_btc, show


def strategy_with(directory: Path, name: str, **limits: float) -> None:
    """A copy of the default strategy with some limits changed."""
    text = (builtin_dir() / "default.toml").read_text()
    text = re.sub(r'(?m)^name = ".*"$', f'name = "{name}"', text, count=1)
    for key, value in limits.items():
        text, found = re.subn(rf"(?m)^{key} = [\d.]+", f"{key} = {value}", text, count=1)
        assert found == 1, key
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.toml").write_text(text)


@pytest.fixture
def paper(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PAPER_CANDLE_INTERVAL", "15m")
    monkeypatch.setenv("LLMTRADER_STRATEGIES_DIR", str(tmp_path / "strategies"))
    monkeypatch.setenv("ASSETS", "BTCUSDT")
    return env


def reasons(out: dict, symbol: str = "BTCUSDT") -> list[str]:  # type: ignore[type-arg]
    (a,) = [a for a in out["assets"] if a["symbol"] == symbol]
    return list(a["validation"]["reasons"])


def test_a_new_opening_waits_for_the_cooldown_after_a_close(
    paper: Path, tmp_path: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    strategy_with(tmp_path / "strategies", "cool", cooldown_minutes=120)
    fake_llm.push(answer(decision(long_btc(fake_aster))))
    code, out, _ = decide(runner, "--strategy", "cool")
    assert code == 0 and out is not None and out["execution"] == "executed"
    closed = runner.invoke(app, ["close", "BTCUSDT", "--yes"])
    assert closed.exit_code == 0, closed.output
    fake_llm.push(answer(decision(long_btc(fake_aster))))
    code, out, _ = decide(runner, "--strategy", "cool")
    assert code == 0 and out is not None
    assert out["assets"][0]["validation"]["status"] == "rejected"
    assert any(r.startswith("cooldown: the BTCUSDT position closed at") for r in reasons(out))
    # the closed round trip is shown to the model, rebuilt from the paper account's fills
    user = show(runner, out["decision_id"])["prompt"]["user"]
    trades = user.split("# Recent closed trades (newest first)\n", 1)[1].split("\n# ", 1)[0]
    (line,) = trades.strip().splitlines()
    assert line.startswith("- BTCUSDT long: opened ") and ", closed by market" in line and "PnL -" in line
    performance = user.split("# Performance\n", 1)[1].split("\n", 1)[0]
    assert ": 1 closed trades, win rate 0%, net PnL -" in performance


def test_a_position_younger_than_the_minimum_hold_is_not_closed_by_the_model(
    paper: Path, tmp_path: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    strategy_with(tmp_path / "strategies", "holder", min_hold_minutes=60)
    fake_llm.push(answer(decision(long_btc(fake_aster))))
    code, out, _ = decide(runner, "--strategy", "holder")
    assert code == 0 and out is not None and out["execution"] == "executed"
    fake_llm.push(answer(decision(asset("BTCUSDT", "close_position"))))
    code, out, _ = decide(runner, "--strategy", "holder")
    assert code == 0 and out is not None
    assert out["assets"][0]["validation"]["status"] == "rejected"
    assert any(r.startswith("minimum hold: the BTCUSDT position opened 0 min ago") for r in reasons(out))
    assert out["execution"] == "nothing"


def test_the_daily_loss_limit_reads_the_equity_recorded_before_midnight(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_llm.push(answer(decision(asset("BTCUSDT"))))
    code, out, _ = decide(runner)  # a first decision records the equity (10,000 on a fresh paper account)
    assert code == 0 and out is not None
    conn = sqlite3.connect(paper)
    with conn:  # pretend yesterday's last decision saw 12,000: today is down 16.7 %, over the 10 % limit
        conn.execute("UPDATE decisions SET created_at = '2000-01-01T00:00:00.000Z', equity_usd = 12000")
    fake_llm.push(answer(decision(long_btc(fake_aster))))
    code, out, _ = decide(runner)
    assert code == 0 and out is not None
    assert out["assets"][0]["validation"]["status"] == "rejected"
    assert any(r.startswith("daily loss limit reached: today's loss 2000 USD is 16.67%") for r in reasons(out))

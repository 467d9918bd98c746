"""A manual ``decide`` honours the kill switches the agent's cycles latched (principle 2: every limit on every
action that can change risk): no opening while the daily loss switch of today or the drawdown stop is on."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.core.guards import GuardState, KillState
from llmtrader.core.times import DAY_MS
from llmtrader.storage.store import Store
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision
from tests.helpers import long_btc


def latch(db: Path, kill: KillState) -> None:
    store = Store(db)
    try:
        store.save_guard_state("default", GuardState(kill=kill), now_ms=int(time.time() * 1000))
    finally:
        store.close()


def decide(runner: CliRunner) -> dict[str, object]:
    result = runner.invoke(app, ["decide", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize("switch", ["daily_loss", "drawdown"])
def test_decide_refuses_an_opening_while_a_kill_switch_is_on(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, switch: str
) -> None:
    today = int(time.time() * 1000) // DAY_MS
    if switch == "daily_loss":
        latch(paper, KillState(daily_loss_day=today, daily_loss_reason="daily loss switch: 6% down today"))
    else:
        latch(paper, KillState(stopped_at_ms=int(time.time() * 1000), stopped_reason="maximum drawdown reached"))
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    doc = decide(runner)
    btc = next(a for a in doc["assets"] if a["symbol"] == "BTCUSDT")  # type: ignore[attr-defined]
    assert btc["validation"]["status"] == "rejected"
    wanted = "daily loss switch" if switch == "daily_loss" else "maximum drawdown"
    assert any(wanted in r for r in btc["validation"]["reasons"])
    assert json.loads(runner.invoke(app, ["positions", "--json"]).stdout) == []  # nothing opened


def test_yesterdays_daily_loss_switch_no_longer_holds(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    yesterday = int(time.time() * 1000) // DAY_MS - 1
    latch(paper, KillState(daily_loss_day=yesterday, daily_loss_reason="daily loss switch: yesterday"))
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    doc = decide(runner)
    btc = next(a for a in doc["assets"] if a["symbol"] == "BTCUSDT")  # type: ignore[attr-defined]
    assert btc["validation"]["status"] in ("accepted", "amended"), btc
    assert [p["symbol"] for p in json.loads(runner.invoke(app, ["positions", "--json"]).stdout)] == ["BTCUSDT"]

"""`run --once` tells cron and `make run` users when its cycle could not reach the model or the venue."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.logs import reset_logging
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision, error


@pytest.fixture(autouse=True)
def _no_leftover_log_handlers() -> Iterator[None]:
    yield
    reset_logging()


def _outcomes(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return [(r[0], r[1] or "") for r in conn.execute("SELECT outcome, reason FROM cycles ORDER BY started_at")]


def test_run_once_exits_1_when_the_model_cannot_be_reached(
    paper: Path, runner: CliRunner, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_MAX_RETRIES", "0")
    for _ in range(6):
        fake_llm.push(error(503, "upstream down"))
    result = runner.invoke(app, ["--log-json", "run", "--once"])
    assert result.exit_code == 1, result.output
    assert _outcomes(paper)[-1][0] == "model_error"
    assert "could not reach the model" in result.stderr  # said prominently, not only in a log line


def test_run_once_exits_1_when_the_venue_cannot_be_read(paper: Path, runner: CliRunner, fake_aster: FakeAster) -> None:
    fake_aster.stop()  # the venue is gone: nothing answers on its port
    result = runner.invoke(app, ["--log-json", "run", "--once"])
    assert result.exit_code == 1, result.output
    assert "could not reach the venue" in result.stderr


def test_run_once_exits_0_when_the_cycle_ran(paper: Path, runner: CliRunner, fake_llm: FakeLLM) -> None:
    fake_llm.push(answer(decision(asset("BTCUSDT"), asset("ETHUSDT"))))
    result = runner.invoke(app, ["--log-json", "run", "--once"])
    assert result.exit_code == 0, result.output
    assert _outcomes(paper)[-1][0] == "held"


def test_http_request_lines_stay_at_debug(paper: Path, runner: CliRunner, fake_llm: FakeLLM) -> None:
    fake_llm.push(answer(decision(asset("BTCUSDT"), asset("ETHUSDT"))))
    result = runner.invoke(app, ["--log-json", "run", "--once"])
    assert result.exit_code == 0, result.output
    assert "HTTP Request" not in result.stderr


def test_a_trade_rejected_by_the_risk_checks_is_a_veto_not_held(
    paper: Path, runner: CliRunner, fake_llm: FakeLLM, fake_aster: FakeAster
) -> None:
    mark = fake_aster.mark("BTCUSDT")
    # a long whose stop is above the price: rejected; the other asset holds
    bad = asset("BTCUSDT", "buy", allocation_usd=1000, leverage=2, tp_price=round(mark * 1.04, 1),
                sl_price=round(mark * 1.02, 1), confidence=0.7, risk_level="medium")  # fmt: skip
    fake_llm.push(*[answer(decision(bad, asset("ETHUSDT")))] * 4)
    result = runner.invoke(app, ["--log-json", "run", "--once"])
    assert result.exit_code == 0, result.output
    outcome, reason = _outcomes(paper)[-1]
    assert outcome == "risk_veto" and "BTCUSDT" in reason, reason


def test_stopping_run_prints_a_session_summary(paper: Path, fake_llm: FakeLLM) -> None:
    import signal
    import subprocess
    import sys

    fake_llm.push(answer(decision(asset("BTCUSDT"), asset("ETHUSDT"))))
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmtrader", "--log-json", "run"], stderr=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        for raw in proc.stderr:  # the catch-up cycle of a first start, then stop
            lines.append(raw.decode())
            if '"event": "cycle"' in lines[-1]:
                break
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    text = "".join(lines) + rest.decode()
    summary = [json.loads(x) for x in text.splitlines() if "session:" in x]
    assert summary, text
    assert summary[0]["account"] == "default" and "1 cycles (held 1)" in summary[0]["event"]

"""A close answered "no" on a terminal is recorded as declined (nothing sent), never as accepted.

`llmtrader close` runs in a subprocess whose stdin is a pseudo-terminal, as a person would use it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from llmtrader.cli.app import app
from tests.conftest import USER
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision


def _close_on_a_terminal(reply: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    master, slave = os.openpty()
    try:
        os.write(master, reply)  # typed ahead: the terminal keeps it until the question reads it
        env = {**os.environ, "CI": "", "COLUMNS": "80", "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"}
        return subprocess.run(
            [sys.executable, "-m", "llmtrader", "close", *args],
            stdin=slave, capture_output=True, env=env, timeout=120, check=False,
        )  # fmt: skip
    finally:
        os.close(slave)
        os.close(master)


def _open_long(runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM) -> None:
    mark = fake_aster.mark("BTCUSDT")
    fake_llm.push(answer(decision(
        asset("BTCUSDT", "buy", allocation_usd=1000, leverage=2, tp_price=round(mark * 1.04, 1),
              sl_price=round(mark * 0.98, 1), confidence=0.7),
    )))  # fmt: skip
    result = runner.invoke(app, ["decide", "--live", "--yes"])
    assert result.exit_code == 0, result.output
    assert fake_aster.positions(USER).get("BTCUSDT", 0) > 0


def test_answering_no_to_a_close_records_it_as_declined(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    _open_long(runner, fake_aster, fake_llm)
    posts = len(fake_aster.order_posts())
    done = _close_on_a_terminal(b"n\n", "BTCUSDT", "--live")
    stdout = done.stdout.decode()
    assert done.returncode == 0, stdout + done.stderr.decode()
    assert "Close BTCUSDT" in stdout and "declined" in stdout
    assert fake_aster.positions(USER).get("BTCUSDT", 0) > 0 and len(fake_aster.order_posts()) == posts
    history: list[dict[str, Any]] = json.loads(runner.invoke(app, ["history", "--json"]).stdout)
    closing = history[0]
    assert closing["execution"] == "declined"
    shown = json.loads(runner.invoke(app, ["show", closing["decision_id"], "--json"]).stdout)
    assert shown["execution"] == "declined"
    assert [a["status"] for a in shown["assets"]] == ["declined"]  # the person said no: not "accepted"
    assert [a["status"] for a in closing["assets"]] == ["declined"]
    assert "accepted" not in json.dumps(shown)


def test_answering_yes_to_a_close_closes_and_records_it_accepted(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    _open_long(runner, fake_aster, fake_llm)
    done = _close_on_a_terminal(b"y\n", "BTCUSDT", "--live")
    stdout = done.stdout.decode()
    assert done.returncode == 0, stdout + done.stderr.decode()
    assert fake_aster.positions(USER).get("BTCUSDT", 0) == 0
    closing = json.loads(runner.invoke(app, ["history", "--json"]).stdout)[0]
    assert closing["execution"] == "executed"
    assert [a["status"] for a in closing["assets"]] == ["accepted"]

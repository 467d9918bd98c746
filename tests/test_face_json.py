"""With --json, stdout holds exactly one JSON document even when the command asks a question on a terminal:
the table and the [y/N] prompt go to stderr (the terminal), never into `> out.json`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import USER
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision


def on_a_terminal(reply: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`llmtrader ARGS` with a pseudo-terminal on stdin answering ``reply``; stdout captured as a file would be."""
    master, slave = os.openpty()
    try:
        os.write(master, reply)  # typed ahead: the terminal keeps it until the question reads it
        env = {**os.environ, "CI": "", "COLUMNS": "80", "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"}
        return subprocess.run(
            [sys.executable, "-m", "llmtrader", *args],
            stdin=slave, capture_output=True, env=env, timeout=120, check=False,
        )  # fmt: skip
    finally:
        os.close(slave)
        os.close(master)


def long_btc(fake_aster: FakeAster) -> dict[str, Any]:
    mark = fake_aster.mark("BTCUSDT")
    return asset("BTCUSDT", "buy", allocation_usd=1000, leverage=2, tp_price=round(mark * 1.04, 1),
                 sl_price=round(mark * 0.98, 1), confidence=0.7, risk_level="medium")  # fmt: skip


def test_live_decide_json_on_a_terminal_keeps_stdout_one_document(
    live: Path, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    done = on_a_terminal(b"y\n", "decide", "--json")
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, stdout + stderr
    out = json.loads(stdout)  # the whole of stdout: one document
    assert out["execution"] == "executed" and out["mode"] == "live"
    assert "REAL money? [y/N]" in stderr and "About to execute" in stderr
    assert fake_aster.positions(USER).get("BTCUSDT", 0) > 0


def test_close_all_json_on_a_terminal_keeps_stdout_one_document(
    paper: Path, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    opened = subprocess.run([sys.executable, "-m", "llmtrader", "decide", "--json"], capture_output=True, check=False)
    assert opened.returncode == 0, opened.stderr.decode()
    done = on_a_terminal(b"y\n", "close", "--all", "--json")
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, stdout + stderr
    out = json.loads(stdout)
    assert out["execution"] == "executed" and [a["symbol"] for a in out["assets"]] == ["BTCUSDT"]
    (closed,) = out["closed"]  # what the close realised, from the position's entry and the close's fill
    assert closed["symbol"] == "BTCUSDT" and isinstance(closed["realized_pnl_usd"], float)
    assert float(closed["size"]) > 0 and closed["exit_price"] > 0
    assert (
        "[y/N]" in stderr and "BTCUSDT (long " in stderr and "notional " in stderr and "on the paper account" in stderr
    )

"""`run` on a terminal prints one readable line per cycle (what was traded, held or vetoed, and why), at most
80 columns, no symbol or number split; on a pipe it prints nothing (the log lines are the record)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import tempfile
import termios
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.cycle.run import CycleResult
from llmtrader.logs import reset_logging
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision
from tests.helpers import rows

T0 = 1_773_151_205_000  # 2026-03-10T14:00:05Z


@pytest.fixture(autouse=True)
def _no_leftover_log_handlers() -> Iterator[None]:
    yield
    reset_logging()


def on_a_terminal(*args: str, columns: int = 80) -> tuple[int, str]:
    """Run llmtrader with stdout on a pseudo-terminal ``columns`` wide; its exit code and what it showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    with tempfile.TemporaryFile() as logs:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmtrader", "--log-json", *args],
            stdin=subprocess.DEVNULL, stdout=slave, stderr=logs, env=env,
        )  # fmt: skip
        os.close(slave)
        shown = b""
        try:
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the terminal's last writer has gone
                    break
                if not chunk:
                    break
                shown += chunk
        finally:
            os.close(master)
            code = proc.wait(timeout=120)
    return code, shown.decode().replace("\r\n", "\n")


def three_assets(fake_aster: FakeAster) -> dict[str, Any]:
    btc, sol = fake_aster.mark("BTCUSDT"), fake_aster.mark("SOLUSDT")
    long_btc = asset("BTCUSDT", "buy", allocation_usd=1000, leverage=2, tp_price=round(btc * 1.04, 1),
                     sl_price=round(btc * 0.98, 1), confidence=0.7, risk_level="medium")  # fmt: skip
    # a long whose stop is above the price: vetoed by the risk checks
    bad_sol = asset("SOLUSDT", "buy", allocation_usd=500, leverage=2, tp_price=round(sol * 1.04, 2),
                    sl_price=round(sol * 1.02, 2), confidence=0.7, risk_level="medium")  # fmt: skip
    return decision(long_btc, asset("ETHUSDT"), bad_sol)


def test_run_on_a_terminal_shows_traded_held_and_vetoed_in_one_line_of_80_columns(
    paper: Path, fake_llm: FakeLLM, fake_aster: FakeAster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSETS", "BTCUSDT,ETHUSDT,SOLUSDT")
    monkeypatch.setenv("LLMTRADER_ACCOUNT", "main")
    fake_llm.push(*[answer(three_assets(fake_aster))] * 4)
    code, shown = on_a_terminal("run", "--once")
    assert code == 0, shown
    lines = [line for line in shown.splitlines() if line.strip()]
    assert len(lines) == 1, shown  # one line for the one cycle
    [line] = lines
    assert cell_len(line) <= 80, line
    [cycle] = rows(paper, "SELECT started_at, outcome, decision_id FROM cycles")
    assert cycle["outcome"] == "traded"
    assert line.startswith(f"{cycle['started_at'][11:16]} main  "), line
    [entry] = rows(paper, "SELECT executed_qty, avg_price FROM orders WHERE symbol = 'BTCUSDT' AND leg = 'en'")
    match = re.search(r"traded BTCUSDT long (\S+) @ (\S+?)(;|$)", line)
    assert match is not None, line
    assert Decimal(match[1]) == Decimal(entry["executed_qty"])  # the whole size
    assert abs(Decimal(match[2].replace(",", "")) - Decimal(entry["avg_price"])) <= Decimal("0.1")  # at the tick
    assert "held ETHUSDT" in line and "vetoed SOLUSDT" in line


def test_run_not_on_a_terminal_prints_no_cycle_line(
    paper: Path, runner: CliRunner, fake_llm: FakeLLM, fake_aster: FakeAster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSETS", "BTCUSDT,ETHUSDT,SOLUSDT")
    fake_llm.push(*[answer(three_assets(fake_aster))] * 4)
    result = runner.invoke(app, ["--log-json", "run", "--once"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the structured log lines on stderr are the record
    assert '"event": "cycle"' in result.stderr


def cycle_line(result: CycleResult, record: dict[str, Any] | None) -> str:
    from llmtrader.cli.cycleline import cycle_line

    return cycle_line(result, record)


def _result(outcome: str = "risk_veto", reason: str | None = None, decision_id: str | None = "d1") -> CycleResult:
    return CycleResult("main", T0, T0 + 900, outcome, reason, decision_id)


def _vetoed(symbol: str, reason: str) -> dict[str, Any]:
    return {"symbol": symbol, "action": "buy", "status": "rejected", "reasons": [reason]}


def test_a_long_reason_is_cut_between_words_and_no_number_is_split() -> None:
    reason = "stop distance 412.35 is 0.41 ATR (ATR14 1003.2), below the minimum 0.5 ATR of the strategy conservative"
    record = {
        "execution": "nothing",
        "assets": [
            {"symbol": "BTCUSDT", "action": "hold", "status": "accepted", "reasons": []},
            _vetoed("ETHUSDT", reason),
        ],
        "orders": [],
    }
    line = cycle_line(_result(), record)
    assert cell_len(line) <= 80
    assert line.startswith("14:00 main  held BTCUSDT; vetoed ETHUSDT (stop distance 412.35 is 0.41 ATR")
    assert line.endswith("…)")
    shown = line.split("(", 1)[1].rstrip("…)")
    assert reason.startswith(shown)  # a prefix of whole words: no number cut
    assert reason[len(shown)] == " "


def test_plain_holds_are_named_together() -> None:
    holds = [{"symbol": s, "action": "hold", "status": "accepted", "reasons": []} for s in ("ETHUSDT", "SOLUSDT")]
    record = {"execution": "nothing", "assets": [holds[0], _vetoed("BTCUSDT", "sl_price is missing"), holds[1]]}
    assert cycle_line(_result(), record) == "14:00 main  held ETHUSDT, SOLUSDT; vetoed BTCUSDT (sl_price is missing)"


def test_many_assets_leave_whole_parts_off_and_say_how_many() -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "LINKUSDT"]
    record = {"execution": "nothing", "assets": [_vetoed(s, "sl_price is missing") for s in symbols], "orders": []}
    line = cycle_line(_result(), record)
    assert cell_len(line) <= 80
    match = re.search(r"; \+(\d) more$", line)
    assert match is not None, line
    named = [s for s in symbols if f"vetoed {s}" in line]
    assert named == symbols[: len(named)] and len(named) + int(match[1]) == len(symbols)


def test_a_cycle_without_a_decision_says_its_outcome_and_why() -> None:
    reason = "reconcile failed, positions left as they are: the venue cannot be reached: \x1b[31mConnectError " * 3
    line = cycle_line(_result("skipped", reason, None), None)
    assert cell_len(line) <= 80 and "\x1b" not in line
    assert line.startswith("14:00 main  skipped: reconcile failed, positions left as they are")

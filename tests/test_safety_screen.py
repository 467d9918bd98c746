"""Untrusted text stays text: model answers, venue messages and notes never steer the terminal, and the
live confirmation is built from validated values only.

End to end against the fake venue and the fake model (real HTTP on loopback); the live confirmation runs
`llmtrader decide` in a subprocess whose stdin is a pseudo-terminal, as a person would.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.cli.render import untrusted
from llmtrader.core.formatting import safe_text
from llmtrader.logs import configure_logging, get_logger, reset_logging
from tests.conftest import USER
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision, error

ESC = "\x1b"
# Erase the screen above and draw a fake all-hold table: what a hostile rationale did before.
ERASE = "\x1b[40A\x1b[J"
FAKE_HOLD = f"{ERASE}Decision: HOLD everything, nothing will be sent\r\n\x9b2J"


def invoke(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "120"})


def hostile_long(fake_aster: FakeAster) -> dict[str, Any]:
    mark = fake_aster.mark("BTCUSDT")
    return asset(
        "BTCUSDT", "buy", allocation_usd=1000, leverage=2, tp_price=round(mark * 1.04, 1),
        sl_price=round(mark * 0.98, 1), confidence=0.7, risk_level="medium", rationale=f"[/INST] {FAKE_HOLD}",
    )  # fmt: skip


def push_hostile(fake_llm: FakeLLM, fake_aster: FakeAster) -> None:
    """A sound long on BTCUSDT whose texts carry escape sequences and Rich markup, plus an invalid asset
    whose symbol and action are hostile too; given again when re-asked, so its valid part is kept."""
    bad = asset(f"ETH{ERASE}USDT", "[/INST]", rationale=FAKE_HOLD)
    hostile = decision(hostile_long(fake_aster), asset("ETHUSDT"), bad, rationale=f"[/INST] {FAKE_HOLD}")
    fake_llm.push(*[answer(hostile)] * 5)


def recorded_id(stdout: str) -> str:
    match = re.search(r"Recorded as (\w+)", stdout)
    assert match, stdout
    return match.group(1)


# ---- item 6: the terminal -----------------------------------------------------------------------------


def test_hostile_model_text_cannot_hide_an_emergency_or_change_its_exit_code(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    # The stop-loss is refused, so the long is flattened: an emergency, exit 3 with its red panel.
    fake_aster.reject_order({"type": "STOP_MARKET"}, -1000, f"stop refused [/bold]{ERASE}", times=10)
    push_hostile(fake_llm, fake_aster)
    result = invoke(runner, "decide", "--yes")
    assert result.exit_code == 3, result.output
    assert ESC not in result.stdout and ESC not in result.stderr and "\x9b" not in result.stdout
    assert "[/INST]" in result.stdout  # shown literally, not taken as markup
    assert "EMERGENCY" in result.stdout and "EMERGENCY on BTCUSDT" in result.stderr
    assert "stop refused [/bold][40A[J" in result.stderr
    assert fake_aster.positions(USER) == {}  # the emergency closed the position
    decision_id = recorded_id(result.stdout)
    for args in (("show", decision_id), ("history",)):
        shown = invoke(runner, *args)
        assert shown.exit_code == 0, (args, shown.output)
        assert ESC not in shown.stdout and "[/INST]" in shown.stdout, args
    record = json.loads(invoke(runner, "show", decision_id, "--json").stdout)
    assert record["execution"] == "emergency" and record["portfolio_rationale"].startswith("[/INST] ")


def test_markup_in_a_venue_message_cannot_crash_a_paper_decision(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    push_hostile(fake_llm, fake_aster)
    result = invoke(runner, "decide")
    assert result.exit_code == 0, result.output
    assert ESC not in result.stdout and "[/INST]" in result.stdout
    assert "executed" in result.stdout


def test_run_log_lines_carry_no_control_characters() -> None:
    out = io.StringIO()
    configure_logging(json=False, log_file=None, stream=out)
    try:
        # the message itself is printed as it is (values are shown as reprs); a library's message quoting
        # a reply, or ours quoting an error, may carry anything
        get_logger("llmtrader.test").warning(f"model said {FAKE_HOLD}", outcome="model_error")
    finally:
        reset_logging()
    line = out.getvalue()
    assert "model said" in line and "nothing will be sent" in line
    assert ESC not in line and "\r" not in line and "\x9b" not in line


def test_status_shows_a_hostile_model_error_as_text(env: Path, runner: CliRunner, fake_llm: FakeLLM) -> None:
    fake_llm.push(error(403, f"refused [/INST] {FAKE_HOLD}"))  # a refusal is not retried
    ran = invoke(runner, "--log-json", "run", "--once")
    assert ESC not in ran.stdout, ran.output
    shown = invoke(runner, "status")
    assert shown.exit_code == 0, shown.output
    assert "model_error" in shown.stdout and "refused [/INST] [40A[JDecision: HOLD" in shown.stdout
    assert ESC not in shown.stdout and "\r" not in shown.stdout


def test_safe_text_keeps_the_words_and_drops_what_steers_a_terminal() -> None:
    assert safe_text(f"a{ERASE}b\r\nc\td\x9b2J \u202eevil [/INST]") == "a[40A[Jb\nc d2J evil [/INST]"
    assert safe_text("one\ntwo\tthree", multiline=False) == "one two three"
    assert untrusted("[bold]x[/bold] [/INST]").plain == "[bold]x[/bold] [/INST]"  # markup stays text


def _decide_on_a_terminal(reply: bytes) -> subprocess.CompletedProcess[bytes]:
    """`llmtrader decide` (live) with a pseudo-terminal on stdin, answering ``reply`` to its question."""
    master, slave = os.openpty()
    try:
        os.write(master, reply)  # typed ahead: the terminal keeps it until the question reads it
        env = {**os.environ, "CI": "", "COLUMNS": "80", "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"}
        return subprocess.run(
            [sys.executable, "-m", "llmtrader", "decide"],
            stdin=slave, capture_output=True, env=env, timeout=120, check=False,
        )  # fmt: skip
    finally:
        os.close(slave)
        os.close(master)


QUESTION = "Execute this decision on AsterDEX with REAL money? [y/N]"


def test_the_live_question_comes_right_after_a_block_of_validated_values(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    push_hostile(fake_llm, fake_aster)
    done = _decide_on_a_terminal(b"y\n")
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, stdout + stderr
    assert ESC not in stdout and ESC not in stderr
    before = stdout[: stdout.index(QUESTION)]
    block = before[before.rindex("About to execute on AsterDEX with REAL money") :]
    lines = [line.strip() for line in block.splitlines()[1:] if line.strip()]
    # Only the executable decision, from its typed values; nothing the model wrote.
    assert lines[0].startswith("BUY BTCUSDT: size about ") and lines[0].endswith(" at market")
    assert lines[1] == "notional 2,000.00 USD, leverage 2x, margin 1,000.00 USD"
    assert lines[2].startswith("stop-loss ") and ", take-profit " in lines[2]
    assert lines[3] == "Total margin of new and resized positions: 1,000.00 USD"
    assert len(lines) == 4
    assert "INST" not in block and "HOLD" not in block and "[40A" not in block
    # answered y: the long was executed and protected, and reported so
    assert fake_aster.positions(USER).get("BTCUSDT", 0) > 0
    assert {o.type for o in fake_aster.open_orders(USER)} == {"STOP_MARKET", "TAKE_PROFIT_MARKET"}
    after = stdout[stdout.index(QUESTION) :]
    assert "Execution" in after and "execution executed (live)" in after


def test_answering_no_on_the_terminal_sends_nothing(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    push_hostile(fake_llm, fake_aster)
    done = _decide_on_a_terminal(b"n\n")
    stdout = done.stdout.decode()
    assert done.returncode == 0, stdout + done.stderr.decode()
    assert QUESTION in stdout and "not confirmed: nothing was sent" in stdout
    assert fake_aster.positions(USER) == {} and fake_aster.order_posts() == []

"""Secrets echoed by the model or the venue are masked before they are stored or printed: a key in a
model answer, or in a venue error message, reaches neither the database nor the terminal.

End to end against the fake venue and the fake model (real HTTP on loopback).
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from tests.conftest import SIGNER_KEY, TEST_KEY
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision

V1_KEY, V1_SECRET = "v1-api-key-4b8e1f", "v1-api-secret-9d2c7a"


def invoke(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "120"})


def long_btc(fake_aster: FakeAster, rationale: str = "long") -> dict[str, Any]:
    mark = fake_aster.mark("BTCUSDT")
    return asset(
        "BTCUSDT", "buy", allocation_usd=1000, leverage=2, tp_price=round(mark * 1.04, 1),
        sl_price=round(mark * 0.98, 1), confidence=0.7, risk_level="medium", rationale=rationale,
    )  # fmt: skip


def db_text(db: Path) -> str:
    """Every cell of every table, and the raw bytes of the database files."""
    conn = sqlite3.connect(db)
    try:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        cells = [json.dumps(row, default=str) for t in tables for row in conn.execute(f"SELECT * FROM [{t}]")]
    finally:
        conn.close()
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    return "\n".join(cells) + raw.decode("latin-1")


def recorded_id(stdout: str) -> str:
    match = re.search(r"Recorded as (\w+)", stdout)
    assert match, stdout
    return match.group(1)


def test_keys_echoed_in_a_model_answer_are_masked_before_storing_and_printing(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    bare = SIGNER_KEY.removeprefix("0x")
    long = long_btc(fake_aster, f"my key is {TEST_KEY}")
    fake_llm.push(answer(decision(long, asset("ETHUSDT"), rationale=f"signer {bare} and {SIGNER_KEY}")))
    result = invoke(runner, "decide", "--yes", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["execution"] == "executed"  # the masked answer still parses and trades
    shown = invoke(runner, "show", out["decision_id"])
    assert "my key is **********" in shown.stdout
    for secret in (TEST_KEY, SIGNER_KEY, bare, bare.upper()):
        assert secret not in result.stdout and secret not in result.stderr and secret not in shown.stdout
        assert secret not in db_text(live)


def test_a_v1_key_echoed_in_venue_errors_is_masked_before_storing_and_printing(
    env: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADING_MODE", "live")
    monkeypatch.setenv("ASTERDEX_API_KEY", V1_KEY)
    monkeypatch.setenv("ASTERDEX_API_SECRET", V1_SECRET)
    fake_aster.add_v1_key(V1_KEY, V1_SECRET)
    echo = f"Invalid API-key, IP, or permissions for action, key {V1_KEY}, secret {V1_SECRET}"
    fake_aster.reject_order({"type": "MARKET"}, -2015, echo)
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    traded = invoke(runner, "decide", "--yes")
    assert "Invalid API-key" in traded.stdout  # the message is shown, masked
    decision_id = recorded_id(traded.stdout)
    # a signed read refused with the key in its message: the decision fails, recorded, with one line
    fake_aster.fail("/fapi/v2/balance", 401, code=-2015, msg=echo, times=5)
    failed = invoke(runner, "decide", "--yes")
    assert failed.exit_code == 1 and "Invalid API-key" in failed.stderr
    shown = invoke(runner, "show", decision_id)
    assert "Invalid API-key" in shown.stdout
    (entry,) = json.loads(invoke(runner, "show", decision_id, "--json").stdout)["orders"]
    assert entry["status"] == "rejected" and entry["venue_message"] == echo.replace(V1_KEY, "*" * 10).replace(
        V1_SECRET, "*" * 10
    )
    for secret in (V1_KEY, V1_SECRET):
        for result in (traded, failed, shown):
            assert secret not in result.stdout and secret not in result.stderr
        assert secret not in db_text(env)

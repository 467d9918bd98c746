"""End to end: the commands that touch an account (`decide`, `positions`, `close`, `paper reset`, `doctor`)
against the fake venue and the fake model, both real HTTP servers on loopback.

Each case asserts the exit code, what the user sees, and what was recorded: the database (through `show`,
`history`, and the paper account's stored state) and the fake venue's own records.
"""

from __future__ import annotations

import json
import re
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from tests.conftest import SIGNER, SIGNER_KEY, TEST_KEY, USER
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision
from tests.helpers import decide, history, long_btc, show

# The reference vector key and its address: the agent (signer) wallet of the live tests.
OTHER_ADDRESS = "0x1f9090aae28b8a3dceadf281b0f12828e676c326"
V1_KEY, V1_SECRET = "v1-api-key-4b8e1f", "v1-api-secret-9d2c7a"
TICK = Decimal("0.1")  # BTCUSDT's tickSize on the fake venue


def invoke(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def positions(runner: CliRunner) -> list[dict[str, Any]]:
    result = invoke(runner, "positions", "--json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def paper_book(db: Path) -> dict[str, Any]:
    """The paper account's stored book (positions, open orders, history, deposit)."""
    conn = sqlite3.connect(db)
    try:
        (state,) = conn.execute("SELECT state FROM paper_accounts WHERE account = 'default'").fetchone()
    finally:
        conn.close()
    book: dict[str, Any] = json.loads(state)["book"]
    return book


def db_text(db: Path) -> str:
    """Every cell of every table, as one text to search for secrets; plus the raw files' bytes."""
    conn = sqlite3.connect(db)
    try:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        cells = [json.dumps(row, default=str) for t in tables for row in conn.execute(f"SELECT * FROM [{t}]")]
    finally:
        conn.close()
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    return "\n".join(cells) + raw.decode("latin-1")


def secrets_of(*values: str) -> list[str]:
    """Each secret as written and without its 0x prefix, in both cases."""
    out = []
    for v in values:
        bare = v.removeprefix("0x")
        out += [v, bare, bare.lower(), bare.upper()]
    return out


# ---- paper: the round trip -------------------------------------------------------------------------


def test_paper_round_trip_decide_positions_show_close(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    mark = fake_aster.mark("BTCUSDT")
    sl_base, tp_base = Decimal(str(round(mark * 0.98, 1))), Decimal(str(round(mark * 1.04, 1)))
    # Off-tick prices: a long's stop rounds up (tighter) and its target down, never looser.
    asked = long_btc(fake_aster, sl_price=float(sl_base + Decimal("0.04")), tp_price=float(tp_base + Decimal("0.06")))
    fake_llm.push(answer(decision(asked, asset("ETHUSDT"))))
    code, out, stderr = decide(runner)
    assert code == 0 and out is not None, stderr
    opened = out["decision_id"]
    assert out["mode"] == "paper" and out["execution"] == "executed"

    (row,) = positions(runner)
    assert row["symbol"] == "BTCUSDT" and row["side"] == "long" and row["leverage"] == 2
    assert Decimal(str(row["size"])) > 0 and Decimal(str(row["size"])) % Decimal("0.001") == 0
    assert Decimal(str(row["sl_price"])) == sl_base + TICK
    assert Decimal(str(row["tp_price"])) == tp_base
    assert row["sl_order_id"] == f"lt_{opened}_BTCUSDT_sl"
    assert row["tp_order_id"] == f"lt_{opened}_BTCUSDT_tp"
    table = invoke(runner, "positions")
    assert table.exit_code == 0 and "BTCUSDT" in table.stdout and str(row["sl_price"]) in table.stdout
    assert "no stop-loss" not in table.stderr

    record = show(runner, opened)
    assert record["execution"] == "executed"
    assert [(o["leg"], o["status"]) for o in record["orders"]] == [
        ("en", "filled"),
        ("sl", "acknowledged"),
        ("tp", "acknowledged"),
    ]
    sl_order = record["orders"][1]
    assert (
        Decimal(sl_order["request"]["stopPrice"]) == Decimal(str(row["sl_price"]))
        and sl_order["request"]["closePosition"] == "true"
    )
    amendments = [e["message"] for e in record["events"] if e["kind"] == "amendment"]
    assert any(m.startswith("sl: stopPrice") and "tickSize 0.1" in m for m in amendments)

    # a symbol without a position: refused, naming it and what is open; nothing recorded or sent
    result = invoke(runner, "close", "ETHUSDT", "--yes")
    assert result.exit_code == 1
    assert "no open position on ETHUSDT" in result.stderr and "open: BTCUSDT" in result.stderr
    assert len(history(runner)) == 1 and len(positions(runner)) == 1

    # neither SYMBOL nor --all, or both: a usage error
    for args in (("close", "--yes"), ("close", "BTCUSDT", "--all", "--yes")):
        result = invoke(runner, *args)
        assert result.exit_code == 2 and "give one SYMBOL or --all" in result.stderr

    result = invoke(runner, "close", "BTCUSDT", "--yes")
    assert result.exit_code == 0, result.output
    newest = history(runner)[0]
    closed = newest["decision_id"]
    assert f"Recorded as {closed}; execution executed." in result.stdout
    assert "cl: SELL" in result.stdout and "reduceOnly" in result.stdout
    assert positions(runner) == []
    book = paper_book(paper)
    assert book["positions"] == {} and book["orders"] == []
    protective = {o["client_order_id"]: o["status"] for o in book["history"]}
    assert protective[f"lt_{opened}_BTCUSDT_sl"] != "NEW" and protective[f"lt_{opened}_BTCUSDT_tp"] != "NEW"

    # the close is a manual decision, and its order links to it
    assert newest["model"] == "manual" and newest["outcome"] == "manual"
    assert [(a["symbol"], a["action"]) for a in newest["assets"]] == [("BTCUSDT", "close_position")]
    close_record = show(runner, closed)
    assert close_record["execution"] == "executed"
    (close_order,) = close_record["orders"]
    assert close_order["leg"] == "cl" and close_order["status"] == "filled"
    assert close_order["client_order_id"] == f"lt_{closed}_BTCUSDT_cl"
    assert close_order["request"]["side"] == "SELL" and close_order["request"]["reduceOnly"] == "true"
    assert close_order["executed_qty"] == row["size"]
    table = invoke(runner, "history")
    assert table.exit_code == 0 and "manual" in table.stdout

    # nothing left: --all says so, records nothing
    result = invoke(runner, "close", "--all", "--yes")
    assert result.exit_code == 0 and "No open positions: nothing to close." in result.stdout
    assert len(history(runner)) == 2


def test_close_all_closes_every_position(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), long_btc(fake_aster, "ETHUSDT"))))
    code, out, _ = decide(runner)
    assert code == 0 and out is not None and out["execution"] == "executed"
    assert sorted(p["symbol"] for p in positions(runner)) == ["BTCUSDT", "ETHUSDT"]
    assert len(paper_book(paper)["orders"]) == 4
    result = invoke(runner, "close", "--all", "--yes", "--json")
    assert result.exit_code == 0, result.output
    closing = json.loads(result.stdout)
    assert closing["model"] == "manual" and closing["execution"] == "executed" and closing["mode"] == "paper"
    assert sorted(a["symbol"] for a in closing["assets"]) == ["BTCUSDT", "ETHUSDT"]
    legs = {(o["symbol"], leg["leg"], leg["status"]) for o in closing["orders"] for leg in o["orders"]}
    assert legs == {("BTCUSDT", "cl", "filled"), ("ETHUSDT", "cl", "filled")}
    assert positions(runner) == [] and paper_book(paper)["orders"] == []
    recorded = show(runner, closing["decision_id"])
    assert sorted(o["client_order_id"] for o in recorded["orders"]) == [
        f"lt_{closing['decision_id']}_BTCUSDT_cl",
        f"lt_{closing['decision_id']}_ETHUSDT_cl",
    ]


@pytest.mark.parametrize("ci", [None, "true"])
def test_close_without_a_terminal_or_yes_sends_nothing(
    paper: Path,
    runner: CliRunner,
    fake_aster: FakeAster,
    fake_llm: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
    ci: str | None,
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    assert decide(runner)[0] == 0
    before = paper_book(paper)
    if ci is not None:
        monkeypatch.setenv("CI", ci)
    for args in (("close", "BTCUSDT"), ("close", "--all")):
        result = invoke(runner, *args)
        assert result.exit_code == 2
        assert "run it on a terminal to confirm, or pass --yes" in result.stderr
    assert paper_book(paper) == before
    assert len(history(runner)) == 1 and [p["symbol"] for p in positions(runner)] == ["BTCUSDT"]


def test_dry_run_records_and_places_nothing(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    code, out, _ = decide(runner, "--dry-run")
    assert code == 0 and out is not None
    assert out["execution"] == "dry_run" and out["executed"] is False and out["orders"] == []
    assert out["assets"][0]["validation"]["status"] == "accepted"  # it would have traded
    record = show(runner, out["decision_id"])
    assert record["execution"] == "dry_run" and record["dry_run"] == 1 and record["orders"] == []
    assert positions(runner) == []
    result = invoke(runner, "positions")
    assert result.exit_code == 0 and "No open positions (paper)." in result.stdout


def test_the_default_1m_paper_candles_fail_in_one_clear_line(
    env: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    """The fake serves no 1m candles (PAPER_CANDLE_INTERVAL defaults to 1m): the catch-up's klines read fails."""
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    assert decide(runner)[0] == 0  # nothing to replay yet: the candle in progress is not closed
    # Move the replay cursor back 30 minutes, as if the next look came half an hour later.
    conn = sqlite3.connect(env)
    with conn:
        (state,) = conn.execute("SELECT state FROM paper_accounts").fetchone()
        data = json.loads(state)
        data["sync"]["candles"]["BTCUSDT"] -= 30 * 60_000
        conn.execute("UPDATE paper_accounts SET state = ?", [json.dumps(data)])
    conn.close()
    result = invoke(runner, "positions")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert "klines BTCUSDT 1m" in result.stderr and "-1120: Invalid interval." in result.stderr


# ---- paper reset -----------------------------------------------------------------------------------


def test_paper_reset_sets_the_balance_and_is_refused_in_live_mode(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    assert decide(runner)[0] == 0 and len(positions(runner)) == 1
    refused = invoke(runner, "paper", "reset", "--balance", "2500")  # no terminal, a position open: not without --yes
    assert refused.exit_code == 2 and "BTCUSDT (long" in refused.stderr and "--yes" in refused.stderr
    result = invoke(runner, "paper", "reset", "--balance", "2500", "--yes")
    assert result.exit_code == 0, result.output
    assert "paper account 'default' reset to 2,500.00 USD" in result.stdout
    book = paper_book(paper)
    assert Decimal(book["deposit"]) == 2500 and book["positions"] == {} and book["orders"] == []
    assert positions(runner) == []
    code, out, _ = decide(runner, "--dry-run")  # the next decision sees the new balance
    assert code == 0 and out is not None
    assert "mode paper; balance 2500 USD; available 2500 USD;" in show(runner, out["decision_id"])["prompt"]["user"]

    monkeypatch.setenv("TRADING_MODE", "live")
    result = invoke(runner, "paper", "reset", "--balance", "100")
    assert result.exit_code == 2 and "TRADING_MODE is live" in result.stderr
    assert Decimal(paper_book(paper)["deposit"]) == 2500


# ---- live mode: confirmation, signing, secrets -------------------------------------------------------


@pytest.mark.parametrize("ci", [None, "true"])
def test_live_decide_without_a_terminal_or_yes_refuses_before_the_model(
    live: Path,
    runner: CliRunner,
    fake_aster: FakeAster,
    fake_llm: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
    ci: str | None,
) -> None:
    if ci is not None:
        monkeypatch.setenv("CI", ci)
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    code, out, stderr = decide(runner)
    assert code == 2 and out is None
    assert "live mode" in stderr and "--yes" in stderr and "--dry-run" in stderr
    assert fake_llm.requests == []
    assert fake_aster.signed_requests == [] and fake_aster.order_posts() == []
    assert history(runner) == []


def test_live_decide_with_yes_sends_signed_orders_and_no_secret_anywhere(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    result = invoke(runner, "decide", "--yes", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["mode"] == "live" and out["execution"] == "executed"
    entry = f"lt_{out['decision_id']}_BTCUSDT_en"
    assert len(fake_aster.order_posts(entry)) == 1 and fake_aster.applied_orders(entry) == 1
    (filled,) = [leg for leg in out["orders"][0]["orders"] if leg["leg"] == "en"]
    assert fake_aster.positions(USER) == {"BTCUSDT": Decimal(str(filled["executed_qty"]))}
    assert sorted(o.orig_type for o in fake_aster.open_orders(USER)) == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
    # every order went out V3-signed by the agent wallet, and the venue accepted the signature
    posts = [r for r in fake_aster.signed_requests if r.method == "POST" and r.path == "/fapi/v3/order"]
    assert len(posts) == 3 and all(r.status == 200 for r in posts)
    for r in posts:
        raw = r.body or r.query
        assert f"signer={SIGNER}".lower() in raw.lower() and "&signature=0x" in raw
    record = show(runner, out["decision_id"])
    assert record["mode"] == "live" and record["execution"] == "executed"
    assert [(o["leg"], o["status"]) for o in record["orders"]] == [
        ("en", "filled"),
        ("sl", "acknowledged"),
        ("tp", "acknowledged"),
    ]
    # the positions the venue reports carry the protective orders just placed
    (row,) = positions(runner)
    assert row["symbol"] == "BTCUSDT" and row["sl_order_id"] == f"lt_{out['decision_id']}_BTCUSDT_sl"

    secrets = [*secrets_of(SIGNER_KEY), TEST_KEY]
    for secret in secrets:
        assert secret not in result.stdout and secret not in result.stderr
        assert secret not in db_text(live)
        for request in record["orders"]:
            assert secret not in json.dumps(request["request"])
        for sent in fake_aster.signed_requests:  # the key itself never travels, only signatures
            assert secret not in sent.query + sent.body + json.dumps(sent.headers)


def test_an_emergency_is_shown_prominently_recorded_and_exits_3(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_aster.reject_order({"type": "STOP_MARKET"}, -1000, "An unknown error occurred.", times=10)
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    result = invoke(runner, "decide", "--yes")
    assert result.exit_code == 3, result.output
    assert "EMERGENCY" in result.stdout and "EMERGENCY on BTCUSDT" in result.stderr
    assert fake_aster.positions(USER) == {}  # flattened at once
    decision_id = re.search(r"Recorded as (\w+)", result.stdout).group(1)  # type: ignore[union-attr]
    record = show(runner, decision_id)
    assert record["execution"] == "emergency"
    assert any(e["kind"] == "emergency" for e in record["events"])
    shown = runner.invoke(app, ["show", decision_id], env={"COLUMNS": "200"})
    assert "EMERGENCY BTCUSDT" in shown.stdout and "closing the position reduce-only" in shown.stdout


def test_live_without_credentials_names_the_variables(
    env: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADING_MODE", "live")
    for args in (("decide", "--yes"), ("positions",), ("close", "--all", "--yes")):
        result = invoke(runner, *args)
        assert result.exit_code == 2, args
        for name in ("ASTERDEX_USER", "ASTERDEX_SIGNER", "ASTERDEX_SIGNER_PRIVATE_KEY", "ASTERDEX_API_KEY",
                     "ASTERDEX_API_SECRET"):  # fmt: skip
            assert name in result.stderr, (args, name)
    assert fake_llm.requests == [] and fake_aster.signed_requests == []
    assert history(runner) == []


def test_live_with_both_credential_sets_names_both_and_echoes_no_secret(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASTERDEX_API_KEY", V1_KEY)
    monkeypatch.setenv("ASTERDEX_API_SECRET", V1_SECRET)
    result = invoke(runner, "decide", "--yes")
    assert result.exit_code == 2
    assert "both venue credential sets" in result.stderr
    assert "V3 (ASTERDEX_USER, ASTERDEX_SIGNER, ASTERDEX_SIGNER_PRIVATE_KEY)" in result.stderr
    assert "V1 (ASTERDEX_API_KEY, ASTERDEX_API_SECRET)" in result.stderr
    for secret in [*secrets_of(SIGNER_KEY), V1_KEY, V1_SECRET, TEST_KEY]:
        assert secret not in result.output
    assert fake_llm.requests == [] and fake_aster.signed_requests == []


def test_live_with_a_signer_not_matching_the_key_is_refused(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASTERDEX_SIGNER", OTHER_ADDRESS)
    result = invoke(runner, "decide", "--yes")
    assert result.exit_code == 2
    assert f"ASTERDEX_SIGNER {OTHER_ADDRESS} is not the address of ASTERDEX_SIGNER_PRIVATE_KEY" in result.stderr
    assert SIGNER.lower() in result.stderr.lower()  # the address the key signs as: public, and the fix
    for secret in secrets_of(SIGNER_KEY):
        assert secret not in result.output
    assert fake_llm.requests == [] and fake_aster.signed_requests == []


# ---- positions: a position without a stop ------------------------------------------------------------


def test_positions_warns_about_a_position_without_a_stop(live: Path, runner: CliRunner, fake_aster: FakeAster) -> None:
    fake_aster.set_position(USER, "BTCUSDT", "0.010")  # left from before, with no protective order
    result = invoke(runner, "positions")
    assert result.exit_code == 0, result.output
    assert "Open positions (live)" in result.stdout and "BTCUSDT" in result.stdout and "NONE" in result.stdout
    assert "warning" in result.stderr and "a position has no stop-loss on the venue" in result.stderr
    (row,) = positions(runner)
    assert row["symbol"] == "BTCUSDT" and row["side"] == "long" and Decimal(str(row["size"])) == Decimal("0.01")
    assert row["sl_price"] is None and row["sl_order_id"] is None and row["tp_price"] is None
    assert fake_aster.order_posts() == []  # reading positions never sends an order
    assert history(runner) == []


# ---- doctor -----------------------------------------------------------------------------------------


def doctor(runner: CliRunner) -> tuple[int, dict[str, dict[str, str]], str]:
    """doctor --json: exit code, checks by name, and the table output of a second run."""
    result = invoke(runner, "doctor", "--json")
    items = json.loads(result.stdout)
    assert all(set(item) == {"name", "status", "detail"} for item in items)
    table = invoke(runner, "doctor")
    assert table.exit_code == result.exit_code
    return result.exit_code, {item["name"]: item for item in items}, result.stdout + table.output


def test_doctor_paper_mode_all_good(paper: Path, runner: CliRunner, fake_llm: FakeLLM) -> None:
    fake_llm.accepted_key = TEST_KEY
    code, checks, output = doctor(runner)
    assert code == 0
    assert list(checks) == ["config", "strategy", "database", "venue", "clock", "symbols", "credentials", "model"]
    assert all(c["status"] == "ok" for c in checks.values()), checks
    assert str(paper) in checks["database"]["detail"] and "writable" in checks["database"]["detail"]
    assert "off the venue's" in checks["clock"]["detail"]
    assert "paper mode: no venue credentials needed" in checks["credentials"]["detail"]
    assert "fake/model is available" in checks["model"]["detail"]
    assert "all good" in output and TEST_KEY not in output


def test_doctor_says_when_the_model_endpoint_refuses_the_key(paper: Path, runner: CliRunner, fake_llm: FakeLLM) -> None:
    fake_llm.accepted_key = "other"
    code, checks, output = doctor(runner)
    assert code == 1
    assert checks["model"]["status"] == "fail"
    assert "refused the key (HTTP 401)" in checks["model"]["detail"]
    assert "1 check(s) failed: model" in output and TEST_KEY not in output


def test_doctor_live_v3_signed_read_works(live: Path, runner: CliRunner, fake_aster: FakeAster) -> None:
    fake_aster.set_balance(USER, "1234.5")
    code, checks, output = doctor(runner)
    assert code == 0, checks
    assert checks["config"]["detail"].startswith("mode live")
    assert checks["credentials"]["status"] == "ok"
    assert "signed read works (V3)" in checks["credentials"]["detail"] and "1234.5" in checks["credentials"]["detail"]
    assert fake_aster.order_posts() == []  # a read, never an order
    assert all(r.method == "GET" for r in fake_aster.signed_requests)
    for secret in [*secrets_of(SIGNER_KEY), TEST_KEY]:
        assert secret not in output


def test_doctor_live_with_a_signer_the_venue_does_not_know(
    env: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADING_MODE", "live")
    monkeypatch.setenv("ASTERDEX_USER", USER)
    monkeypatch.setenv("ASTERDEX_SIGNER", SIGNER)
    monkeypatch.setenv("ASTERDEX_SIGNER_PRIVATE_KEY", SIGNER_KEY)  # never registered with add_v3_account
    code, checks, output = doctor(runner)
    assert code == 1
    credentials = checks["credentials"]
    assert credentials["status"] == "fail" and "the signed read (V3) failed" in credentials["detail"]
    assert (
        "-2015" in credentials["detail"] and "Invalid API-key, IP, or permissions for action." in credentials["detail"]
    )
    for secret in secrets_of(SIGNER_KEY):
        assert secret not in output


def test_doctor_with_an_unreachable_venue(paper: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTERDEX_BASE_URL", "http://127.0.0.1:9")
    code, checks, output = doctor(runner)
    assert code == 1
    assert checks["venue"]["status"] == "fail" and "http://127.0.0.1:9" in checks["venue"]["detail"]
    assert "clock" not in checks and "symbols" not in checks  # they depend on the venue answering
    assert checks["model"]["status"] == "ok"  # the other checks still ran
    assert "failed: venue" in output

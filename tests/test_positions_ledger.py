"""The positions issue, items 5 to 9, end to end through `decide`, `close` and `run --once` against the fake
venue and the fake model: one trader per account (the run lock, the caps re-checked before sending), limits
that depend on history fail closed, transfers are not losses, adopted positions keep the ledger right, and
hedge mode is refused. Each case asserts on the fake venue's orders and positions and on the store."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.cycle.scheduler import RunLock
from llmtrader.logs import reset_logging
from tests.conftest import ROOT, USER
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision


@pytest.fixture(autouse=True)
def _no_leftover_log_handlers() -> Iterator[None]:
    """`run` configures logging onto CliRunner's stderr, which is closed once the invocation returns."""
    yield
    reset_logging()


def invoke(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def decide_json(runner: CliRunner, *args: str) -> tuple[int, dict[str, Any] | None, str]:
    result = invoke(runner, "decide", "--yes", "--json", *args)
    out = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result.exit_code, out, result.stderr


def long_btc(fake_aster: FakeAster, **kw: Any) -> dict[str, Any]:
    """A sound long on BTCUSDT around the fake venue's current mark."""
    mark = fake_aster.mark("BTCUSDT")
    base = {"allocation_usd": 1000, "leverage": 2, "tp_price": round(mark * 1.04, 1),
            "sl_price": round(mark * 0.98, 1), "confidence": 0.7, "risk_level": "medium"}  # fmt: skip
    base.update(kw)
    return asset("BTCUSDT", "buy", **base)


def entries(fake_aster: FakeAster) -> list[dict[str, str]]:
    """Every entry order (``…_en``) that reached the venue."""
    return [p for p in fake_aster.order_posts() if p.get("newClientOrderId", "").endswith("_en")]


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def cycles(db: Path) -> list[tuple[str, str | None]]:
    return [(str(o), r) for o, r in rows(db, "SELECT outcome, reason FROM cycles ORDER BY id")]


def run_once(runner: CliRunner) -> Any:
    return invoke(runner, "run", "--once")


# ---- 5. One trader per account ----------------------------------------------------------------------


def test_decide_and_close_are_refused_beside_a_running_agent_even_through_a_symlink(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_aster.set_position(USER, "BTCUSDT", "0.01")
    link = live.parent / "link-to.db"
    link.symlink_to(live)
    monkeypatch.setenv("LLMTRADER_DB", str(link))  # another path to the same database
    held = RunLock(live, "default")  # what a running `llmtrader run` holds
    held.acquire()
    try:
        fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
        code, _, stderr = decide_json(runner)
        assert code == 2
        assert "traded by a running llmtrader process" in stderr and "`decide`" in stderr
        assert len(stderr.strip().splitlines()) == 1
        assert fake_llm.requests == [] and fake_aster.order_posts() == []
        result = invoke(runner, "close", "--all", "--yes")
        assert result.exit_code == 2 and "`close`" in result.stderr
        assert fake_aster.order_posts() == [] and fake_aster.positions(USER) == {"BTCUSDT": Decimal("0.01")}
        # a dry run sends nothing: it may run beside the agent
        fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
        code, out, _ = decide_json(runner, "--dry-run")
        assert code == 0 and out is not None and out["execution"] == "dry_run"
    finally:
        held.release()
    # with the agent gone, the same command trades, and leaves the lock free
    result = invoke(runner, "close", "--all", "--yes")
    assert result.exit_code == 0, result.output
    assert fake_aster.positions(USER) == {}
    assert RunLock(link, "default").holder() is None


def test_caps_are_checked_again_against_the_positions_read_before_sending(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_POSITION_SIZE_USD", "2500")
    mark = Decimal(str(fake_aster.mark("BTCUSDT")))
    qty = (Decimal(1500) / mark).quantize(Decimal("0.001"))
    inner = answer(decision(long_btc(fake_aster, allocation_usd=1000, leverage=2), asset("ETHUSDT")))

    def meanwhile(body: dict[str, Any]) -> Any:
        # While the model thinks, another trader opens 1,500 USD of BTCUSDT on the account.
        fake_aster.set_position(USER, "BTCUSDT", qty, mark)
        return inner(body)

    fake_llm.push(meanwhile)
    code, out, _ = decide_json(runner)
    assert code == 0 and out is not None
    btc = next(a for a in out["assets"] if a["symbol"] == "BTCUSDT")
    assert btc["validation"]["status"] == "amended"
    reasons = btc["validation"]["reasons"]
    assert any(r.startswith("re-checked against the positions read before sending") for r in reasons)
    # 2,000 USD was validated against an empty book; only the 1,000 USD left under the cap was sent
    held = fake_aster.positions(USER)["BTCUSDT"]
    assert held * mark <= Decimal(2500) * Decimal("1.01")
    assert held > qty
    [entry] = entries(fake_aster)
    assert Decimal(entry["quantity"]) <= Decimal(1000) / mark + Decimal("0.001")  # to the venue's step


# ---- 6. Limits that depend on history fail closed ---------------------------------------------------


@pytest.fixture
def quiet_strategy(live: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A strategy with a 240-minute cooldown that shows the model no recent trade and no performance."""
    text = (ROOT / "strategies" / "default.toml").read_text()
    text = text.replace('name = "default"', 'name = "quiet"').replace("cooldown_minutes = 0", "cooldown_minutes = 240")
    text = text.replace("recent_trades = 5", "recent_trades = 0").replace("performance = true", "performance = false")
    folder = live.parent / "strategies"
    folder.mkdir()
    (folder / "quiet.toml").write_text(text)
    monkeypatch.setenv("LLMTRADER_STRATEGIES_DIR", str(folder))
    monkeypatch.setenv("LLMTRADER_STRATEGY", "quiet")
    return live


def test_a_stop_filled_at_the_venue_starts_the_cooldown_whatever_the_prompt_shows(
    quiet_strategy: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    code, out, _ = decide_json(runner)
    assert code == 0 and out is not None and out["execution"] == "executed"
    assert "BTCUSDT" in fake_aster.positions(USER)
    # the agent is down; the stop triggers at the venue
    sl = next(a for a in out["assets"] if a["symbol"] == "BTCUSDT")["sl_price"]
    fake_aster.set_mark("BTCUSDT", Decimal(str(sl)) - 50)
    assert fake_aster.positions(USER) == {}
    fake_aster.set_mark("BTCUSDT", None)
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    result = run_once(runner)
    assert result.exit_code == 0, result.output
    [entry] = entries(fake_aster)  # the first decision's only
    assert entry["newClientOrderId"].startswith(f"lt_{out['decision_id']}")
    assert fake_aster.positions(USER) == {}
    [(outcome, _)] = cycles(quiet_strategy)
    assert outcome == "risk_veto"  # the model's long was refused by the cooldown: a veto, not a hold
    [(status, reasons)] = rows(
        quiet_strategy,
        "SELECT a.status, a.reasons FROM asset_decisions a JOIN cycles c ON c.decision_id = a.decision_id "
        "WHERE a.symbol = 'BTCUSDT'",
    )
    assert status == "rejected" and "cooldown: the BTCUSDT position closed at" in reasons
    [(stored,)] = rows(quiet_strategy, "SELECT reason FROM venue_fills WHERE side = 'SELL'")
    assert stored == "stop_loss"


def test_an_unreadable_trade_history_holds_openings(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_aster.fail("/fapi/v3/userTrades", 500, times=10)
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    code, out, _ = decide_json(runner)
    assert code == 0 and out is not None
    btc = next(a for a in out["assets"] if a["symbol"] == "BTCUSDT")
    assert btc["validation"]["status"] == "rejected"
    reasons = btc["validation"]["reasons"]
    assert any("openings held: the venue's trade history could not be read" in r for r in reasons)
    assert entries(fake_aster) == [] and fake_aster.positions(USER) == {}


# ---- 7. Transfers are not losses --------------------------------------------------------------------


def test_a_withdrawal_moves_the_baselines_of_the_kill_switches(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_DRAWDOWN_PCT", "20")
    monkeypatch.setenv("DAILY_LOSS_KILL_PCT", "10")
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    result = run_once(runner)
    assert result.exit_code == 0, result.output
    assert [o for o, _ in cycles(live)] == ["traded"]
    held = fake_aster.positions(USER)
    assert "BTCUSDT" in held
    fake_aster.transfer(USER, -4000)  # 4,000 of about 10,000 USD withdrawn
    eth = fake_aster.mark("ETHUSDT")
    long_eth = asset("ETHUSDT", "buy", allocation_usd=500, leverage=2, tp_price=round(eth * 1.04, 2),
                     sl_price=round(eth * 0.98, 2), confidence=0.7, risk_level="medium")  # fmt: skip
    fake_llm.push(answer(decision(asset("BTCUSDT"), long_eth)))
    result = run_once(runner)
    assert result.exit_code == 0, result.output
    assert [o for o, _ in cycles(live)] == ["traded", "traded"]
    assert fake_aster.positions(USER)["BTCUSDT"] == held["BTCUSDT"]  # nothing was closed
    assert "ETHUSDT" in fake_aster.positions(USER)  # nor openings refused by a daily loss
    legs = sorted(p["newClientOrderId"][-3:] for p in fake_aster.order_posts())  # stop and target go at once
    assert legs == ["_en", "_en", "_sl", "_sl", "_tp", "_tp"]
    assert rows(live, "SELECT kind FROM guard_events") == []
    [(amount,)] = rows(live, "SELECT amount FROM venue_transfers")
    assert Decimal(amount) == -4000
    status = json.loads(invoke(runner, "status", "--json").stdout)[0]["guards"]
    assert status["drawdown"]["stopped"] is False and status["daily_loss"]["tripped"] is False
    # the peak moved with the withdrawal: a real loss still counts from the new level
    assert status["drawdown"]["peak_equity_usd"] < 7000


# ---- 8. Adopted positions keep the ledger right -----------------------------------------------------


def stats(runner: CliRunner) -> dict[str, Any]:
    result = invoke(runner, "stats", "--json")
    assert result.exit_code == 0, result.output
    trading: dict[str, Any] = json.loads(result.stdout)["trading"]
    return trading


def test_an_adopted_position_opens_in_the_ledger_and_its_close_is_a_close(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    mark = Decimal(str(fake_aster.mark("BTCUSDT")))
    fake_aster.set_position(USER, "BTCUSDT", "0.02", mark - 100)  # opened before llmtrader ran
    result = run_once(runner)  # reconcile adopts it and arms a stop; the model holds
    assert result.exit_code == 0, result.output
    assert invoke(runner, "close", "BTCUSDT", "--yes").exit_code == 0
    assert fake_aster.positions(USER) == {}
    # a round trip of llmtrader's own on the same symbol afterwards
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    code, out, _ = decide_json(runner)
    assert code == 0 and out is not None and out["execution"] == "executed"
    assert invoke(runner, "close", "BTCUSDT", "--yes").exit_code == 0
    assert run_once(runner).exit_code == 0  # syncs the venue's fills
    t = stats(runner)
    assert (t["trades"], t["open_trades"]) == (2, 0)  # not a phantom short that never closes
    assert t["adopted_trades"] == 1
    [(symbol, amount, entry)] = rows(live, "SELECT symbol, amount, entry_price FROM adoptions")
    assert (symbol, Decimal(amount), Decimal(entry)) == ("BTCUSDT", Decimal("0.02"), mark - 100)
    # the adopted trade is measured from the venue's entry price: the ledger's gross PnL is the venue's own
    reported = [Decimal(p) for (p,) in rows(live, "SELECT realized_pnl FROM venue_fills") if p is not None]
    assert Decimal(t["gross_pnl_usd"]) == sum(reported) != 0
    listed = json.loads(invoke(runner, "history", "--json").stdout)
    decided = next(d for d in listed if d["decision_id"] == out["decision_id"])
    assert json.dumps(decided).count('"role": "opened"') == 1, decided
    assert "1 adopted" in invoke(runner, "stats").stdout


# ---- 9. Hedge (dual-side) mode is detected ----------------------------------------------------------


def test_hedge_mode_is_refused_with_a_clear_line_and_nothing_sent(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_aster.set_position_mode(USER, dual=True)
    fake_aster.set_position(USER, "BTCUSDT", "0.01")  # a position without a stop
    for args in (("run", "--once"), ("decide", "--yes"), ("close", "--all", "--yes")):
        fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
        result = invoke(runner, *args)
        assert result.exit_code == 2, (args, result.output)
        line = result.stderr.strip()
        assert len(line.splitlines()) == 1 and "'default'" in line and "dualSidePosition=false" in line, args
    assert fake_aster.order_posts() == [] and fake_llm.requests == []
    checks = {c["name"]: c for c in json.loads(invoke(runner, "doctor", "--json").stdout)}
    assert checks["position mode"]["status"] == "fail"
    assert "hedge (dual-side)" in checks["position mode"]["detail"]
    fake_aster.set_position_mode(USER, dual=False)
    checks = {c["name"]: c for c in json.loads(invoke(runner, "doctor", "--json").stdout)}
    assert checks["position mode"]["status"] == "ok"


def test_a_transfer_moves_the_peak_once_and_a_real_loss_still_trips_the_switch() -> None:
    from dataclasses import replace

    from llmtrader.config.load import load_settings
    from llmtrader.core.guards import GuardSettings, GuardState, check_guards

    gs = replace(GuardSettings.from_settings(load_settings(None, None, environ={})), max_drawdown_pct=20)
    t0 = 1_790_000_000_000

    def cycle(state: GuardState, now: int, equity: float, transfers: list[tuple[int, float]]) -> Any:
        return check_guards(
            state, account="default", now_ms=now, equity=equity, day_start_equity=None, spend_today_usd=0,
            model_call_times_ms=[], settings=gs, transfers=transfers,
        )  # fmt: skip

    first = cycle(GuardState(), t0, 10_000, [])
    assert first.new_state.kill.peak_equity == 10_000
    withdrawal = [(t0 + 60_000, -4000.0)]
    second = cycle(first.new_state, t0 + 3_600_000, 6_000, withdrawal)
    assert not second.close_all and second.new_state.kill.peak_equity == 6_000
    # the same transfer, read again at the next cycle, is not counted twice
    third = cycle(second.new_state, t0 + 7_200_000, 5_000, withdrawal)
    assert not third.close_all and third.new_state.kill.peak_equity == 6_000
    # a loss of 20% from the moved peak trips the switch
    fourth = cycle(third.new_state, t0 + 10_800_000, 4_800, withdrawal)
    assert fourth.close_all and "below the peak 6000 USD" in fourth.reasons[0]

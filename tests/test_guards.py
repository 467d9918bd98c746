"""The guards: kill switches, circuit breaker, rate limits and decision cache, on a controllable clock,
persisted in the store across restarts; and `llmtrader resume`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.config.load import load_settings
from llmtrader.config.strategies import load_strategy
from llmtrader.core.account import AccountState, Position
from llmtrader.core.decision import Action, AssetDecision, RiskLevel
from llmtrader.core.guards import (
    BUDGET_RESET,
    BUDGET_STOP,
    CIRCUIT_CLOSED,
    CIRCUIT_HALF_OPEN,
    CIRCUIT_OPEN,
    DAILY_LOSS_RESET,
    DAILY_LOSS_STOP,
    DRAWDOWN_STOP,
    RESUME,
    CacheContext,
    GuardSettings,
    GuardState,
    GuardVerdict,
    cache_context,
    check_guards,
    context_key,
    describe,
    limit_reached,
    loss_pct,
    rate_limit_wait,
    record_model_result,
    refuse_openings,
    resume,
)
from llmtrader.core.market import AssetMarket, Candles, MarketSnapshot
from llmtrader.core.records import CallRow, DecisionRecord, new_decision_id
from llmtrader.core.risk import AssetValidation, Status, ValidationReport
from llmtrader.core.times import DAY_MS, HOUR_MS, MINUTE_MS, day_start_ms
from llmtrader.cycle.manual import resume_account
from llmtrader.storage.store import Store

DAY0 = 1_790_035_200_000  # 00:00 UTC
assert DAY0 % DAY_MS == 0
NOON = DAY0 + 12 * HOUR_MS
ACCOUNT = "main"


@pytest.fixture
def gs() -> GuardSettings:
    """The default guard settings (from the default Settings, so the defaults live in one place)."""
    return GuardSettings.from_settings(load_settings(None, None, environ={}))


def check(
    state: GuardState,
    gs: GuardSettings,
    *,
    now: int = NOON,
    equity: float = 10_000,
    start: float | None = 10_000,
    spend: float = 0.0,
    calls: tuple[int, ...] = (),
) -> GuardVerdict:
    return check_guards(
        state,
        account=ACCOUNT,
        now_ms=now,
        equity=equity,
        day_start_equity=start,
        spend_today_usd=spend,
        model_call_times_ms=calls,
        settings=gs,
    )


def kinds(verdict: GuardVerdict) -> list[str]:
    return [e.kind for e in verdict.events]


def test_default_settings(gs: GuardSettings) -> None:
    assert gs == GuardSettings(
        daily_loss_kill_pct=15,
        max_drawdown_pct=30,
        daily_model_budget_usd=None,
        model_calls_per_minute=60,
        model_calls_per_hour=600,
        circuit_failures=3,
        circuit_cooldown_ms=15 * MINUTE_MS,
        decision_cache_ttl_ms=HOUR_MS,  # one interval (1h)
    )
    four_hours = load_settings(None, {"interval": "4h"}, environ={})
    assert GuardSettings.from_settings(four_hours).decision_cache_ttl_ms == 4 * HOUR_MS
    off = load_settings(
        None,
        None,
        environ={"DECISION_CACHE_TTL_S": "0", "DAILY_LOSS_KILL_PCT": "0", "MAX_DRAWDOWN_PCT": "0"},
    )
    off_gs = GuardSettings.from_settings(off)
    assert off_gs.decision_cache_ttl_ms == 0
    assert off_gs.daily_loss_kill_pct is None and off_gs.max_drawdown_pct is None


def test_a_fresh_account_may_do_everything(gs: GuardSettings) -> None:
    verdict = check(GuardState(), gs)
    assert verdict.allow_decision and verdict.allow_model_call and verdict.allow_openings
    assert not verdict.close_all and verdict.reasons == () and verdict.events == ()
    assert verdict.new_state.kill.peak_equity == 10_000


def test_shared_loss_arithmetic() -> None:
    assert loss_pct(10_000, 8_500) == pytest.approx(15)
    assert loss_pct(10_000, 11_000) == pytest.approx(-10)
    assert loss_pct(None, 1) is None and loss_pct(0, 1) is None
    assert limit_reached(15, 15) and not limit_reached(14.99, 15)
    assert limit_reached(14.999999999999998, 15)  # float noise at the exact threshold still counts
    assert not limit_reached(50, None) and not limit_reached(None, 10)


# Daily loss ----------------------------------------------------------------------------------------------


def test_daily_loss_trips_at_the_exact_threshold_and_not_below(gs: GuardSettings) -> None:
    below = check(GuardState(), gs, equity=8_500.01)
    assert below.allow_openings and DAILY_LOSS_STOP not in kinds(below)
    at = check(GuardState(), gs, equity=8_500)
    assert not at.allow_openings and at.allow_decision and at.allow_model_call and not at.close_all
    assert kinds(at) == [DAILY_LOSS_STOP] and at.blocked_by == ("daily_loss",)
    assert "15.00% below the start-of-day equity 10000 USD" in at.reasons[0]
    # A start that makes the percentage land a hair below 15 in floating point still trips.
    start = 0.7
    assert check(GuardState(), gs, start=start, equity=start * 0.85).blocked_by == ("daily_loss",)


def test_daily_loss_latches_until_the_next_utc_day_and_survives_a_restart(gs: GuardSettings, tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    tripped = check(GuardState(), gs, equity=8_000)
    store = Store(path)
    store.save_guard_state(ACCOUNT, tripped.new_state, tripped.events, now_ms=NOON)
    store.close()

    store = Store(path)  # a restart
    state = store.load_guard_state(ACCOUNT)
    assert state == tripped.new_state
    recovered = check(state, gs, now=NOON + HOUR_MS, equity=10_500)  # equity recovered: still latched
    assert not recovered.allow_openings and recovered.events == ()
    last_minute = check(state, gs, now=DAY0 + DAY_MS - 1, equity=10_500)
    assert not last_minute.allow_openings
    next_day = check(state, gs, now=DAY0 + DAY_MS, equity=10_500, start=10_500)
    assert next_day.allow_openings and kinds(next_day) == [DAILY_LOSS_RESET]
    store.save_guard_state(ACCOUNT, next_day.new_state, next_day.events, now_ms=DAY0 + DAY_MS)
    events = store.guard_events(ACCOUNT)
    assert [e["kind"] for e in events] == [DAILY_LOSS_RESET, DAILY_LOSS_STOP]  # newest first
    assert all(e["account"] == ACCOUNT for e in events)
    store.close()


def test_daily_loss_unknown_start_or_switched_off(gs: GuardSettings) -> None:
    assert check(GuardState(), gs, start=None, equity=1).allow_openings
    off = replace(gs, daily_loss_kill_pct=None, max_drawdown_pct=None)
    assert check(GuardState(), off, equity=1).allow_openings


# Maximum drawdown ----------------------------------------------------------------------------------------


def test_drawdown_peak_is_raised_every_cycle_and_trips_at_the_exact_threshold(gs: GuardSettings) -> None:
    gs = replace(gs, daily_loss_kill_pct=None)
    state = check(GuardState(), gs, equity=10_000).new_state
    state = check(state, gs, now=NOON + HOUR_MS, equity=12_000).new_state
    assert (state.kill.peak_equity, state.kill.peak_at_ms) == (12_000, NOON + HOUR_MS)
    state = check(state, gs, now=NOON + 2 * HOUR_MS, equity=11_000).new_state
    assert state.kill.peak_equity == 12_000  # not lowered

    below = check(state, gs, now=NOON + 3 * HOUR_MS, equity=8_400.01)
    assert not below.close_all and below.allow_openings
    at = check(state, gs, now=NOON + 3 * HOUR_MS, equity=8_400)  # 30% below 12,000
    assert at.close_all and not at.allow_openings and not at.allow_decision and not at.allow_model_call
    assert kinds(at) == [DRAWDOWN_STOP] and at.blocked_by == ("drawdown",)
    assert "llmtrader resume main" in at.reasons[0] and "30.00% below the peak 12000 USD" in at.reasons[0]


def test_drawdown_stop_holds_across_days_and_restarts_until_resume(gs: GuardSettings, tmp_path: Path) -> None:
    gs = replace(gs, daily_loss_kill_pct=None)
    path = tmp_path / "t.db"
    state = check(GuardState(), gs, equity=10_000).new_state
    tripped = check(state, gs, equity=7_000)
    store = Store(path)
    store.save_guard_state(ACCOUNT, tripped.new_state, tripped.events, now_ms=NOON)
    store.close()

    for days in (0, 1, 30):
        store = Store(path)  # a restart, possibly much later
        state = store.load_guard_state(ACCOUNT)
        later = check(state, gs, now=NOON + days * DAY_MS + 1, equity=15_000)  # even far above the old peak
        assert later.close_all and not later.allow_decision and later.events == ()
        store.close()
    # Turning the switch off does not lift a stop: only a person does.
    assert check(state, replace(gs, max_drawdown_pct=None), equity=15_000).close_all

    store = Store(path)
    result = resume_account(store, ACCOUNT, now_ms=NOON + 2 * DAY_MS)
    assert result.resumed and result.previous_peak == 10_000 and result.new_peak is None
    store.close()
    store = Store(path)
    state = store.load_guard_state(ACCOUNT)
    assert state.kill.stopped_at_ms is None and state.kill.peak_equity is None
    after = check(state, gs, now=NOON + 2 * DAY_MS + HOUR_MS, equity=7_000)
    assert not after.close_all and after.allow_openings  # the peak restarts here, at 7,000
    assert after.new_state.kill.peak_equity == 7_000
    assert [e["kind"] for e in store.guard_events(ACCOUNT)] == [RESUME, DRAWDOWN_STOP]
    store.close()


def test_resume_is_pure_and_refuses_when_not_stopped(gs: GuardSettings) -> None:
    fresh = check(GuardState(), gs, equity=10_000).new_state
    nothing = resume(fresh, now_ms=NOON)
    assert not nothing.resumed and nothing.new_state == fresh and nothing.events == ()
    stopped = check(fresh, gs, equity=5_000).new_state
    with_equity = resume(stopped, now_ms=NOON + 1, equity=5_000)
    assert with_equity.resumed and with_equity.new_state.kill.peak_equity == 5_000
    assert with_equity.new_state.kill.daily_loss_day == stopped.kill.daily_loss_day  # daily switch untouched
    assert [e.kind for e in with_equity.events] == [RESUME]


# Model budget --------------------------------------------------------------------------------------------


def test_budget_holds_from_the_exact_amount_until_the_next_utc_day(gs: GuardSettings) -> None:
    gs = replace(gs, daily_model_budget_usd=5.0)
    under = check(GuardState(), gs, spend=4.99)
    assert under.allow_decision and under.allow_model_call
    reached = check(GuardState(), gs, spend=0.1 + 0.2 + 4.7)  # 5.000000000000001 or a hair less: reached
    assert not reached.allow_decision and not reached.allow_model_call and not reached.close_all
    assert reached.allow_openings and kinds(reached) == [BUDGET_STOP] and reached.blocked_by == ("budget",)
    again = check(reached.new_state, gs, now=NOON + HOUR_MS, spend=5.2)
    assert not again.allow_decision and again.events == ()  # no second event the same day
    next_day = check(reached.new_state, gs, now=DAY0 + DAY_MS, spend=0.0)
    assert next_day.allow_model_call and kinds(next_day) == [BUDGET_RESET]
    raised = check(reached.new_state, replace(gs, daily_model_budget_usd=10.0), now=NOON + 1, spend=5.2)
    assert raised.allow_model_call and kinds(raised) == [BUDGET_RESET]


def record(store: Store, when: int, *, account: str = ACCOUNT, cost: float | None = 0.5, calls: int = 1) -> str:
    rec = DecisionRecord(
        id=new_decision_id(when),
        created_at_ms=when,
        account=account,
        mode="paper",
        dry_run=False,
        strategy="default",
        model="fake/model",
        base_url="http://x/v1",
        symbols=["BTCUSDT"],
        outcome="decided",
        cost_usd=cost,
        equity_usd=10_000,
        calls=[CallRow(i + 1, "json_schema", "{}", None, 10, 5, 0, cost, 12, "stop", None) for i in range(calls)],
    )
    store.record_decision(rec)
    return rec.id


def test_spend_today_is_read_from_the_decisions_of_the_account(gs: GuardSettings, tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    record(store, DAY0 - 1, cost=9.0)  # yesterday
    record(store, DAY0, cost=1.25)
    record(store, NOON, cost=2.5)
    record(store, NOON, cost=None)  # a baseline decision costs nothing
    record(store, NOON, account="other", cost=7.0)
    spend = store.model_spend_usd(ACCOUNT, since_ms=day_start_ms(NOON + 1))
    assert spend == pytest.approx(3.75)
    assert store.model_spend_usd("nobody", since_ms=DAY0) == 0
    verdict = check(GuardState(), replace(gs, daily_model_budget_usd=3.75), now=NOON + 1, spend=spend)
    assert not verdict.allow_decision
    store.close()


# Circuit breaker -----------------------------------------------------------------------------------------


def test_circuit_opens_after_n_failures_then_half_opens_then_closes(gs: GuardSettings, tmp_path: Path) -> None:
    state = GuardState()
    t = NOON
    for n in (1, 2):
        state, events = record_model_result(state, ok=False, now_ms=t, settings=gs, error="HTTP 503")
        assert state.circuit.status == "closed" and state.circuit.failures == n and events == ()
    assert check(state, gs, now=t).allow_model_call
    state, events = record_model_result(state, ok=False, now_ms=t, settings=gs, error="HTTP 503")
    assert state.circuit.status == "open" and state.circuit.open_until_ms == t + 15 * MINUTE_MS
    assert [e.kind for e in events] == [CIRCUIT_OPEN] and "3 consecutive model failures" in events[0].message

    # Persisted: a restart during the cool-down keeps it open.
    store = Store(tmp_path / "t.db")
    store.save_guard_state(ACCOUNT, state, events, now_ms=t)
    store.close()
    state = Store(tmp_path / "t.db").load_guard_state(ACCOUNT)

    during = check(state, gs, now=t + 15 * MINUTE_MS - 1)
    assert not during.allow_model_call and during.allow_decision and during.blocked_by == ("circuit",)
    assert during.retry_after_ms == 1 and "circuit open until" in during.reasons[0]
    assert describe(during.new_state, t + 1)["circuit"]["state"] == "open"

    due = check(state, gs, now=t + 15 * MINUTE_MS)
    assert due.allow_model_call and kinds(due) == [CIRCUIT_HALF_OPEN]
    half = due.new_state
    assert half.circuit.status == "half_open"
    # The trial fails: open again for a full cool-down.
    reopened, events = record_model_result(half, ok=False, now_ms=t + 16 * MINUTE_MS, settings=gs, error="timeout")
    assert reopened.circuit.status == "open" and reopened.circuit.open_until_ms == t + 31 * MINUTE_MS
    assert [e.kind for e in events] == [CIRCUIT_OPEN] and "trial model call failed" in events[0].message
    # The next trial succeeds: closed, the count back to 0.
    half = check(reopened, gs, now=t + 31 * MINUTE_MS).new_state
    closed, events = record_model_result(half, ok=True, now_ms=t + 32 * MINUTE_MS, settings=gs)
    assert closed.circuit.status == "closed" and closed.circuit.failures == 0
    assert [e.kind for e in events] == [CIRCUIT_CLOSED]


def test_a_success_resets_the_failure_count(gs: GuardSettings) -> None:
    state, _ = record_model_result(GuardState(), ok=False, now_ms=NOON, settings=gs)
    state, _ = record_model_result(state, ok=False, now_ms=NOON, settings=gs)
    state, events = record_model_result(state, ok=True, now_ms=NOON, settings=gs)
    assert state.circuit.failures == 0 and events == ()
    state, _ = record_model_result(state, ok=False, now_ms=NOON, settings=gs)
    assert state.circuit.status == "closed"
    unchanged, events = record_model_result(GuardState(), ok=True, now_ms=NOON, settings=gs)
    assert unchanged == GuardState() and events == ()


def test_describe_shows_the_state(gs: GuardSettings) -> None:
    state = GuardState()
    for _ in range(3):
        state, _ = record_model_result(state, ok=False, now_ms=NOON, settings=gs, error="HTTP 500")
    state = check(state, gs, equity=8_000).new_state
    shown = describe(state, NOON + MINUTE_MS)
    assert shown["circuit"] == {
        "state": "open",
        "until": "2026-09-22T12:15:00.000Z",
        "consecutive_failures": 3,
        "last_error": "HTTP 500",
    }
    assert shown["daily_loss"]["tripped"] and not shown["drawdown"]["stopped"] and not shown["budget"]["reached"]
    tomorrow = describe(state, DAY0 + DAY_MS + 1)
    assert not tomorrow["daily_loss"]["tripped"] and tomorrow["circuit"]["state"] == "half_open"
    json.dumps(shown)


# Rate limits ---------------------------------------------------------------------------------------------


def test_rate_limit_per_minute_is_refused_with_the_wait() -> None:
    now = NOON
    calls = [now - 59_000 + i * 100 for i in range(59)]
    assert rate_limit_wait(calls, now, per_minute=60, per_hour=600) is None
    calls.append(now - 1_000)
    refused = rate_limit_wait(calls, now, per_minute=60, per_hour=600)
    assert refused is not None
    wait, reason = refused
    assert wait == 1_000  # the oldest, made 59 s ago, leaves the window in 1 s
    assert "60 calls in the last minute (limit 60 per minute)" in reason and "1.0 s" in reason
    assert rate_limit_wait(calls, now + 1_000, per_minute=60, per_hour=600) is None


def test_rate_limit_per_hour() -> None:
    now = NOON
    calls = [now - HOUR_MS + 10 * MINUTE_MS + i for i in range(5)]
    refused = rate_limit_wait(calls, now, per_minute=60, per_hour=5)
    assert refused is not None and refused[0] == 10 * MINUTE_MS and "last hour" in refused[1]


def test_rate_limits_are_counted_from_the_store_across_a_restart(gs: GuardSettings, tmp_path: Path) -> None:
    gs = replace(gs, model_calls_per_minute=4)
    path = tmp_path / "t.db"
    store = Store(path)
    record(store, NOON - 2 * MINUTE_MS, calls=3)  # out of the minute window
    record(store, NOON - 30_000, calls=3)  # a decision with two re-asks: three calls
    record(store, NOON - 20_000, calls=1, account="other")
    store.close()

    store = Store(path)  # a restart does not reset the count
    times = store.model_call_times(ACCOUNT, since_ms=NOON - HOUR_MS)
    assert times == [NOON - 2 * MINUTE_MS] * 3 + [NOON - 30_000] * 3
    assert check(GuardState(), gs, calls=tuple(times)).allow_model_call  # 3 of 4 in the last minute
    record(store, NOON - 10_000, calls=1)
    store.close()
    store = Store(path)
    times = store.model_call_times(ACCOUNT, since_ms=NOON - HOUR_MS)
    verdict = check(GuardState(), gs, calls=tuple(times))
    assert not verdict.allow_model_call and verdict.allow_decision and verdict.blocked_by == ("rate_limit",)
    assert verdict.retry_after_ms == 30_000
    store.close()


# Decision cache ------------------------------------------------------------------------------------------


def snapshot(close: float = 100.5, mark: float = 100.7) -> MarketSnapshot:
    rows = [[DAY0 + i * HOUR_MS, 100.0, 101.0, 99.0, 100.0 + i, 1_000.0] for i in range(3)]
    rows[-1][4] = close
    candles = {"1h": Candles.from_rows("BTCUSDT", "1h", rows), "4h": Candles.from_rows("BTCUSDT", "4h", rows[:1])}
    market = AssetMarket("BTCUSDT", candles, mark, mark, 0.0001, None, mark, 1.0, 102, 98, 1e9, 5e5)
    return MarketSnapshot(as_of_ms=NOON, assets={"BTCUSDT": market})


def account_state(balance: float = 10_000.0, stop: float | None = 95.0, pnl: float = 3.0) -> AccountState:
    position = Position("BTCUSDT", "long", 0.5, 99.0, 100.7, pnl, 2, None, stop, 110.0)
    return AccountState(ACCOUNT, "paper", balance, balance - 50, (position,))


def key_of(**changes: object) -> str:
    base = {
        "account_name": ACCOUNT,
        "symbols": ["BTCUSDT"],
        "snapshot": snapshot(),
        "account": account_state(),
        "strategy": load_strategy("default"),
        "model": "fake/model",
        "base_url": "http://x/v1",
    }
    base.update(changes)
    return context_key(cache_context(**base))  # type: ignore[arg-type]


def test_context_key_changes_with_every_input_and_only_those() -> None:
    key = key_of()
    assert len(key) == 64 and key == key_of()
    # Live figures do not count: a new mark price or unrealized PnL is the same context.
    assert key_of(snapshot=snapshot(mark=101.9), account=account_state(pnl=-4.0)) == key
    changed = {
        "a newer close": key_of(snapshot=snapshot(close=100.6)),
        "the balance": key_of(account=account_state(balance=10_000.01)),
        "a position's stop": key_of(account=account_state(stop=96.0)),
        "no position": key_of(account=AccountState(ACCOUNT, "paper", 10_000.0, 9_950.0)),
        "the strategy": key_of(strategy=load_strategy("conservative")),
        "the strategy's file": key_of(strategy=load_strategy("default").model_copy(update={"description": "x"})),
        "the model": key_of(model="other/model"),
        "the endpoint": key_of(base_url="http://y/v1"),
        "the symbols": key_of(symbols=["BTCUSDT", "ETHUSDT"]),
        "the account": key_of(account_name="other"),
        "the A/B arm": key_of(arm="b"),
    }
    for what, other in changed.items():
        assert other != key, what
    assert len(set(changed.values())) == len(changed)


def test_context_key_is_a_sha256_of_canonical_json() -> None:
    ctx = CacheContext("a", ("BTCUSDT",), (), 1.0, (), "default", "d", "m", "u")
    assert context_key(ctx) == context_key(replace(ctx))
    assert context_key(ctx) != context_key(replace(ctx, balance_usd=1.0000001))


def test_cache_hit_within_the_ttl_miss_after_and_on_another_key(gs: GuardSettings, tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = Store(path)
    key = key_of()
    answer = {"assets": [], "portfolio_rationale": "wait", "total_allocation_usd": 0, "portfolio_risk_level": "low"}
    store.cache_decision(
        key, account=ACCOUNT, decision_id="d1", answer=answer, now_ms=NOON, ttl_ms=gs.decision_cache_ttl_ms
    )
    store.close()
    store = Store(path)  # the cache is in the database: it survives a restart
    hit = store.cached_decision(key, now_ms=NOON + HOUR_MS - 1)
    assert hit is not None and hit.decision_id == "d1" and hit.answer == answer and hit.account == ACCOUNT
    assert hit.expires_at_ms == NOON + HOUR_MS
    assert store.cached_decision(key, now_ms=NOON + HOUR_MS) is None  # expired
    assert store.cached_decision(key_of(model="other/model"), now_ms=NOON + 1) is None
    # A later insert prunes what expired; a TTL of 0 (cache off) stores nothing.
    store.cache_decision("k2", account=ACCOUNT, decision_id="d2", answer={}, now_ms=NOON + HOUR_MS, ttl_ms=60_000)
    assert store.db.execute("SELECT key FROM decision_cache").fetchall() == [("k2",)]
    store.cache_decision("k3", account=ACCOUNT, decision_id="d3", answer={}, now_ms=NOON, ttl_ms=0)
    assert store.cached_decision("k3", now_ms=NOON) is None
    store.close()


# Openings under the daily loss switch ---------------------------------------------------------------------


def accepted(symbol: str, action: Action, allocation: float) -> AssetValidation:
    decision = AssetDecision(
        symbol=symbol,
        action=action,
        rationale="r",
        allocation_usd=allocation,
        leverage=2,
        confidence=0.8,
        risk_level=RiskLevel.LOW,
    )
    return AssetValidation(symbol, action.value, Status.ACCEPTED, [], {"symbol": symbol}, decision)


def test_refuse_openings_keeps_only_reductions_and_closes() -> None:
    account = AccountState(
        ACCOUNT,
        "paper",
        10_000,
        9_000,
        (
            Position("BTCUSDT", "long", 0.02, 50_000, 50_000, 0, 2),  # margin 500
            Position("ETHUSDT", "long", 1, 2_000, 2_000, 0, 2),  # margin 1,000
            Position("XRPUSDT", "short", 100, 1, 1, 0, 2),
        ),
    )
    report = ValidationReport(
        assets=[
            accepted("SOLUSDT", Action.BUY, 100),
            accepted("BTCUSDT", Action.ADJUST_POSITION, 800),  # adds margin
            accepted("ETHUSDT", Action.ADJUST_POSITION, 400),  # reduces
            accepted("XRPUSDT", Action.CLOSE_POSITION, 0),
            accepted("DOGEUSDT", Action.HOLD, 0),
        ],
        notes=["n"],
    )
    out = refuse_openings(report, account, "daily loss switch")
    statuses = {v.symbol: v.status for v in out.assets}
    assert statuses == {
        "SOLUSDT": Status.REJECTED,
        "BTCUSDT": Status.REJECTED,
        "ETHUSDT": Status.ACCEPTED,
        "XRPUSDT": Status.ACCEPTED,
        "DOGEUSDT": Status.ACCEPTED,
    }
    rejected = out.assets[0]
    assert rejected.final is None and rejected.reasons == ["daily loss switch"]
    assert out.notes == ["n"] and report.assets[0].status is Status.ACCEPTED  # the input is untouched


# State documents -----------------------------------------------------------------------------------------


def test_state_json_round_trip_tolerates_unknown_and_missing_keys(gs: GuardSettings) -> None:
    state = check(GuardState(), gs, equity=8_000).new_state
    assert GuardState.from_json(json.loads(json.dumps(state.to_json()))) == state
    assert GuardState.from_json(None) == GuardState() == GuardState.from_json({})
    odd = GuardState.from_json({"kill": {"peak_equity": 5.0, "new_thing": 1}, "circuit": {"status": "weird"}})
    assert odd.kill.peak_equity == 5.0 and odd.circuit.status == "closed"


# `llmtrader resume` --------------------------------------------------------------------------------------


def write_accounts_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[accounts.main]\nassets = ["BTCUSDT"]\n[accounts.side]\nassets = ["ETHUSDT"]\n')
    return path


def test_resume_through_the_cli(clean_env: Path, runner: CliRunner, tmp_path: Path) -> None:
    config = write_accounts_config(tmp_path)
    gs = GuardSettings.from_settings(load_settings(config, None, environ={}))
    store = Store(clean_env)
    state = check(GuardState(), gs, equity=10_000).new_state
    tripped = check(state, gs, equity=6_500)
    store.save_guard_state("main", tripped.new_state, tripped.events, now_ms=NOON)
    store.close()

    unknown = runner.invoke(app, ["--config", str(config), "resume", "nope"])
    assert unknown.exit_code == 2
    assert "unknown account 'nope'; configured accounts: main, side" in unknown.stderr

    not_stopped = runner.invoke(app, ["--config", str(config), "resume", "side"])
    assert not_stopped.exit_code == 1
    assert "account 'side' is not stopped by the drawdown switch: nothing to resume" in not_stopped.stderr

    done = runner.invoke(app, ["--config", str(config), "resume", "main"])
    assert done.exit_code == 0, done.output
    assert "account 'main' resumed: the drawdown stop of 2026-09-22T12:00:00.000Z is lifted" in done.stdout
    assert "maximum drawdown reached" in done.stdout and "equity peak: 10000 USD -> reset" in done.stdout

    store = Store(clean_env)
    assert store.load_guard_state("main").kill.stopped_at_ms is None
    events = store.guard_events("main")
    assert [e["kind"] for e in events] == [RESUME, DAILY_LOSS_STOP, DRAWDOWN_STOP]
    assert "resumed by cli" in events[0]["message"]
    store.close()

    again = runner.invoke(app, ["--config", str(config), "resume", "main", "--json"])
    assert again.exit_code == 1
    assert json.loads(again.stdout)["resumed"] is False


def test_resume_of_the_single_default_account(clean_env: Path, runner: CliRunner) -> None:
    unknown = runner.invoke(app, ["resume", "main"])
    assert unknown.exit_code == 2 and "the only account is 'default'" in unknown.stderr
    store = Store(clean_env)
    gs = GuardSettings.from_settings(load_settings(None, None, environ={}))
    stopped = check(check(GuardState(), gs).new_state, gs, equity=1_000)
    store.save_guard_state("default", stopped.new_state, stopped.events, now_ms=NOON)
    store.close()
    result = runner.invoke(app, ["resume", "default", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["resumed"] is True and data["new_peak_equity_usd"] is None
    assert data["previous_peak_equity_usd"] == 10_000

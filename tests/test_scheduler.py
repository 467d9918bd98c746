"""The scheduler of `llmtrader run`: alignment to candle closes, no overlap (a skipped fire is recorded),
one catch-up after a pause, isolated accounts, graceful stop. A controllable clock and fake cycles: no test
waits for real time."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from llmtrader.config.settings import Settings, settings_from_values
from llmtrader.core.times import INTERVAL_MS
from llmtrader.cycle.scheduler import (
    DEFAULT_OFFSET_S,
    NO_MODEL_KEY,
    OVERLAP_REASON,
    Scheduler,
    model_key_missing,
    model_label,
    next_fire_ms,
    previous_fire_ms,
    select_accounts,
    trigger_for,
)
from llmtrader.errors import ConfigError, CredentialsError
from tests.helpers import FakeClock as Clock

HOUR = 3_600_000
T0 = int(datetime(2026, 3, 10, 14, 0, tzinfo=UTC).timestamp() * 1000)  # a 1h candle close
MODEL_KEY = "sk-or-v1-scheduler-test-key-5c2e91"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@dataclass
class Result:
    """The fields of llmtrader.cycle.CycleResult the scheduler reads."""

    account: str
    started_ms: int
    finished_ms: int
    outcome: str
    reason: str | None = None
    decision_id: str | None = None
    reconcile: list[str] = field(default_factory=list)
    equity_usd: float | None = None
    cached: bool = False


@dataclass
class FakeServices:
    settings: Settings
    store: Any = None
    closed: bool = False


@dataclass
class Recorder:
    """The fake cycle and skip recorder: what ran, what was recorded, and a gate a cycle may wait on."""

    clock: Clock
    ran: list[tuple[str, int]] = field(default_factory=list)
    skipped: list[tuple[str, int, str]] = field(default_factory=list)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    started: dict[str, asyncio.Event] = field(default_factory=dict)
    fail: dict[str, Exception] = field(default_factory=dict)
    closed: list[str] = field(default_factory=list)

    async def cycle(self, services: FakeServices, *, now_ms: int | None = None) -> Result:
        name = services.settings.account
        assert now_ms is not None
        self.ran.append((name, now_ms))
        self.started.setdefault(name, asyncio.Event()).set()
        if name in self.fail:
            raise self.fail[name]
        if name in self.gates:
            await self.gates[name].wait()
        return Result(name, now_ms, self.clock.now_ms(), "held", equity_usd=1000.0)

    def record_skip(self, store: Any, account: str, *, now_ms: int, reason: str) -> Result:
        self.skipped.append((account, now_ms, reason))
        return Result(account, now_ms, now_ms, "skipped", reason=reason)

    async def close(self, services: FakeServices) -> None:
        services.closed = True
        self.closed.append(services.settings.account)


def settings(name: str, **values: Any) -> Settings:
    return settings_from_values({"account": name, "interval": "1h", **values})


def make(
    recorder: Recorder, *names: str, offset_s: float = DEFAULT_OFFSET_S, **values: Any
) -> tuple[Scheduler, dict[str, FakeServices]]:
    services = {n: FakeServices(settings(n, **values)) for n in names}
    scheduler = Scheduler(
        services,  # type: ignore[arg-type]
        cycle=recorder.cycle,  # type: ignore[arg-type]
        record_skip=recorder.record_skip,  # type: ignore[arg-type]
        close_services=recorder.close,  # type: ignore[arg-type]
        clock=recorder.clock,
        offset_s=offset_s,
    )
    return scheduler, services


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Let the event loop run until ``predicate`` holds (bounded by loop turns, never by time)."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


# ---- Alignment ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "interval", "expected"),
    [
        ("2026-03-10T14:00:00", "1h", "2026-03-10T14:00:05"),  # at the close: 5 s later
        ("2026-03-10T14:00:05", "1h", "2026-03-10T14:00:05"),  # exactly at a fire time: that one
        ("2026-03-10T14:00:06", "1h", "2026-03-10T15:00:05"),
        ("2026-03-10T14:37:12", "1h", "2026-03-10T15:00:05"),
        ("2026-03-10T14:37:12", "15m", "2026-03-10T14:45:05"),
        ("2026-03-10T14:59:59", "15m", "2026-03-10T15:00:05"),
        ("2026-03-10T14:37:12", "4h", "2026-03-10T16:00:05"),  # 4h candles close at 00, 04, ... 20 UTC
        ("2026-03-10T22:00:00", "4h", "2026-03-11T00:00:05"),
        ("2026-03-10T14:37:12", "1d", "2026-03-11T00:00:05"),  # 1d candles close at 00:00 UTC
        ("2026-12-31T23:59:59", "1d", "2027-01-01T00:00:05"),
        ("2026-03-10T14:37:12", "1m", "2026-03-10T14:38:05"),
    ],
)
def test_next_fire_is_the_candle_close_plus_the_offset_in_utc(now: str, interval: str, expected: str) -> None:
    assert next_fire_ms(ms(now), interval) == ms(expected)


def test_previous_fire_and_a_custom_offset() -> None:
    assert previous_fire_ms(ms("2026-03-10T14:37:12"), "1h") == ms("2026-03-10T14:00:05")
    assert previous_fire_ms(ms("2026-03-10T14:00:04"), "1h") == ms("2026-03-10T13:00:05")
    assert next_fire_ms(ms("2026-03-10T14:37:12"), "1h", offset_s=30) == ms("2026-03-10T15:00:30")
    assert next_fire_ms(ms("2026-03-10T14:37:12"), "1h", offset_s=0) == ms("2026-03-10T15:00:00")
    with pytest.raises(ConfigError, match="shorter than the interval"):
        next_fire_ms(T0, "1m", offset_s=60)
    with pytest.raises(ConfigError, match="interval '7m'"):
        next_fire_ms(T0, "7m")


@pytest.mark.parametrize("interval", ["1m", "15m", "1h", "4h", "1d"])
def test_the_apscheduler_trigger_fires_at_the_same_times(interval: str) -> None:
    trigger = trigger_for(interval)
    for now in (T0, T0 + 1, T0 + 5_000, T0 + 5_001, ms("2026-07-04T03:21:59"), ms("2027-01-01T00:00:00")):
        fire = trigger.get_next_fire_time(None, datetime.fromtimestamp(now / 1000, UTC))
        assert round(fire.timestamp() * 1000) == next_fire_ms(now, interval)
        later = trigger.get_next_fire_time(fire, fire)  # from a fire, the next is one interval on
        assert round((later - fire).total_seconds() * 1000) == INTERVAL_MS[interval]


def test_a_bad_offset_stops_the_scheduler_at_once() -> None:
    with pytest.raises(ConfigError, match="offset"):
        make(Recorder(Clock(T0)), "a", offset_s=3600)


# ---- Overlap --------------------------------------------------------------------------------------------


def test_a_slow_cycle_makes_the_next_fire_skip_and_the_skip_is_recorded() -> None:
    recorder = Recorder(Clock(T0 + 5_000))
    scheduler, _ = make(recorder, "a")
    recorder.gates["a"] = asyncio.Event()

    async def go() -> tuple[Any, Any, Any]:
        first = asyncio.create_task(scheduler.fire("a"))
        await until(lambda: "a" in recorder.started and recorder.started["a"].is_set(), "the first cycle started")
        assert scheduler.running == ["a"]
        recorder.clock.now += HOUR  # the next candle closes while the first cycle still waits on its model
        second = await scheduler.fire("a")
        recorder.gates["a"].set()
        done = await first
        third = await scheduler.fire("a")  # the lock is free again
        return done, second, third

    done, second, third = asyncio.run(go())
    assert done.outcome == "held"
    assert second.outcome == "skipped" and second.reason == OVERLAP_REASON
    assert recorder.skipped == [("a", T0 + 5_000 + HOUR, OVERLAP_REASON)]
    assert [r for r in recorder.ran] == [("a", T0 + 5_000), ("a", T0 + 5_000 + HOUR)]
    assert third.outcome == "held"


def test_overlap_is_per_account() -> None:
    recorder = Recorder(Clock(T0 + 5_000))
    scheduler, _ = make(recorder, "a", "b")
    recorder.gates["a"] = asyncio.Event()

    async def go() -> Any:
        slow = asyncio.create_task(scheduler.fire("a"))
        await until(lambda: "a" in recorder.started, "a started")
        other = await scheduler.fire("b")  # a's slow cycle does not hold b back
        recorder.gates["a"].set()
        await slow
        return other

    assert asyncio.run(go()).outcome == "held"
    assert recorder.skipped == []


# ---- Catch-up -------------------------------------------------------------------------------------------


def test_after_a_pause_of_several_intervals_one_cycle_catches_up() -> None:
    """The job's next fire time lies five intervals in the past, as after a suspended machine: APScheduler
    (coalesce, misfire grace of one interval) runs it once, then waits for the next candle close."""
    recorder = Recorder(Clock(T0))
    scheduler, _ = make(recorder, "a")

    async def go() -> tuple[int, datetime]:
        scheduler.start()
        aps = scheduler._aps
        job = aps.get_job("cycle:a")
        real_now = datetime.now(UTC)
        latest = previous_fire_ms(int(real_now.timestamp() * 1000), "1h")
        job.modify(next_run_time=datetime.fromtimestamp((latest - 5 * HOUR) / 1000, UTC))
        aps.wakeup()
        await until(lambda: len(recorder.ran) >= 1, "the catch-up cycle ran")
        for _ in range(200):  # any further (burst) fire would have been submitted by now
            await asyncio.sleep(0)
        next_run = aps.get_job("cycle:a").next_run_time
        scheduler.request_stop()
        await scheduler.wait_for_cycles()
        return len(recorder.ran), next_run

    runs, next_run = asyncio.run(go())
    assert runs == 1
    now = datetime.now(UTC)
    assert round(next_run.timestamp() * 1000) == next_fire_ms(int(now.timestamp() * 1000), "1h")


def test_the_jobs_coalesce_with_a_grace_of_one_interval() -> None:
    recorder = Recorder(Clock(T0))
    scheduler, _ = make(recorder, "a", "b", interval="4h")

    async def go() -> list[Any]:
        scheduler.start()
        jobs = scheduler._aps.get_jobs()
        scheduler.request_stop()
        return jobs

    jobs = asyncio.run(go())
    assert sorted(j.id for j in jobs) == ["cycle:a", "cycle:b"]
    for job in jobs:
        assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, 4 * 3600)


def test_a_restart_catches_up_once_only_where_the_latest_close_has_no_cycle() -> None:
    now = T0 + 20 * 60_000  # 14:20, the 14:00:05 cycle time has passed
    recorder = Recorder(Clock(now))
    scheduler, _ = make(recorder, "fresh", "stale", "done")

    async def go() -> None:
        scheduler.start(last_cycle_ms={"stale": T0 + 5_000 - HOUR, "done": T0 + 5_000})
        await until(lambda: len(recorder.ran) == 2, "two catch-up cycles")
        scheduler.request_stop()
        await scheduler.wait_for_cycles()

    asyncio.run(go())
    assert sorted(recorder.ran) == [("fresh", now), ("stale", now)]


# ---- Isolation ------------------------------------------------------------------------------------------


def test_one_failing_account_is_logged_and_the_other_still_runs() -> None:
    """The cycle records itself even when it raises (as run_cycle does); the scheduler logs the error
    and the other account's cycle runs and is returned."""
    import structlog

    recorder = Recorder(Clock(T0 + 5_000))
    scheduler, _ = make(recorder, "good", "bad")
    recorder.fail["bad"] = RuntimeError("the venue said something unexpected")

    with structlog.testing.capture_logs() as logs:
        results = asyncio.run(scheduler.run_once())

    good, bad = results
    assert good is not None and good.account == "good" and good.outcome == "held"
    assert bad is None
    assert sorted(recorder.ran) == [("bad", T0 + 5_000), ("good", T0 + 5_000)]
    [failure] = [e for e in logs if e["event"] == "cycle failed"]
    assert failure["account"] == "bad" and failure["log_level"] == "error"


def test_an_overlap_skip_that_cannot_be_recorded_is_logged_and_the_scheduler_goes_on() -> None:
    recorder = Recorder(Clock(T0))
    scheduler, _ = make(recorder, "a")
    recorder.gates["a"] = asyncio.Event()

    def broken(store: Any, account: str, *, now_ms: int, reason: str) -> Any:
        raise OSError("disk full")

    scheduler._record_skip = broken

    async def go() -> tuple[Any, Any]:
        first = asyncio.create_task(scheduler.fire("a"))
        await until(lambda: "a" in recorder.started, "the first cycle started")
        second = await scheduler.fire("a")
        recorder.gates["a"].set()
        return await first, second

    first, second = asyncio.run(go())
    assert first.outcome == "held" and second is None


# ---- Stopping -------------------------------------------------------------------------------------------


def test_stop_during_a_cycle_lets_it_finish_then_closes_and_exits_0() -> None:
    recorder = Recorder(Clock(T0 + 5_000))
    scheduler, services = make(recorder, "a", "b")
    recorder.gates["a"] = asyncio.Event()

    async def go() -> tuple[int, bool, list[str]]:
        serving = asyncio.create_task(scheduler.serve())
        await until(lambda: scheduler._aps is not None, "the scheduler started")
        cycle = scheduler.launch("a")  # what the APScheduler job does at a fire time
        await until(lambda: "a" in recorder.started, "the cycle started")
        scheduler.request_stop("SIGTERM received")
        for _ in range(100):
            await asyncio.sleep(0)
        waiting = not serving.done() and not cycle.done()  # the cycle is awaited, not cancelled
        closed_early = list(recorder.closed)
        late = await scheduler.fire("b")  # no new cycle once stopping
        assert late is None
        recorder.gates["a"].set()
        code = await serving
        assert (await cycle) is not None
        return code, waiting, closed_early

    code, waiting, closed_early = asyncio.run(go())
    assert code == 0 and waiting and closed_early == []
    assert recorder.ran == [("a", T0 + 5_000)] and recorder.skipped == []
    assert sorted(recorder.closed) == ["a", "b"] and all(s.closed for s in services.values())
    assert scheduler._aps is not None and not scheduler._aps.running


def test_a_real_sigterm_is_handled_the_same_way() -> None:
    recorder = Recorder(Clock(T0 + 5_000))
    scheduler, _ = make(recorder, "a")
    recorder.gates["a"] = asyncio.Event()

    async def go() -> int:
        serving = asyncio.create_task(scheduler.serve())
        await until(lambda: scheduler._aps is not None, "the scheduler started")
        scheduler.launch("a")
        await until(lambda: "a" in recorder.started, "the cycle started")
        os.kill(os.getpid(), signal.SIGTERM)
        await until(lambda: scheduler._stopping, "the signal was handled")
        recorder.gates["a"].set()
        return await serving

    assert asyncio.run(go()) == 0
    assert recorder.closed == ["a"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is removed on the way out


def test_a_second_stop_request_cancels_the_cycle_and_exits_1() -> None:
    recorder = Recorder(Clock(T0 + 5_000))
    scheduler, _ = make(recorder, "a")
    recorder.gates["a"] = asyncio.Event()  # never set: the cycle hangs

    async def go() -> tuple[int, bool]:
        serving = asyncio.create_task(scheduler.serve())
        await until(lambda: scheduler._aps is not None, "the scheduler started")
        cycle = scheduler.launch("a")
        await until(lambda: "a" in recorder.started, "the cycle started")
        scheduler.request_stop()
        scheduler.request_stop()
        code = await serving
        return code, cycle.cancelled()

    assert asyncio.run(go()) == (1, True)
    assert recorder.closed == ["a"]


def test_once_lets_a_signalled_cycle_finish_and_a_second_signal_cancels_it() -> None:
    recorder = Recorder(Clock(T0 + 5_000))
    scheduler, _ = make(recorder, "a", "b")
    recorder.gates["a"] = asyncio.Event()

    async def go() -> int:
        once = asyncio.create_task(scheduler.serve_once())
        await until(lambda: "a" in recorder.started, "the cycle started")
        os.kill(os.getpid(), signal.SIGTERM)
        await until(lambda: scheduler._stopping, "the signal was handled")
        recorder.gates["a"].set()
        return await once

    assert asyncio.run(go()) == 0  # both cycles ran to their end
    assert sorted(recorder.ran) == [("a", T0 + 5_000), ("b", T0 + 5_000)]
    assert sorted(recorder.closed) == ["a", "b"]

    recorder = Recorder(Clock(T0 + 5_000))
    scheduler, _ = make(recorder, "a", "b")
    recorder.gates["a"] = asyncio.Event()  # never set

    async def twice() -> int:
        once = asyncio.create_task(scheduler.serve_once())
        await until(lambda: "a" in recorder.started, "the cycle started")
        scheduler.request_stop()
        scheduler.request_stop()
        return await once

    assert asyncio.run(twice()) == 1  # a's cycle was cancelled: not every cycle was recorded
    assert sorted(recorder.closed) == ["a", "b"]


# ---- Start-up checks ------------------------------------------------------------------------------------


def test_model_key_missing_matches_the_baseline_fallback_of_bootstrap(clean_env: Path) -> None:
    from llmtrader.cycle.compose import BASELINE_NOTE, build_client

    cases = [
        {"llm_model": "x-ai/grok-4"},
        {"llm_model": "x-ai/grok-4", "llm_api_key": MODEL_KEY},
        {"llm_model": "baseline"},
        {"llm_model": "llama3", "llm_base_url": "http://localhost:11434/v1"},
        {"llm_model": "llama3", "llm_base_url": "http://127.0.0.1:8000/v1"},
    ]
    for values in cases:
        s = settings_from_values({"trading_mode": "paper", **values})
        _, note = build_client(s, model_explicit=False)
        assert model_key_missing(s) == (note == BASELINE_NOTE), values
        assert (model_label(s) == NO_MODEL_KEY) == (note == BASELINE_NOTE)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_live_account_without_credentials_stops_the_start_naming_the_variables(clean_env: Path) -> None:
    from llmtrader.config.load import load_settings

    s = load_settings(None, environ={"TRADING_MODE": "live"})
    with pytest.raises(CredentialsError) as caught:
        select_accounts(s)
    message = str(caught.value)
    for name in ("OPENROUTER_API_KEY", "ASTERDEX_USER", "ASTERDEX_SIGNER_PRIVATE_KEY", "ASTERDEX_API_KEY"):
        assert name in message
    assert caught.value.exit_code == 2


def test_accounts_tables_live_problems_are_fatal_paper_ones_are_warnings(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmtrader.config.load import load_settings

    path = write_config(
        tmp_path,
        """
[accounts.main]
trading_mode = "live"
env.llm_api_key = "MAIN_MODEL_KEY"
env.asterdex_api_key = "MAIN_ASTER_KEY"
env.asterdex_api_secret = "MAIN_ASTER_SECRET"

[accounts.side]
env.llm_api_key = "SIDE_MODEL_KEY"
""",
    )
    monkeypatch.setenv("TRADING_MODE", "live")  # the process's opt-in: 'main' is live, 'side' stays paper
    s = load_settings(path)
    with pytest.raises(CredentialsError) as caught:
        select_accounts(s)
    for name in ("MAIN_MODEL_KEY", "MAIN_ASTER_KEY", "MAIN_ASTER_SECRET"):
        assert name in str(caught.value)
    assert "SIDE_MODEL_KEY" not in str(caught.value)  # a paper account's problem is not fatal

    selection = select_accounts(s, ["side"])
    assert list(selection.accounts) == ["side"]
    assert any("SIDE_MODEL_KEY" in w for w in selection.warnings)

    for var, value in {"MAIN_MODEL_KEY": MODEL_KEY, "MAIN_ASTER_KEY": "k" * 16, "MAIN_ASTER_SECRET": "s" * 32}.items():
        monkeypatch.setenv(var, value)
    selection = select_accounts(load_settings(path))
    assert list(selection.accounts) == ["main", "side"]
    with pytest.raises(ConfigError, match="unknown account 'nope'"):
        select_accounts(load_settings(path), ["nope"])


# ---- With the real cycle --------------------------------------------------------------------------------


def test_real_cycles_one_account_failing_is_recorded_and_the_other_trades(
    clean_env: Path, fake_aster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_cycle against the fake venue (paper, baseline): an unexpected error in one account's exchange
    is recorded as that account's skipped cycle, logged by the scheduler, and the other account's cycle
    runs and is recorded; an overlapping fire is recorded as skipped."""
    import sqlite3

    from llmtrader.config.load import load_settings
    from llmtrader.core.times import SystemClock
    from llmtrader.cycle.compose import build_services, close_services
    from llmtrader.cycle.run import record_skipped_cycle, run_cycle

    monkeypatch.setenv("ASTERDEX_BASE_URL", fake_aster.base_url)
    config = write_config(tmp_path, '[accounts.good]\nassets = ["BTCUSDT"]\n\n[accounts.bad]\nassets = ["ETHUSDT"]\n')
    selection = select_accounts(load_settings(config))
    clock = SystemClock()

    async def boom() -> Any:
        raise RuntimeError("an unexpected bug in the exchange adapter")

    async def go() -> list[Any]:
        services = {name: build_services(s, clock=clock) for name, s in selection.accounts.items()}
        services["bad"].exchange.positions = boom  # type: ignore[method-assign]
        scheduler = Scheduler(
            services, cycle=run_cycle, record_skip=record_skipped_cycle, close_services=close_services, clock=clock
        )
        try:
            results = await scheduler.run_once()
            slow = asyncio.create_task(scheduler.fire("good"))
            await asyncio.sleep(0)  # the cycle has taken its lock and awaits the venue
            overlap = await scheduler.fire("good")
            await slow
            return [*results, overlap]
        finally:
            await scheduler.close()

    good, bad, overlap = asyncio.run(go())
    assert good is not None and good.outcome in ("traded", "held") and bad is None
    assert overlap is not None and overlap.outcome == "skipped" and overlap.reason == OVERLAP_REASON
    conn = sqlite3.connect(clean_env)
    rows = conn.execute("SELECT account, outcome, reason FROM cycles ORDER BY id").fetchall()
    conn.close()
    by_account: dict[str, list[tuple[str, str | None]]] = {}
    for account, outcome, reason in rows:
        by_account.setdefault(account, []).append((outcome, reason))
    [(outcome, reason)] = by_account["bad"]
    assert outcome == "skipped" and "RuntimeError: an unexpected bug in the exchange adapter" in reason
    assert [o for o, _ in by_account["good"]].count("skipped") == 1  # the overlap, recorded
    assert len(by_account["good"]) == 3

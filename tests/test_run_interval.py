"""`run` follows the strategy in force: a `strategy use` made while the agent runs changes the account's
interval from its next cycle, and `status` shows the interval and next cycle of the running agent (what the
agent recorded), not those of the caller's environment."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.config.load import load_settings
from llmtrader.config.settings import Settings
from llmtrader.core.times import iso_utc
from llmtrader.cycle.scheduler import Scheduler, next_fire_ms
from llmtrader.logs import reset_logging
from llmtrader.storage.store import Store
from tests.fakes.llm import FakeLLM, answer, asset, decision
from tests.helpers import FakeClock

T0 = int(datetime(2026, 3, 10, 14, 0, tzinfo=UTC).timestamp() * 1000)  # a 1h candle close, not a 4h one


@pytest.fixture(autouse=True)
def _no_leftover_log_handlers() -> Iterator[None]:
    yield
    reset_logging()


@dataclass
class Services:
    settings: Settings
    store: Store


@dataclass
class Result:
    account: str
    started_ms: int
    finished_ms: int
    outcome: str = "held"
    reason: str | None = None
    decision_id: str | None = None


def test_strategy_use_while_the_agent_runs_changes_the_interval_from_the_next_cycle(
    clean_env: Path, runner: CliRunner
) -> None:
    from llmtrader.cycle.scheduler import interval_in_force

    settings = load_settings(None)  # the default strategy (1h), no interval set
    store = Store(clean_env)
    services = Services(settings, store)
    clock = FakeClock(T0 + 5_000)
    seen: list[str] = []  # the interval each cycle ran with
    scheduled: list[tuple[str, str]] = []

    async def cycle(s: Services, *, now_ms: int | None = None) -> Result:
        seen.append(s.settings.interval)
        return Result(s.settings.account, clock.now, clock.now)

    async def close(s: Services) -> None:
        s.store.close()

    scheduler = Scheduler(
        {"default": services},  # type: ignore[dict-item]
        cycle=cycle,  # type: ignore[arg-type]
        record_skip=lambda *a, **k: None,  # type: ignore[arg-type,return-value]
        close_services=close,  # type: ignore[arg-type]
        clock=clock,
        interval_of=lambda name: interval_in_force(store, settings),
        on_schedule=lambda name, interval: scheduled.append((name, interval)),
    )

    async def go() -> tuple[Any, Any, int]:
        scheduler.start()
        before = scheduler._aps.get_job("cycle:default").trigger.interval
        await scheduler.fire("default")  # nothing changed yet
        result = runner.invoke(app, ["strategy", "use", "swing"])  # a 4h preset, chosen while `run` runs
        assert result.exit_code == 0, result.output
        await scheduler.fire("default")  # the cycle in progress when it was chosen: still 1h
        after = scheduler._aps.get_job("cycle:default").trigger.interval
        clock.advance(60_000)
        await scheduler.fire("default")  # the next cycle runs with 4h
        next_ms = scheduler.next_fire_ms("default")
        scheduler.request_stop()
        await scheduler.wait_for_cycles()
        await scheduler.close()
        return before, after, next_ms

    with structlog.testing.capture_logs() as logs:
        before, after, next_ms = asyncio.run(go())
    assert before == timedelta(hours=1) and after == timedelta(hours=4)
    assert seen == ["1h", "1h", "4h"]
    assert services.settings.interval == "4h"
    assert next_ms == next_fire_ms(clock.now, "4h") == T0 + 2 * 3_600_000 + 5_000  # 16:00:05, a 4h close
    assert scheduled == [("default", "1h"), ("default", "4h")]
    changes = [e for e in logs if "interval changed" in e["event"]]
    assert len(changes) == 1 and changes[0]["interval"] == "4h"  # logged once, not at every cycle


def test_status_shows_the_running_agents_interval_and_next_cycle(
    paper: Path, runner: CliRunner, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent runs with INTERVAL=4h in its environment; `status` runs in another one (1h by default)."""
    fake_llm.push(*[answer(decision(asset("BTCUSDT"), asset("ETHUSDT")))] * 3)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmtrader", "--log-json", "run"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env={**os.environ, "INTERVAL": "4h"},
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        for raw in proc.stderr:  # the catch-up cycle of a first start: the agent has scheduled its cycles
            if b'"event": "cycle"' in raw:
                break
        result = runner.invoke(app, ["status", "--json"])
        assert result.exit_code == 0, result.output
        [row] = json.loads(result.stdout)
        now = int(datetime.now(UTC).timestamp() * 1000)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert row["running"] is True and row["pid"] == proc.pid
    assert row["interval"] == "4h"
    assert row["next_cycle"] in (iso_utc(next_fire_ms(now, "4h")), iso_utc(next_fire_ms(now - 60_000, "4h")))
    [after] = json.loads(runner.invoke(app, ["status", "--json"]).stdout)  # stopped: the caller's config again
    assert after["running"] is False and after["interval"] == "1h"

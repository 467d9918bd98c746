"""One trader per venue account: a live agent's lock is keyed by the venue account too, so another database or
another account name on the same credentials cannot trade beside it (each would reconcile, and cancel, the
other's orders)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.config.load import load_settings
from llmtrader.cycle.scheduler import RunLock
from llmtrader.logs import reset_logging
from tests.conftest import USER
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM


@pytest.fixture(autouse=True)
def _no_leftover_log_handlers() -> Iterator[None]:
    yield
    reset_logging()


@pytest.fixture
def agent_elsewhere(live: Path) -> Iterator[RunLock]:
    """What a live `llmtrader run` on the same credentials but another database holds."""
    lock = RunLock.for_venue(load_settings())
    assert lock is not None
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


def invoke(runner: CliRunner, monkeypatch: pytest.MonkeyPatch, live: Path, *args: str) -> Any:
    monkeypatch.setenv("LLMTRADER_DB", str(live.parent / "another.db"))  # not the agent's database
    return runner.invoke(app, list(args))


def test_decide_close_and_run_on_another_database_are_refused_beside_an_agent_on_the_same_venue_account(
    live: Path, agent_elsewhere: RunLock, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    fake_aster.set_position(USER, "BTCUSDT", "0.01")
    decided = invoke(runner, monkeypatch, live, "decide", "--yes", "--json")
    assert decided.exit_code == 2, decided.output
    assert "the venue account of 'default'" in decided.stderr and f"user {USER}" in decided.stderr
    assert "`decide`" in decided.stderr and len(decided.stderr.strip().splitlines()) == 1
    closed = invoke(runner, monkeypatch, live, "close", "--all", "--yes")
    assert closed.exit_code == 2 and "`close`" in closed.stderr
    ran = invoke(runner, monkeypatch, live, "run", "--once")
    assert ran.exit_code == 2 and "the venue account of 'default'" in ran.stderr
    assert fake_llm.requests == [] and fake_aster.order_posts() == []
    assert fake_aster.positions(USER) == {"BTCUSDT": Decimal("0.01")}
    # another account name on the same credentials is the same venue account
    monkeypatch.setenv("LLMTRADER_ACCOUNT", "other")
    renamed = invoke(runner, monkeypatch, live, "run", "--once")
    assert renamed.exit_code == 2 and "the venue account of 'other'" in renamed.stderr


def test_the_agent_on_its_own_runs_and_a_dry_run_may_decide_beside_it(
    live: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = invoke(runner, monkeypatch, live, "run", "--once")
    assert ran.exit_code == 0, ran.output
    lock = RunLock.for_venue(load_settings())
    assert lock is not None
    lock.acquire()
    try:
        dry = invoke(runner, monkeypatch, live, "decide", "--dry-run", "--json")
        assert dry.exit_code == 0, dry.output
        assert json.loads(dry.stdout)["execution"] == "dry_run"
    finally:
        lock.release()


def test_a_paper_account_has_no_venue_lock(env: Path) -> None:
    assert RunLock.for_venue(load_settings()) is None

"""The decision's steps (llmtrader.cycle.decide) and the one cycle that walks them (run_cycle), against the
fake venue and the fake model on loopback.

The model's outcome is returned by ``ask_model``, not fed back through a callback: the cycle itself records it
in the guard state (the circuit breaker), before it records the failed decision. ``llmtrader decide`` walks the
same steps without the guards, and records the same rows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.config.load import load_settings
from llmtrader.core.guards import GuardEvent, GuardState
from llmtrader.core.records import DecisionRecord
from llmtrader.cycle.compose import build_services, close_services
from llmtrader.cycle.decide import ask_model, open_draft, prepare_draft, record_model_error
from llmtrader.cycle.run import CycleResult, run_cycle
from llmtrader.errors import ModelError
from llmtrader.storage.store import Store
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision, error
from tests.helpers import FakeClock, rows

MINUTE_MS = 60_000


class WriteOrderStore(Store):
    """The project's store, noting in order the writes of the guard state and of the decisions."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes: list[tuple[str, str]] = []

    def save_guard_state(
        self, account: str, state: GuardState, events: Sequence[GuardEvent] = (), *, now_ms: int
    ) -> None:
        self.writes.append(("guard_state", state.circuit.status))
        super().save_guard_state(account, state, events, now_ms=now_ms)

    def record_decision(self, rec: DecisionRecord) -> None:
        self.writes.append(("decision", rec.outcome))
        super().record_decision(rec)


def cycle(clock: FakeClock, store: Store) -> CycleResult:
    """One scheduled cycle on services from the composition root, with ``store`` given."""

    async def go() -> CycleResult:
        services = build_services(load_settings(), clock=clock, store=store)
        try:
            return await run_cycle(services)
        finally:
            await close_services(services)

    return asyncio.run(go())


def test_the_cycle_counts_a_model_failure_in_the_guard_state_before_recording_the_decision(
    paper: Path, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIRCUIT_FAILURES", "1")
    fake_llm.push(error(402, "insufficient credits"))
    clock = FakeClock()
    store = WriteOrderStore(paper)
    failed = cycle(clock, store)
    assert failed.outcome == "model_error" and "402" in (failed.reason or "") and failed.unreachable == "model"
    # The guards' check saved the state first (a fresh account's peak equity); then the circuit opened on this
    # failure, saved by the cycle before the failed decision was recorded.
    assert store.writes == [("guard_state", "closed"), ("guard_state", "open"), ("decision", "model_error")]
    state = Store(paper).load_guard_state("default")
    assert state.circuit.status == "open" and state.circuit.failures == 1 and "402" in (state.circuit.last_error or "")
    assert [e["kind"] for e in rows(paper, "SELECT kind FROM guard_events ORDER BY id")] == ["circuit_open"]
    (row,) = rows(paper, "SELECT id, outcome, error FROM decisions")
    assert row["id"] == failed.decision_id and row["outcome"] == "model_error" and "402" in row["error"]
    assert len(rows(paper, "SELECT id FROM llm_calls WHERE decision_id = ?", failed.decision_id)) >= 1

    # The next cycle reads that state: no model call, nothing recorded.
    clock.advance(MINUTE_MS)
    asked = len(fake_llm.requests)
    skipped = cycle(clock, WriteOrderStore(paper))
    assert skipped.outcome == "skipped" and (skipped.reason or "").startswith("circuit open until")
    assert skipped.decision_id is None and len(fake_llm.requests) == asked
    assert len(rows(paper, "SELECT id FROM decisions")) == 1


def test_ask_model_returns_the_failure_and_stores_nothing_until_the_caller_records_it(
    paper: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.push(error(402, "insufficient credits"))

    async def go() -> tuple[object, str, list[dict[str, Any]]]:
        services = build_services(load_settings(), clock=FakeClock())
        try:
            draft = open_draft(services, services.settings.assets, dry_run=True)
            prepared = await prepare_draft(services, draft)
            asked = await ask_model(draft, prepared)
            stored = rows(paper, "SELECT id FROM decisions")
            assert isinstance(asked, ModelError)
            record_model_error(services, draft, asked)
            return asked, draft.record.id, stored
        finally:
            await close_services(services)

    asked, decision_id, stored_before = asyncio.run(go())
    assert isinstance(asked, ModelError) and "402" in str(asked)
    assert stored_before == []  # asking stores nothing: the outcome is the caller's to record
    assert asked.decision_id == decision_id  # recorded: the error names its decision
    (row,) = rows(paper, "SELECT outcome, error, raw_response FROM decisions WHERE id = ?", decision_id)
    assert row["outcome"] == "model_error" and row["error"] == str(asked)
    assert len(rows(paper, "SELECT id FROM llm_calls WHERE decision_id = ?", decision_id)) >= 1
    # No cycle ran: the guard state is untouched.
    assert rows(paper, "SELECT account FROM guard_state") == []


def decide(runner: CliRunner, *args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["decide", "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def test_decide_records_a_model_failure_with_its_calls_and_no_guard_state(
    paper: Path, runner: CliRunner, fake_llm: FakeLLM
) -> None:
    fake_llm.push(error(402, "insufficient credits"))
    code, out = decide(runner)
    assert code == 1 and out["outcome"] == "model_error" and "402" in out["error"]
    (row,) = rows(paper, "SELECT * FROM decisions")
    assert row["id"] == out["decision_id"] and row["outcome"] == "model_error" and row["error"] == out["error"]
    assert row["user_prompt"] and row["as_of_ms"] is not None and json.loads(row["marks"])
    calls = rows(paper, "SELECT error FROM llm_calls WHERE decision_id = ?", row["id"])
    assert len(calls) == len(fake_llm.requests) >= 1
    assert rows(paper, "SELECT id FROM asset_decisions") == []
    # decide has no guards and runs no cycle.
    assert rows(paper, "SELECT account FROM guard_state") == [] and rows(paper, "SELECT id FROM cycles") == []


def test_decide_and_the_cycle_record_the_same_decision_rows(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    """The same answer through ``llmtrader decide --dry-run`` and a dry-run cycle: the same steps record the
    same decision and asset rows (only the id and the times differ)."""
    mark = fake_aster.mark("BTCUSDT")
    btc = asset("BTCUSDT", "buy", allocation_usd=1000, leverage=2, tp_price=round(mark * 1.04, 1),
                sl_price=round(mark * 0.98, 1), confidence=0.7, risk_level="medium")  # fmt: skip
    fake_llm.push(answer(decision(btc, asset("ETHUSDT"))), answer(decision(btc, asset("ETHUSDT"))))
    code, out = decide(runner, "--dry-run")
    assert code == 0 and out["outcome"] == "decided"

    async def go() -> CycleResult:
        services = build_services(load_settings(), clock=FakeClock())
        try:
            return await run_cycle(services, dry_run=True)
        finally:
            await close_services(services)

    cycled = asyncio.run(go())
    assert cycled.outcome == "held" and cycled.reason == "dry run"

    columns = (
        "account, mode, dry_run, strategy, model, base_url, symbols, outcome, error, parsed, parse_errors, "
        "portfolio_rationale, notes, response_format, reasks, prompt_tokens, completion_tokens, cost_usd, "
        "system_prompt"
    )
    by_decide = rows(paper, f"SELECT {columns} FROM decisions WHERE id = ?", out["decision_id"])
    by_cycle = rows(paper, f"SELECT {columns} FROM decisions WHERE id = ?", cycled.decision_id)
    assert by_decide == by_cycle and by_decide[0]["outcome"] == "decided"
    assets = "symbol, action, status, allocation_usd, leverage, tp_price, sl_price, confidence, reasons, rationale"
    query = f"SELECT {assets} FROM asset_decisions WHERE decision_id = ? ORDER BY symbol"
    decide_assets = rows(paper, query, out["decision_id"])
    assert decide_assets == rows(paper, query, cycled.decision_id)
    assert [(a["symbol"], a["status"]) for a in decide_assets] == [("BTCUSDT", "accepted"), ("ETHUSDT", "accepted")]
    ids = (out["decision_id"], cycled.decision_id)
    executions = rows(paper, "SELECT execution FROM decisions WHERE id IN (?, ?)", *ids)
    assert [e["execution"] for e in executions] == ["dry_run", "dry_run"]

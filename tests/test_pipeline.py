"""The whole decision pipeline in process, fast: the scheduled cycle (reconcile, guards, decide, validate,
execute, record) with services from the one composition root, on an in-process exchange (the simulated paper
book over the real candles of tests/data) and market, and a model written in the test. No HTTP at all: the
loopback tests (tests/test_cycle.py) exercise the real clients; this one the orchestration alone.

Each case asserts what the exchange holds (positions, resting orders) and what the store recorded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmtrader.backtest.data import History, load_history
from llmtrader.backtest.market import HistoricalMarket
from llmtrader.backtest.spec import STEP_OFFSET_MS, BacktestSpec
from llmtrader.config.load import load_settings
from llmtrader.config.settings import Settings
from llmtrader.config.strategies import load_strategy
from llmtrader.core.decision import lenient_from_decision, parse_decision
from llmtrader.core.times import Clock
from llmtrader.cycle.compose import build_services, close_services
from llmtrader.cycle.decide import decide
from llmtrader.cycle.run import CycleResult, run_cycle
from llmtrader.cycle.services import Services
from llmtrader.errors import ExecutionNotStarted, ModelError, VenueUnavailable
from llmtrader.exchange.base import VenuePosition
from llmtrader.exchange.paper import PaperConfig
from llmtrader.exchange.simulated import SimulatedExchange
from llmtrader.llm.port import CallRecord, DecisionRequest, ModelAnswer
from llmtrader.storage.store import Store
from tests.fakes.llm import asset, decision

H = 3_600_000
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


START = utc("2025-10-06 00:00")


class InProcessModel:
    """A model in the test's process: each call takes the next planned answer (per symbol, a hold for the
    rest), or raises the planned ModelError. Every request is kept."""

    model = "test/in-process"
    base_url = "test:in-process"

    def __init__(self, plan: list[dict[str, dict[str, Any]] | ModelError]) -> None:
        self.plan = list(plan)
        self.requests: list[DecisionRequest] = []
        self.while_deciding: Callable[[], None] | None = None  # what happens elsewhere while the model thinks

    async def decide(self, request: DecisionRequest) -> ModelAnswer:
        self.requests.append(request)
        if self.while_deciding is not None:
            self.while_deciding()
        planned = self.plan.pop(0)
        if isinstance(planned, ModelError):
            raise planned
        text = json.dumps(decision(*(planned.get(s, asset(s)) for s in request.context.symbols)))
        parsed, _ = parse_decision(text)
        call = CallRecord(attempt=1, response_format="json_schema", raw_response=text, cost_usd=0.0)
        return ModelAnswer(text, lenient_from_decision(parsed), [call], 0, "json_schema")


class InProcessExchange(SimulatedExchange):
    """The simulated paper book, whose account reads fail once ``down`` is set (the venue went away)."""

    down = False

    async def positions(self) -> list[VenuePosition]:
        if self.down:
            raise VenueUnavailable("the venue did not answer /fapi/v3/positionRisk (503)")
        return await super().positions()


class StepClock:
    """The services' clock, moved by the test from one decision time to the next."""

    def __init__(self, now: int) -> None:
        self.now = now

    def now_ms(self) -> int:
        return self.now


class Pipeline:
    """An agent's services built in process, stepped one hour at a time."""

    def __init__(self, settings: Settings, history: History, client: InProcessModel) -> None:
        self.store = Store(settings.db)
        self.clock = StepClock(START + STEP_OFFSET_MS)
        self.exchange = InProcessExchange(
            self.store, history.tapes, history.rules, account=settings.account, balance=Decimal(10_000),
            config=PaperConfig(taker_fee=Decimal("0.00035"), slippage_bps=Decimal(2)), start_ms=self.clock.now,
        )  # fmt: skip
        clock: Clock = self.clock
        self.services: Services = build_services(
            settings, store=self.store, market=HistoricalMarket(history, "1h", "tests/data"), exchange=self.exchange,
            client=client, clock=clock,
        )  # fmt: skip
        self.steps = 0

    def cycle(self) -> CycleResult:
        """One scheduled cycle at the next hour's decision time."""
        now = START + self.steps * H + STEP_OFFSET_MS
        self.steps += 1
        self.clock.now = now
        self.exchange.advance_to(now)
        return asyncio.run(run_cycle(self.services, now_ms=now))

    def mark(self, symbol: str) -> float:
        return float(asyncio.run(self.exchange.mark_prices([symbol]))[symbol])

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.store.db.execute(sql, list(params)).fetchall()

    def close(self) -> None:
        asyncio.run(close_services(self.services))
        self.store.close()


@pytest.fixture
def pipeline_parts(clean_env: Path, perp_dir: Path) -> tuple[Settings, History]:
    settings = load_settings(None, None).model_copy(
        update={"assets": list(SYMBOLS), "interval": "1h", "llm_model": InProcessModel.model}
    )
    spec = BacktestSpec(
        data_dir=str(perp_dir), symbols=SYMBOLS, interval="1h", start_ms=START, end_ms=START + 12 * H,
        timeframes=("1h", "4h"), model=InProcessModel.model, strategy="default", balance_usd=10_000.0,
    )  # fmt: skip
    return settings, load_history(spec, load_strategy("default", settings.strategies_dir))


@contextmanager
def make_pipeline(parts: tuple[Settings, History], client: InProcessModel) -> Iterator[Pipeline]:
    pipeline = Pipeline(*parts, client)
    try:
        yield pipeline
    finally:
        pipeline.close()


def long_btc(mark: float) -> dict[str, Any]:
    return asset("BTCUSDT", "buy", allocation_usd=1000, leverage=2, tp_price=round(mark * 1.04, 1),
                 sl_price=round(mark * 0.98, 1), confidence=0.7, risk_level="medium")  # fmt: skip


def test_a_long_is_opened_protected_recorded_then_closed_flat(pipeline_parts: tuple[Settings, History]) -> None:
    """Decide, validate, execute, record in one process: the long opens with its stop and target resting at
    the exchange, and a later close leaves the account flat with nothing of llmtrader's resting."""
    client = InProcessModel([])
    with make_pipeline(pipeline_parts, client) as pipeline:
        mark = pipeline.mark("BTCUSDT")
        client.plan += [
            {"BTCUSDT": long_btc(mark)},
            {},
            {"BTCUSDT": asset("BTCUSDT", "close_position", rationale="done")},
        ]
        opened = pipeline.cycle()
        assert (opened.outcome, opened.reason, opened.unprotected) == ("traded", None, [])
        positions = asyncio.run(pipeline.exchange.positions())
        assert [(p.symbol, p.amount > 0) for p in positions] == [("BTCUSDT", True)]
        resting = asyncio.run(pipeline.exchange.open_orders("BTCUSDT"))
        kinds = sorted(o.client_order_id.rsplit("_", 1)[1] for o in resting)
        assert kinds == ["sl", "tp"] and all(o.client_order_id.startswith("lt_") for o in resting)

        held = pipeline.cycle()
        assert held.outcome == "held" and held.reconcile == []

        closed = pipeline.cycle()
        assert closed.outcome == "traded"
        assert asyncio.run(pipeline.exchange.positions()) == []
        assert asyncio.run(pipeline.exchange.open_orders()) == []

        assert len(client.requests) == 3 and [r.context.symbols for r in client.requests] == [SYMBOLS] * 3
        cycles = pipeline.rows("SELECT outcome, decision_id FROM cycles ORDER BY id")
        decisions = pipeline.rows("SELECT id, outcome FROM decisions ORDER BY as_of_ms")
        assert [c[0] for c in cycles] == ["traded", "held", "traded"]
        assert [c[1] for c in cycles] == [d[0] for d in decisions]
        legs = pipeline.rows("SELECT decision_id, leg, status FROM orders ORDER BY id")
        assert [(d, leg) for d, leg, _ in legs][:3] == [(decisions[0][0], "en"), (decisions[0][0], "sl"),
                                                        (decisions[0][0], "tp")]  # fmt: skip
        fills = pipeline.rows("SELECT symbol, side FROM paper_fills ORDER BY id")
        assert fills == [("BTCUSDT", "BUY"), ("BTCUSDT", "SELL")]


def test_a_model_failure_is_recorded_and_counted_without_an_order(
    pipeline_parts: tuple[Settings, History],
) -> None:
    """The model's failure: the cycle records it (outcome model_error, the decision row, the guard state's
    failure count), sends nothing, and the next cycle asks again."""
    client = InProcessModel([ModelError("the model endpoint failed: test"), {}])
    with make_pipeline(pipeline_parts, client) as pipeline:
        failed = pipeline.cycle()
        assert failed.outcome == "model_error" and failed.reason == "the model endpoint failed: test"
        assert pipeline.rows("SELECT outcome FROM decisions WHERE id = ?", failed.decision_id) == [("model_error",)]
        state = pipeline.store.load_guard_state(pipeline.services.settings.account)
        assert state.circuit.failures == 1
        assert asyncio.run(pipeline.exchange.positions()) == [] and pipeline.rows("SELECT id FROM orders") == []

        again = pipeline.cycle()
        assert again.outcome == "held" and len(client.requests) == 2
        assert pipeline.store.load_guard_state(pipeline.services.settings.account).circuit.failures == 0


def test_an_execution_that_cannot_start_is_an_exchange_reject_with_nothing_sent(
    pipeline_parts: tuple[Settings, History],
) -> None:
    """The account is read again right before the first order of an opening; when that read fails, nothing is
    sent: the cycle ends as exchange_reject ("execution did not start: ..."), the decision stays recorded with
    execution 'failed', and the venue is not counted as unreachable (its first reads answered)."""
    client = InProcessModel([])
    with make_pipeline(pipeline_parts, client) as pipeline:
        client.plan.append({"BTCUSDT": long_btc(pipeline.mark("BTCUSDT"))})
        client.while_deciding = lambda: setattr(pipeline.exchange, "down", True)
        result = pipeline.cycle()
        assert result.outcome == "exchange_reject" and result.unreachable is None
        assert result.reason == ("execution did not start: the venue did not answer /fapi/v3/positionRisk (503)")
        assert pipeline.rows("SELECT outcome, execution FROM decisions WHERE id = ?", result.decision_id) == [
            ("decided", "failed")
        ]
        assert pipeline.rows("SELECT id FROM orders") == [] and pipeline.exchange.book.positions() == []


def test_decide_raises_execution_not_started_from_the_venue_error(pipeline_parts: tuple[Settings, History]) -> None:
    """``decide`` (the ``llmtrader decide`` use case) tells an execution that did not start apart by its type:
    ExecutionNotStarted, a VenueError with the venue error's message and exit code, raised from it, naming
    the recorded decision."""
    client = InProcessModel([])
    with make_pipeline(pipeline_parts, client) as pipeline:
        client.plan.append({"BTCUSDT": long_btc(pipeline.mark("BTCUSDT"))})
        client.while_deciding = lambda: setattr(pipeline.exchange, "down", True)
        with pytest.raises(ExecutionNotStarted) as raised:
            asyncio.run(decide(pipeline.services, SYMBOLS, dry_run=False))
        exc = raised.value
        assert isinstance(exc.__cause__, VenueUnavailable)
        assert str(exc) == str(exc.__cause__) == "the venue did not answer /fapi/v3/positionRisk (503)"
        assert exc.exit_code == exc.__cause__.exit_code == 1
        assert exc.decision_id is not None
        assert pipeline.rows("SELECT execution FROM decisions WHERE id = ?", exc.decision_id) == [("failed",)]
        assert pipeline.rows("SELECT id FROM orders") == []

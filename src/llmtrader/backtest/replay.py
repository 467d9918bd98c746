"""Backtests: history replayed through the same cycle as ``llmtrader run``, with nothing from the future.

A run steps through the decision interval's candle closes. At each step the simulated account
(:class:`~llmtrader.exchange.simulated.SimulatedExchange`, the paper account's own book) first walks the
candles that closed since the last step, so stops, targets, limits and liquidations trigger inside them
(the stop first when a candle holds both) and funding settles at its times; then
:func:`llmtrader.cycle.run.run_cycle` runs exactly as the scheduled agent runs it: reconcile, guards,
context, decision, validation, execution, recording. The cycle reads the market from
:class:`~llmtrader.backtest.market.HistoricalMarket`, which only ever hands out candles closed at the step's
time, the last funding rate settled by then, and indicator values computed once per series (every value at
index i uses candles up to i only) and sliced.

Every model answer is recorded by the SHA-256 of the exact request
(:func:`~llmtrader.backtest.clients.request_hash`), so a run can be replayed without calling the model
(:class:`~llmtrader.backtest.clients.ReplayClient`): byte for byte when nothing changed, or under other
limits, when each step reuses the answer the model gave at that step and the validator decides anew.

Runs live in their own database (``backtests.db`` beside the agent's), so a backtest never competes with a
running agent for its database, and their commits skip the fsync a real account's orders need.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmtrader.backtest.cache import BacktestCache
from llmtrader.config.settings import Settings
from llmtrader.cycle.services import CycleCache
from llmtrader.llm.baseline import BaselineClient
from llmtrader.llm.port import DecisionClient
from llmtrader.storage import backtests as runs
from llmtrader.storage.store import Store

if TYPE_CHECKING:
    from llmtrader.exchange.simulated import SimulatedExchange
from llmtrader.backtest.clients import ReplayClient
from llmtrader.backtest.data import History
from llmtrader.backtest.figures import Sample, summarize
from llmtrader.backtest.market import HistoricalMarket, SimulatedClock
from llmtrader.backtest.spec import STEP_OFFSET_MS, BacktestSpec, backtest_settings, new_run_id

# Steps committed together when no model is called (see run_backtest).
BATCH_STEPS = 256


@dataclass
class BacktestResult:
    run_id: str
    status: str  # finished, interrupted, stopped, failed
    spec: BacktestSpec
    steps: int
    steps_done: int
    metrics: dict[str, Any]
    notes: list[str]
    equity: list[Sample]
    wall_s: float


Progress = Callable[[int, int], None]


async def run_backtest(
    settings: Settings,
    spec: BacktestSpec,
    history: History,
    store: Store,
    client: DecisionClient,
    *,
    run_id: str,
    notes: Sequence[str] = (),
    progress: Progress | None = None,
    should_stop: Callable[[], str | None] | None = None,
    references: Mapping[str, Any] | None = None,
) -> BacktestResult:
    """Step ``history`` through the scheduled agent's cycle (see the module docstring), recording everything in
    ``store`` under the account ``run_id``, and store the run's figures. ``client`` decides (wrap a model
    in :class:`RecordingClient` so that the run can be replayed). ``should_stop`` is asked after each step:
    a reason stops the run there (Ctrl-C, the model budget), and the figures cover the steps done.
    ``references`` joins the figures (the baseline's return under the same strategy: ``baseline_pct``).
    """
    from llmtrader.cycle.compose import build_services
    from llmtrader.cycle.run import run_cycle
    from llmtrader.exchange.paper import PaperConfig
    from llmtrader.exchange.simulated import SimulatedExchange

    started = time.monotonic()
    steps = [int(t) for t in history.steps]
    run_settings = backtest_settings(settings, spec, run_id, store.path)
    first = steps[0]
    clock = SimulatedClock(first + STEP_OFFSET_MS)
    exchange = SimulatedExchange(
        store,
        history.tapes,
        history.rules,
        account=run_id,
        balance=Decimal(str(spec.balance_usd)),
        config=PaperConfig(
            taker_fee=Decimal(str(run_settings.paper_taker_fee)),
            slippage_bps=Decimal(str(run_settings.paper_slippage_bps)),
        ),
        start_ms=first + STEP_OFFSET_MS,
    )
    market = HistoricalMarket(history, spec.interval, spec.data_dir)
    all_notes = [*history.notes, *notes]
    services = build_services(
        run_settings, store=store, market=market, exchange=exchange, client=client, clock=clock,
        strategy=history.strategy, cache=CycleCache(history=BacktestCache(), candle_lines={}),
    )  # fmt: skip
    runs.create_run(store, run_id, spec=spec.to_json(), notes=all_notes, replay_of=spec.replay_of,
                    now_ms=int(time.time() * 1000))  # fmt: skip
    samples: list[Sample] = []
    status, reason = "finished", None
    # One summary line per cycle is the agent's log; thousands of them would bury the progress bar.
    cycle_logger = logging.getLogger("llmtrader.cycle")
    level = cycle_logger.level
    cycle_logger.setLevel(logging.ERROR)
    # With answers at hand (baseline, replay), the steps commit in batches of BATCH_STEPS (Store.batch): their
    # records are written once instead of a page at a time, a batch is all or nothing (an error fails the run,
    # and the batch it was in is rolled back whole), and a crash loses at most a batch of a run that can be run
    # again; the write lock is held a few tenths of a second. A model call takes seconds, and no write lock may
    # be held that long (another backtest writes to the same database): then each record commits on its own.
    local = isinstance(client, ReplayClient) or client.model == "baseline"
    batch = BATCH_STEPS if local else 1
    committed = 0
    try:
        for first_of_batch in range(0, len(steps), batch):
            with store.batch() if local else contextlib.nullcontext():
                for i in range(first_of_batch, min(first_of_batch + batch, len(steps))):
                    step = steps[i]
                    now = step + STEP_OFFSET_MS
                    clock.now = now
                    exchange.advance_to(now)
                    await run_cycle(services, now_ms=now)
                    samples.append(_sample(exchange, step))
                    if progress is not None:
                        progress(i + 1, len(steps))
                    reason = should_stop() if should_stop is not None else None
                    if reason is not None:
                        break
            committed = len(samples)
            if reason is not None:
                status = "interrupted" if reason == "interrupted" else "stopped"
                break
    except BaseException as exc:
        status, reason = "failed", f"{type(exc).__name__}: {exc}"
        del samples[committed:]  # the steps of the batch that failed were rolled back
        raise
    finally:
        cycle_logger.setLevel(level)
        if reason is not None:
            all_notes.append(f"{status} after {len(samples)} of {len(steps)} steps: {reason}")
        if isinstance(client, ReplayClient):
            all_notes.append(
                f"replay of {client.source}: {client.exact} answer(s) replayed exactly, {client.differs} reused for a "
                f"prompt that differed (limits, strategy or account), {client.missing} step(s) without an answer"
            )
        metrics = None
        try:
            exchange.save_state()
            runs.write_equity(store, run_id, [s.row() for s in samples])
            recorded = (await exchange.trade_history(refresh=False, now_ms=exchange.now_ms)).history
            metrics = summarize(store, run_id, spec, history, samples, exchange, recorded) if samples else None
            if metrics is not None:
                metrics.update(references or {})
            runs.finish_run(store, run_id, status=status, notes=all_notes, metrics=metrics,
                            steps_done=len(samples), now_ms=int(time.time() * 1000))  # fmt: skip
        except Exception:
            if status != "failed":
                raise  # otherwise the error that failed the run is the one to see
    return BacktestResult(
        run_id, status, spec, len(steps), len(samples), metrics or {}, all_notes, samples, time.monotonic() - started
    )


def _sample(exchange: SimulatedExchange, step: int) -> Sample:
    book = exchange.book
    balance = book.balance()
    gross = sum(
        (abs(p.amount) * (book.mark(s) or p.entry_price) for s, p in book.positions_by_symbol.items()), Decimal(0)
    )
    return Sample(step, float(balance.equity), float(gross), len(book.positions_by_symbol))


async def baseline_reference(settings: Settings, spec: BacktestSpec, history: History, store: Store) -> dict[str, Any]:
    """Run the baseline on the same steps, strategy and limits as ``spec`` (a run of its own), and return the
    reference figures for the run of ``spec``: ``baseline_pct`` and ``baseline_run``."""
    run_id = new_run_id()
    mine = replace(spec, model="baseline", replay_of=None, max_cost_usd=None)
    result = await run_backtest(settings, mine, history, store, BaselineClient(), run_id=run_id,
                                notes=["the baseline reference of a backtest of the same steps"])  # fmt: skip
    return {"baseline_pct": result.metrics.get("total_return_pct"), "baseline_run": run_id}

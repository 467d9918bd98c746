"""An arena of 5 recorded models replayed: BTC, ETH and SOL over every 1h candle of ../shared/data (about
6,150 steps each), plus the baseline every arena runs. Target: under 30 s of wall time.

The 5 models are recorded first (not timed): a deterministic client that reads each rendered prompt like a
model and answers from it (holds, and now and then a buy with a stop and a target), wrapped in the same
recorder as a real model, each on the arena's market. The timed figure is :func:`llmtrader.arena.run.run_arena`
over those recordings (every answer replayed from the database, nothing called), with the data read and the
indicators computed once for the arena, and the 6 runs made in 2 worker processes (``--concurrency 2``), each in a
database of its own copied into the arena's when it ends. Beside it: 5 replays of the same recordings as
sequential backtests (``backtest --replay``, each reading the data itself, in this process), and the ratio of
the two; and the CPU time of the arena (this process and its workers) and of one sequential replay, which say what
the arena's wall time is on 2 idle cores when other work shares the machine: at least its CPU time / 2.
"""

from __future__ import annotations

import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import OUT, Result, perp_dir, result

TARGET_S = 30.0
RUNS = 3  # the whole bench takes several minutes on 2 cores
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
MODELS = tuple(f"bench/model-{i}" for i in range(5))


class PromptReader:
    """A stand-in model that reads the prompt: it buys the first symbol whose 1h RSI line it finds below a
    threshold of its own, with a 2 % stop and a 4 % target; otherwise it holds."""

    base_url = "bench:local"
    reads_prompt = True

    def __init__(self, model: str, threshold: float) -> None:
        self.model = model
        self.threshold = threshold

    async def decide(self, request: Any) -> Any:
        from llmtrader.core.decision import salvage_decision
        from llmtrader.llm.port import CallRecord, ModelAnswer

        ctx = request.context
        assets = []
        bought = False
        for symbol in ctx.symbols:
            rsi = ctx.assets[symbol].frames["1h"].indicators.get("rsi14")
            mark = ctx.assets[symbol].mark_price
            entry: dict[str, Any] = {"symbol": symbol, "action": "hold", "rationale": "wait", "allocation_usd": 0,
                                     "leverage": 1, "confidence": 0.5, "risk_level": "low"}  # fmt: skip
            if not bought and rsi is not None and rsi < self.threshold and f"## {symbol}" in request.user:
                entry.update(action="buy", allocation_usd=500, leverage=2, tp_price=round(mark * 1.04, 2),
                             sl_price=round(mark * 0.98, 2), confidence=0.6, rationale="oversold")  # fmt: skip
                bought = True
            assets.append(entry)
        answer = {"assets": assets, "portfolio_rationale": "bench", "total_allocation_usd": 0,
                  "portfolio_risk_level": "low"}  # fmt: skip
        text = json.dumps(answer)
        call = CallRecord(attempt=1, response_format="json_schema", raw_response=text, prompt_tokens=3000,
                          completion_tokens=300, cost_usd=0.0, latency_ms=0)  # fmt: skip
        return ModelAnswer(text, salvage_decision(answer), [call], 0, "json_schema")


def _setup(tmp: Path) -> tuple[Any, Any, Any, Any, str]:
    from llmtrader.arena.run import market_key
    from llmtrader.backtest.data import load_history
    from llmtrader.backtest.spec import BacktestSpec
    from llmtrader.config.settings import settings_from_values
    from llmtrader.config.strategies import load_strategy
    from llmtrader.storage.store import Store

    settings = settings_from_values({"db": str(tmp / "llmtrader.db")})
    spec = BacktestSpec(data_dir=str(perp_dir()), symbols=SYMBOLS, interval="1h", strategy="default",
                        model="baseline", balance_usd=10_000, timeframes=("1h", "4h"))  # fmt: skip
    history = load_history(spec, load_strategy("default"))
    store = Store(tmp / "backtests.db", durable=False)
    return settings, spec, history, store, market_key(spec, history)


def _record(settings: Any, spec: Any, history: Any, store: Any, key: str) -> dict[str, str]:
    from dataclasses import replace

    from llmtrader.backtest.clients import RecordingClient
    from llmtrader.backtest.replay import run_backtest
    from llmtrader.backtest.spec import new_run_id

    sources = {}
    for i, model in enumerate(MODELS):
        run_id = new_run_id()
        client = RecordingClient(PromptReader(model, 30 + 3 * i), store, run_id)
        mine = replace(spec, model=model, arena_key=key)
        asyncio.run(run_backtest(settings, mine, history, store, client, run_id=run_id))
        sources[model] = run_id
    return sources


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _arena(settings: Any, spec: Any, history: Any, store: Any, key: str) -> tuple[float, float, float, int]:
    from llmtrader.arena.run import plan, run_arena

    entries = plan(store, key, MODELS)
    assert all(e.source is not None for e in entries if e.model != "baseline")

    def never(model: str) -> Any:
        from llmtrader.llm.baseline import BaselineClient

        if model == "baseline":
            return BaselineClient()
        raise AssertionError(f"the arena called {model}")

    started, cpu, workers = time.perf_counter(), time.process_time(), _children_cpu()
    _, outcomes = asyncio.run(run_arena(settings, spec, history, store, entries, never, key=key, concurrency=2))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    # The workers have ended (the arena waits for them): their CPU time is counted in RUSAGE_CHILDREN.
    return elapsed, cpu, _children_cpu() - workers, sum(o.result.steps_done for o in outcomes)


def _sequential(settings: Any, spec: Any, store: Any, sources: dict[str, str]) -> tuple[float, float]:
    """5 backtest replays one after the other, each reading the data itself, in a database of its own copied into
    the store at the end (as 5 `backtest --replay` do); the wall time, and the CPU time of one replay."""
    from dataclasses import replace

    from llmtrader.backtest.data import load_history
    from llmtrader.backtest.isolated import run_isolated
    from llmtrader.backtest.spec import new_run_id
    from llmtrader.config.strategies import load_strategy

    started, cpu = time.perf_counter(), time.process_time()
    for model, source in sources.items():
        history = load_history(spec, load_strategy("default"))
        asyncio.run(run_isolated(settings, replace(spec, model=model, replay_of=source), history, store,
                                 run_id=new_run_id()))  # fmt: skip
    return time.perf_counter() - started, (time.process_time() - cpu) / len(sources)


def run() -> list[Result]:
    OUT.mkdir(parents=True, exist_ok=True)
    arena_s, arena_cpu, workers_cpu, sequential_s, replay_cpu, steps = [], [], [], [], [], 0
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        settings, spec, history, store, key = _setup(Path(tmp))
        try:
            sources = _record(settings, spec, history, store, key)
            for _ in range(RUNS):
                elapsed, cpu, workers, steps = _arena(settings, spec, history, store, key)
                arena_s.append(elapsed)
                arena_cpu.append(cpu)
                workers_cpu.append(workers)
                wall_s, one_cpu = _sequential(settings, spec, store, sources)
                sequential_s.append(wall_s)
                replay_cpu.append(one_cpu)
        finally:
            store.close()
    per_model = len(history.steps)
    ratio = [a / s for a, s in zip(arena_s, sequential_s, strict=True)]
    # With 2 cores to itself, the arena takes at least all its CPU time (the workers' runs and start, this
    # process's copies) shared by the 2: the floor its wall time nears when no other work shares the machine.
    idle = [(w + c) / 2 for w, c in zip(workers_cpu, arena_cpu, strict=True)]
    return [
        result("arena replay, 5 models + baseline", arena_s, "s", TARGET_S,
               f"{per_model} steps each, {steps} in all, nothing called, 2 worker processes"),
        result("  arena replay, CPU of this process", arena_cpu, "s", None, "copying the runs in"),
        result("  arena replay, CPU of its 2 workers", workers_cpu, "s", None, "the 6 runs and the workers' start"),
        result("  5 sequential backtest replays", sequential_s, "s", None, "the same answers, data read each time"),
        result("  one sequential replay, CPU", replay_cpu, "s", None, "its copy into the store included"),
        result("  arena / 5 sequential replays", ratio, "x", None, "the arena also runs the baseline"),
        result("  arena CPU / 2 cores", idle, "s", None, "the floor of the wall time on 2 idle cores"),
    ]  # fmt: skip

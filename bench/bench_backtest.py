"""A backtest with the ``baseline`` model: BTC, ETH and SOL over every 1h candle of ../shared/data (about
6,150 steps after the indicators' warm-up), every decision recorded. Target: under 10 s of wall time.

The headline figure runs the real command (``llmtrader backtest ... --json``) in a child process, with a
new database each time, so it includes the process start, reading and checking the CSV files, computing
the indicators once per series, every step through the agent's cycle, and storing the figures. The
timeframes are 1h and 4h: the data's 15m candles end on 2025-12-31, before the 1h ones.

How it grows: wall time in this process for a quarter, a half and all of the steps (3 assets), and for
1, 3 and 6 assets over the same 1,500 steps; reported per step.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

from bench import OUT, REAL_SYMBOLS, Result, clean_env, llmtrader_command, perp_dir, result

TARGET_S = 10.0
RUNS = 3
GROWTH_RUNS = 3  # each growth figure is the median of this many runs
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def _command(data: Path, symbols: tuple[str, ...]) -> list[str]:
    return [
        *llmtrader_command(), "backtest", "--data", str(data), "--symbols", ",".join(symbols), "--interval", "1h",
        "--timeframes", "1h,4h", "--model", "baseline", "--json",
    ]  # fmt: skip


def _cli_run(data: Path) -> tuple[float, int]:
    """Wall time of one ``llmtrader backtest`` process, and the steps it made."""
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        env = clean_env(LLMTRADER_DB=str(Path(tmp) / "llmtrader.db"), CI="true")
        started = time.perf_counter()
        done = subprocess.run(_command(data, SYMBOLS), env=env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"llmtrader backtest failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    decisions = report["metrics"]["decisions"]
    if decisions < report["steps_done"]:
        raise AssertionError(f"{report['steps_done']} steps but {decisions} decisions recorded")
    return elapsed, int(report["steps_done"])


def _in_process(data: Path, symbols: tuple[str, ...], steps: int) -> float:
    """Wall time of ``steps`` steps of run_backtest in this process (data read and indicators included)."""
    import asyncio

    from llmtrader.backtest.clients import RecordingClient
    from llmtrader.backtest.data import load_history
    from llmtrader.backtest.replay import run_backtest
    from llmtrader.backtest.spec import BacktestSpec, new_run_id
    from llmtrader.config.settings import settings_from_values
    from llmtrader.config.strategies import load_strategy
    from llmtrader.llm.baseline import BaselineClient
    from llmtrader.storage.store import Store

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        settings = settings_from_values({"db": str(Path(tmp) / "llmtrader.db")})
        spec = BacktestSpec(
            data_dir=str(data), symbols=symbols, interval="1h", strategy="default", model="baseline",
            balance_usd=10_000, timeframes=("1h", "4h"),
        )  # fmt: skip
        started = time.perf_counter()
        history = load_history(spec, load_strategy("default"))
        history.steps = history.steps[:steps]
        store = Store(Path(tmp) / "backtests.db", durable=False)
        try:
            run_id = new_run_id()
            client = RecordingClient(BaselineClient(), store, run_id)
            asyncio.run(run_backtest(settings, spec, history, store, client, run_id=run_id))
        finally:
            store.close()
        return time.perf_counter() - started


def run() -> list[Result]:
    data = perp_dir()
    samples, steps = [], 0
    for _ in range(RUNS):
        elapsed, steps = _cli_run(data)
        samples.append(elapsed)
    results = [
        result(
            "backtest 3 assets, all 1h candles (CLI)", samples, "s", TARGET_S,
            f"{steps} steps, baseline, every decision recorded",
        )
    ]  # fmt: skip
    for share in (4, 2, 1):
        n = steps // share
        per_step = [_in_process(data, SYMBOLS, n) * 1000 / n for _ in range(GROWTH_RUNS)]
        results.append(result(f"  3 assets, {n} steps", per_step, "ms", None, "per step, in process"))
    for symbols in (REAL_SYMBOLS[:1], SYMBOLS, REAL_SYMBOLS):
        per_step = [_in_process(data, symbols, 1500) * 1000 / 1500 for _ in range(GROWTH_RUNS)]
        results.append(result(f"  {len(symbols)} asset(s), 1500 steps", per_step, "ms", None, "per step"))
    return results

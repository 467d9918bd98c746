"""Performance benchmarks: ``python -m bench [NAME ...]`` (``make bench``).

Each ``bench_<name>`` module exposes ``run() -> list[Result]``; every figure is the median of several
runs after a warm-up, with the min and the max, checked against a target (an upper bound).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / ".out"  # gitignored: generated databases and the like


@dataclass(frozen=True)
class Result:
    """One figure: median, min and max of the runs, in ``unit``; ``target`` is an upper bound."""

    name: str
    median: float
    min: float
    max: float
    unit: str
    target: float | None  # None: informational, no pass/fail
    passed: bool | None
    note: str = ""


def result(name: str, samples: list[float], unit: str, target: float | None, note: str = "") -> Result:
    """A Result from raw samples: passes when the median is at most the target."""
    median = statistics.median(samples)
    return Result(
        name=name,
        median=median,
        min=min(samples),
        max=max(samples),
        unit=unit,
        target=target,
        passed=None if target is None else median <= target,
        note=f"{note}; n={len(samples)}" if note else f"n={len(samples)}",
    )


def repeat(fn: Callable[[], float], runs: int, warmup: int = 1) -> list[float]:
    """Call ``fn`` (which returns its own measurement) ``warmup`` times unrecorded, then ``runs`` times."""
    for _ in range(warmup):
        fn()
    return [fn() for _ in range(runs)]


def wall(fn: Callable[[], object]) -> float:
    """Wall time of one call, in seconds."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def llmtrader_command() -> list[str]:
    """The console script next to this interpreter, else ``python -m llmtrader``."""
    script = Path(sys.executable).parent / "llmtrader"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("llmtrader")
    if found and Path(found).parent == Path(sys.executable).parent:
        return [found]
    return [sys.executable, "-m", "llmtrader"]


# Settings the CLI reads from the environment: cleared so the developer's own never skew a figure.
_LLMTRADER_ENV = (
    "ASSETS", "INTERVAL", "LEVERAGE", "MAX_POSITION_SIZE_USD", "LLM_MODEL", "OPENROUTER_API_KEY", "LLM_API_KEY",
    "LLM_BASE_URL", "ASTERDEX_BASE_URL", "TRADING_MODE", "LLMTRADER_DB", "LLMTRADER_CONFIG", "PAPER_BALANCE_USD",
    "LLMTRADER_STRATEGY", "LLMTRADER_STRATEGIES_DIR", "LLMTRADER_ACCOUNT", "LLM_TIMEOUT_S", "LLM_MAX_RETRIES",
    "LLM_RETRY_MAX_WAIT_S", "LLM_MAX_REASKS", "HTTP_TIMEOUT_S", "EXCHANGE_INFO_TTL_S", "LLMTRADER_DEBUG",
)  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without llmtrader settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _LLMTRADER_ENV}
    env.update(extra)
    return env


def shared_data_dir() -> Path:
    """../shared/data beside the project (or $LLMTRADER_SHARED_DATA); the tests read their excerpt in tests/data."""
    return Path(os.environ.get("LLMTRADER_SHARED_DATA", ROOT.parent / "shared" / "data"))


def perp_dir() -> Path:
    """The real Binance USD-M perpetual candles (read in place, never copied)."""
    path = shared_data_dir() / "binance-usdm-perp"
    if not (path / "BTCUSDT-1h.csv").exists():
        raise FileNotFoundError(f"real candles not found at {path} (set LLMTRADER_SHARED_DATA)")
    return path


# Ten assets for the "10 assets" figures: the six symbols with real candles, and four more names
# served from existing files (the fake venue and the in-memory context alike).
REAL_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT")
ALIASES = {"AAAUSDT": "BTCUSDT", "BBBUSDT": "ETHUSDT", "CCCUSDT": "SOLUSDT", "DDDUSDT": "XRPUSDT"}
TEN_SYMBOLS = (*REAL_SYMBOLS, *ALIASES)
TIMEFRAMES = ("15m", "1h", "4h")
CANDLES = 200

"""A backtest's prompts are byte for byte what they were before trade history became a method of the exchange
port and the history caches moved (issue 15, items 4 and 5): the recent trades, the performance and the limits'
facts shown at every step, so a run recorded before replays exactly (its request hashes are unchanged).

``tests/golden/backtest_prompts.json`` holds the digest of every prompt of the run below as the code before
those changes rendered it (commit cc5c69c). Regenerate it only for a change meant to alter the prompts:
``python -m tests.test_history_replay_golden``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmtrader.backtest.data import load_history
from llmtrader.backtest.replay import run_backtest
from llmtrader.backtest.spec import BacktestSpec
from llmtrader.config.settings import settings_from_values
from llmtrader.config.strategies import load_strategy
from llmtrader.llm.baseline import BaselineClient
from llmtrader.storage.store import Store

GOLDEN = Path(__file__).resolve().parent / "golden" / "backtest_prompts.json"
DATA = Path(__file__).resolve().parent / "data" / "binance-usdm-perp"
RUN = "bt-golden"


class _ReadingBaseline(BaselineClient):
    """The baseline's answers (it trades), with every prompt rendered as for a model."""

    reads_prompt = True


def _utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def prompts_of_a_run(tmp: Path) -> dict[str, Any]:
    """BTC and ETH, every 1h step of 2025-10-01 to 2025-10-21 (funding settles in it), the default strategy
    (5 recent trades and the performance shown): the digest of every prompt, in step order."""
    spec = BacktestSpec(
        data_dir=str(DATA), symbols=("BTCUSDT", "ETHUSDT"), interval="1h", start_ms=_utc("2025-10-01 00:00"),
        end_ms=_utc("2025-10-21 00:00"), timeframes=("1h", "4h"), model="baseline", strategy="default",
        balance_usd=10_000.0,
    )  # fmt: skip
    settings = settings_from_values({"db": str(tmp / "llmtrader.db")})
    store = Store(tmp / "backtests.db", durable=False)
    try:
        history = load_history(spec, load_strategy("default"))
        asyncio.run(run_backtest(settings, spec, history, store, _ReadingBaseline(), run_id=RUN))
    finally:
        store.close()
    conn = sqlite3.connect(tmp / "backtests.db")
    try:
        prompts = conn.execute(
            "SELECT system_prompt, user_prompt FROM decisions WHERE account = ? ORDER BY created_at, id", [RUN]
        ).fetchall()
    finally:
        conn.close()
    digest = hashlib.sha256()
    with_trades = 0
    for system, user in prompts:
        digest.update(f"{len(system)}:{system}{len(user)}:{user}".encode())
        shown = user.split("# Recent closed trades (newest first)\n", 1)[-1].split("\n# ", 1)[0]
        with_trades += any(line.startswith("- ") for line in shown.splitlines())
    return {"prompts": len(prompts), "with_closed_trades": with_trades, "sha256": digest.hexdigest()}


def test_a_backtest_renders_the_prompts_it_rendered_before(tmp_path: Path) -> None:
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = prompts_of_a_run(tmp_path)
    assert expected["with_closed_trades"] > 100  # the recent trades and performance are really exercised
    assert got == expected


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_text(json.dumps(prompts_of_a_run(Path(tmp)), indent=2) + "\n", encoding="utf-8")
    print(GOLDEN.read_text(encoding="utf-8"))

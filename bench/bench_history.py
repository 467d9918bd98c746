"""``llmtrader history --symbol X --limit 50`` on 1,000,000 asset-decision rows: under 0.3 s, process included.

The database (bench/.out/, gitignored) is built once and reused while it holds the expected rows:
250,000 decisions of 4 assets each, 5 minutes apart, with realistic columns. The schema comes from
``Store`` (its migrations); the rows are bulk-inserted with sqlite3 in one transaction with the journal
and syncing off, and the file is then left in WAL mode as the app keeps it. The prompts are cut to 400
characters (a real user prompt for 4 assets is about 12 kB) to keep the file near 1 GB; ``history``
reads none of them.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import OUT, Result, clean_env, llmtrader_command, repeat, result, wall

TARGET_S = 0.3
RUNS = 7
DECISIONS = 250_000
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")
ASSET_ROWS = DECISIONS * len(SYMBOLS)
QUERY_SYMBOL = "SOLUSDT"
LIMIT = 50
DB_PATH = OUT / "history-1m.db"
START_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC; 250,000 × 5 min later is 2026-05
STEP_MS = 300_000
PROMPT_CHARS = 400

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
MODELS = ("anthropic/claude-sonnet-4.5", "openai/gpt-5-mini", "deepseek/deepseek-chat-v3.1", "baseline")
START_PRICES = {"BTCUSDT": 42_000.0, "ETHUSDT": 2_300.0, "SOLUSDT": 100.0, "XRPUSDT": 0.6}
TICKS = {"BTCUSDT": 1, "ETHUSDT": 2, "SOLUSDT": 3, "XRPUSDT": 5}  # decimals of the price
ACTIONS = ("hold",) * 12 + ("buy",) * 3 + ("sell",) * 3 + ("close_position", "adjust_orders", "adjust_position")
RATIONALES = {
    "hold": (
        "Price is ranging between the 1h Bollinger bands with RSI near 50; no edge worth the fees, waiting.",
        "EMA20 and EMA50 are flat on the 4h and volume is below its 20-candle average: nothing to do yet.",
        "Funding is neutral and MACD histogram is shrinking toward zero; holding until the range resolves.",
    ),
    "buy": (
        "4h trend is up (EMA20 above EMA50), 15m RSI recovered from 35 and price bounced off the lower band.",
        "Breakout above the 1h upper Bollinger band on 1.8x average volume with positive MACD momentum.",
    ),
    "sell": (
        "Lower highs on the 1h, price rejected at EMA50 with RSI rolling over from 62 and funding positive.",
        "4h MACD crossed below its signal and price lost the middle band; shorting the retest with tight stop.",
    ),
    "close_position": ("Target nearly reached and momentum fading on the 15m; taking profit before funding.",),
    "adjust_orders": ("Trailing the stop to break-even after a 1.5 ATR move in our favour.",),
    "adjust_position": ("Reducing margin: volatility (ATR) doubled since entry and the setup weakened.",),
}
PORTFOLIO_RATIONALES = (
    "Risk-on only where trend and momentum agree; the rest wait. Total margin stays under a third of balance.",
    "Market is choppy across all timeframes; keeping exposure small and stops tight until direction is clear.",
    "Majors trend up on the 4h while alts lag; concentrate on the strongest two and hold the others.",
)
REJECTIONS = (
    "reward/risk 1.21 is below the minimum 1.5",
    "confidence 0.42 is below the minimum 0.5 for buy and sell",
    "the stop-loss 95120.4 is beyond the estimated liquidation price 96010.2",
)


def _decision_id(ms: int, rng: random.Random) -> str:
    n, out = ms, ""
    while n:
        n, r = divmod(n, 36)
        out = _ALPHABET[r] + out
    return out.rjust(9, "0") + "".join(rng.choices(_ALPHABET, k=5))


def _prompts() -> tuple[str, str]:
    """A system prompt and a shortened user prompt from the default strategy's templates."""
    from llmtrader.config.strategies import load_strategy

    strategy = load_strategy("default")
    values = {
        "time": "2026-05-01 12:00 UTC",
        "interval": strategy.interval,
        "symbols": ", ".join(SYMBOLS),
        "account": "mode paper; balance 10000 USD; available 10000 USD; equity 10000 USD\nopen positions: none",
        "market": "\n".join(
            f"## {s}\nmark 100.5; index 100.49; funding 0.01% per period; 24h change 1.2%\n"
            "### 15m (newest closed candle ends 2026-05-01 12:00 UTC)\nclose 100.5; EMA20 100.1; EMA50 99.8; "
            "RSI14 55.2; MACD 0.12 signal 0.1 hist 0.02; ATR14 0.8 (0.8% of price); volume 1.1x"
            for s in SYMBOLS
        ),
        "limits": "- leverage at most 5\n- notional of one position at most 10000 USD",
        "strategy_name": strategy.name,
        "strategy_description": strategy.description,
        "recent_trades": "- BTCUSDT long: opened 2026-04-30 08:00 UTC, held 4h; entry 100 exit 101; PnL +10 USD",
        "performance": "since 2026-04-01 00:00 UTC: 12 closed trades, win rate 50%, net PnL +42 USD, Sharpe 1.10",
    }
    system = strategy.prompt.system.strip().format(**values)
    user = strategy.prompt.user.strip().format(**values)
    return system[:PROMPT_CHARS], user[:PROMPT_CHARS]


def _rows(rng: random.Random) -> tuple[list[tuple[Any, ...]], Iterator[tuple[Any, ...]]]:
    """The decisions (a list) and, lazily, their asset rows, oldest first."""
    from llmtrader.core.times import iso_utc

    system, user = _prompts()
    symbols_json = json.dumps(list(SYMBOLS), separators=(",", ":"))
    prices = dict(START_PRICES)
    decisions: list[tuple[Any, ...]] = []
    assets: list[list[tuple[Any, ...]]] = []
    for i in range(DECISIONS):
        ms = START_MS + i * STEP_MS + rng.randrange(0, 20_000)
        decision_id = _decision_id(ms, rng)
        created = iso_utc(ms)
        marks = {}
        for s in SYMBOLS:
            prices[s] = round(prices[s] * math.exp(rng.gauss(0.0, 0.002)), TICKS[s])
            marks[s] = prices[s]
        rows = []
        proposals = []
        for s in SYMBOLS:
            action = rng.choice(ACTIONS)
            mark = marks[s]
            rationale = rng.choice(RATIONALES[action])
            confidence = round(rng.uniform(0.3, 0.9), 2)
            risk = rng.choice(("low", "medium", "medium", "high"))
            if action in ("buy", "sell"):
                sign = 1 if action == "buy" else -1
                allocation, leverage = float(rng.choice((100, 200, 250, 500, 1000))), rng.choice((2, 3, 5))
                entry = mark
                tp = round(mark * (1 + sign * rng.uniform(0.01, 0.04)), TICKS[s])
                sl = round(mark * (1 - sign * rng.uniform(0.005, 0.02)), TICKS[s])
            else:
                allocation, leverage, entry, tp, sl = 0.0, 1, None, None, None
            proposed = {
                "symbol": s, "action": action, "rationale": rationale, "allocation_usd": allocation,
                "leverage": leverage, "entry_price": entry, "tp_price": tp, "sl_price": sl,
                "confidence": confidence, "risk_level": risk,
            }  # fmt: skip
            proposals.append(proposed)
            if action in ("buy", "sell") and rng.random() < 0.2:
                status, reasons = "rejected", [rng.choice(REJECTIONS)]
            elif action in ("buy", "sell") and rng.random() < 0.15:
                status, reasons = "amended", ["allocation_usd lowered to fit the position limit of 10000 USD"]
            else:
                status, reasons = "accepted", []
            rows.append(
                (decision_id, created, "default", s, action, status, allocation, leverage, entry, tp, sl,
                 confidence, risk, rationale, json.dumps(reasons), json.dumps(proposed, separators=(",", ":")),
                 mark)
            )  # fmt: skip
        outcome = "all_rejected" if all(r[5] == "rejected" for r in rows) else "decided"
        portfolio = rng.choice(PORTFOLIO_RATIONALES)
        parsed = {"assets": proposals, "portfolio_rationale": portfolio, "total_allocation_usd": 0.0,
                  "portfolio_risk_level": "medium"}  # fmt: skip
        raw = json.dumps(parsed)
        model_latency = rng.randrange(4_000, 30_000)
        prompt_tokens = rng.randrange(8_000, 11_000)
        completion_tokens = rng.randrange(400, 1_500)
        decisions.append(
            (decision_id, created, "default", "paper", 0, "default", MODELS[i % len(MODELS)],
             "https://openrouter.ai/api/v1", symbols_json, outcome, None, ms - rng.randrange(100, 900),
             json.dumps(marks, separators=(",", ":")), system, user, raw, json.dumps(parsed, separators=(",", ":")),
             "[]", portfolio, "[]", "json_schema", 0, prompt_tokens, completion_tokens,
             round(prompt_tokens * 3e-6 + completion_tokens * 15e-6, 6), model_latency, model_latency + 450)
        )  # fmt: skip
        assets.append(rows)

    def asset_rows() -> Iterator[tuple[Any, ...]]:
        n = 0
        for rows in assets:
            for row in rows:
                n += 1
                yield (n, *row)

    return decisions, asset_rows()


DECISION_COLUMNS = (
    "id, created_at, account, mode, dry_run, strategy, model, base_url, symbols, outcome, error, as_of_ms, marks, "
    "system_prompt, user_prompt, raw_response, parsed, parse_errors, portfolio_rationale, notes, response_format, "
    "reasks, prompt_tokens, completion_tokens, cost_usd, model_latency_ms, latency_ms"
)
ASSET_COLUMNS = (
    "id, decision_id, created_at, account, symbol, action, status, allocation_usd, leverage, entry_price, tp_price, "
    "sl_price, confidence, risk_level, rationale, reasons, proposed, mark_price"
)


def _counts(path: Path) -> tuple[int, int] | None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            decisions = conn.execute("SELECT count(*) FROM decisions").fetchone()[0]
            assets = conn.execute("SELECT count(*) FROM asset_decisions").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return int(decisions), int(assets)


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def ensure_db(path: Path = DB_PATH) -> tuple[Path, str]:
    """The benchmark database, built unless a complete one is there; returns it and what was done."""
    from llmtrader.storage.store import Store

    if path.exists() and _counts(path) == (DECISIONS, ASSET_ROWS):
        Store(path).close()  # applies any migration added since it was built
        return path, "reused"
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".building")
    _remove(tmp)
    Store(tmp).close()  # the schema, by the app's own migrations
    decisions, asset_rows = _rows(random.Random(20261126))
    conn = sqlite3.connect(str(tmp), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB while loading
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO decisions ({DECISION_COLUMNS}) VALUES ({', '.join('?' * 27)})", decisions)
        conn.executemany(f"INSERT INTO asset_decisions ({ASSET_COLUMNS}) VALUES ({', '.join('?' * 18)})", asset_rows)
        conn.execute("COMMIT")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise RuntimeError(f"{tmp}: journal mode is {mode}, not wal")
    finally:
        conn.close()
    _remove(path)
    os.replace(tmp, path)
    counts = _counts(path)
    if counts != (DECISIONS, ASSET_ROWS):
        raise RuntimeError(f"{path}: built with {counts} rows, expected {(DECISIONS, ASSET_ROWS)}")
    return path, f"built in {time.perf_counter() - started:.0f} s"


def _check(stdout: bytes, as_json: bool) -> None:
    if as_json:
        rows = json.loads(stdout)
        if len(rows) != LIMIT:
            raise AssertionError(f"history --json gave {len(rows)} decisions, expected {LIMIT}")
        if any(not r["assets"] or any(a["symbol"] != QUERY_SYMBOL for a in r["assets"]) for r in rows):
            raise AssertionError(f"history --json gave asset rows of another symbol than {QUERY_SYMBOL}")
        times = [r["created_at"] for r in rows]
        if times != sorted(times, reverse=True):
            raise AssertionError("history --json is not newest first")
    else:
        text = stdout.decode()
        if text.count(QUERY_SYMBOL) < LIMIT:
            raise AssertionError(f"history printed {text.count(QUERY_SYMBOL)} {QUERY_SYMBOL} rows, expected {LIMIT}")


def _once(cmd: list[str], env: dict[str, str], as_json: bool) -> float:
    def call() -> None:
        proc = subprocess.run(cmd, env=env, cwd=OUT, capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode()[-800:]}")
        _check(proc.stdout, as_json)

    return wall(call)


def run() -> list[Result]:
    path, how = ensure_db()
    size_mb = path.stat().st_size / 1e6
    # A wide terminal, so that the table is not folded into many more lines than there are rows.
    env = clean_env(LLMTRADER_DB=str(path), COLUMNS="200")
    results = []
    for as_json in (True, False):
        args = ["history", "--symbol", QUERY_SYMBOL, "--limit", str(LIMIT), *(["--json"] if as_json else [])]
        cmd = [*llmtrader_command(), *args]
        samples = repeat(functools.partial(_once, cmd, env, as_json), RUNS, warmup=1)
        name = "history.json" if as_json else "history.table"
        note = f"{' '.join(args)}; {ASSET_ROWS:,} asset rows, {size_mb:.0f} MB ({how})"
        results.append(result(name, samples, "s", TARGET_S, note))
    return results

"""The account of the `stats` tests (tests/test_stats.py works every figure out by hand; tests/test_cli_stats.py
runs the command on it), stored through the real Store.

The account (``default``, paper) was reset to 10,000 USD at 2025-01-01 00:00 UTC (``JAN1``). Fees are
AsterDEX's taker 0.035 % of the notional. Its trades since the reset, in closing order:

- T1 ETHUSDT long, opened by decision A (conf 0.72): BUY 2 @ 3000 at +1h (fee 2 × 3000 × 0.00035 = 2.1);
  decision B sells 1 @ 3100 at +3h (fee 1.085, realized 1 × (3100 − 3000) = +100); funding −1.50 paid at
  +4h; A's target sells 1 @ 3150 at +5h (fee 1.1025, realized +150).
  gross 250, fees 2.1 + 1.085 + 1.1025 = 4.2875, funding −1.5: net 244.2125. Held 4h.
- T2 BTCUSDT short, opened by C (conf 0.75): SELL 0.1 @ 95000 at +6h (fee 3.325); funding +2.00 received at
  +8h; C's stop buys 0.1 @ 96000 at +10h (fee 3.36, realized 0.1 × (96000 − 95000) × −1 = −100).
  gross −100, fees 6.685, funding +2: net −104.685. Held 4h.
- 2025-01-02: no trade closes (a quiet day).
- T3 SOLUSDT long, opened by E (conf 0.91): BUY 10 @ 200 at +2d1h (fee 0.7); liquidated at 170 at +2d3h
  (no fee; the price move is 10 × (170 − 200) = −300, the venue reports −350: a liquidation fee of 50).
  gross −300, fees 0.7 + 50 = 50.7: net −350.7. Held 2h.
- T4 XRPUSDT short, opened by F (conf 0.6): SELL 1000 @ 0.6 at +2d4h (fee 0.21); funding −0.30 paid at
  +2d8h; decision G buys 1000 @ 0.55 at +2d9h (fee 0.1925, realized 1000 × (0.55 − 0.6) × −1 = +50).
  gross 50, fees 0.4025, funding −0.3: net 49.2975. Held 5h.
- T5 ETHUSDT long, opened by H: BUY 1 @ 3200 at +3d1h (fee 1.12), still open.

Before the reset, an older life of the account: a closed round trip and a long left open at the reset,
which must count nowhere in the figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmtrader.core.records import AssetRow as StoredAsset
from llmtrader.core.records import DecisionRecord
from llmtrader.cycle.execution import client_order_id
from llmtrader.storage.store import Store

D = Decimal
CENT = D("0.01")
H = 3_600_000
DAY = 86_400_000
JAN1 = 1735689600000  # 2025-01-01 00:00 UTC: the reset
NOW = JAN1 + 4 * DAY  # the stats are asked for at 2025-01-05 00:00 UTC
ACCOUNT = "default"


def c(value: Decimal | str | None) -> Decimal:
    assert value is not None
    return D(value).quantize(CENT)


# ---- the account, stored through the real Store --------------------------------------------------------
@dataclass(frozen=True)
class Decided:
    """One recorded decision of the scenario."""

    id: str
    at: int
    model: str
    arm: str | None
    strategy: str
    outcome: str = "decided"
    execution: str | None = "executed"
    dry_run: bool = False
    reasks: int = 0
    tokens: tuple[int, int] = (1000, 200)
    cost: float | None = 0.012
    latency: int = 4000
    model_latency: int = 3500
    assets: tuple[tuple[str, str, str, float], ...] = ()  # (symbol, action, status, confidence)


DECISIONS = [
    # before the reset: an older life of the account, counted nowhere
    Decided("old", JAN1 - DAY, "m/alpha", "a", "default", cost=1.0, latency=99_999, model_latency=99_000,
            assets=(("ETHUSDT", "buy", "accepted", 0.95),)),
    Decided("deca", JAN1 + H - 5000, "m/alpha", "a", "default",
            assets=(("ETHUSDT", "buy", "accepted", 0.72), ("BTCUSDT", "hold", "accepted", 0.5))),
    Decided("decb", JAN1 + 3 * H - 5000, "m/beta", "b", "swing", reasks=1, tokens=(1500, 300), cost=0.02,
            latency=9000, model_latency=8000, assets=(("ETHUSDT", "adjust_position", "amended", 0.6),)),
    Decided("decc", JAN1 + 6 * H - 5000, "m/beta", "b", "swing", tokens=(1200, 250), cost=0.018, latency=6000,
            model_latency=5500, assets=(("BTCUSDT", "sell", "accepted", 0.75), ("SOLUSDT", "buy", "rejected", 0.4))),
    Decided("decm", JAN1 + 12 * H, "m/beta", "b", "swing", outcome="model_error", execution=None, reasks=2,
            tokens=(3000, 0), cost=0.03, latency=30_000, model_latency=29_000),
    Decided("decv", JAN1 + DAY + H, "m/alpha", "a", "default", outcome="venue_error", execution=None, tokens=(0, 0),
            cost=None, latency=800, model_latency=0),
    Decided("dece", JAN1 + 2 * DAY + H - 5000, "m/alpha", "a", "default", tokens=(1100, 220), cost=0.011,
            latency=5000, model_latency=4500, assets=(("SOLUSDT", "buy", "accepted", 0.91),)),
    Decided("decf", JAN1 + 2 * DAY + 4 * H - 5000, "m/beta", "b", "swing", tokens=(1300, 260), cost=0.019,
            latency=7000, model_latency=6500, assets=(("XRPUSDT", "sell", "amended", 0.6),)),
    Decided("decg", JAN1 + 2 * DAY + 9 * H - 5000, "m/alpha", "a", "default", cost=0.01, latency=4500,
            model_latency=4000, assets=(("XRPUSDT", "close_position", "accepted", 0.8),)),
    Decided("dech", JAN1 + 3 * DAY + H - 5000, "m/alpha", "a", "default", latency=4200, model_latency=3800,
            assets=(("ETHUSDT", "buy", "accepted", 0.7),)),
    Decided("decdry", JAN1 + 3 * DAY + 2 * H, "m/alpha", None, "default", execution="dry_run", dry_run=True,
            latency=4100, model_latency=3600, assets=(("ETHUSDT", "hold", "accepted", 0.5),)),
    Decided("decman", JAN1 + 3 * DAY + 4 * H, "manual", None, "-", outcome="manual", execution="nothing",
            tokens=(0, 0), cost=None, latency=50, model_latency=0,
            assets=(("BTCUSDT", "close_position", "accepted", 1.0),)),
]  # fmt: skip


def cid(decision: str, symbol: str, leg: str) -> str:
    return client_order_id(decision, symbol, leg)


# (time, symbol, side, qty, price, fee, reason, client order id, realized PnL as the paper venue records it)
FILLS: list[tuple[int, str, str, str, str, str, str, str | None, str]] = [
    # before the reset: +100 − 2 on ETH, then a long left open when the account was reset
    (JAN1 - 2 * DAY, "ETHUSDT", "BUY", "1", "2900", "1", "market", "lt_older_ETHUSDT_en", "0"),
    (JAN1 - 2 * DAY + H, "ETHUSDT", "SELL", "1", "3000", "1", "market", "lt_older_ETHUSDT_cl", "100"),
    (JAN1 - DAY, "ETHUSDT", "BUY", "1", "3000", "1.05", "market", cid("old", "ETHUSDT", "en"), "0"),
    # since the reset
    (JAN1 + H, "ETHUSDT", "BUY", "2", "3000", "2.1", "market", cid("deca", "ETHUSDT", "en"), "0"),
    (JAN1 + 3 * H, "ETHUSDT", "SELL", "1", "3100", "1.085", "market", cid("decb", "ETHUSDT", "rd"), "100"),
    (JAN1 + 5 * H, "ETHUSDT", "SELL", "1", "3150", "1.1025", "take_profit", cid("deca", "ETHUSDT", "tp"), "150"),
    (JAN1 + 6 * H, "BTCUSDT", "SELL", "0.1", "95000", "3.325", "market", cid("decc", "BTCUSDT", "en"), "0"),
    (JAN1 + 10 * H, "BTCUSDT", "BUY", "0.1", "96000", "3.36", "stop_loss", cid("decc", "BTCUSDT", "sl"), "-100"),
    (JAN1 + 2 * DAY + H, "SOLUSDT", "BUY", "10", "200", "0.7", "market", cid("dece", "SOLUSDT", "en"), "0"),
    (JAN1 + 2 * DAY + 3 * H, "SOLUSDT", "SELL", "10", "170", "0", "liquidation", "autoclose-1735869600000", "-350"),
    (JAN1 + 2 * DAY + 4 * H, "XRPUSDT", "SELL", "1000", "0.6", "0.21", "market", cid("decf", "XRPUSDT", "en"), "0"),
    (JAN1 + 2 * DAY + 9 * H, "XRPUSDT", "BUY", "1000", "0.55", "0.1925", "market", cid("decg", "XRPUSDT", "cl"),
     "50"),
    (JAN1 + 3 * DAY + H, "ETHUSDT", "BUY", "1", "3200", "1.12", "market", cid("dech", "ETHUSDT", "en"), "0"),
]  # fmt: skip


FUNDING = [
    (JAN1 - 2 * DAY + H // 2, "ETHUSDT", "-5"),  # before the reset
    (JAN1 + 4 * H, "ETHUSDT", "-1.5"),  # T1 pays
    (JAN1 + 8 * H, "BTCUSDT", "2"),  # T2, short, receives
    (JAN1 + DAY, "BTCUSDT", "-9"),  # BTC is flat then: nobody's (the paper venue would not record it)
    (JAN1 + 2 * DAY + 8 * H, "XRPUSDT", "-0.3"),  # T4, short, pays
]


def record(store: Store, d: Decided) -> None:
    store.record_decision(
        DecisionRecord(
            id=d.id, created_at_ms=d.at, account=ACCOUNT, mode="paper", dry_run=d.dry_run, strategy=d.strategy,
            model=d.model, base_url="http://x/v1", symbols=[a[0] for a in d.assets], outcome=d.outcome,
            reasks=d.reasks, prompt_tokens=d.tokens[0], completion_tokens=d.tokens[1], cost_usd=d.cost,
            model_latency_ms=d.model_latency, latency_ms=d.latency, execution=d.execution, arm=d.arm,
            assets=[StoredAsset(s, action, status, [], None, confidence=conf) for s, action, status, conf in d.assets],
        )
    )  # fmt: skip


def write_fills(store: Store, fills: list[tuple[Any, ...]], funding: list[tuple[int, str, str]]) -> None:
    with store.db.conn as conn:
        conn.executemany(
            "INSERT INTO paper_fills (account, time_ms, symbol, client_order_id, order_id, side, qty, price, fee, "
            "realized_pnl, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(ACCOUNT, t, s, cid_, str(i), side, q, p, fee, pnl, reason)
             for i, (t, s, side, q, p, fee, reason, cid_, pnl) in enumerate(fills)],
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO paper_funding (account, time_ms, symbol, rate, mark_price, position_amt, amount) "
            "VALUES (?, ?, ?, '0', '0', '0', ?)",
            [(ACCOUNT, t, s, amount) for t, s, amount in funding],
        )


def write_account(store: Store, deposit: str, resets: list[tuple[int, str]]) -> None:
    """The paper account's stored state: only the parts the history readers use (deposit, resets)."""
    book = {"deposit": deposit, "resets": [{"time_ms": t, "balance": b, "wallet_before": "0"} for t, b in resets]}
    with store.db.conn as conn:
        conn.execute(
            "INSERT INTO paper_accounts (account, state, updated_at_ms) VALUES (?, ?, ?)",
            [ACCOUNT, json.dumps({"book": book, "sync": {}}), NOW],
        )


def build(db: Path) -> None:
    """The scenario of the module docstring, in the database at ``db``."""
    store = Store(db)
    try:
        for d in DECISIONS:
            record(store, d)
        write_fills(store, list(FILLS), FUNDING)
        write_account(store, "10000", [(JAN1, "10000")])
    finally:
        store.close()

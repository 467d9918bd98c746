"""A backtest's figures, one definition each: return, buy-and-hold (equal weight), Sharpe (annualised from
daily returns), drawdown (mark to market), exposure, fees, funding and slippage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

from llmtrader.core.stats import EquityPoint
from llmtrader.core.times import DAY_MS
from llmtrader.core.trades import sharpe
from llmtrader.storage.backtests import run_records
from llmtrader.storage.store import Store

if TYPE_CHECKING:
    from llmtrader.core.trades import AccountHistory
    from llmtrader.exchange.simulated import SimulatedExchange
from llmtrader.backtest.data import History
from llmtrader.backtest.spec import BacktestSpec


@dataclass
class Sample:
    """The account after one step: equity, gross notional of the positions, number of positions."""

    time_ms: int
    equity_usd: float
    gross_usd: float
    positions: int

    def row(self) -> tuple[int, float, float, int]:
        return (self.time_ms, self.equity_usd, self.gross_usd, self.positions)


def max_drawdown_pct(equity: Sequence[float]) -> float:
    """The largest fall from a running peak, in % of that peak."""
    values = np.asarray(equity, dtype=np.float64)
    if not len(values):
        return 0.0
    peaks = np.maximum.accumulate(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        falls = np.where(peaks > 0, (peaks - values) / peaks, 0.0)
    return float(falls.max() * 100)


def daily_sharpe(start_equity: float, samples: Sequence[Sample]) -> float | None:
    """Annualized Sharpe ratio of the daily returns of the equity (its value at each UTC day's last step)."""
    day_end: dict[int, float] = {}
    for s in samples:
        day_end[s.time_ms // DAY_MS] = s.equity_usd
    values = [start_equity, *day_end.values()]
    returns = []
    for before, after in pairwise(values):
        if before <= 0:
            return None
        returns.append(Decimal(repr(after / before - 1)))
    return sharpe(returns)


def buy_and_hold(history: History, interval: str, symbols: Sequence[str], first: int, last: int) -> dict[str, float]:
    """Each asset's return (%) from the close at the first step to the close at the last, and ``portfolio``:
    the balance split equally between them at the first step and held (no fees, no funding)."""
    out: dict[str, float] = {}
    for symbol in symbols:
        times = history.close_times[(symbol, interval)]
        close = history.series[(symbol, interval)].close
        a = int(np.searchsorted(times, first, "right")) - 1
        b = int(np.searchsorted(times, last, "right")) - 1
        out[symbol] = float((close[b] / close[a] - 1) * 100)
    out["portfolio"] = float(np.mean([out[s] for s in symbols]))
    return out


# One definition of each figure, named in every report that shows it.
FIGURE_DEFINITIONS = {
    "sharpe": "annualised (x sqrt 365) mean over standard deviation of the daily returns of the equity at each "
    "UTC day's last step",
    "max_drawdown": "largest fall of the equity marked to market at every step from its running peak, in % of "
    "that peak",
    "exposure": "gross notional of the open positions at mark over the equity, averaged over the steps",
    "slippage": "what the fills at market, stop and target lost against the mark they were triggered at",
}


def slippage_usd(fills: Sequence[Any], slip: float) -> float:
    """What the simulated slippage cost: each fill at market, stop or target executed ``slip`` (a fraction)
    against the taker, so the difference to the unslipped price, times the quantity."""
    total = 0.0
    for f in fills:
        if f.reason not in ("market", "stop_loss", "take_profit"):
            continue  # limits fill at their own price; a liquidation is the venue's
        notional = float(f.qty) * float(f.price)
        buy = str(getattr(f.side, "value", f.side)).upper() == "BUY"
        total += notional * slip / (1 + slip) if buy else notional * slip / (1 - slip)
    return total


def buy_and_hold_curve(
    history: History, interval: str, symbols: Sequence[str], start_usd: float, samples: Sequence[Sample]
) -> list[list[float]]:
    """The equal-weight buy-and-hold reference as [time ms, equity USD] at the first step and at each UTC
    day's last step (the points the daily Sharpe reads): ``start_usd`` split equally at the first step's
    closes and held, no fees, no funding."""
    times = [samples[0].time_ms]
    day_end: dict[int, int] = {}
    for s in samples:
        day_end[s.time_ms // DAY_MS] = s.time_ms
    times += [t for t in day_end.values() if t != times[0]]
    at = np.asarray(times, dtype=np.int64)
    total = np.zeros(len(at))
    for symbol in symbols:
        close = history.series[(symbol, interval)].close
        index = np.searchsorted(history.close_times[(symbol, interval)], at, "right") - 1
        total += close[np.maximum(index, 0)] / close[max(int(index[0]), 0)]
    values = total / len(symbols) * start_usd
    return [[int(t), float(v)] for t, v in zip(at.tolist(), values.tolist(), strict=True)]


def summarize(
    store: Store,
    run_id: str,
    spec: BacktestSpec,
    history: History,
    samples: Sequence[Sample],
    exchange: SimulatedExchange,
    history_rows: AccountHistory,
) -> dict[str, Any]:
    """The run's figures, from its fills and funding (``history_rows``: as the exchange answers them), its
    stored decisions and cycles, and the equity samples."""
    from llmtrader.core.trades import closed_trades, reconstruct_trades

    start = spec.balance_usd
    end = samples[-1].equity_usd
    trades = reconstruct_trades(history_rows.fills, history_rows.funding)
    closed = closed_trades(trades)
    wins = [t for t in closed if t.is_win]
    gains = sum((float(t.net_pnl) for t in wins), 0.0)
    losses = -sum((float(t.net_pnl) for t in closed if not t.is_win), 0.0)
    fees = sum((float(f.fee) for f in history_rows.fills), 0.0)
    slippage = slippage_usd(history_rows.fills, float(exchange.book.config.slippage))
    funding = -sum((float(f.amount) for f in history_rows.funding), 0.0)
    reasons: dict[str, int] = {}
    for f in history_rows.fills:
        reasons[f.reason or "market"] = reasons.get(f.reason or "market", 0) + 1
    decisions, cost, model_decisions, outcomes, statuses, guards = run_records(store, run_id)
    equity = [s.equity_usd for s in samples]
    in_market = sum(1 for s in samples if s.positions)
    exposure = [s.gross_usd / s.equity_usd for s in samples if s.equity_usd > 0]
    return {
        "start_ms": samples[0].time_ms,
        "end_ms": samples[-1].time_ms,
        "steps": len(samples),
        "start_equity_usd": start,
        "end_equity_usd": end,
        "total_return_pct": (end / start - 1) * 100,
        "buy_and_hold_pct": buy_and_hold(history, spec.interval, spec.symbols, samples[0].time_ms, samples[-1].time_ms),
        "buy_and_hold_curve": buy_and_hold_curve(history, spec.interval, spec.symbols, start, samples),
        "sharpe": daily_sharpe(start, samples),
        "max_drawdown_pct": max_drawdown_pct([start, *equity]),
        "trades": len(closed),
        "open_at_end": len(trades) - len(closed),
        "win_rate": len(wins) / len(closed) if closed else None,
        "profit_factor": gains / losses if losses > 0 else None,
        "exposure_time_pct": in_market / len(samples) * 100,
        "avg_gross_exposure_pct": float(np.mean(exposure) * 100) if exposure else 0.0,
        "fees_usd": fees,
        "slippage_usd": slippage,
        "funding_usd": funding,
        "flat_pct": 0.0,  # the third reference: cash, never traded
        # The second: the baseline under the same strategy (this run when it is the baseline; else given).
        **({"baseline_pct": (end / start - 1) * 100} if spec.model == "baseline" else {}),
        "definitions": FIGURE_DEFINITIONS,
        "funding_settlements": exchange.funding_events,
        "fills_by_reason": reasons,
        "model_cost_usd": float(cost),
        "decisions": int(decisions),
        "model_decisions": int(model_decisions or 0),
        "cycles": {str(k): int(v) for k, v in outcomes.items()},
        "asset_decisions": {str(k): int(v) for k, v in statuses.items()},
        "guard_events": guards,
    }


def equity_points(start_usd: float, start_ms: int, samples: Sequence[tuple[int, float, float, int]]) -> list[Any]:
    """A run's equity samples as the statistics' equity points (for the terminal chart)."""
    points = [EquityPoint(start_ms, Decimal(repr(start_usd)), Decimal(0), 0.0)]
    peak = start_usd
    for time_ms, equity, _, _ in samples:
        peak = max(peak, equity)
        down = peak - equity
        points.append(
            EquityPoint(time_ms, Decimal(repr(equity)), Decimal(repr(down)), down / peak * 100 if peak > 0 else None)
        )
    return points

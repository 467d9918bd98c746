"""The JSON documents of ``stats --json`` and ``backtest show --json`` (pure values: the terminal's ``--json``
and serve's API give the same objects)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmtrader.core.times import iso_utc

if TYPE_CHECKING:
    from llmtrader.core.stats import AccountStats, CalibrationBucket, DecisionStats, TradingStats

# In `stats --json`, USD amounts are strings holding the exact decimal figure (a sum over the recorded
# fills and funding, never rounded; trailing zeros dropped), so every cent can be checked; per-unit model
# costs (a division) are rounded to a millionth of a dollar. Ratios, shares and percentages are numbers;
# durations are ms. The terminal shows cents, rounded half up.
CENT = Decimal("0.01")
MONEY_NOTE = "USD amounts are strings holding the exact decimal sums of the recorded fills and funding"


def _money(value: Decimal | None) -> str | None:
    """An exact amount as a plain decimal string: '-161.875', '0', '10000' (no exponent, no trailing zeros)."""
    return None if value is None else format(value.normalize(), "f")


def _ratio(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def trading_json(t: TradingStats) -> dict[str, Any]:
    """The trading figures of ``stats --json`` (the equity curve apart)."""
    return {
        "trades": t.trades,
        "wins": t.wins,
        "losses": t.losses,
        "breakeven": t.breakeven,
        "win_rate": t.win_rate,
        "gross_pnl_usd": _money(t.gross_pnl),
        "fees_usd": _money(t.fees),
        "liquidation_fees_usd": _money(t.liquidation_fees),
        "funding_usd": _money(t.funding),
        "net_pnl_usd": _money(t.net_pnl),
        "winning_pnl_usd": _money(t.winning_pnl),
        "losing_pnl_usd": _money(t.losing_pnl),
        "profit_factor": _ratio(t.profit_factor),
        "best_trade_usd": _money(t.best_trade),
        "worst_trade_usd": _money(t.worst_trade),
        "sharpe": t.sharpe,
        "equity_start_usd": _money(t.equity_start),
        "equity_end_usd": _money(t.equity_end),
        "max_drawdown_usd": _money(t.max_drawdown_usd),
        "max_drawdown_pct": t.max_drawdown_pct,
        "avg_hold_ms": t.avg_hold_ms,
        "exposure": t.exposure,
        "exposure_ms": t.exposure_ms,
        "liquidations": t.liquidations,
        "open_trades": t.open_trades,
        "trades_opened": t.trades_opened,
        "adopted_trades": t.adopted,
    }


def decisions_json(q: DecisionStats) -> dict[str, Any]:
    """The decision-quality figures of ``stats --json``."""
    return {
        "decisions": q.decisions,
        "dry_runs": q.dry_runs,
        "manual_closes": q.manual,
        "outcomes": q.outcomes,
        "executions": q.executions,
        "model_errors": q.model_errors,
        "venue_errors": q.venue_errors,
        "asset_decisions": q.asset_decisions,
        "accepted": q.accepted,
        "amended": q.amended,
        "rejected": q.rejected,
        "accepted_share": q.accepted_share,
        "amended_share": q.amended_share,
        "rejected_share": q.rejected_share,
        "reasks": q.reasks,
        "decisions_reasked": q.decisions_reasked,
        "latency_p50_ms": q.latency_p50_ms,
        "latency_p95_ms": q.latency_p95_ms,
        "model_latency_p50_ms": q.model_latency_p50_ms,
        "model_latency_p95_ms": q.model_latency_p95_ms,
        "prompt_tokens": q.prompt_tokens,
        "completion_tokens": q.completion_tokens,
        "tokens_per_decision": q.tokens_per_decision,
        "cost_usd": _money(q.cost_usd),
        "decisions_without_cost": q.decisions_without_cost,
        "cost_per_decision_usd": _money(q.cost_per_decision_usd),
        "cost_per_trade_usd": _money(q.cost_per_trade_usd),
    }


def calibration_json(buckets: Sequence[CalibrationBucket]) -> list[dict[str, Any]]:
    return [
        {
            "bucket": b.label,
            "low": _ratio(b.low),
            "high": _ratio(b.high),
            "trades": b.trades,
            "wins": b.wins,
            "hit_rate": b.hit_rate,
            "mean_confidence": b.mean_confidence,
        }
        for b in buckets
    ]


def _iso(ms: int | None) -> str | None:
    return None if ms is None else iso_utc(ms)


def stats_json(s: AccountStats) -> dict[str, Any]:
    """The ``stats --json`` object: every figure, the equity curve, and the groups of ``--by``."""
    return {
        "account": s.account,
        "mode": s.mode,
        "period": {
            "start": _iso(s.start_ms),
            "end": _iso(s.end_ms),
            "start_ms": s.start_ms,
            "end_ms": s.end_ms,
            "since": _iso(s.since_ms),
            "reset": _iso(s.reset_ms),
        },
        "money": MONEY_NOTE,
        "note": None if s.trading.trades else "no closed trades yet",
        "starting_balance_usd": _money(s.starting_balance),
        "trading": trading_json(s.trading),
        "decisions": decisions_json(s.decisions),
        "calibration": calibration_json(s.calibration),
        "equity_curve": [
            {
                "time": iso_utc(p.time_ms),
                "time_ms": p.time_ms,
                "equity_usd": _money(p.equity),
                "drawdown_usd": _money(p.drawdown_usd),
                "drawdown_pct": p.drawdown_pct,
                "symbol": p.symbol,
                "net_pnl_usd": _money(p.net_pnl),
            }
            for p in s.trading.curve
        ],
        "by": s.by,
        "groups": [
            {
                "key": g.key,
                "trading": trading_json(g.trading),
                "decisions": decisions_json(g.decisions),
                "calibration": calibration_json(g.calibration),
            }
            for g in s.groups
        ],
    }


def backtest_json(run: Any, equity: Sequence[tuple[int, float, float, int]], changes: Sequence[Any]) -> dict[str, Any]:
    """A stored run as one JSON object: its specification, status, figures, notes, equity samples and, for a
    replay, the asset decisions the validator judged differently."""
    return {
        "run": run.id,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "status": run.status,
        "replay_of": run.replay_of,
        "steps_done": run.steps_done,
        "spec": run.spec,
        "metrics": run.metrics,
        "notes": run.notes,
        "equity": [
            {"time": iso_utc(t), "time_ms": t, "equity_usd": e, "gross_usd": g, "positions": n} for t, e, g, n in equity
        ],
        "verdict_changes": [
            {
                "time": iso_utc(c.time_ms),
                "symbol": c.symbol,
                "action": c.action,
                "before": c.before,
                "after": c.after,
                "reasons": c.reasons,
            }
            for c in changes
        ],
    }

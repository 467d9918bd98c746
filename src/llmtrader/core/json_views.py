"""The JSON documents of ``stats --json`` and ``backtest show --json`` (pure values: the terminal's ``--json``
and serve's API give the same objects)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from llmtrader.core.times import iso_utc

if TYPE_CHECKING:
    from llmtrader.core.stats import AccountStats, CalibrationBucket, DecisionStats, TradingStats

# One rule for money in every --json document (docs/json.md "Values"): amounts are JSON numbers, already
# rounded for people. USD to the cent (half up); model costs, sub-cent by nature, to a millionth of a
# dollar; prices and sizes at the venue's tick and step (they arrive as decimal text at that precision).
# Ratios, shares and percentages are numbers; durations are ms. The CSV export keeps the exact decimals.
CENT = Decimal("0.01")
MICRO = Decimal("0.000001")


def _money(value: Decimal | None) -> str | None:
    """An exact amount as a plain decimal string for the CSV export: '-161.875', '0', '10000' (no exponent,
    no trailing zeros)."""
    return None if value is None else format(value.normalize(), "f")


def _rounded(value: Decimal | float | str | None, step: Decimal) -> float | None:
    if value is None:
        return None
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    try:
        return float(number.quantize(step, ROUND_HALF_UP)) + 0.0  # + 0.0: never -0.0
    except InvalidOperation:  # beyond the context's precision (a rejected 1e308) or not finite: as it is
        return float(number)


def usd(value: Decimal | float | str | None) -> float | None:
    """A USD amount for --json: a number at the cent, rounded half up (-161.875 -> -161.88)."""
    return _rounded(value, CENT)


def cost_usd(value: Decimal | float | str | None) -> float | None:
    """A model cost for --json: a number at a millionth of a dollar (a call costs fractions of a cent)."""
    return _rounded(value, MICRO)


def number(value: Decimal | float | str | None) -> float | None:
    """A price or size already at the venue's tick or step (decimal text) as a JSON number: '0.023' -> 0.023."""
    return None if value is None or value == "" else float(value)


def money_rounded(doc: Any, key: str = "") -> Any:
    """``doc`` with every float under a key ending in ``_usd`` rounded by the money rule (model costs, keys
    with ``cost``, at a millionth; the rest at the cent), and the equity of its curves (``*curve``: [time_ms,
    equity] pairs; ``curves``: one per model) at the cent."""
    if isinstance(doc, dict):
        if key == "curves":  # model -> its equity curve
            return {k: money_rounded(v, "curve") for k, v in doc.items()}
        return {k: money_rounded(v, k) for k, v in doc.items()}
    if isinstance(doc, list):
        if key.endswith("curve"):  # [time_ms, equity in USD] pairs
            return [[t, usd(e)] for t, e in doc]
        return [money_rounded(v, key) for v in doc]
    if isinstance(doc, float) and key.endswith("_usd"):
        return cost_usd(doc) if "cost" in key else usd(doc)
    return doc


# Stored as '-' on a record no model made (a close by hand, reconcile): null in --json, never "-".
_DASHED = ("strategy", "base_url")


def stored_decision_json(row: dict[str, Any]) -> dict[str, Any]:
    """A stored decision as ``history``/``show --json`` and serve's API give it: its '-' placeholders as
    null, its USD amounts by the money rule (a scaled-down allocation at the cent)."""
    for key in _DASHED:
        if row.get(key) == "-":
            row[key] = None
    return money_rounded(row)  # type: ignore[no-any-return]


_POSITION_NUMBERS = ("size", "entry_price", "mark_price", "liquidation_price", "sl_price", "tp_price")


def positions_json(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Open positions as ``positions --json`` and serve's API give them: prices and sizes as numbers at the
    symbol's tick and step, the unrealised PnL in USD at the cent (``unrealized_pnl_usd``)."""
    out = []
    for row in rows:
        doc: dict[str, Any] = {}
        for key, value in row.items():
            if key == "unrealized_pnl":
                doc["unrealized_pnl_usd"] = usd(value)
            else:
                doc[key] = number(value) if key in _POSITION_NUMBERS else value
        out.append(doc)
    return out


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
        "gross_pnl_usd": usd(t.gross_pnl),
        "fees_usd": usd(t.fees),
        "liquidation_fees_usd": usd(t.liquidation_fees),
        "funding_usd": usd(t.funding),
        "net_pnl_usd": usd(t.net_pnl),
        "winning_pnl_usd": usd(t.winning_pnl),
        "losing_pnl_usd": usd(t.losing_pnl),
        "profit_factor": _ratio(t.profit_factor),
        "best_trade_usd": usd(t.best_trade),
        "worst_trade_usd": usd(t.worst_trade),
        "sharpe": t.sharpe,
        "equity_start_usd": usd(t.equity_start),
        "equity_end_usd": usd(t.equity_end),
        "max_drawdown_usd": usd(t.max_drawdown_usd),
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
        "cost_usd": cost_usd(q.cost_usd),
        "decisions_without_cost": q.decisions_without_cost,
        "cost_per_decision_usd": cost_usd(q.cost_per_decision_usd),
        "cost_per_trade_usd": cost_usd(q.cost_per_trade_usd),
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
        "note": None if s.trading.trades else "no closed trades yet",
        "starting_balance_usd": usd(s.starting_balance),
        "trading": trading_json(s.trading),
        "decisions": decisions_json(s.decisions),
        "calibration": calibration_json(s.calibration),
        "equity_curve": [
            {
                "time": iso_utc(p.time_ms),
                "time_ms": p.time_ms,
                "equity_usd": usd(p.equity),
                "drawdown_usd": usd(p.drawdown_usd),
                "drawdown_pct": p.drawdown_pct,
                "symbol": p.symbol,
                "net_pnl_usd": usd(p.net_pnl),
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


def backtest_row_json(run: Any) -> dict[str, Any]:
    """One stored run as a row of ``backtest list --json``."""
    return {
        "run": run.id,
        "created_at": run.created_at,
        "status": run.status,
        "replay_of": run.replay_of,
        "steps_done": run.steps_done,
        "spec": money_rounded(run.spec),
        "metrics": money_rounded(run.metrics),
    }


def backtest_json(run: Any, equity: Sequence[tuple[int, float, float, int]], changes: Sequence[Any]) -> dict[str, Any]:
    """A stored run as one JSON object: its specification, status, figures, notes, equity samples and, for a
    replay, the asset decisions the validator judged differently."""
    return {
        **backtest_row_json(run),
        "finished_at": run.finished_at,
        "notes": run.notes,
        "equity": [
            {"time": iso_utc(t), "time_ms": t, "equity_usd": usd(e), "gross_usd": usd(g), "positions": n}
            for t, e, g, n in equity
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

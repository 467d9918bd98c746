"""The leaderboard of an arena: each contestant's figures beside the three references (equal-weight
buy-and-hold, the baseline under the same strategy, flat), and a bootstrap over days saying whether each
edge is distinguishable from noise."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

from llmtrader.backtest.figures import FIGURE_DEFINITIONS, max_drawdown_pct
from llmtrader.core.times import DAY_MS, INTERVAL_MS
from llmtrader.storage import arena as arenas
from llmtrader.storage import backtests as runs

if TYPE_CHECKING:
    from llmtrader.storage.backtests import RunRow
    from llmtrader.storage.store import Store

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 20_251_101  # fixed: the same arena gives the same intervals every time it is shown


def day_values(start_usd: float, points: Sequence[Sequence[float]]) -> dict[int, float]:
    """The equity at each UTC day's last point, by day number."""
    out: dict[int, float] = {}
    for point in points:
        out[int(point[0]) // DAY_MS] = float(point[1])
    return out


def daily_returns(start_usd: float, days: dict[int, float], keep: Sequence[int]) -> np.ndarray:
    """Returns from one kept day's close to the next (the first from ``start_usd``)."""
    values = [start_usd, *(days[d] for d in keep)]
    return np.array([b / a - 1 if a > 0 else 0.0 for a, b in pairwise(values)], dtype=np.float64)


def bootstrap_edge(mine: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """The summed daily excess return (in %) over ``reference`` and its 95 % bootstrap interval (days drawn
    with replacement); ``verdict`` is better or worse when the interval excludes 0, else noise."""
    excess = mine - reference
    n = len(excess)
    if n < 2:
        return {
            "excess_pct": float(excess.sum() * 100) if n else 0.0,
            "ci95_pct": None,
            "days": n,
            "verdict": "too short",
        }
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = rng.integers(0, n, size=(BOOTSTRAP_SAMPLES, n))
    sums = excess[draws].sum(axis=1) * 100
    low, high = (float(x) for x in np.percentile(sums, [2.5, 97.5]))
    verdict = "better" if low > 0 else "worse" if high < 0 else "noise"
    return {"excess_pct": float(excess.sum() * 100), "ci95_pct": [low, high], "days": n, "verdict": verdict}


def sharpe_of(returns: np.ndarray) -> float | None:
    if len(returns) < 2 or float(np.std(returns, ddof=1)) == 0:
        return None
    return float(np.mean(returns) / np.std(returns, ddof=1) * np.sqrt(365))


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _model_figures(store: Store, run: RunRow) -> dict[str, Any]:
    """Cost, tokens, latency, parse failures and re-asks of the run's model, from its recorded answers (a
    replay shows what the recorded calls cost when they were made)."""
    bodies = arenas.answer_bodies(store, run.id)
    cost = prompt = completion = reasks = failures = 0.0
    latencies: list[float] = []
    for _, body in bodies:
        calls = body.get("calls", [])
        cost += sum(float(c.get("cost_usd") or 0.0) for c in calls)
        prompt += sum(int(c.get("prompt_tokens") or 0) for c in calls)
        completion += sum(int(c.get("completion_tokens") or 0) for c in calls)
        latencies.append(float(sum(int(c.get("latency_ms") or 0) for c in calls)))
        reasks += int(body.get("reasks") or 0)
        failures += 1 if ("error" in body or body.get("parse_errors")) else 0
    return {
        "answers": len(bodies),
        "model_cost_usd": cost,
        "prompt_tokens": int(prompt),
        "completion_tokens": int(completion),
        "latency_p50_ms": _percentile(latencies, 50),
        "latency_p95_ms": _percentile(latencies, 95),
        "parse_failures": int(failures),
        "reasks": int(reasks),
        "replayed": sum(1 for kind, _ in bodies if kind.startswith("replay")),
    }


def brier(store: Store, run: RunRow) -> tuple[float | None, int]:
    """The Brier score of the stated confidence of each accepted opening against its trade's outcome (1 for a
    win, 0 otherwise; trades still open are left out), and how many openings it covers."""
    from llmtrader.core.trades import closed_trades, reconstruct_trades
    from llmtrader.storage.facts import paper_history

    history = paper_history(store, run.id)
    trades = closed_trades(reconstruct_trades(history.fills, history.funding))
    window = INTERVAL_MS[str(run.spec["interval"])]
    scores = []
    for when, symbol, _, confidence, status in arenas.openings(store, run.id):
        if confidence is None or status not in ("accepted", "amended"):
            continue
        trade = next((t for t in trades if t.symbol == symbol and when <= t.opened_ms < when + window), None)
        if trade is not None:
            scores.append((confidence - (1.0 if trade.is_win else 0.0)) ** 2)
    return (float(np.mean(scores)) if scores else None), len(scores)


def leaderboard(store: Store, arena_id: str) -> dict[str, Any]:
    """The arena as one document: what ran, the references, and each contestant's figures and edges."""
    # The baseline first, then the models by name: the same order however the runs were scheduled.
    members = sorted(arenas.arena_runs(store, arena_id), key=lambda r: (r.spec["model"] != "baseline", r.spec["model"]))
    spec = members[0].spec
    start = float(spec["balance_usd"])
    base = next((r for r in members if r.spec["model"] == "baseline" and r.metrics), None)
    reference_metrics = base.metrics if base is not None else next((r.metrics for r in members if r.metrics), None)
    curves: dict[str, list[list[float]]] = {}
    days: dict[str, dict[int, float]] = {}
    for run in members:
        points = [[t, e] for t, e, _, _ in runs.equity_of(store, run.id)]
        curves[run.spec["model"]] = points
        days[run.spec["model"]] = day_values(start, points)
    bh_curve = (reference_metrics or {}).get("buy_and_hold_curve", [])
    days["buy-and-hold"] = day_values(start, bh_curve[1:])
    common = sorted(set.intersection(*(set(d) for d in days.values()))) if days else []
    returns = {name: daily_returns(start, d, common) for name, d in days.items()}
    flat = np.zeros(len(common))
    bh_values = [start, *(float(p[1]) for p in bh_curve[1:])]
    references = {
        "buy_and_hold": {
            "return_pct": (reference_metrics or {}).get("buy_and_hold_pct", {}).get("portfolio"),
            "sharpe": sharpe_of(returns["buy-and-hold"]),
            "max_drawdown_pct": max_drawdown_pct(bh_values),
            "curve": bh_curve,
        },
        "baseline": {
            "run": base.id if base is not None else None,
            "return_pct": (base.metrics or {}).get("total_return_pct") if base is not None else None,
        },
        "flat": {"return_pct": 0.0, "sharpe": None, "max_drawdown_pct": 0.0},
    }
    contestants = []
    for run in members:
        m = run.metrics or {}
        model = str(run.spec["model"])
        trades = int(m.get("trades", 0))
        figures = _model_figures(store, run)
        verdicts = arenas.verdict_counts(store, run.id)
        judged = sum(verdicts.values())
        score, scored = brier(store, run)
        bh = m.get("buy_and_hold_pct", {}).get("portfolio")
        mine = returns.get(model, flat)
        changes = []
        if run.replay_of:
            from llmtrader.storage.backtests import verdict_changes

            changes = verdict_changes(store, run.id, run.replay_of)
        contestants.append(
            {
                "model": model,
                "run": run.id,
                "status": run.status,
                "steps_done": run.steps_done,
                "replay_of": run.replay_of,
                "return_pct": m.get("total_return_pct"),
                "excess_over_buy_and_hold_pct": (m["total_return_pct"] - bh) if bh is not None and m else None,
                "sharpe": m.get("sharpe"),
                "max_drawdown_pct": m.get("max_drawdown_pct"),
                "trades": trades,
                "win_rate": m.get("win_rate"),
                "profit_factor": m.get("profit_factor"),
                "fees_usd": m.get("fees_usd"),
                "funding_usd": m.get("funding_usd"),
                "slippage_usd": m.get("slippage_usd"),
                "avg_gross_exposure_pct": m.get("avg_gross_exposure_pct"),
                **figures,
                "cost_per_trade_usd": figures["model_cost_usd"] / trades if trades else None,
                "verdicts": verdicts,
                "shares": {
                    k: verdicts.get(k, 0) / judged if judged else None for k in ("accepted", "amended", "rejected")
                },
                "brier": score,
                "brier_openings": scored,
                "edge_over_baseline": bootstrap_edge(mine, returns.get("baseline", flat)),
                "edge_over_buy_and_hold": bootstrap_edge(mine, returns["buy-and-hold"]),
                "verdict_changes": len(changes),
                "stop_reason": next((n for n in run.notes if " after " in n and " steps: " in n), None),
            }
        )
    return {
        "arena": str(spec.get("arena")),
        "created_at": members[0].created_at,
        "spec": {
            k: spec.get(k)
            for k in (
                "data_dir",
                "symbols",
                "interval",
                "strategy",
                "balance_usd",
                "start_ms",
                "end_ms",
                "timeframes",
                "leverage",
                "max_position_usd",
            )
        },
        "days": len(common),
        "references": references,
        "contestants": contestants,
        "curves": curves,
        "definitions": {
            **FIGURE_DEFINITIONS,
            "edge": "summed daily excess return over the reference, in %; its 95 % interval from "
            f"{BOOTSTRAP_SAMPLES} bootstrap draws of the days; noise when it includes 0",
            "brier": "mean (confidence - outcome)^2 over accepted openings whose trade closed; outcome 1 for a win",
        },
    }

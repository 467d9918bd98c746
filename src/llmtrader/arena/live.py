"""The live arena (``llmtrader arena --live``): the configured paper accounts, one model each, judged side by
side from what they recorded, in the same leaderboard as a backtest arena.

Each contestant's trading and decision figures are its ``stats --account NAME`` figures over the same period.
What a backtest knows from its candles comes here from the accounts' own records: buy-and-hold is
equal-weight over the symbols every account trades, at the marks their decisions saw; the curves and the
daily returns of the edges are the equity each decision saw. What no paper account records (slippage, the
outcome of every stated confidence) is listed under ``not_available_live`` and shown as "-".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from llmtrader.arena.board import BOOTSTRAP_SAMPLES, bootstrap_edge, daily_returns, day_values, sharpe_of
from llmtrader.backtest.figures import max_drawdown_pct
from llmtrader.core.json_views import stats_json
from llmtrader.core.times import ms_of_iso
from llmtrader.cycle.stats import account_stats
from llmtrader.errors import ConfigError
from llmtrader.storage.arena import paper_decision_marks

if TYPE_CHECKING:
    from llmtrader.config.settings import Settings
    from llmtrader.storage.store import Store

NOT_AVAILABLE_LIVE = {
    "slippage_usd": "a paper fill is at the mark: there is no quote to slip against",
    "brier": "not scored live",
    "avg_gross_exposure_pct": "not sampled live (stats' exposure is the share of time with a position)",
}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _samples(store: Store, account: str, since_ms: int | None) -> list[tuple[int, float | None, dict[str, float]]]:
    """(decision time ms, equity it saw, marks it saw) of the account's paper decisions, oldest first."""
    rows = paper_decision_marks(store, account)
    out = []
    for created, equity, marks in rows:
        when = ms_of_iso(str(created))
        if since_ms is not None and when < since_ms:
            continue
        parsed = json.loads(marks) if marks else {}
        out.append((when, None if equity is None else float(equity), {str(k): float(v) for k, v in parsed.items()}))
    return out


def buy_and_hold(
    start_usd: float, samples: list[tuple[int, dict[str, float]]], symbols: list[str]
) -> list[list[float]]:
    """Equal-weight buy-and-hold of ``symbols`` from ``start_usd`` at the first marks: [time ms, value] at
    every sample that marks them all."""
    marked = [(t, m) for t, m in samples if all(m.get(s, 0) > 0 for s in symbols)]
    if not symbols or not marked:
        return []
    first = marked[0][1]
    return [[float(t), start_usd * float(np.mean([m[s] / first[s] for s in symbols]))] for t, m in marked]


def leaderboard(
    store: Store, accounts: Mapping[str, Settings], *, now_ms: int, since_ms: int | None = None
) -> dict[str, Any]:
    """The paper accounts' leaderboard as one document, in the shape of :func:`llmtrader.arena.board.leaderboard`
    (``spec`` and ``arena`` describe the accounts instead of a backtest)."""
    paper = {name: s for name, s in accounts.items() if s.trading_mode == "paper"}
    if len(paper) < 2:
        raise ConfigError(
            f"arena --live needs two or more paper accounts ([accounts.NAME] tables); configured: "
            f"{', '.join(f'{n} ({s.trading_mode})' for n, s in accounts.items()) or 'none'}"
        )
    stats = {
        name: stats_json(account_stats(store, account=name, mode="paper", now_ms=now_ms, since_ms=since_ms))
        for name in paper
    }
    samples = {name: _samples(store, name, since_ms) for name in paper}
    common = sorted(set.intersection(*(set(s.assets) for s in paper.values())))
    starts = {name: _float(stats[name]["trading"]["equity_start_usd"]) for name in paper}
    start = next((v for v in starts.values() if v), None) or float(next(iter(paper.values())).paper_balance_usd)
    every = sorted(((t, m) for rows in samples.values() for t, _, m in rows), key=lambda p: p[0])
    bh_curve = buy_and_hold(start, every, common)
    curves: dict[str, list[list[float]]] = {}
    days: dict[str, dict[int, float]] = {}
    for name, rows in samples.items():
        scale = start / (starts.get(name) or start)  # every curve from the same start, to compare them
        curves[name] = [[float(t), e * scale] for t, e, _ in rows if e is not None]
        days[name] = day_values(start, curves[name])
    days["buy-and-hold"] = day_values(start, bh_curve)
    kept = sorted(set.intersection(*(set(d) for d in days.values())))
    returns = {name: daily_returns(start, d, kept) for name, d in days.items()}
    bh_pct = (bh_curve[-1][1] / start - 1) * 100 if bh_curve else None
    baseline = next((n for n, s in paper.items() if s.llm_model == "baseline"), None)
    flat = np.zeros(len(kept))
    contestants = []
    for name, s in paper.items():
        t, d = stats[name]["trading"], stats[name]["decisions"]
        first, last = _float(t["equity_start_usd"]), _float(t["equity_end_usd"])
        ret = (last / first - 1) * 100 if first and last is not None else None
        cost = float(d["cost_usd"] or 0)
        judged = d["accepted"] + d["amended"] + d["rejected"]
        contestants.append(
            {
                "model": name,
                "llm_model": s.llm_model,
                "run": name,
                "status": "live",
                "steps_done": d["decisions"],
                "replay_of": None,
                "return_pct": ret,
                "excess_over_buy_and_hold_pct": ret - bh_pct if ret is not None and bh_pct is not None else None,
                "sharpe": t["sharpe"],
                "max_drawdown_pct": t["max_drawdown_pct"],
                "trades": t["trades"],
                "win_rate": t["win_rate"],
                "profit_factor": t["profit_factor"],
                "fees_usd": _float(t["fees_usd"]),
                "funding_usd": _float(t["funding_usd"]),
                "slippage_usd": None,
                "avg_gross_exposure_pct": None,
                "answers": d["decisions"],
                "model_cost_usd": cost,
                "prompt_tokens": d["prompt_tokens"],
                "completion_tokens": d["completion_tokens"],
                "latency_p50_ms": d["model_latency_p50_ms"],
                "latency_p95_ms": d["model_latency_p95_ms"],
                "parse_failures": d["model_errors"],
                "reasks": d["reasks"],
                "replayed": 0,
                "cost_per_trade_usd": cost / t["trades"] if t["trades"] else None,
                "verdicts": {k: d[k] for k in ("accepted", "amended", "rejected")},
                "shares": {k: d[k] / judged if judged else None for k in ("accepted", "amended", "rejected")},
                "brier": None,
                "brier_openings": 0,
                "edge_over_baseline": bootstrap_edge(returns[name], returns[baseline] if baseline else flat),
                "edge_over_buy_and_hold": bootstrap_edge(returns[name], returns["buy-and-hold"]),
                "verdict_changes": 0,
                "stop_reason": None,
            }
        )
    if baseline is not None:  # the baseline first, as in a backtest arena
        contestants.sort(key=lambda c: c["model"] != baseline)
    bh_values = [start, *(p[1] for p in bh_curve[1:])]
    first_ms = min((p[0] for c in curves.values() for p in c), default=None)
    last_ms = max((p[0] for c in curves.values() for p in c), default=None)
    return {
        "arena": "live",
        "live": True,
        "created_at": stats[next(iter(paper))]["period"]["end"],
        "since": stats[next(iter(paper))]["period"]["since"],
        "spec": {
            "symbols": common,
            "interval": ",".join(sorted({s.interval for s in paper.values()})),
            "strategy": ",".join(sorted({s.strategy for s in paper.values()})),
            "balance_usd": start,
            "start_ms": first_ms,
            "end_ms": last_ms,
            "accounts": {name: s.llm_model for name, s in paper.items()},
        },
        "skipped_accounts": [n for n, s in accounts.items() if s.trading_mode != "paper"],
        "days": len(kept),
        "references": {
            "buy_and_hold": {
                "return_pct": bh_pct,
                "sharpe": sharpe_of(returns["buy-and-hold"]),
                "max_drawdown_pct": max_drawdown_pct(bh_values),
                "curve": bh_curve,
            },
            "baseline": {
                "run": baseline,
                "return_pct": next((c["return_pct"] for c in contestants if c["model"] == baseline), None),
            },
            "flat": {"return_pct": 0.0, "sharpe": None, "max_drawdown_pct": 0.0},
        },
        "contestants": contestants,
        "curves": curves,
        "not_available_live": NOT_AVAILABLE_LIVE,
        "definitions": {
            "figures": "each account's `stats --account NAME` figures over the period (Sharpe, drawdown, "
            "win rate and profit factor as stats defines them)",
            "buy-and-hold": "equal weight over the symbols every account trades, at the marks their decisions saw",
            "edge": "summed daily excess return over the reference, in %; its 95 % interval from "
            f"{BOOTSTRAP_SAMPLES} bootstrap draws of the days (each day's last decision equity); noise when it "
            "includes 0",
        },
    }

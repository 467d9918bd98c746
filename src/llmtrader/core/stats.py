"""Performance figures of an account, from its recorded fills and decisions: the core of ``llmtrader stats``.

:func:`compute_stats` is a pure function of the account's trades (rebuilt from fills by
:mod:`llmtrader.core.trades`) and its decision rows; :func:`account_stats` reads those from the store and calls
it. Money stays ``Decimal``: every USD figure is a sum over fills and funding events, so it can be traced
back to them. The figures the prompt also shows (closed trades, win rate, net PnL, Sharpe) come from
:func:`llmtrader.core.trades.performance`, the very code behind the ``{performance}`` feedback.

Definitions. The period runs from ``start`` (the later of the paper account's last reset and ``--since``;
without either, the account's first trade or decision) to ``end`` (now; for a backtest run, its last
step); a trade belongs to it when it closed at or after ``start``, a decision when it was made in it.

- **equity at start**: the account's starting balance plus the net PnL of its trades closed before ``start``.
- **equity curve**: the equity at start, then one point per closed trade, in closing order, adding its net
  PnL. **Drawdown** at a point is the running peak minus the equity (USD) and that over the peak (%);
  the maxima of the two are taken separately.
- **profit factor**: the net PnL of the winning trades over the absolute net PnL of the losing ones;
  None without a losing trade.
- **Sharpe**: on daily returns of the closed trades' net PnL over the equity at start (a quiet day counts 0),
  annualized with √365 (:func:`llmtrader.core.trades.sharpe`).
- **exposure**: the share of the period with at least one position open (the union of the trades'
  open-to-close spans, an open trade running to ``end``).
- **latency p50 / p95**: nearest rank: the smallest recorded value with at least 50 % (95 %) of the values
  at or below it; decision latency over every decision, model latency over those that asked the model
  (not the venue errors, which stop before).
- **by group** (``--by``): the same figures over the group's trades and decisions. Trades go by their symbol,
  or by the strategy / model / arm of the decision that opened them; each group's curve, drawdown and
  Sharpe start from the account's equity at start. By asset, a decision on two assets counts in both.
- **decision quality** leaves out the closes made by hand (``llmtrader close``: no model was asked) and
  only counts them; shares of accepted / amended / rejected are over all the asset decisions.
- **tokens and USD per decision**: over the decisions (USD: over those with a known cost); **USD per
  trade**: the model cost of the period's decisions over the trades opened in the period.
- **calibration**: each closed trade's opening confidence (the asset decision of the decision whose order
  opened it, for the trade's symbol), in buckets of 0.1 (1.0 falls in the top one); hit rate = wins / trades.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Literal

from llmtrader.core.trades import Trade, closed_trades, decision_id_of, performance

if TYPE_CHECKING:
    pass

GroupBy = Literal["asset", "strategy", "model", "arm"]
GROUP_BY: tuple[GroupBy, ...] = ("asset", "strategy", "model", "arm")
ZERO = Decimal(0)
MICRO = Decimal("0.000001")  # per-unit model costs (a division) are rounded to a millionth of a dollar
TENTH = Decimal("0.1")
NO_GROUP = "(none)"  # decisions made without an arm
UNLINKED = "(unlinked)"  # trades opened by an order no recorded decision sent (or a decision not found)
UNKNOWN_BUCKET = "unknown"


# ---- inputs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecisionRow:
    """The figures of one recorded decision that decision quality needs (a ``decisions`` row)."""

    id: str
    created_ms: int
    model: str
    outcome: str
    strategy: str | None = None
    arm: str | None = None
    execution: str | None = None
    dry_run: bool = False
    reasks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: int | None = None
    model_latency_ms: int | None = None

    @property
    def is_manual(self) -> bool:
        """A close made by hand (``llmtrader close``): no model was asked."""
        return self.outcome == "manual"


@dataclass(frozen=True)
class AssetRow:
    """One asset decision (an ``asset_decisions`` row): what became of it and how confident the model was."""

    decision_id: str
    symbol: str
    action: str
    status: str
    confidence: float | None = None


# ---- results -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EquityPoint:
    """The equity after one closed trade (or at the start), and how far it stands below its running peak."""

    time_ms: int
    equity: Decimal
    drawdown_usd: Decimal
    drawdown_pct: float | None  # None when the peak is not positive (or the starting balance is unknown)
    symbol: str | None = None  # the trade that closed here (None for the starting point)
    net_pnl: Decimal | None = None


@dataclass(frozen=True)
class TradingStats:
    """What the closed trades earned, and how the equity got there."""

    trades: int
    wins: int
    losses: int
    breakeven: int
    win_rate: float | None  # None without a closed trade
    gross_pnl: Decimal
    fees: Decimal  # liquidation fees included
    liquidation_fees: Decimal
    funding: Decimal  # + received, − paid
    net_pnl: Decimal
    winning_pnl: Decimal  # net PnL of the winning trades
    losing_pnl: Decimal  # net PnL of the losing trades (≤ 0)
    profit_factor: Decimal | None
    best_trade: Decimal | None
    worst_trade: Decimal | None
    sharpe: float | None
    equity_start: Decimal | None
    equity_end: Decimal | None
    max_drawdown_usd: Decimal
    max_drawdown_pct: float | None
    avg_hold_ms: int | None
    exposure: float | None
    exposure_ms: int
    liquidations: int
    open_trades: int
    trades_opened: int  # trades opened within the period (closed or not)
    curve: tuple[EquityPoint, ...] = ()
    adopted: int = 0  # closed trades that began as a position reconcile adopted (opened out of llmtrader's sight)


@dataclass(frozen=True)
class DecisionStats:
    """How the model's decisions fared: validation, errors, re-asks, latency, tokens and cost."""

    decisions: int
    dry_runs: int
    manual: int  # closes by hand, left out of every other figure here
    outcomes: dict[str, int]
    executions: dict[str, int]
    model_errors: int
    venue_errors: int
    asset_decisions: int
    accepted: int
    amended: int
    rejected: int
    accepted_share: float | None
    amended_share: float | None
    rejected_share: float | None
    reasks: int
    decisions_reasked: int
    latency_p50_ms: int | None
    latency_p95_ms: int | None
    model_latency_p50_ms: int | None
    model_latency_p95_ms: int | None
    prompt_tokens: int
    completion_tokens: int
    tokens_per_decision: float | None
    cost_usd: Decimal
    decisions_without_cost: int
    cost_per_decision_usd: Decimal | None  # over the decisions with a known cost
    cost_per_trade_usd: Decimal | None  # model cost / trades opened in the period


@dataclass(frozen=True)
class CalibrationBucket:
    """The closed trades opened with a confidence in [low, high) (the top bucket includes 1.0)."""

    label: str
    low: Decimal | None
    high: Decimal | None
    trades: int
    wins: int
    hit_rate: float
    mean_confidence: float | None


@dataclass(frozen=True)
class GroupStats:
    """The figures of one group of ``--by``."""

    key: str
    trading: TradingStats
    decisions: DecisionStats
    calibration: tuple[CalibrationBucket, ...]


@dataclass(frozen=True)
class AccountStats:
    """Everything ``llmtrader stats`` shows for one account over one period."""

    account: str
    mode: str
    start_ms: int | None
    end_ms: int
    since_ms: int | None  # asked for with --since
    reset_ms: int | None  # the paper account's last reset (its history starts there)
    starting_balance: Decimal | None
    trading: TradingStats
    decisions: DecisionStats
    calibration: tuple[CalibrationBucket, ...]
    by: GroupBy | None = None
    groups: tuple[GroupStats, ...] = field(default_factory=tuple)


# ---- pure figures ------------------------------------------------------------------------------------
def percentile(values: Iterable[int], p: int) -> int | None:
    """Nearest-rank percentile: the smallest value with at least ``p`` % of the values at or below it."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(p * len(ordered) / 100))
    return ordered[rank - 1]


def equity_curve(closed: Sequence[Trade], equity_start: Decimal | None, start_ms: int | None) -> list[EquityPoint]:
    """The equity at start, then after each closed trade (in closing order), with its drawdown.

    Without a known starting balance the curve starts at 0 (the PnL path), and drawdowns in % are None.
    Without a closed trade there is no curve.
    """
    if not closed:
        return []
    base = equity_start if equity_start is not None else ZERO
    known = equity_start is not None
    first = start_ms if start_ms is not None else closed[0].opened_ms
    equity = peak = base

    def point(time_ms: int, trade: Trade | None) -> EquityPoint:
        drawdown = peak - equity
        pct = float(drawdown / peak * 100) if known and peak > 0 else None
        return EquityPoint(
            time_ms, equity, drawdown, pct, trade.symbol if trade else None, trade.net_pnl if trade else None
        )

    points = [point(first, None)]
    for trade in closed:
        assert trade.closed_ms is not None
        equity += trade.net_pnl
        peak = max(peak, equity)
        points.append(point(trade.closed_ms, trade))
    return points


def exposure_ms(trades: Iterable[Trade], start_ms: int, end_ms: int) -> int:
    """How long, within [start, end], at least one of the trades was open (open trades run to ``end``)."""
    spans = sorted(
        (max(t.opened_ms, start_ms), min(t.closed_ms if t.closed_ms is not None else end_ms, end_ms)) for t in trades
    )
    total, reach = 0, start_ms
    for lo, hi in spans:
        lo = max(lo, reach)
        if hi > lo:
            total += hi - lo
            reach = hi
    return total


def trading_stats(
    trades: Sequence[Trade],
    *,
    equity_start: Decimal | None,
    start_ms: int | None,
    end_ms: int,
    period_start_ms: int | None,
) -> TradingStats:
    """The trading figures of ``trades`` over the period (see the module docstring for each definition).

    ``start_ms`` selects the closed trades (as :func:`performance` does); ``period_start_ms`` is where the
    period begins for the curve and the exposure (``start_ms`` when given, else the account's first record).
    """
    closed = closed_trades(trades, start_ms)
    perf = performance(trades, equity_start=equity_start, since_ms=start_ms)
    nets = [t.net_pnl for t in closed]
    winning = sum((n for n in nets if n > 0), ZERO)
    losing = sum((n for n in nets if n < 0), ZERO)
    curve = equity_curve(closed, equity_start, period_start_ms)
    pcts = [p.drawdown_pct for p in curve if p.drawdown_pct is not None]
    holds = [t.hold_ms for t in closed if t.hold_ms is not None]
    exposed, exposure = 0, None
    if period_start_ms is not None:
        exposed = exposure_ms(trades, period_start_ms, end_ms)
        exposure = exposed / (end_ms - period_start_ms) if end_ms > period_start_ms else None
    lower = period_start_ms if period_start_ms is not None else -1
    return TradingStats(
        trades=len(closed),
        wins=sum(1 for t in closed if t.is_win),
        losses=sum(1 for n in nets if n < 0),
        breakeven=sum(1 for n in nets if n == 0),
        win_rate=perf.win_rate if closed else None,
        gross_pnl=sum((t.gross_pnl for t in closed), ZERO),
        fees=sum((t.fees for t in closed), ZERO),
        liquidation_fees=sum((t.liquidation_fees for t in closed), ZERO),
        funding=sum((t.funding for t in closed), ZERO),
        net_pnl=sum(nets, ZERO),
        winning_pnl=winning,
        losing_pnl=losing,
        profit_factor=winning / -losing if losing < 0 else None,
        best_trade=max(nets) if nets else None,
        worst_trade=min(nets) if nets else None,
        sharpe=perf.sharpe,
        equity_start=equity_start,
        equity_end=curve[-1].equity if curve and equity_start is not None else equity_start,
        max_drawdown_usd=max((p.drawdown_usd for p in curve), default=ZERO),
        max_drawdown_pct=max(pcts) if pcts else None,
        avg_hold_ms=round(sum(holds) / len(holds)) if holds else None,
        exposure=exposure,
        exposure_ms=exposed,
        liquidations=sum(1 for t in closed if t.closing_reason == "liquidation"),
        open_trades=sum(1 for t in trades if t.is_open),
        trades_opened=sum(1 for t in trades if lower <= t.opened_ms <= end_ms),
        curve=tuple(curve),
        adopted=sum(1 for t in closed if t.adopted),
    )


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def decision_stats(decisions: Sequence[DecisionRow], assets: Sequence[AssetRow], trades_opened: int) -> DecisionStats:
    """Decision quality over ``decisions`` and their asset rows ``assets`` (manual closes are only counted)."""
    manual = [d for d in decisions if d.is_manual]
    asked = [d for d in decisions if not d.is_manual]
    manual_ids = {d.id for d in manual}
    rows = [a for a in assets if a.decision_id not in manual_ids]
    outcomes: dict[str, int] = {}
    executions: dict[str, int] = {}
    for d in asked:
        outcomes[d.outcome] = outcomes.get(d.outcome, 0) + 1
        key = d.execution or "none"
        executions[key] = executions.get(key, 0) + 1
    statuses = {s: sum(1 for a in rows if a.status == s) for s in ("accepted", "amended", "rejected")}
    costs = [Decimal(str(d.cost_usd)) for d in asked if d.cost_usd is not None]
    cost = sum(costs, ZERO)
    tokens = sum(d.prompt_tokens + d.completion_tokens for d in asked)
    latencies = [d.latency_ms for d in asked if d.latency_ms is not None]
    # A venue error stops a decision before the model is asked: it has no model latency to count.
    model_latencies = [
        d.model_latency_ms for d in asked if d.model_latency_ms is not None and d.outcome != "venue_error"
    ]
    return DecisionStats(
        decisions=len(asked),
        dry_runs=sum(1 for d in asked if d.dry_run),
        manual=len(manual),
        outcomes=dict(sorted(outcomes.items())),
        executions=dict(sorted(executions.items())),
        model_errors=outcomes.get("model_error", 0),
        venue_errors=outcomes.get("venue_error", 0),
        asset_decisions=len(rows),
        accepted=statuses["accepted"],
        amended=statuses["amended"],
        rejected=statuses["rejected"],
        accepted_share=_share(statuses["accepted"], len(rows)),
        amended_share=_share(statuses["amended"], len(rows)),
        rejected_share=_share(statuses["rejected"], len(rows)),
        reasks=sum(d.reasks for d in asked),
        decisions_reasked=sum(1 for d in asked if d.reasks > 0),
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        model_latency_p50_ms=percentile(model_latencies, 50),
        model_latency_p95_ms=percentile(model_latencies, 95),
        prompt_tokens=sum(d.prompt_tokens for d in asked),
        completion_tokens=sum(d.completion_tokens for d in asked),
        tokens_per_decision=tokens / len(asked) if asked else None,
        cost_usd=cost,
        decisions_without_cost=len(asked) - len(costs),
        cost_per_decision_usd=(cost / len(costs)).quantize(MICRO, ROUND_HALF_EVEN) if costs else None,
        cost_per_trade_usd=(cost / trades_opened).quantize(MICRO, ROUND_HALF_EVEN) if trades_opened else None,
    )


def opening_decision(trade: Trade) -> str | None:
    """The decision whose order opened the trade (None for an order no decision sent)."""
    return decision_id_of(trade.entries[0].client_order_id)


def bucket_of(confidence: float) -> int:
    """The calibration bucket (0..9) of a confidence: floor(confidence × 10), 1.0 in the top bucket."""
    tenths = int((Decimal(str(confidence)) * 10).to_integral_value(ROUND_FLOOR))
    return min(max(tenths, 0), 9)


def calibration(closed: Sequence[Trade], confidence_of: Callable[[Trade], float | None]) -> list[CalibrationBucket]:
    """Hit rate by opening confidence, for the non-empty buckets (trades without one in ``unknown``, last)."""
    buckets: dict[int, list[tuple[float | None, bool]]] = {}
    for trade in closed:
        conf = confidence_of(trade)
        key = -1 if conf is None else bucket_of(conf)
        buckets.setdefault(key, []).append((conf, trade.is_win))
    out = []
    for key in sorted(buckets, key=lambda k: (k < 0, k)):
        items = buckets[key]
        wins = sum(1 for _, win in items if win)
        confs = [c for c, _ in items if c is not None]
        low = None if key < 0 else key * TENTH
        high = None if key < 0 else (key + 1) * TENTH
        out.append(
            CalibrationBucket(
                label=UNKNOWN_BUCKET if key < 0 else f"{low}-{high}",
                low=low,
                high=high,
                trades=len(items),
                wins=wins,
                hit_rate=wins / len(items),
                mean_confidence=sum(confs) / len(confs) if confs else None,
            )
        )
    return out


def _decision_key(by: GroupBy, row: DecisionRow | None) -> str:
    if row is None:
        return UNLINKED
    value = {"strategy": row.strategy, "model": row.model, "arm": row.arm}[by]
    return value if value else NO_GROUP


def compute_stats(
    trades: Sequence[Trade],
    decisions: Sequence[DecisionRow],
    assets: Sequence[AssetRow],
    *,
    account: str,
    mode: str,
    starting_balance: Decimal | None,
    end_ms: int,
    reset_ms: int | None = None,
    since_ms: int | None = None,
    by: GroupBy | None = None,
) -> AccountStats:
    """Every figure of ``stats`` over the account's period: from the later of its last reset and ``since_ms``
    to ``end_ms``.

    ``trades`` are the account's trades since its reset; ``decisions`` and ``assets`` its decision rows, those
    made in the period and those that opened a trade of the period (they may be older).
    """
    starts = [t for t in (reset_ms, since_ms) if t is not None]
    start_ms = max(starts) if starts else None
    earlier = [t for t in trades if t.closed_ms is not None and start_ms is not None and t.closed_ms < start_ms]
    equity_start = None
    if starting_balance is not None:
        equity_start = starting_balance + sum((t.net_pnl for t in earlier), ZERO)
    in_period = [d for d in decisions if (start_ms is None or d.created_ms >= start_ms) and d.created_ms <= end_ms]
    period_start = start_ms
    if period_start is None:
        firsts = [t.opened_ms for t in trades] + [d.created_ms for d in in_period]
        period_start = min(firsts) if firsts else None
    by_id = {d.id: d for d in decisions}
    asset_by_key = {(a.decision_id, a.symbol): a for a in assets}

    def confidence_of(trade: Trade) -> float | None:
        opener = opening_decision(trade)
        row = asset_by_key.get((opener, trade.symbol)) if opener is not None else None
        return row.confidence if row is not None else None

    def figures(
        group_trades: Sequence[Trade], group_decisions: Sequence[DecisionRow], group_assets: Sequence[AssetRow]
    ) -> tuple[TradingStats, DecisionStats, tuple[CalibrationBucket, ...]]:
        trading = trading_stats(
            group_trades, equity_start=equity_start, start_ms=start_ms, end_ms=end_ms, period_start_ms=period_start
        )
        quality = decision_stats(group_decisions, group_assets, trading.trades_opened)
        return trading, quality, tuple(calibration(closed_trades(group_trades, start_ms), confidence_of))

    period_ids = {d.id for d in in_period}
    period_assets = [a for a in assets if a.decision_id in period_ids]
    trading, quality, buckets = figures(trades, in_period, period_assets)
    groups: list[GroupStats] = []
    if by is not None:
        asked = [d for d in in_period if not d.is_manual]  # a close by hand opens nothing: no group of its own
        asked_ids = {d.id for d in asked}
        groups = _groups(by, trades, asked, [a for a in period_assets if a.decision_id in asked_ids], by_id, figures)
    return AccountStats(
        account=account,
        mode=mode,
        start_ms=period_start,
        end_ms=end_ms,
        since_ms=since_ms,
        reset_ms=reset_ms,
        starting_balance=starting_balance,
        trading=trading,
        decisions=quality,
        calibration=buckets,
        by=by,
        groups=tuple(groups),
    )


Figures = Callable[
    [Sequence[Trade], Sequence[DecisionRow], Sequence[AssetRow]],
    tuple[TradingStats, DecisionStats, tuple[CalibrationBucket, ...]],
]


def _groups(
    by: GroupBy,
    trades: Sequence[Trade],
    decisions: Sequence[DecisionRow],
    assets: Sequence[AssetRow],
    by_id: Mapping[str, DecisionRow],
    figures: Figures,
) -> list[GroupStats]:
    """The figures per group. By asset: the trades of the symbol, its asset rows, and the decisions that
    involved it (a decision on two assets counts in both groups). Otherwise: the trades by their opening
    decision's strategy, model or arm, and the decisions (with their asset rows) by their own."""
    trade_groups: dict[str, list[Trade]] = {}
    decision_groups: dict[str, list[DecisionRow]] = {}
    asset_groups: dict[str, list[AssetRow]] = {}
    if by == "asset":
        for t in trades:
            trade_groups.setdefault(t.symbol, []).append(t)
        involved: dict[str, set[str]] = {}
        for a in assets:
            asset_groups.setdefault(a.symbol, []).append(a)
            involved.setdefault(a.symbol, set()).add(a.decision_id)
        for symbol, ids in involved.items():
            decision_groups[symbol] = [d for d in decisions if d.id in ids]
    else:
        for t in trades:
            opener = opening_decision(t)
            trade_groups.setdefault(_decision_key(by, by_id.get(opener) if opener else None), []).append(t)
        key_of = {d.id: _decision_key(by, d) for d in decisions}
        for d in decisions:
            decision_groups.setdefault(key_of[d.id], []).append(d)
        for a in assets:
            asset_groups.setdefault(key_of[a.decision_id], []).append(a)
    out = []
    for key in sorted(set(trade_groups) | set(decision_groups), key=lambda k: (k.startswith("("), k)):
        trading, quality, buckets = figures(trade_groups.get(key, []), decision_groups.get(key, []),
                                            asset_groups.get(key, []))  # fmt: skip
        out.append(GroupStats(key, trading, quality, buckets))
    return out

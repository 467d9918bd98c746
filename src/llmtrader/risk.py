"""Validation of a decision against the limits: pure functions, values in and values out.

Every limit is enforced here, whatever the prompt said. Each asset decision ends ``accepted``,
``amended`` (with what changed) or ``rejected`` (with every reason); one bad asset never voids the
others. Risk is measured on the live mark price: stops and targets must sit on the right side of it,
reward/risk is taken from the real entry, and a stop must trigger before the estimated liquidation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from llmtrader.account import AccountState, Position
from llmtrader.context import Limits
from llmtrader.decision import OPENING_ACTIONS, Action, AssetDecision, LenientDecision, RiskLevel
from llmtrader.formatting import fmt

UNKNOWN_SYMBOL = "(none)"


class Status(StrEnum):
    ACCEPTED = "accepted"
    AMENDED = "amended"
    REJECTED = "rejected"


@dataclass
class AssetValidation:
    """The verdict on one asset decision; ``final`` is what may be executed (None when rejected)."""

    symbol: str
    action: str
    status: Status
    reasons: list[str]
    proposed: dict[str, Any] | None
    final: AssetDecision | None

    @property
    def executable(self) -> bool:
        return self.status is not Status.REJECTED and self.final is not None


@dataclass
class ValidationReport:
    assets: list[AssetValidation]
    notes: list[str] = field(default_factory=list)

    @property
    def all_rejected(self) -> bool:
        """True when the model decided something and every one of its asset decisions was rejected."""
        answered = [a for a in self.assets if a.proposed is not None]
        return bool(answered) and all(a.status is Status.REJECTED for a in answered)


def liquidation_price(entry: float, leverage: int, side: str, mmr: float) -> float:
    """Estimated isolated-margin liquidation price of a new position."""
    if side == "long":
        return entry * (1 - 1 / leverage + mmr)
    return entry * (1 + 1 / leverage - mmr)


def _side_of(action: Action) -> str:
    return "long" if action is Action.BUY else "short"


def _check_protection(
    side: str, mark: float, entry: float, tp: float | None, sl: float | None, need_both: bool
) -> list[str]:
    """Stop and target present (when required) and on the right sides of mark and entry."""
    reasons = []
    if need_both and tp is None:
        reasons.append("tp_price is missing")
    if need_both and sl is None:
        reasons.append("sl_price is missing")
    below, above = ("sl_price", "tp_price") if side == "long" else ("tp_price", "sl_price")
    values = {"tp_price": tp, "sl_price": sl}
    for name, must_be_below in ((below, True), (above, False)):
        value = values[name]
        if value is None:
            continue
        for ref_name, ref in (("mark price", mark), ("entry", entry)):
            wrong = value >= ref if must_be_below else value <= ref
            if wrong:
                relation = "below" if must_be_below else "above"
                reasons.append(f"{name} {fmt(value)} must be {relation} the {ref_name} {fmt(ref)} for a {side}")
                break
    return reasons


def _validate_open(
    d: AssetDecision,
    mark: float,
    position: Position | None,
    limits: Limits,
) -> tuple[AssetDecision | None, list[str], list[str]]:
    """Checks for buy and sell. Returns (amended decision or None, amendments, rejections)."""
    side = _side_of(d.action)
    amendments: list[str] = []
    rejections: list[str] = []
    if position is not None and position.side != side:
        rejections.append(f"a {position.side} position is open; close it before opening a {side}")
    leverage = d.leverage
    if leverage > limits.max_leverage:
        amendments.append(f"leverage {leverage} above the limit {limits.max_leverage}: set to {limits.max_leverage}")
        leverage = limits.max_leverage
    allocation = d.allocation_usd
    if allocation <= 0:
        rejections.append("allocation_usd must be positive to open or add")
    existing = position.notional if position is not None and position.side == side else 0.0
    if allocation > 0 and allocation * leverage + existing > limits.max_position_usd + 1e-9:
        room = limits.max_position_usd - existing
        if room <= 0:
            rejections.append(
                f"the position's notional {fmt(existing)} USD is already at the limit "
                f"{fmt(limits.max_position_usd)} USD"
            )
        else:
            new_allocation = room / leverage
            amendments.append(
                f"notional {fmt(allocation * leverage + existing)} USD above the limit "
                f"{fmt(limits.max_position_usd)} USD: allocation_usd {fmt(allocation)} -> {fmt(new_allocation)}"
            )
            allocation = new_allocation
    entry = d.entry_price if d.entry_price is not None else mark
    rejections += _check_protection(side, mark, entry, d.tp_price, d.sl_price, need_both=True)
    if d.tp_price is not None and d.sl_price is not None and not rejections:
        risk = abs(entry - d.sl_price)
        reward = abs(d.tp_price - entry)
        ratio = reward / risk if risk > 0 else 0.0
        if ratio < limits.min_reward_risk:
            rejections.append(
                f"reward/risk {ratio:.2f} (entry {fmt(entry)}, tp {fmt(d.tp_price)}, sl {fmt(d.sl_price)}) "
                f"below the minimum {fmt(limits.min_reward_risk)}"
            )
        liq = liquidation_price(entry, leverage, side, limits.maintenance_margin_rate)
        beyond = d.sl_price <= liq if side == "long" else d.sl_price >= liq
        if beyond:
            rejections.append(
                f"sl_price {fmt(d.sl_price)} lies beyond the estimated liquidation price {fmt(liq)} "
                f"at {leverage}x: the stop would never trigger"
            )
    if d.confidence < limits.min_confidence:
        rejections.append(f"confidence {fmt(d.confidence, 3)} below the floor {fmt(limits.min_confidence, 3)}")
    if rejections:
        return None, amendments, rejections
    final = d.model_copy(update={"leverage": leverage, "allocation_usd": allocation})
    return final, amendments, rejections


def _validate_existing(
    d: AssetDecision, mark: float, position: Position | None, limits: Limits
) -> tuple[AssetDecision | None, list[str], list[str]]:
    """Checks for close_position, adjust_orders and adjust_position: they need an open position."""
    if position is None:
        return None, [], [f"{d.action.value} needs an open position on {d.symbol}; there is none"]
    amendments: list[str] = []
    rejections: list[str] = []
    if d.action is Action.ADJUST_ORDERS:
        if d.tp_price is None and d.sl_price is None:
            rejections.append("adjust_orders needs a new tp_price or sl_price")
        rejections += _check_protection(position.side, mark, mark, d.tp_price, d.sl_price, need_both=False)
        liq = position.liquidation_price
        if d.sl_price is not None and liq is not None:
            beyond = d.sl_price <= liq if position.side == "long" else d.sl_price >= liq
            if beyond:
                rejections.append(f"sl_price {fmt(d.sl_price)} lies beyond the liquidation price {fmt(liq)}")
    elif d.action is Action.ADJUST_POSITION:
        if d.allocation_usd <= 0:
            rejections.append("adjust_position needs allocation_usd > 0 (use close_position to close)")
        notional = d.allocation_usd * position.leverage
        if notional > limits.max_position_usd + 1e-9:
            new_allocation = limits.max_position_usd / position.leverage
            amendments.append(
                f"notional {fmt(notional)} USD above the limit {fmt(limits.max_position_usd)} USD: "
                f"allocation_usd {fmt(d.allocation_usd)} -> {fmt(new_allocation)}"
            )
            d = d.model_copy(update={"allocation_usd": new_allocation})
        if d.leverage != position.leverage:
            amendments.append(f"leverage stays at the position's {position.leverage}x")
            d = d.model_copy(update={"leverage": position.leverage})
    if rejections:
        return None, amendments, rejections
    return d, amendments, rejections


def _opening_margin(v: AssetValidation, positions: Mapping[str, Position]) -> float:
    """New margin a surviving decision would commit."""
    d = v.final
    if d is None:
        return 0.0
    if d.action in OPENING_ACTIONS:
        return d.allocation_usd
    if d.action is Action.ADJUST_POSITION:
        position = positions.get(d.symbol)
        return max(0.0, d.allocation_usd - (position.margin if position else 0.0))
    return 0.0


def validate_decision(
    decision: LenientDecision,
    *,
    symbols: Sequence[str],
    marks: Mapping[str, float],
    account: AccountState,
    limits: Limits,
) -> ValidationReport:
    """Validate every asset decision, then the portfolio as a whole."""
    results: list[AssetValidation] = []
    seen: set[str] = set()
    positions = {p.symbol: p for p in account.positions}
    for bad in decision.invalid:
        symbol = bad.symbol or UNKNOWN_SYMBOL
        action = bad.raw.get("action") if isinstance(bad.raw, dict) else None
        results.append(
            AssetValidation(
                symbol=symbol,
                action=str(action) if isinstance(action, str) else "(invalid)",
                status=Status.REJECTED,
                reasons=bad.errors,
                proposed=bad.raw if isinstance(bad.raw, dict) else {"value": bad.raw},
                final=None,
            )
        )
        if symbol in symbols:
            seen.add(symbol)
    for d in decision.assets:
        d = d.model_copy(update={"symbol": d.symbol.strip().upper()})
        proposed = d.model_dump(mode="json")
        if d.symbol not in symbols:
            reason = f"{d.symbol} was not asked for (asked: {', '.join(symbols)})"
            results.append(AssetValidation(d.symbol, d.action.value, Status.REJECTED, [reason], proposed, None))
            continue
        if d.symbol in seen:
            reason = f"a second decision for {d.symbol}; only the first counts"
            results.append(AssetValidation(d.symbol, d.action.value, Status.REJECTED, [reason], proposed, None))
            continue
        seen.add(d.symbol)
        mark = marks[d.symbol]
        position = positions.get(d.symbol)
        final: AssetDecision | None
        amendments: list[str]
        rejections: list[str]
        if d.action is Action.HOLD:
            final, amendments, rejections = d, [], []
        elif d.action in OPENING_ACTIONS:
            final, amendments, rejections = _validate_open(d, mark, position, limits)
        else:
            final, amendments, rejections = _validate_existing(d, mark, position, limits)
        if rejections:
            status = Status.REJECTED
        elif amendments:
            status = Status.AMENDED
        else:
            status = Status.ACCEPTED
        results.append(AssetValidation(d.symbol, d.action.value, status, amendments + rejections, proposed, final))
    for symbol in symbols:
        if symbol not in seen:
            hold = AssetDecision(
                symbol=symbol,
                action=Action.HOLD,
                rationale="(no decision in the model's answer)",
                allocation_usd=0,
                leverage=1,
                confidence=0,
                risk_level=RiskLevel.LOW,
            )
            results.append(
                AssetValidation(
                    symbol,
                    Action.HOLD.value,
                    Status.ACCEPTED,
                    ["no decision in the model's answer: treated as hold"],
                    None,
                    hold,
                )
            )
    report = ValidationReport(assets=results)
    _fit_balance(report, positions, account.available_usd)
    if decision.total_allocation_usd is not None:
        committed = sum(_opening_margin(v, positions) for v in report.assets)
        if abs(committed - decision.total_allocation_usd) > max(1.0, 0.01 * committed):
            report.notes.append(
                f"total_allocation_usd {fmt(decision.total_allocation_usd)} differs from the sum of "
                f"validated allocations {fmt(committed)}; the sum is used"
            )
    return report


def _fit_balance(report: ValidationReport, positions: Mapping[str, Position], available: float) -> None:
    """Scale new margin down pro rata when it exceeds the available balance."""
    wanted = sum(_opening_margin(v, positions) for v in report.assets if v.executable)
    if wanted <= available + 1e-9 or wanted <= 0:
        return
    factor = max(available, 0.0) / wanted
    report.notes.append(
        f"new margin {fmt(wanted)} USD exceeds the available balance {fmt(available)} USD: scaled by {factor:.4f}"
    )
    for v in report.assets:
        d = v.final
        if not v.executable or d is None or _opening_margin(v, positions) <= 0:
            continue
        if d.action is Action.ADJUST_POSITION:
            position = positions[d.symbol]
            new_allocation = position.margin + (d.allocation_usd - position.margin) * factor
        else:
            new_allocation = d.allocation_usd * factor
        if new_allocation <= 0:
            v.status = Status.REJECTED
            v.reasons.append("no available balance left for this trade")
            v.final = None
            continue
        v.reasons.append(
            f"allocation_usd {fmt(d.allocation_usd)} -> {fmt(new_allocation)} to fit the available balance "
            f"{fmt(available)} USD"
        )
        v.final = d.model_copy(update={"allocation_usd": new_allocation})
        v.status = Status.AMENDED

"""Validation of a decision against the limits: pure functions, values in and values out.

Every limit is enforced here, whatever the prompt said. Each asset decision ends ``accepted``,
``amended`` (with what changed) or ``rejected`` (with every reason); one bad asset never voids the
others. Risk is measured on the live mark price: stops and targets must sit on the right side of it,
reward/risk is taken from the real entry, and a stop must trigger before the estimated liquidation.

Some limits need facts beyond the decision, the account and the marks (the time, ATR, when positions
opened and closed, the start-of-day equity, the taker fee): they come in :class:`RiskInputs`. Without
them those checks are skipped, and the report's notes say which.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from llmtrader.core.account import AccountState, Position
from llmtrader.core.decision import OPENING_ACTIONS, Action, AssetDecision, LenientDecision, RiskLevel
from llmtrader.core.formatting import fmt
from llmtrader.core.limits import Limits
from llmtrader.core.times import utc_minute

UNKNOWN_SYMBOL = "(none)"


class Status(StrEnum):
    ACCEPTED = "accepted"
    AMENDED = "amended"
    REJECTED = "rejected"
    # Not a validator verdict: an order no model decided (a close by hand) that the person answered no to.
    DECLINED = "declined"


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


@dataclass(frozen=True)
class RiskInputs:
    """Facts the cycle gathers for the limits that need more than the decision, account and marks.

    Times are epoch milliseconds, prices are in quote units (USD), ``taker_fee`` is a fraction of notional.
    A symbol missing from a mapping means "unknown" (ATR) or "never" (closes and entries).
    """

    now_ms: int
    interval_ms: int  # the decision interval, for the DCA schedule
    taker_fee: float  # e.g. 0.00035 for 0.035 %
    atr: Mapping[str, float] = field(default_factory=dict)  # ATR(14) on the decision interval, per symbol
    last_close_ms: Mapping[str, int] = field(default_factory=dict)  # when the symbol's last position closed
    opened_at_ms: Mapping[str, int] = field(default_factory=dict)  # when the open position was opened
    last_entry_ms: Mapping[str, int] = field(default_factory=dict)  # the last opening or adding fill
    day_start_equity: float | None = None  # the account's equity at 00:00 UTC today


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


def _minutes_left(total_minutes: float, elapsed_ms: int) -> int:
    return max(1, math.ceil(total_minutes - elapsed_ms / 60_000))


@dataclass(frozen=True)
class _Facts:
    """What every asset check may consult besides the decision: limits, live account facts, inputs."""

    limits: Limits
    position_cap: float
    position_cap_label: str
    inputs: RiskInputs | None
    daily_loss_reason: str | None


def _position_cap(limits: Limits, equity: float) -> tuple[float, str]:
    """The notional cap of one position now: the settings' cap and max_position_pct of the live equity."""
    cap = limits.max_position_usd
    label = f"{fmt(cap)} USD"
    if limits.max_position_pct is not None:
        by_equity = max(equity, 0.0) * limits.max_position_pct / 100
        if by_equity < cap:
            cap = by_equity
            label = f"{fmt(cap)} USD ({fmt(limits.max_position_pct)}% of equity {fmt(equity)} USD)"
    return cap, label


def _daily_loss_reason(limits: Limits, equity: float, inputs: RiskInputs | None) -> str | None:
    """Why openings and increases are refused today, or None while the daily loss limit is not reached."""
    if limits.daily_loss_limit_pct is None or inputs is None or inputs.day_start_equity is None:
        return None
    start = inputs.day_start_equity
    if start <= 0:
        return None
    loss = start - equity
    loss_pct = loss / start * 100
    if loss_pct + 1e-9 < limits.daily_loss_limit_pct:
        return None
    return (
        f"daily loss limit reached: today's loss {fmt(loss)} USD is {loss_pct:.2f}% of the start-of-day equity "
        f"{fmt(start)} USD (limit {fmt(limits.daily_loss_limit_pct)}%): no openings or increases until 00:00 UTC"
    )


def _check_stop_band(symbol: str, entry: float, sl: float, f: _Facts) -> list[str]:
    limits = f.limits
    if f.inputs is None or (limits.min_stop_atr <= 0 and limits.max_stop_atr is None):
        return []
    atr = f.inputs.atr.get(symbol)
    if atr is None or not atr > 0:
        return [f"ATR14 of {symbol} on the decision interval is unknown: the stop distance cannot be checked"]
    distance = abs(entry - sl)
    multiple = distance / atr
    if multiple + 1e-9 < limits.min_stop_atr:
        return [
            f"stop distance {fmt(distance)} is {multiple:.2f} ATR (ATR14 {fmt(atr)}), below the minimum "
            f"{fmt(limits.min_stop_atr)} ATR"
        ]
    if limits.max_stop_atr is not None and multiple - 1e-9 > limits.max_stop_atr:
        return [
            f"stop distance {fmt(distance)} is {multiple:.2f} ATR (ATR14 {fmt(atr)}), above the maximum "
            f"{fmt(limits.max_stop_atr)} ATR"
        ]
    return []


def _check_stop(symbol: str, side: str, ref: float, sl: float, liq: float, liq_label: str, f: _Facts) -> list[str]:
    """A stop that triggers before the liquidation price ``liq`` and lies in the ATR band from ``ref``."""
    reasons = []
    beyond = sl <= liq if side == "long" else sl >= liq
    if beyond:
        reasons.append(f"sl_price {fmt(sl)} lies beyond the {liq_label}: the stop would never trigger")
    return reasons + _check_stop_band(symbol, ref, sl, f)


def _check_fee_target(entry: float, tp: float, f: _Facts, ref_name: str = "entry") -> list[str]:
    k = f.limits.min_target_fee_multiple
    if f.inputs is None or k <= 0:
        return []
    round_trip = 2 * f.inputs.taker_fee
    need = k * round_trip * entry
    distance = abs(tp - entry)
    if distance + 1e-12 >= need:
        return []
    return [
        f"target distance {fmt(distance)} ({distance / entry * 100:.3f}% of {ref_name}) below {fmt(k)} x the "
        f"round-trip taker fee {round_trip * 100:.3f}%: it must be at least {fmt(need)} ({need / entry * 100:.3f}%)"
    ]


def _check_cooldown(symbol: str, f: _Facts) -> list[str]:
    minutes = f.limits.cooldown_minutes
    if f.inputs is None or minutes <= 0:
        return []
    closed = f.inputs.last_close_ms.get(symbol)
    if closed is None:
        return []
    elapsed = f.inputs.now_ms - closed
    if elapsed >= minutes * 60_000:
        return []
    return [
        f"cooldown: the {symbol} position closed at {utc_minute(closed)}; no new opening for {fmt(minutes)} min after "
        f"a close: {_minutes_left(minutes, elapsed)} min remaining"
    ]


def _check_min_hold(symbol: str, what: str, f: _Facts) -> list[str]:
    minutes = f.limits.min_hold_minutes
    if f.inputs is None or minutes <= 0:
        return []
    opened = f.inputs.opened_at_ms.get(symbol)
    if opened is None:
        return []
    age = f.inputs.now_ms - opened
    if age >= minutes * 60_000:
        return []
    return [
        f"minimum hold: the {symbol} position opened {max(age, 0) // 60_000} min ago and may not be {what} "
        f"before {fmt(minutes)} min: {_minutes_left(minutes, age)} min remaining (its stop-loss and take-profit "
        "still act)"
    ]


def _check_dca_schedule(d: AssetDecision, mark: float, position: Position | None, f: _Facts) -> list[str]:
    """An opening before the schedule is refused unless it averages down (a long) or up (a short) far enough."""
    dca = f.limits.dca
    if dca is None or f.inputs is None:
        return []
    last = f.inputs.last_entry_ms.get(d.symbol)
    every_ms = dca.every_intervals * f.inputs.interval_ms
    if last is None or f.inputs.now_ms - last >= every_ms:
        return []
    elapsed = f.inputs.now_ms - last
    side = _side_of(d.action)
    schedule = (
        f"DCA schedule: the last entry on {d.symbol} was {max(elapsed, 0) // 60_000} min ago, the next scheduled "
        f"one is in {_minutes_left(every_ms / 60_000, elapsed)} min (one every {dca.every_intervals} intervals of "
        f"{fmt(f.inputs.interval_ms / 60_000)} min)"
    )
    if position is None or position.side != side:
        return [f"{schedule}; an earlier one needs an open {side} to average into"]
    pct = dca.average_down_pct
    if side == "long":
        threshold = position.entry_price * (1 - pct / 100)
        if mark <= threshold:
            return []
        where = f"at most {fmt(threshold)} ({fmt(pct)}% below"
    else:
        threshold = position.entry_price * (1 + pct / 100)
        if mark >= threshold:
            return []
        where = f"at least {fmt(threshold)} ({fmt(pct)}% above"
    return [
        f"{schedule}; an earlier one needs the mark {where} the average entry {fmt(position.entry_price)}), "
        f"and it is {fmt(mark)}"
    ]


def _validate_open(
    d: AssetDecision,
    mark: float,
    position: Position | None,
    f: _Facts,
) -> tuple[AssetDecision | None, list[str], list[str]]:
    """Checks for buy and sell. Returns (amended decision or None, amendments, rejections)."""
    limits = f.limits
    side = _side_of(d.action)
    amendments: list[str] = []
    rejections: list[str] = []
    dca = limits.dca
    if dca is not None and dca.long_only and d.action is Action.SELL:
        rejections.append("the strategy is long only (DCA): sell may not open or add to a short")
    if position is not None and position.side != side:
        rejections.append(f"a {position.side} position is open; close it before opening a {side}")
    if f.daily_loss_reason is not None:
        rejections.append(f.daily_loss_reason)
    if position is None:
        rejections += _check_cooldown(d.symbol, f)
    rejections += _check_dca_schedule(d, mark, position, f)
    leverage = d.leverage
    if leverage > limits.max_leverage:
        amendments.append(f"leverage {leverage} above the limit {limits.max_leverage}: set to {limits.max_leverage}")
        leverage = limits.max_leverage
    allocation = d.allocation_usd
    if allocation <= 0:
        rejections.append("allocation_usd must be positive to open or add")
    if dca is not None and allocation > dca.allocation_usd + 1e-9:
        amendments.append(
            f"allocation_usd {fmt(allocation)} above the DCA allocation {fmt(dca.allocation_usd)} USD per buy: "
            f"set to {fmt(dca.allocation_usd)}"
        )
        allocation = dca.allocation_usd
    existing = position.notional if position is not None and position.side == side else 0.0
    caps = [(f.position_cap, f.position_cap_label)]
    if dca is not None:
        caps.append((dca.max_position_usd, f"{fmt(dca.max_position_usd)} USD (the DCA cap on the whole position)"))
    for cap, label in caps:
        if allocation > 0 and allocation * leverage + existing > cap + 1e-9:
            room = cap - existing
            if room <= 0:
                rejections.append(f"the position's notional {fmt(existing)} USD is already at the limit {label}")
                break
            new_allocation = room / leverage
            amendments.append(
                f"notional {fmt(allocation * leverage + existing)} USD above the limit {label}: "
                f"allocation_usd {fmt(allocation)} -> {fmt(new_allocation)}"
            )
            allocation = new_allocation
    entry = d.entry_price if d.entry_price is not None else mark
    protection = _check_protection(side, mark, entry, d.tp_price, d.sl_price, need_both=True)
    rejections += protection
    if d.tp_price is not None and d.sl_price is not None and not protection:
        risk = abs(entry - d.sl_price)
        reward = abs(d.tp_price - entry)
        ratio = reward / risk if risk > 0 else 0.0
        if ratio < limits.min_reward_risk:
            rejections.append(
                f"reward/risk {ratio:.2f} (entry {fmt(entry)}, tp {fmt(d.tp_price)}, sl {fmt(d.sl_price)}) "
                f"below the minimum {fmt(limits.min_reward_risk)}"
            )
        liq = liquidation_price(entry, leverage, side, limits.maintenance_margin_rate)
        label = f"estimated liquidation price {fmt(liq)} at {leverage}x"
        rejections += _check_stop(d.symbol, side, entry, d.sl_price, liq, label, f)
        rejections += _check_fee_target(entry, d.tp_price, f)
    if d.confidence < limits.min_confidence:
        rejections.append(f"confidence {fmt(d.confidence, 3)} below the floor {fmt(limits.min_confidence, 3)}")
    if rejections:
        return None, amendments, rejections
    final = d.model_copy(update={"leverage": leverage, "allocation_usd": allocation})
    return final, amendments, rejections


def _position_liquidation(position: Position, mmr: float) -> tuple[float, str]:
    """The liquidation price a stop must beat, and how to name it: the venue's figure for an isolated position,
    else (the venue reports none, or the margin is cross) the estimate an opening uses."""
    if position.liquidation_price is not None and position.liquidation_price > 0 and position.margin_type != "cross":
        return position.liquidation_price, f"liquidation price {fmt(position.liquidation_price)}"
    liq = liquidation_price(position.entry_price, position.leverage, position.side, mmr)
    return liq, f"estimated liquidation price {fmt(liq)} at {position.leverage}x"


def _check_new_levels(d: AssetDecision, mark: float, position: Position, f: _Facts) -> list[str]:
    """A new stop or target of an open position, checked as an opening's are, from the current mark: the right
    side of it, the stop before the liquidation price and inside the ATR band, the target past the fees.
    (Reward/risk is an opening's measure: a stop moved up behind the price must not be refused for it.)"""
    reasons = _check_protection(position.side, mark, mark, d.tp_price, d.sl_price, need_both=False)
    if reasons:
        return reasons
    if d.sl_price is not None:
        liq, label = _position_liquidation(position, f.limits.maintenance_margin_rate)
        reasons += _check_stop(d.symbol, position.side, mark, d.sl_price, liq, label, f)
    if d.tp_price is not None:
        reasons += _check_fee_target(mark, d.tp_price, f, "the mark")
    return reasons


def _validate_existing(
    d: AssetDecision, mark: float, position: Position | None, f: _Facts
) -> tuple[AssetDecision | None, list[str], list[str]]:
    """Checks for close_position, adjust_orders and adjust_position: they need an open position."""
    if position is None:
        return None, [], [f"{d.action.value} needs an open position on {d.symbol}; there is none"]
    limits = f.limits
    amendments: list[str] = []
    rejections: list[str] = []
    if d.action is Action.CLOSE_POSITION:
        rejections += _check_min_hold(d.symbol, "closed", f)
    elif d.action is Action.ADJUST_ORDERS:
        if d.tp_price is None and d.sl_price is None:
            rejections.append("adjust_orders needs a new tp_price or sl_price")
        rejections += _check_new_levels(d, mark, position, f)
    elif d.action is Action.ADJUST_POSITION:
        rejections += _check_new_levels(d, mark, position, f)
        if d.allocation_usd <= 0:
            rejections.append("adjust_position needs allocation_usd > 0 (use close_position to close)")
        margin = position.margin
        if d.allocation_usd < margin - 1e-9:
            rejections += _check_min_hold(d.symbol, "reduced", f)
        elif d.allocation_usd > margin + 1e-9:
            if f.daily_loss_reason is not None:
                rejections.append(f.daily_loss_reason)
            if limits.dca is not None:
                rejections.append(
                    f"adjust_position may not enlarge a DCA position (margin {fmt(margin)} -> "
                    f"{fmt(d.allocation_usd)} USD): add with a scheduled buy"
                )
        notional = d.allocation_usd * position.leverage
        if notional > f.position_cap + 1e-9:
            new_allocation = f.position_cap / position.leverage
            amendments.append(
                f"notional {fmt(notional)} USD above the limit {f.position_cap_label}: "
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


def _added_notional(v: AssetValidation, positions: Mapping[str, Position]) -> float:
    """Notional a surviving decision would add to the book (closes and reductions are not counted)."""
    d = v.final
    if d is None:
        return 0.0
    if d.action in OPENING_ACTIONS:
        return d.allocation_usd * d.leverage
    if d.action is Action.ADJUST_POSITION:
        position = positions.get(d.symbol)
        if position is None:
            return 0.0
        return max(0.0, (d.allocation_usd - position.margin) * position.leverage)
    return 0.0


def _skipped_checks(limits: Limits, inputs: RiskInputs | None) -> list[str]:
    """Notes naming the enforced limits that could not be checked for want of inputs."""
    if inputs is None:
        needed = [
            ("stop distance in ATR", limits.min_stop_atr > 0 or limits.max_stop_atr is not None),
            ("fee-aware target", limits.min_target_fee_multiple > 0),
            ("cooldown", limits.cooldown_minutes > 0),
            ("minimum hold", limits.min_hold_minutes > 0),
            ("daily loss limit", limits.daily_loss_limit_pct is not None),
            ("DCA schedule", limits.dca is not None),
        ]
        names = [name for name, active in needed if active]
        return [f"not checked (no risk inputs): {', '.join(names)}"] if names else []
    if limits.daily_loss_limit_pct is not None and inputs.day_start_equity is None:
        return ["not checked: daily loss limit (the start-of-day equity is unknown)"]
    return []


def validate_decision(
    decision: LenientDecision,
    *,
    symbols: Sequence[str],
    marks: Mapping[str, float],
    account: AccountState,
    limits: Limits,
    inputs: RiskInputs | None = None,
) -> ValidationReport:
    """Validate every asset decision, then the portfolio as a whole.

    ``inputs`` carries the facts the time-, ATR-, fee- and loss-based limits need; without it those
    checks are skipped and the report's notes name them.
    """
    results: list[AssetValidation] = []
    seen: set[str] = set()
    positions = {p.symbol: p for p in account.positions}
    equity = account.equity_usd
    cap, cap_label = _position_cap(limits, equity)
    facts = _Facts(limits, cap, cap_label, inputs, _daily_loss_reason(limits, equity, inputs))
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
        symbol = d.symbol.strip().upper()
        if symbol != d.symbol:
            d = d.model_copy(update={"symbol": symbol})
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
            final, amendments, rejections = _validate_open(d, mark, position, facts)
        else:
            final, amendments, rejections = _validate_existing(d, mark, position, facts)
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
    report = ValidationReport(assets=results, notes=_skipped_checks(limits, inputs))
    _limit_open_positions(report, positions, limits)
    _fit_exposure(report, positions, limits, equity)
    _fit_balance(report, positions, account.available_usd)
    if decision.total_allocation_usd is not None:
        committed = sum(_opening_margin(v, positions) for v in report.assets)
        if abs(committed - decision.total_allocation_usd) > max(1.0, 0.01 * committed):
            report.notes.append(
                f"total_allocation_usd {fmt(decision.total_allocation_usd)} differs from the sum of "
                f"validated allocations {fmt(committed)}; the sum is used"
            )
    return report


def _reject(v: AssetValidation, reason: str) -> None:
    v.status = Status.REJECTED
    v.reasons.append(reason)
    v.final = None


def _limit_open_positions(report: ValidationReport, positions: Mapping[str, Position], limits: Limits) -> None:
    """Refuse the openings beyond max_open_positions, the lowest confidence first."""
    if limits.max_open_positions is None:
        return
    new = [
        v
        for v in report.assets
        if v.executable and v.final is not None and v.final.action in OPENING_ACTIONS and v.symbol not in positions
    ]
    room = max(0, limits.max_open_positions - len(positions))
    if len(new) <= room:
        return
    # Stable sort: between equal confidences the earlier answer keeps its place.
    ranked = sorted(new, key=lambda v: -(v.final.confidence if v.final is not None else 0.0))
    for v in ranked[room:]:
        confidence = v.final.confidence if v.final is not None else 0.0
        _reject(
            v,
            f"at most {limits.max_open_positions} open positions: {len(positions)} open and {len(new)} new "
            f"openings; {room} kept by confidence, this one's {fmt(confidence, 3)} is too low",
        )


def _fit_exposure(report: ValidationReport, positions: Mapping[str, Position], limits: Limits, equity: float) -> None:
    """Scale new notional down pro rata when the book would exceed max_total_exposure_pct of equity."""
    if limits.max_total_exposure_pct is None:
        return
    cap = max(equity, 0.0) * limits.max_total_exposure_pct / 100
    current = sum(p.notional for p in positions.values())
    adding = [v for v in report.assets if v.executable and _added_notional(v, positions) > 0]
    wanted = sum(_added_notional(v, positions) for v in adding)
    if not adding or current + wanted <= cap + 1e-9:
        return
    label = f"{fmt(cap)} USD ({fmt(limits.max_total_exposure_pct)}% of equity {fmt(equity)} USD)"
    room = cap - current
    if room <= 0:
        for v in adding:
            _reject(v, f"total exposure {fmt(current)} USD of open positions is already at the limit {label}")
        return
    factor = room / wanted
    report.notes.append(
        f"total exposure {fmt(current + wanted)} USD would exceed the limit {label}: new notional scaled by "
        f"{factor:.4f}"
    )
    for v in adding:
        d = v.final
        if d is None:
            continue
        if d.action is Action.ADJUST_POSITION:
            margin = positions[d.symbol].margin
            new_allocation = margin + (d.allocation_usd - margin) * factor
        else:
            new_allocation = d.allocation_usd * factor
        v.reasons.append(
            f"total exposure {fmt(current + wanted)} USD above the limit {label}: "
            f"allocation_usd {fmt(d.allocation_usd)} -> {fmt(new_allocation)}"
        )
        v.final = d.model_copy(update={"allocation_usd": new_allocation})
        v.status = Status.AMENDED


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


RECHECK_PREFIX = "re-checked against the positions read before sending: "


def adds_risk(v: AssetValidation, positions: Mapping[str, Position]) -> bool:
    """True for a surviving decision that opens or adds (what the caps limit)."""
    return v.executable and (_added_notional(v, positions) > 0 or _opening_margin(v, positions) > 0)


def recheck_caps(
    report: ValidationReport,
    *,
    marks: Mapping[str, float],
    account: AccountState,
    limits: Limits,
    inputs: RiskInputs | None = None,
) -> ValidationReport:
    """``report`` with its surviving decisions validated again by :func:`validate_decision` against
    ``account`` as read right before the orders are sent: another trader (an agent beside a manual
    ``decide``) may have opened positions since the decision was validated, and every cap (position size,
    open positions, total exposure, balance) must hold against what is open now. A decision the second pass
    rejects or amends takes its verdict, with the reasons prefixed by :data:`RECHECK_PREFIX`; the others are
    kept as they were."""
    survivors = [v.final for v in report.assets if v.executable and v.final is not None]
    if not survivors:
        return report
    again = validate_decision(
        LenientDecision(
            assets=survivors, invalid=[], portfolio_rationale="", total_allocation_usd=None, portfolio_risk_level=None
        ),
        symbols=[d.symbol for d in survivors],
        marks=marks,
        account=account,
        limits=limits,
        inputs=inputs,
    )
    verdicts = {v.symbol: v for v in again.assets}
    out: list[AssetValidation] = []
    for v in report.assets:
        w = verdicts.get(v.symbol) if v.executable else None
        if w is None or (w.status is not Status.REJECTED and w.final == v.final):
            out.append(v)
            continue
        reasons = [*v.reasons, *(RECHECK_PREFIX + r for r in w.reasons)]
        if w.final is None or w.status is Status.REJECTED:
            out.append(AssetValidation(v.symbol, v.action, Status.REJECTED, reasons, v.proposed, None))
        else:
            out.append(AssetValidation(v.symbol, v.action, Status.AMENDED, reasons, v.proposed, w.final))
    notes = [*report.notes, *(RECHECK_PREFIX + n for n in again.notes if n not in report.notes)]
    return ValidationReport(assets=out, notes=notes)

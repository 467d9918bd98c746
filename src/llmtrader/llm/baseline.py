"""The built-in ``baseline`` decision client: a deterministic rule-based policy, no network.

Trend plus momentum on the decision interval, confirmed by the highest timeframe, with ATR-based stop
and target. It serves offline runs and tests, and it is the yardstick an LLM must beat.

Its answer goes through the same schema as a model's, asset by asset: an entry that cannot be valid (in extreme
volatility a target 3 ATR below the mark is at or below 0) is recorded as rejected, never fatal to a run.

It reads the strategy in force (the context's limits, and the validator's facts when the cycle hands them
over) and stays inside it, so that it trades under every preset: the stop distance inside the ATR band, the
target far enough for the reward/risk and fee minimums, the confidence at the minimum, no opening during a
cooldown or beyond the position count, no closing before the minimum hold. Under a DCA strategy it
accumulates instead: ``allocation_usd`` every ``every_intervals`` intervals, and earlier on a dip of
``average_down_pct`` below the average entry, up to the cap, long only, with a wide stop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from llmtrader.core.context import AssetContext, DecisionContext, FrameContext
from llmtrader.core.decision import Action, AssetDecision, PortfolioDecision, RiskLevel, salvage_decision
from llmtrader.core.limits import Limits
from llmtrader.core.risk import RiskInputs
from llmtrader.llm.port import CallRecord, DecisionRequest, ModelAnswer

STOP_ATR = 1.5
TARGET_ATR = 3.0
ALLOCATION_SHARE = 0.10  # of the available balance, per new position
DCA_STOP_ATR = 3.0  # an accumulated position's stop: wide, as averaging down needs room
MARGIN = 1.1  # how far inside a limit the baseline stays (rounding never pushes it across)


def stop_multiple(limits: Limits, wanted: float) -> float:
    """``wanted`` ATR, moved inside the strategy's stop band [min_stop_atr, max_stop_atr]."""
    low = limits.min_stop_atr * MARGIN
    high = limits.max_stop_atr / MARGIN if limits.max_stop_atr is not None else None
    value = max(wanted, low)
    return min(value, high) if high is not None and high >= low else value


def target_distance(limits: Limits, stop: float, mark: float, taker_fee: float) -> float:
    """The target's distance from the mark for a stop ``stop`` away: at least TARGET_ATR/STOP_ATR times the
    stop, the strategy's reward/risk and its minimum multiple of the round-trip taker fee (each with a margin)."""
    reward = stop * max(TARGET_ATR / STOP_ATR, limits.min_reward_risk * MARGIN)
    fees = limits.min_target_fee_multiple * 2 * taker_fee * mark * MARGIN
    return max(reward, fees)


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def _trend(frame: FrameContext) -> int:
    """+1 up, -1 down, 0 unclear, from EMA20/EMA50 and the close."""
    ind = frame.indicators
    ema20, ema50, close = ind.get("ema20"), ind.get("ema50"), frame.close
    if ema20 is None or ema50 is None or close is None:
        return 0
    if ema20 > ema50 and close > ema20:
        return 1
    if ema20 < ema50 and close < ema20:
        return -1
    return 0


# A typical taker fee, for the fee minimum when the cycle hands over no facts (the paper default, 0.035 %).
DEFAULT_TAKER_FEE = 0.00035


def _decide_asset(
    asset: AssetContext, ctx: DecisionContext, inputs: RiskInputs | None, slots: list[int]
) -> dict[str, Any]:
    """The asset's entry of the answer, as JSON values (an opening is not validated here: see the module).
    ``slots`` holds how many more positions may open (decremented by each opening)."""
    frames = asset.frames
    frame = frames.get(ctx.interval) or next(iter(frames.values()))
    higher = list(frames.values())[-1]
    ind = frame.indicators
    trend, higher_trend = _trend(frame), _trend(higher)
    rsi, hist, atr = ind.get("rsi14"), ind.get("macd_hist"), ind.get("atr14")
    position = ctx.account.position(asset.symbol)
    mark = asset.mark_price
    leverage = ctx.limits.max_leverage

    def hold(why: str) -> dict[str, Any]:
        return AssetDecision(
            symbol=asset.symbol, action=Action.HOLD, rationale=why, allocation_usd=0, leverage=1,
            confidence=0.5, risk_level=RiskLevel.LOW,
        ).model_dump(mode="json")  # fmt: skip

    limits = ctx.limits
    now = inputs.now_ms if inputs is not None else ctx.as_of_ms
    fee = inputs.taker_fee if inputs is not None else DEFAULT_TAKER_FEE
    if limits.dca is not None:
        return _accumulate(asset, ctx, inputs, slots, hold)
    if position is not None:
        against = (position.side == "long" and trend < 0) or (position.side == "short" and trend > 0)
        opened = inputs.opened_at_ms.get(asset.symbol) if inputs is not None else None
        if against and opened is not None and now - opened < limits.min_hold_minutes * 60_000:
            return hold(f"the {frame.interval} trend turned against the {position.side}, inside the minimum hold")
        if against:
            return AssetDecision(
                symbol=asset.symbol, action=Action.CLOSE_POSITION, allocation_usd=0,
                leverage=position.leverage, confidence=0.6, risk_level=RiskLevel.MEDIUM,
                rationale=f"trend on {frame.interval} turned against the {position.side}",
            ).model_dump(mode="json")  # fmt: skip
        return hold(f"keep the {position.side}: the {frame.interval} trend has not turned")
    if rsi is None or hist is None or atr is None or atr <= 0:
        return hold("not enough closed candles for the indicators")
    long_ok = trend > 0 and higher_trend >= 0 and 50 <= rsi <= 70 and hist > 0
    short_ok = trend < 0 and higher_trend <= 0 and 30 <= rsi <= 50 and hist < 0
    if not (long_ok or short_ok):
        return hold(f"no aligned signal (trend {trend}, higher {higher_trend}, RSI {rsi:.1f})")
    closed = inputs.last_close_ms.get(asset.symbol) if inputs is not None else None
    if closed is not None and now - closed < limits.cooldown_minutes * 60_000:
        return hold(f"aligned signal, inside the cooldown of {limits.cooldown_minutes:g} min after a close")
    if slots[0] <= 0:
        return hold("aligned signal, but the strategy's maximum of open positions is reached")
    sign = 1 if long_ok else -1
    allocation = _allocation(ctx, ctx.account.available_usd * ALLOCATION_SHARE, leverage)
    if allocation <= 0:
        return hold("aligned signal, but no room left under the exposure limits")
    slots[0] -= 1
    confidence = max(0.7 if higher_trend == trend else 0.6, limits.min_confidence)
    stop_atr = stop_multiple(limits, STOP_ATR)
    target = target_distance(limits, stop_atr * atr, mark, fee)
    return {
        "symbol": asset.symbol,
        "action": (Action.BUY if long_ok else Action.SELL).value,
        "rationale": (
            f"{'up' if long_ok else 'down'}trend on {frame.interval} (EMA20 vs EMA50), RSI {rsi:.1f}, "
            f"MACD histogram {hist:+.4g}; stop {stop_atr:.3g} ATR, target {target / atr:.3g} ATR"
        ),
        "allocation_usd": _round(allocation),
        "leverage": leverage,
        "entry_price": None,
        # A target (or stop) at or below 0 fails the schema: the entry is then rejected, as a model's would be.
        "tp_price": _round(mark + sign * target),
        "sl_price": _round(mark - sign * stop_atr * atr),
        "confidence": round(min(confidence, 1.0), 4),
        "risk_level": RiskLevel.MEDIUM.value,
    }


def _allocation(ctx: DecisionContext, wanted: float, leverage: int) -> float:
    """``wanted`` margin, cut to the position cap and the room left under the total exposure limit."""
    limits = ctx.limits
    cap = limits.max_position_usd
    if limits.max_position_pct is not None:
        cap = min(cap, ctx.account.equity_usd * limits.max_position_pct / 100)
    if limits.max_total_exposure_pct is not None:
        used = sum(p.notional for p in ctx.account.positions)
        cap = min(cap, ctx.account.equity_usd * limits.max_total_exposure_pct / 100 / MARGIN - used)
    return max(0.0, min(wanted, ctx.account.available_usd / MARGIN, cap / MARGIN / leverage))


def _accumulate(
    asset: AssetContext,
    ctx: DecisionContext,
    inputs: RiskInputs | None,
    slots: list[int],
    hold: Callable[[str], dict[str, Any]],
) -> dict[str, Any]:
    """The DCA policy: a scheduled buy of ``allocation_usd`` every ``every_intervals``, an earlier one on a dip
    below the average entry, never beyond the position cap; the position is never closed by hand."""
    limits = ctx.limits
    dca = limits.dca
    assert dca is not None
    frame = asset.frames.get(ctx.interval) or next(iter(asset.frames.values()))
    atr = frame.indicators.get("atr14")
    position = ctx.account.position(asset.symbol)
    mark = asset.mark_price
    if position is not None and position.side == "short":
        return hold("a DCA strategy accumulates longs; the short is left to its stop and target")
    if atr is None or atr <= 0:
        return hold("not enough closed candles for the ATR")
    last = inputs.last_entry_ms.get(asset.symbol) if inputs is not None else None
    now = inputs.now_ms if inputs is not None else ctx.as_of_ms
    every_ms = dca.every_intervals * inputs.interval_ms if inputs is not None else 0
    due = position is None if inputs is None else (last is None or now - last >= every_ms)
    dip = position is not None and mark <= position.entry_price * (1 - dca.average_down_pct / 100)
    if not (due or dip):
        return hold(f"DCA: the next scheduled buy is not due, and no {dca.average_down_pct:g}% dip")
    if position is None:
        if slots[0] <= 0:
            return hold("DCA: the strategy's maximum of open positions is reached")
        closed = inputs.last_close_ms.get(asset.symbol) if inputs is not None else None
        if closed is not None and now - closed < limits.cooldown_minutes * 60_000:
            return hold(f"DCA: inside the cooldown of {limits.cooldown_minutes:g} min after a close")
    leverage = 1  # accumulation, not leverage: the margin is the notional
    room = dca.max_position_usd / MARGIN - (position.notional if position is not None else 0.0)
    allocation = min(_allocation(ctx, dca.allocation_usd, leverage), room)
    if allocation < max(dca.allocation_usd * 0.1, 10.0):
        return hold("DCA: the position is at its cap")
    if position is None:
        slots[0] -= 1
    fee = inputs.taker_fee if inputs is not None else DEFAULT_TAKER_FEE
    stop_atr = stop_multiple(limits, DCA_STOP_ATR)
    target = target_distance(limits, stop_atr * atr, mark, fee)
    why = "the scheduled buy" if due else f"a dip of {dca.average_down_pct:g}% below the average entry"
    return {
        "symbol": asset.symbol,
        "action": Action.BUY.value,
        "rationale": f"DCA: {why}; stop {stop_atr:.3g} ATR, target {target / atr:.3g} ATR",
        "allocation_usd": _round(allocation),
        "leverage": leverage,
        "entry_price": None,
        "tp_price": _round(mark + target),
        "sl_price": _round(mark - stop_atr * atr),
        "confidence": round(min(max(0.6, limits.min_confidence), 1.0), 4),
        "risk_level": RiskLevel.LOW.value,
    }


def baseline_answer(ctx: DecisionContext, inputs: RiskInputs | None = None) -> dict[str, Any]:
    """The rule-based answer for every asset of the context, as JSON values (a model's answer, parsed);
    ``inputs`` (the validator's facts) let it respect cooldowns, minimum holds and the DCA schedule."""
    free = ctx.limits.max_open_positions
    slots = [free - len(ctx.account.positions) if free is not None else len(ctx.symbols)]
    assets = [_decide_asset(ctx.assets[s], ctx, inputs, slots) for s in ctx.symbols]
    opening = [a for a in assets if a["action"] in (Action.BUY.value, Action.SELL.value)]
    return {
        "assets": assets,
        "portfolio_rationale": (
            f"baseline rules: {len(opening)} new position(s) where trend and momentum agree; hold elsewhere"
        ),
        "total_allocation_usd": _round(sum(a["allocation_usd"] for a in opening)),
        "portfolio_risk_level": (RiskLevel.MEDIUM if opening else RiskLevel.LOW).value,
    }


def baseline_decision(ctx: DecisionContext, inputs: RiskInputs | None = None) -> PortfolioDecision:
    """The rule-based decision for every asset of the context; raises ValidationError when an entry cannot be
    valid (the client records such an entry as rejected instead)."""
    return PortfolioDecision.model_validate(baseline_answer(ctx, inputs))


class BaselineClient:
    """The ``baseline`` model: same protocol and schema as an LLM, no network, zero cost."""

    model = "baseline"
    base_url = "builtin:baseline"
    reads_prompt = False  # it decides from the context's numbers: no prompt is rendered for it

    async def decide(self, request: DecisionRequest) -> ModelAnswer:
        started = time.monotonic()
        answer = baseline_answer(request.context, request.inputs)
        text = json.dumps(answer, separators=(",", ":"))  # the raw answer, as a model's would be recorded
        decision = salvage_decision(answer)  # each entry validated on its own: a bad one is rejected, not fatal
        errors = [line for bad in decision.invalid for line in bad.errors]
        latency = int((time.monotonic() - started) * 1000)
        call = CallRecord(attempt=1, response_format="builtin", raw_response=text, cost_usd=0.0, latency_ms=latency)
        return ModelAnswer(text, decision, [call], 0, "builtin", parse_errors=errors)

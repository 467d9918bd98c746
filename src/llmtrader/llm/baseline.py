"""The built-in ``baseline`` decision client: a deterministic rule-based policy, no network.

Trend plus momentum on the decision interval, confirmed by the highest timeframe, with ATR-based stop
and target. It serves offline runs and tests, and it is the yardstick an LLM must beat.

Its answer goes through the same schema as a model's, asset by asset: an entry that cannot be valid (in extreme
volatility a target 3 ATR below the mark is at or below 0) is recorded as rejected, never fatal to a run.
"""

from __future__ import annotations

import json
import time
from typing import Any

from llmtrader.core.context import AssetContext, DecisionContext, FrameContext
from llmtrader.core.decision import Action, AssetDecision, PortfolioDecision, RiskLevel, salvage_decision
from llmtrader.llm.port import CallRecord, DecisionRequest, ModelAnswer

STOP_ATR = 1.5
TARGET_ATR = 3.0
ALLOCATION_SHARE = 0.10  # of the available balance, per new position


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


def _decide_asset(asset: AssetContext, ctx: DecisionContext) -> dict[str, Any]:
    """The asset's entry of the answer, as JSON values (an opening is not validated here: see the module)."""
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

    if position is not None:
        against = (position.side == "long" and trend < 0) or (position.side == "short" and trend > 0)
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
    sign = 1 if long_ok else -1
    allocation = min(ctx.account.available_usd * ALLOCATION_SHARE, ctx.limits.max_position_usd / leverage)
    confidence = 0.7 if higher_trend == trend else 0.6
    return {
        "symbol": asset.symbol,
        "action": (Action.BUY if long_ok else Action.SELL).value,
        "rationale": (
            f"{'up' if long_ok else 'down'}trend on {frame.interval} (EMA20 vs EMA50), RSI {rsi:.1f}, "
            f"MACD histogram {hist:+.4g}; stop {STOP_ATR} ATR, target {TARGET_ATR} ATR"
        ),
        "allocation_usd": _round(allocation),
        "leverage": leverage,
        "entry_price": None,
        # A target (or stop) at or below 0 fails the schema: the entry is then rejected, as a model's would be.
        "tp_price": _round(mark + sign * TARGET_ATR * atr),
        "sl_price": _round(mark - sign * STOP_ATR * atr),
        "confidence": confidence,
        "risk_level": RiskLevel.MEDIUM.value,
    }


def baseline_answer(ctx: DecisionContext) -> dict[str, Any]:
    """The rule-based answer for every asset of the context, as JSON values (a model's answer, parsed)."""
    assets = [_decide_asset(ctx.assets[s], ctx) for s in ctx.symbols]
    opening = [a for a in assets if a["action"] in (Action.BUY.value, Action.SELL.value)]
    return {
        "assets": assets,
        "portfolio_rationale": (
            f"baseline rules: {len(opening)} new position(s) where trend and momentum agree; hold elsewhere"
        ),
        "total_allocation_usd": _round(sum(a["allocation_usd"] for a in opening)),
        "portfolio_risk_level": (RiskLevel.MEDIUM if opening else RiskLevel.LOW).value,
    }


def baseline_decision(ctx: DecisionContext) -> PortfolioDecision:
    """The rule-based decision for every asset of the context; raises ValidationError when an entry cannot be
    valid (the client records such an entry as rejected instead)."""
    return PortfolioDecision.model_validate(baseline_answer(ctx))


class BaselineClient:
    """The ``baseline`` model: same protocol and schema as an LLM, no network, zero cost."""

    model = "baseline"
    base_url = "builtin:baseline"
    reads_prompt = False  # it decides from the context's numbers: no prompt is rendered for it

    async def decide(self, request: DecisionRequest) -> ModelAnswer:
        started = time.monotonic()
        answer = baseline_answer(request.context)
        text = json.dumps(answer, separators=(",", ":"))  # the raw answer, as a model's would be recorded
        decision = salvage_decision(answer)  # each entry validated on its own: a bad one is rejected, not fatal
        errors = [line for bad in decision.invalid for line in bad.errors]
        latency = int((time.monotonic() - started) * 1000)
        call = CallRecord(attempt=1, response_format="builtin", raw_response=text, cost_usd=0.0, latency_ms=latency)
        return ModelAnswer(text, decision, [call], 0, "builtin", parse_errors=errors)

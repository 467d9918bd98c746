"""The decision context: a pure function of the market snapshot, the account and the strategy.

No I/O here. The same context feeds the prompt (as compact text) and the baseline client (as data).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from llmtrader.account import AccountState
from llmtrader.formatting import fmt
from llmtrader.indicators import compute_many, latest
from llmtrader.market import Candles, MarketSnapshot
from llmtrader.strategy import Strategy


@dataclass(frozen=True)
class FrameContext:
    """One timeframe of one asset: indicator values on the newest closed candle and recent candles."""

    interval: str
    last_close_time_ms: int
    indicators: dict[str, float | None]
    recent: list[tuple[int, float, float, float, float, float]]
    close: float | None


@dataclass(frozen=True)
class AssetContext:
    symbol: str
    mark_price: float
    index_price: float | None
    funding_rate: float | None
    next_funding_time_ms: int | None
    price_change_pct_24h: float | None
    high_24h: float | None
    low_24h: float | None
    quote_volume_24h: float | None
    open_interest: float | None
    frames: dict[str, FrameContext]


@dataclass(frozen=True)
class Limits:
    """The limits code enforces on a decision (settings and strategy combined)."""

    max_leverage: int
    max_position_usd: float
    min_reward_risk: float
    min_confidence: float
    maintenance_margin_rate: float

    @classmethod
    def combine(cls, leverage: int, max_position_usd: float, strategy: Strategy) -> Limits:
        return cls(
            max_leverage=min(leverage, strategy.limits.max_leverage),
            max_position_usd=max_position_usd,
            min_reward_risk=strategy.limits.min_reward_risk,
            min_confidence=strategy.limits.min_confidence,
            maintenance_margin_rate=strategy.limits.maintenance_margin_rate,
        )


@dataclass(frozen=True)
class DecisionContext:
    """Everything a decision client may see."""

    as_of_ms: int
    interval: str
    symbols: tuple[str, ...]
    assets: dict[str, AssetContext]
    account: AccountState
    limits: Limits
    strategy_name: str
    strategy_description: str


def _frame(candles: Candles, indicators: dict[str, Any], shown: int) -> FrameContext:
    n = len(candles)
    recent = [
        (
            int(candles.open_time_ms[i]),
            float(candles.open[i]),
            float(candles.high[i]),
            float(candles.low[i]),
            float(candles.close[i]),
            float(candles.volume[i]),
        )
        for i in range(max(0, n - shown), n)
    ]
    return FrameContext(
        interval=candles.interval,
        last_close_time_ms=candles.last_close_time_ms,
        indicators=latest(indicators),
        recent=recent,
        close=float(candles.close[-1]) if n else None,
    )


def build_context(
    snapshot: MarketSnapshot,
    account: AccountState,
    strategy: Strategy,
    limits: Limits,
    symbols: tuple[str, ...],
    interval: str | None = None,
) -> DecisionContext:
    """The context for ``symbols`` from a snapshot that holds only closed candles.

    ``interval`` is the decision interval (the configured INTERVAL); it defaults to the strategy's.
    """
    keys = [(s, tf) for s in symbols for tf in snapshot.assets[s].candles]
    series = [snapshot.assets[s].candles[tf] for s, tf in keys]
    computed = dict(zip(keys, compute_many(series), strict=True))
    assets: dict[str, AssetContext] = {}
    for symbol in symbols:
        market = snapshot.assets[symbol]
        assets[symbol] = AssetContext(
            symbol=symbol,
            mark_price=market.mark_price,
            index_price=market.index_price,
            funding_rate=market.funding_rate,
            next_funding_time_ms=market.next_funding_time_ms,
            price_change_pct_24h=market.price_change_pct_24h,
            high_24h=market.high_24h,
            low_24h=market.low_24h,
            quote_volume_24h=market.quote_volume_24h,
            open_interest=market.open_interest,
            frames={
                tf: _frame(candles, computed[(symbol, tf)], strategy.context.candles_in_prompt)
                for tf, candles in market.candles.items()
            },
        )
    return DecisionContext(
        as_of_ms=snapshot.as_of_ms,
        interval=interval or strategy.interval,
        symbols=symbols,
        assets=assets,
        account=account,
        limits=limits,
        strategy_name=strategy.name,
        strategy_description=strategy.description,
    )


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def render_account(account: AccountState) -> str:
    lines = [
        f"mode {account.mode}; balance {fmt(account.balance_usd)} USD; available {fmt(account.available_usd)} USD; "
        f"equity {fmt(account.equity_usd)} USD"
    ]
    if not account.positions:
        lines.append("open positions: none")
    for p in account.positions:
        lines.append(
            f"- {p.symbol} {p.side} size {fmt(p.size)} entry {fmt(p.entry_price)} mark {fmt(p.mark_price)} "
            f"uPnL {fmt(p.unrealized_pnl)} USD leverage {p.leverage}x liq {fmt(p.liquidation_price)} "
            f"SL {fmt(p.stop_loss)} TP {fmt(p.take_profit)}"
        )
    return "\n".join(lines)


def render_limits(limits: Limits) -> str:
    return "\n".join(
        [
            f"- leverage at most {limits.max_leverage}",
            f"- notional (allocation_usd * leverage) of one position at most {fmt(limits.max_position_usd)} USD",
            "- the sum of allocation_usd of new trades at most the available balance",
            f"- reward/risk (|tp - entry| / |entry - sl|) at least {fmt(limits.min_reward_risk)}",
            f"- confidence at least {fmt(limits.min_confidence)} for buy and sell",
            "- the stop-loss must trigger before the liquidation price",
        ]
    )


def _render_frame(frame: FrameContext) -> list[str]:
    ind = frame.indicators
    close = frame.close
    atr = ind.get("atr14")
    atr_pct = f" ({fmt(atr / close * 100, 3)}% of price)" if atr and close else ""
    lines = [
        f"### {frame.interval} (newest closed candle ends {_time(frame.last_close_time_ms)})",
        f"close {fmt(close)}; EMA20 {fmt(ind.get('ema20'))}; EMA50 {fmt(ind.get('ema50'))}; "
        f"RSI14 {fmt(ind.get('rsi14'), 4)}; MACD {fmt(ind.get('macd'), 5)} signal {fmt(ind.get('macd_signal'), 5)} "
        f"hist {fmt(ind.get('macd_hist'), 5)}; ATR14 {fmt(atr, 5)}{atr_pct}; "
        f"Bollinger {fmt(ind.get('bb_lower'))} / {fmt(ind.get('bb_middle'))} / {fmt(ind.get('bb_upper'))}; "
        f"volume {fmt(ind.get('volume_ratio'), 3)}x its 20-candle average",
    ]
    if frame.recent:
        lines.append("open_time_utc,open,high,low,close,volume")
        for t, o, h, low, c, v in frame.recent:
            stamp = datetime.fromtimestamp(t / 1000, tz=UTC).strftime("%m-%d %H:%M")
            lines.append(f"{stamp},{fmt(o)},{fmt(h)},{fmt(low)},{fmt(c)},{fmt(v, 5)}")
    return lines


def render_market(ctx: DecisionContext) -> str:
    blocks = []
    for symbol in ctx.symbols:
        a = ctx.assets[symbol]
        funding = f"{fmt(a.funding_rate * 100, 3)}%" if a.funding_rate is not None else "-"
        change = f"{fmt(a.price_change_pct_24h, 3)}%" if a.price_change_pct_24h is not None else "-"
        lines = [
            f"## {symbol}",
            f"mark {fmt(a.mark_price)}; index {fmt(a.index_price)}; funding {funding} per period "
            f"(next {_time(a.next_funding_time_ms)}); 24h change {change}, high {fmt(a.high_24h)}, "
            f"low {fmt(a.low_24h)}, quote volume {fmt(a.quote_volume_24h, 4)}; "
            f"open interest {fmt(a.open_interest, 6)} (base units)",
        ]
        for frame in a.frames.values():
            lines.extend(_render_frame(frame))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render_prompt(ctx: DecisionContext, strategy: Strategy) -> tuple[str, str]:
    """The system and user messages: the strategy's templates filled from the context."""
    values = {
        "time": _time(ctx.as_of_ms),
        "interval": ctx.interval,
        "symbols": ", ".join(ctx.symbols),
        "account": render_account(ctx.account),
        "market": render_market(ctx),
        "limits": render_limits(ctx.limits),
        "strategy_name": strategy.name,
        "strategy_description": strategy.description,
    }
    return strategy.prompt.system.strip().format(**values), strategy.prompt.user.strip().format(**values)

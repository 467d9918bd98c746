"""The decision context: a pure function of the market snapshot, the account and the strategy.

No I/O here. The same context feeds the prompt (as compact text) and the baseline client (as data).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from llmtrader.core.account import AccountState
from llmtrader.core.formatting import fmt
from llmtrader.core.indicators import compute_many, latest
from llmtrader.core.limits import Limits
from llmtrader.core.market import NAMES, Candles, MarketSnapshot
from llmtrader.core.strategy import Strategy
from llmtrader.core.times import utc_minute
from llmtrader.core.trades import PerformanceSummary, TradeSummary


@dataclass(frozen=True)
class FrameContext:
    """One timeframe of one asset: indicator values on the newest closed candle and recent candles."""

    interval: str
    last_close_time_ms: int
    indicators: dict[str, float | None]
    close: float | None
    candles: Candles = field(compare=False, repr=False)
    shown: int = 0  # how many of the newest candles the prompt shows

    @cached_property
    def recent(self) -> list[tuple[int, float, float, float, float, float]]:
        """The shown candles, oldest first, as (open time ms, open, high, low, close, volume); made when a
        prompt needs them."""
        c, start = self.candles, max(0, len(self.candles) - self.shown)
        # tolist() turns a whole column into Python numbers at once (the same values as int()/float() each).
        return list(
            zip(
                c.open_time_ms[start:].astype("int64").tolist(), c.open[start:].tolist(), c.high[start:].tolist(),
                c.low[start:].tolist(), c.close[start:].tolist(), c.volume[start:].tolist(), strict=True,
            )
        )  # fmt: skip


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
    # What the prompt shows (the data above stays complete, e.g. for the baseline client).
    indicators_shown: tuple[str, ...] = NAMES
    show_funding: bool = True
    show_open_interest: bool = True
    recent_trades_limit: int = 0  # 0: the strategy does not show recent trades
    recent_trades: tuple[TradeSummary, ...] | None = None  # None: not provided by the caller
    show_performance: bool = False
    performance: PerformanceSummary | None = None  # None: not provided by the caller

    def atr(self, symbol: str) -> float | None:
        """ATR(14) of ``symbol`` on the newest closed candle of the decision interval (None when unknown)."""
        asset = self.assets.get(symbol)
        frame = asset.frames.get(self.interval) if asset is not None else None
        value = frame.indicators.get("atr14") if frame is not None else None
        return value if value is not None and value > 0 else None

    def atr_by_symbol(self) -> dict[str, float]:
        """ATR(14) on the decision interval for every symbol where it is known (for ``RiskInputs.atr``)."""
        out: dict[str, float] = {}
        for symbol in self.symbols:
            value = self.atr(symbol)
            if value is not None:
                out[symbol] = value
        return out


def _frame(candles: Candles, indicators: Mapping[str, Any], shown: int) -> FrameContext:
    n = len(candles)
    return FrameContext(
        interval=candles.interval,
        last_close_time_ms=candles.last_close_time_ms,
        indicators=latest(indicators),
        close=candles.close.item(-1) if n else None,
        candles=candles,
        shown=shown,
    )


def build_context(
    snapshot: MarketSnapshot,
    account: AccountState,
    strategy: Strategy,
    limits: Limits,
    symbols: tuple[str, ...],
    interval: str | None = None,
    *,
    recent_trades: Sequence[TradeSummary] | None = None,
    performance: PerformanceSummary | None = None,
) -> DecisionContext:
    """The context for ``symbols`` from a snapshot that holds only closed candles.

    ``interval`` is the decision interval (the configured INTERVAL); it defaults to the strategy's.
    ``recent_trades`` (the account's closed trades, any order) and ``performance`` feed the
    ``{recent_trades}`` and ``{performance}`` placeholders when the strategy shows them; the newest
    ``strategy.context.recent_trades`` trades are kept.
    """
    keys = [(s, tf) for s in symbols for tf in snapshot.assets[s].candles]
    # Series that carry precomputed indicators (a backtest's, computed once and sliced) use them.
    missing = [k for k in keys if snapshot.assets[k[0]].candles[k[1]].indicators is None]
    computed: dict[tuple[str, str], Mapping[str, Any]] = dict(
        zip(missing, compute_many([snapshot.assets[s].candles[tf] for s, tf in missing]), strict=True)
    )
    for s, tf in keys:
        given = snapshot.assets[s].candles[tf].indicators
        if given is not None:
            computed[(s, tf)] = given
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
    options = strategy.context
    trades: tuple[TradeSummary, ...] | None = None
    if recent_trades is not None and options.recent_trades > 0:
        newest = sorted(recent_trades, key=lambda t: t.closed_ms, reverse=True)
        trades = tuple(newest[: options.recent_trades])
    return DecisionContext(
        as_of_ms=snapshot.as_of_ms,
        interval=interval or strategy.interval,
        symbols=symbols,
        assets=assets,
        account=account,
        limits=limits,
        strategy_name=strategy.name,
        strategy_description=strategy.description,
        indicators_shown=tuple(options.indicators) if options.indicators is not None else NAMES,
        show_funding=options.funding,
        show_open_interest=options.open_interest,
        recent_trades_limit=options.recent_trades,
        recent_trades=trades,
        show_performance=options.performance,
        performance=performance if options.performance else None,
    )


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


def _minutes(value: float) -> str:
    return f"{fmt(value)} min" if value < 120 else f"{fmt(value)} min ({fmt(value / 60, 3)} h)"


def render_limits(limits: Limits, interval: str | None = None) -> str:
    """Every limit the validator enforces, as rules for the prompt."""
    candles = f"the {interval} candles" if interval else "the decision interval"
    position = f"- notional (allocation_usd * leverage) of one position at most {fmt(limits.max_position_usd)} USD"
    if limits.max_position_pct is not None:
        position += f" and at most {fmt(limits.max_position_pct)}% of equity"
    lines = [f"- leverage at most {limits.max_leverage}", position]
    lines.append("- the sum of allocation_usd of new trades at most the available balance")
    if limits.max_total_exposure_pct is not None:
        lines.append(
            f"- the sum of the notionals of all positions (open and new) at most "
            f"{fmt(limits.max_total_exposure_pct)}% of equity; new trades are scaled down to fit"
        )
    if limits.max_open_positions is not None:
        lines.append(
            f"- at most {limits.max_open_positions} open positions; extra openings are refused, lowest confidence first"
        )
    lines += [
        f"- reward/risk (|tp - entry| / |entry - sl|) at least {fmt(limits.min_reward_risk)}",
        f"- confidence at least {fmt(limits.min_confidence)} for buy and sell",
    ]
    if limits.max_stop_atr is not None:
        lines.append(
            f"- stop distance |entry - sl| between {fmt(limits.min_stop_atr)} and {fmt(limits.max_stop_atr)} "
            f"times ATR14 of {candles}"
        )
    elif limits.min_stop_atr > 0:
        lines.append(f"- stop distance |entry - sl| at least {fmt(limits.min_stop_atr)} times ATR14 of {candles}")
    if limits.min_target_fee_multiple > 0:
        lines.append(
            f"- target distance |tp - entry| at least {fmt(limits.min_target_fee_multiple)} times the round-trip "
            "taker fee (2 * taker fee * entry): small targets do not pay for their fees"
        )
    lines.append("- the stop-loss must trigger before the liquidation price")
    if limits.cooldown_minutes > 0:
        lines.append(
            f"- no new position on a symbol within {_minutes(limits.cooldown_minutes)} after its previous position "
            "was closed"
        )
    if limits.min_hold_minutes > 0:
        lines.append(
            f"- you may not close or reduce a position during its first {_minutes(limits.min_hold_minutes)} "
            "(its stop-loss and take-profit still act)"
        )
    if limits.daily_loss_limit_pct is not None:
        lines.append(
            f"- once today's loss (UTC day) reaches {fmt(limits.daily_loss_limit_pct)}% of the start-of-day "
            "equity, only hold, close_position, adjust_orders and a smaller adjust_position are allowed"
        )
    dca = limits.dca
    if dca is not None:
        lines += [
            f"- DCA: each buy commits at most {fmt(dca.allocation_usd)} USD of margin (allocation_usd); "
            f"at most one scheduled buy every {dca.every_intervals} decision intervals",
            f"- DCA: an earlier buy is allowed only when the mark is at least {fmt(dca.average_down_pct)}% below "
            "the position's average entry",
            f"- DCA: the position's notional at most {fmt(dca.max_position_usd)} USD in total; "
            "adjust_position may not enlarge it",
        ]
        if dca.long_only:
            lines.append("- long only: sell (opening or adding to a short) is refused")
    return "\n".join(lines)


def _macd_parts(ind: dict[str, float | None], shown: tuple[str, ...]) -> list[str]:
    parts = []
    if "macd" in shown:
        parts.append(f"MACD {fmt(ind.get('macd'), 5)}")
    for name, label in (("macd_signal", "signal"), ("macd_hist", "hist")):
        if name in shown:
            prefix = "" if parts else "MACD "
            parts.append(f"{prefix}{label} {fmt(ind.get(name), 5)}")
    return [" ".join(parts)] if parts else []


def _bollinger_parts(ind: dict[str, float | None], shown: tuple[str, ...]) -> list[str]:
    names = ("bb_lower", "bb_middle", "bb_upper")
    if all(n in shown for n in names):
        return [f"Bollinger {fmt(ind.get('bb_lower'))} / {fmt(ind.get('bb_middle'))} / {fmt(ind.get('bb_upper'))}"]
    labels = {"bb_lower": "lower", "bb_middle": "middle", "bb_upper": "upper"}
    return [f"Bollinger {labels[n]} {fmt(ind.get(n))}" for n in names if n in shown]


# A memo of rendered candle lines, keyed by the candle's row: a backtest keeps one for its whole run (at every
# step all but the newest candle of a frame were rendered before); the live cycle passes none.
CandleLines = dict[tuple[int, float, float, float, float, float], str]


def _render_frame(frame: FrameContext, shown: tuple[str, ...] = NAMES, memo: CandleLines | None = None) -> list[str]:
    lines = list(
        _frame_head(frame.interval, frame.last_close_time_ms, frame.close, tuple(frame.indicators.items()), shown)
    )
    if frame.recent:
        lines.append("open_time_utc,open,high,low,close,volume")
        if memo is None:
            lines.extend(_candle_line(*row) for row in frame.recent)
        else:
            for row in frame.recent:
                line = memo.get(row)
                if line is None:
                    line = memo[row] = _candle_line(*row)
                lines.append(line)
    return lines


def _frame_head(
    interval: str,
    last_close_time_ms: int,
    close: float | None,
    indicators: tuple[tuple[str, float | None], ...],
    shown: tuple[str, ...],
) -> tuple[str, str]:
    """The heading and indicator line of a frame."""
    ind = dict(indicators)
    parts = [f"close {fmt(close)}"]
    for name, label in (("ema20", "EMA20"), ("ema50", "EMA50")):
        if name in shown:
            parts.append(f"{label} {fmt(ind.get(name))}")
    if "rsi14" in shown:
        parts.append(f"RSI14 {fmt(ind.get('rsi14'), 4)}")
    parts += _macd_parts(ind, shown)
    if "atr14" in shown:
        atr = ind.get("atr14")
        atr_pct = f" ({fmt(atr / close * 100, 3)}% of price)" if atr and close else ""
        parts.append(f"ATR14 {fmt(atr, 5)}{atr_pct}")
    parts += _bollinger_parts(ind, shown)
    if "volume_ratio" in shown:
        parts.append(f"volume {fmt(ind.get('volume_ratio'), 3)}x its 20-candle average")
    return (f"### {interval} (newest closed candle ends {utc_minute(last_close_time_ms)})", "; ".join(parts))


def _candle_line(t: int, o: float, h: float, low: float, c: float, v: float) -> str:
    stamp = datetime.fromtimestamp(t / 1000, tz=UTC).strftime("%m-%d %H:%M")
    return f"{stamp},{fmt(o)},{fmt(h)},{fmt(low)},{fmt(c)},{fmt(v, 5)}"


def render_market(ctx: DecisionContext, memo: CandleLines | None = None) -> str:
    blocks = []
    for symbol in ctx.symbols:
        a = ctx.assets[symbol]
        parts = [f"mark {fmt(a.mark_price)}", f"index {fmt(a.index_price)}"]
        if ctx.show_funding:
            funding = f"{fmt(a.funding_rate * 100, 3)}%" if a.funding_rate is not None else "-"
            parts.append(f"funding {funding} per period (next {utc_minute(a.next_funding_time_ms)})")
        change = f"{fmt(a.price_change_pct_24h, 3)}%" if a.price_change_pct_24h is not None else "-"
        parts.append(
            f"24h change {change}, high {fmt(a.high_24h)}, low {fmt(a.low_24h)}, "
            f"quote volume {fmt(a.quote_volume_24h, 4)}"
        )
        if ctx.show_open_interest:
            parts.append(f"open interest {fmt(a.open_interest, 6)} (base units)")
        lines = [f"## {symbol}", "; ".join(parts)]
        for frame in a.frames.values():
            lines.extend(_render_frame(frame, ctx.indicators_shown, memo))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _duration(ms: int) -> str:
    minutes = max(ms, 0) // 60_000
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{fmt(minutes / 60, 3)} h"
    return f"{fmt(minutes / 1440, 3)} d"


def render_recent_trades(ctx: DecisionContext) -> str:
    """The ``{recent_trades}`` text: the newest closed trades, newest first."""
    if ctx.recent_trades_limit <= 0:
        return "(not shown by this strategy)"
    if ctx.recent_trades is None:
        return "(not available)"
    if not ctx.recent_trades:
        return "no closed trades yet"
    return "\n".join(_trade_line(t) for t in ctx.recent_trades)


def _trade_line(t: TradeSummary) -> str:
    sign = 1 if t.side == "long" else -1
    move = sign * (t.exit / t.entry - 1) * 100 if t.entry > 0 else None
    move_text = f" ({'+' if move >= 0 else ''}{fmt(move, 3)}% price move)" if move is not None else ""
    pnl = f"{'+' if t.pnl_usd >= 0 else ''}{fmt(t.pnl_usd)}"
    reason = f", closed by {t.reason}" if t.reason else ""
    return (
        f"- {t.symbol} {t.side}: opened {utc_minute(t.opened_ms)}, held {_duration(t.closed_ms - t.opened_ms)}; "
        f"entry {fmt(t.entry)} exit {fmt(t.exit)}{move_text}; PnL {pnl} USD{reason}"
    )


def render_performance(ctx: DecisionContext) -> str:
    """The ``{performance}`` text: results of the account's closed trades."""
    if not ctx.show_performance:
        return "(not shown by this strategy)"
    p = ctx.performance
    if p is None:
        return "(not available)"
    since = f"since {utc_minute(p.since_ms)}" if p.since_ms is not None else "so far"
    if p.trades == 0:
        return f"no closed trades {since}"
    pnl = f"{'+' if p.net_pnl_usd >= 0 else ''}{fmt(p.net_pnl_usd)}"
    sharpe = f"{p.sharpe:.2f}" if p.sharpe is not None else "- (too few trades)"
    return (
        f"{since}: {p.trades} closed trades, win rate {fmt(p.win_rate * 100, 3)}%, net PnL {pnl} USD, Sharpe {sharpe}"
    )


def render_prompt(ctx: DecisionContext, strategy: Strategy, memo: CandleLines | None = None) -> tuple[str, str]:
    """The system and user messages: the strategy's templates filled from the context. ``memo``: candle lines
    rendered before (a backtest's; the text is the same with or without it)."""
    values = {
        "time": utc_minute(ctx.as_of_ms),
        "interval": ctx.interval,
        "symbols": ", ".join(ctx.symbols),
        "account": render_account(ctx.account),
        "market": render_market(ctx, memo),
        "limits": render_limits(ctx.limits, ctx.interval),
        "strategy_name": strategy.name,
        "strategy_description": strategy.description,
        "recent_trades": render_recent_trades(ctx),
        "performance": render_performance(ctx),
    }
    return strategy.prompt.system.strip().format(**values), strategy.prompt.user.strip().format(**values)

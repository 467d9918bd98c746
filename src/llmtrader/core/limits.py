"""The limits code enforces on a decision: settings and strategy combined, the stricter wins (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from llmtrader.core.strategy import Strategy


@dataclass(frozen=True)
class DcaLimits:
    """The accumulation rules of a DCA strategy (see ``StrategyDca``)."""

    allocation_usd: float
    every_intervals: int
    average_down_pct: float
    max_position_usd: float
    long_only: bool = True


@dataclass(frozen=True)
class Limits:
    """The limits code enforces on a decision (settings and strategy combined: the stricter wins).

    A strategy always sets every field (see ``StrategyLimits``). The defaults below exist for callers that
    build Limits by hand, and mean "not checked": None, 0, or no DCA rules.
    """

    max_leverage: int
    max_position_usd: float
    min_reward_risk: float
    min_confidence: float
    maintenance_margin_rate: float
    max_position_pct: float | None = None  # % of equity; the validator also applies it to the live equity
    max_total_exposure_pct: float | None = None  # % of equity
    min_stop_atr: float = 0.0  # ATR(14) multiples on the decision interval
    max_stop_atr: float | None = None
    max_open_positions: int | None = None
    cooldown_minutes: float = 0.0
    min_hold_minutes: float = 0.0
    daily_loss_limit_pct: float | None = None  # % of the start-of-day equity
    min_target_fee_multiple: float = 0.0  # multiples of the round-trip taker fee
    dca: DcaLimits | None = None

    @classmethod
    def combine(
        cls, leverage: int, max_position_usd: float, strategy: Strategy, equity_usd: float | None = None
    ) -> Limits:
        """Settings (LEVERAGE, MAX_POSITION_SIZE_USD) and the strategy's limits; with ``equity_usd`` the
        position cap is also max_position_pct of that equity."""
        sl = strategy.limits
        cap = max_position_usd
        if equity_usd is not None:
            cap = min(cap, max(equity_usd, 0.0) * sl.max_position_pct / 100)
        dca = strategy.dca
        return cls(
            max_leverage=min(leverage, sl.max_leverage),
            max_position_usd=cap,
            min_reward_risk=sl.min_reward_risk,
            min_confidence=sl.min_confidence,
            maintenance_margin_rate=sl.maintenance_margin_rate,
            max_position_pct=sl.max_position_pct,
            max_total_exposure_pct=sl.max_total_exposure_pct,
            min_stop_atr=sl.min_stop_atr,
            max_stop_atr=sl.max_stop_atr,
            max_open_positions=sl.max_open_positions,
            cooldown_minutes=sl.cooldown_minutes,
            min_hold_minutes=sl.min_hold_minutes,
            daily_loss_limit_pct=sl.daily_loss_limit_pct,
            min_target_fee_multiple=sl.min_target_fee_multiple,
            dca=None
            if dca is None
            else DcaLimits(
                allocation_usd=dca.allocation_usd,
                every_intervals=dca.every_intervals,
                average_down_pct=dca.average_down_pct,
                max_position_usd=dca.max_position_usd,
                long_only=dca.long_only,
            ),
        )

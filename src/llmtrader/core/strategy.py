"""Strategies: TOML files naming the timeframes, the limits code enforces, and the prompt templates.

The schema only: finding and reading the files is :mod:`llmtrader.config.strategies` (the user's strategies
directory first, then the built-in ones, ``strategies/`` of the project). Unknown keys, bad values and
placeholders the context does not provide are refused with the file, the key and the reason.
"""

from __future__ import annotations

import string

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmtrader.core.times import Interval

# The placeholders a prompt template may use; context.py provides each of them.
PLACEHOLDERS = frozenset(
    {
        "time",
        "interval",
        "symbols",
        "account",
        "market",
        "limits",
        "strategy_name",
        "strategy_description",
        "recent_trades",
        "performance",
    }
)


DEFAULT_TIMEFRAMES: tuple[Interval, ...] = ("15m", "1h", "4h")


class StrategyLimits(BaseModel):
    """Limits enforced by risk.py (never only by the prompt).

    A file may omit any of them: the defaults are moderate, real limits (none of them means "not checked"),
    except ``cooldown_minutes`` and ``min_hold_minutes``, whose default 0 is no wait, and
    ``min_stop_atr`` 0, which would mean no minimum stop distance.
    """

    model_config = ConfigDict(extra="forbid")
    max_leverage: int = Field(5, ge=1, le=125)
    max_position_pct: float = Field(
        100, gt=0, le=10_000, description="Max notional of one position, % of equity (also capped by the settings)."
    )
    max_total_exposure_pct: float = Field(
        300, gt=0, le=100_000, description="Max sum of the notionals of all positions, % of equity."
    )
    min_reward_risk: float = Field(1.5, ge=0)
    min_confidence: float = Field(0.5, ge=0, le=1)
    min_stop_atr: float = Field(
        0.5, ge=0, description="Min stop distance |entry - sl| in ATR(14) of the decision interval."
    )
    max_stop_atr: float = Field(6, gt=0, description="Max stop distance |entry - sl| in ATR(14).")
    max_open_positions: int = Field(5, ge=1, le=100)
    cooldown_minutes: float = Field(
        0, ge=0, le=43_200, description="No new opening on a symbol this long after its position was closed."
    )
    min_hold_minutes: float = Field(
        0, ge=0, le=43_200, description="The model may not close or reduce a younger position (stops still act)."
    )
    daily_loss_limit_pct: float = Field(
        10, gt=0, le=100, description="Loss since the start-of-day equity, in %, that stops openings and increases."
    )
    min_target_fee_multiple: float = Field(
        2, ge=0, le=1_000, description="|tp - entry| must be at least this many round-trip taker fees."
    )
    maintenance_margin_rate: float = Field(
        0.01, ge=0, lt=0.5, description="Used to estimate the liquidation price of a new position."
    )

    @model_validator(mode="after")
    def _check(self) -> StrategyLimits:
        if self.max_stop_atr <= self.min_stop_atr:
            raise ValueError(f"max_stop_atr {self.max_stop_atr:g} must be above min_stop_atr {self.min_stop_atr:g}")
        if self.max_position_pct > self.max_total_exposure_pct:
            raise ValueError(
                f"max_position_pct {self.max_position_pct:g} exceeds max_total_exposure_pct "
                f"{self.max_total_exposure_pct:g}"
            )
        return self


class StrategyContext(BaseModel):
    """What the model is shown."""

    model_config = ConfigDict(extra="forbid")
    candles: int = Field(200, ge=60, le=1500, description="Candles fetched per timeframe (warm-up).")
    candles_in_prompt: int = Field(12, ge=0, le=200, description="Recent candles shown per timeframe.")
    indicators: list[str] | None = Field(
        None, description="Indicator names shown in the prompt (see llmtrader.indicators.NAMES); all when absent."
    )
    funding: bool = Field(True, description="Show the funding rate and the next funding time.")
    open_interest: bool = Field(True, description="Show the open interest.")
    recent_trades: int = Field(0, ge=0, le=50, description="How many of the account's recent trades to show.")
    performance: bool = Field(False, description="Show performance feedback (win rate, net PnL, Sharpe).")

    @field_validator("indicators")
    @classmethod
    def _known_indicators(cls, names: list[str] | None) -> list[str] | None:
        if names is None:
            return None
        # Imported here: llmtrader.indicators pulls in pandas, which `--help` and plain loading must not pay.
        from llmtrader.core.market import NAMES

        unknown = [n for n in names if n not in NAMES]
        if unknown:
            raise ValueError(f"unknown indicator {unknown[0]!r}; available: {', '.join(NAMES)}")
        if len(set(names)) != len(names):
            raise ValueError("each indicator may appear once")
        return names

    @model_validator(mode="after")
    def _check(self) -> StrategyContext:
        if self.candles_in_prompt > self.candles:
            raise ValueError(f"candles_in_prompt {self.candles_in_prompt} exceeds candles {self.candles}")
        return self


class StrategyDca(BaseModel):
    """Dollar-cost averaging: a fixed margin per buy, on a schedule, with an averaging rule and a hard cap."""

    model_config = ConfigDict(extra="forbid")
    allocation_usd: float = Field(gt=0, description="The fixed margin of one buy.")
    every_intervals: int = Field(
        ge=1, le=10_000, description="At most one scheduled buy per this many decision intervals."
    )
    average_down_pct: float = Field(
        gt=0, lt=100, description="An extra buy is allowed when the mark is this % below the average entry."
    )
    max_position_usd: float = Field(gt=0, description="Hard cap on the total notional of the position.")
    long_only: bool = True

    @model_validator(mode="after")
    def _check(self) -> StrategyDca:
        if self.max_position_usd < self.allocation_usd:
            raise ValueError(
                f"max_position_usd {self.max_position_usd:g} is below one buy's allocation_usd {self.allocation_usd:g}"
            )
        return self


class StrategyPrompt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system: str = Field(min_length=1)
    user: str = Field(min_length=1)

    @field_validator("system", "user")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        try:
            parsed = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
        except ValueError as exc:
            raise ValueError(f"malformed template ({exc}); write {{{{ and }}}} for a literal brace") from None
        available = f"available: {', '.join(sorted(PLACEHOLDERS))}"
        for field, spec, conversion in parsed:
            # A format spec, a conversion, an attribute or an index would let a template reach into the
            # context's objects ({account.__class__}), pad a value to any size ({market:>300000000}) or fail
            # only when a prompt is rendered ({time:d}): a placeholder is its bare name, nothing else.
            shown = _shown_placeholder(field, spec, conversion)
            if spec or conversion:
                raise ValueError(
                    f"placeholder {shown} has a format spec or conversion; write a placeholder as its bare "
                    f"name, as {{name}} (no format spec, conversion, attribute or index); {available}"
                )
            if field not in PLACEHOLDERS and field.split(".", 1)[0].split("[", 1)[0] in PLACEHOLDERS:
                raise ValueError(
                    f"placeholder {shown} has an attribute or index; write a placeholder as its bare name, "
                    f"as {{name}} (no format spec, conversion, attribute or index); {available}"
                )
            if field not in PLACEHOLDERS:
                raise ValueError(f"placeholder {shown} is not provided by the context; {available}")
        return template


def _shown_placeholder(field: str, spec: str | None, conversion: str | None) -> str:
    """A placeholder as written in the template (``{time!r:>9}``), cut short when it is long."""
    text = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
    return text if len(text) <= 60 else text[:59] + "…}"


class Strategy(BaseModel):
    """One strategy file."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    description: str
    interval: Interval = "1h"
    timeframes: list[Interval] = Field(default_factory=lambda: list(DEFAULT_TIMEFRAMES), min_length=1)
    limits: StrategyLimits = Field(default_factory=StrategyLimits)
    context: StrategyContext = Field(default_factory=StrategyContext)
    dca: StrategyDca | None = None
    prompt: StrategyPrompt

    @model_validator(mode="after")
    def _check(self) -> Strategy:
        if len(set(self.timeframes)) != len(self.timeframes):
            raise ValueError("timeframes: each timeframe may appear once")
        if self.interval not in self.timeframes:
            raise ValueError(f"interval: {self.interval} must be one of the timeframes ({', '.join(self.timeframes)})")
        return self

"""Strategies: TOML files naming the timeframes, the limits code enforces, and the prompt templates.

A strategy is found by name in the user's strategies directory first, then among the built-in ones
(``strategies/`` of the project). Unknown keys, bad values and placeholders the context does not
provide are refused with the file, the key and the reason.
"""

from __future__ import annotations

import string
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmtrader.config import Interval
from llmtrader.errors import StrategyError

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
        from llmtrader.indicators import NAMES

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


@cache
def builtin_dir() -> Path:
    """The built-in strategies: inside the installed package, or the project's strategies/."""
    here = Path(__file__).resolve().parent
    packaged = here / "_strategies"
    return packaged if packaged.is_dir() else here.parents[1] / "strategies"


# Parsed files by (path, mtime, size): a scheduled agent or a backtest resolves its strategy at every
# decision, and parsing the TOML again each time was a millisecond of every cycle. An edited file has a
# new mtime or size, so a change still takes effect at the next decision.
_LOADED: dict[tuple[str, int, int], Strategy] = {}


def load_strategy_file(path: Path) -> Strategy:
    """Load and validate one strategy file (the result is shared between callers: treat it as read-only)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise StrategyError(f"strategy file {path}: unreadable ({exc.strerror})") from exc
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    cached = _LOADED.get(key)
    if cached is not None:
        return cached
    strategy = _parse_strategy_file(path)
    if len(_LOADED) > 64:
        _LOADED.clear()
    _LOADED[key] = strategy
    return strategy


def _parse_strategy_file(path: Path) -> Strategy:
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
    except OSError as exc:
        raise StrategyError(f"strategy file {path}: unreadable ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise StrategyError(f"strategy file {path}: not valid TOML: {exc}") from exc
    try:
        return Strategy.model_validate(data)
    except ValidationError as exc:
        parts = []
        for err in exc.errors(include_url=False):
            key = ".".join(str(p) for p in err.get("loc", ())) or "(file)"
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            if err.get("type") == "extra_forbidden":
                msg = "unknown key"
            if key == "(file)" and msg.split(":", 1)[0] in Strategy.model_fields:
                parts.append(msg)  # a whole-file check that already names its key
            else:
                parts.append(f"{key}: {msg}")
        raise StrategyError(f"strategy file {path}: " + "; ".join(parts)) from None


_LISTED: dict[tuple[str, int], list[Path]] = {}


def _strategy_files(directory: Path) -> list[Path]:
    """The ``*.toml`` files of ``directory``, listed again only when the directory changed (its mtime)."""
    try:
        key = (str(directory), directory.stat().st_mtime_ns)
    except OSError:
        return []
    listed = _LISTED.get(key)
    if listed is None:
        listed = sorted(directory.glob("*.toml"))
        if len(_LISTED) > 16:
            _LISTED.clear()
        _LISTED[key] = listed
    return listed


def default_user_dir() -> Path:
    """Where the user's strategies are found without a ``strategies_dir`` setting: ``strategies`` beside the
    user's config.toml (XDG on Linux: ~/.config/llmtrader/strategies), as config.example.toml suggests."""
    from llmtrader.configfile import user_config_path

    return user_config_path().parent / "strategies"


def available_strategies(user_dir: Path | None) -> dict[str, Path]:
    """Strategy names and their files; the user's directory (``strategies_dir``, else the one of
    :func:`default_user_dir` when it exists) shadows the built-in ones."""
    if user_dir is None and default_user_dir().is_dir():
        user_dir = default_user_dir()
    found: dict[str, Path] = {}
    for directory in (builtin_dir(), user_dir):
        if directory is not None:
            for path in _strategy_files(directory):
                found[path.stem] = path
    return found


def load_strategy(name: str, user_dir: Path | None = None) -> Strategy:
    """The strategy called ``name``; StrategyError lists the available ones when it is unknown."""
    found = available_strategies(user_dir)
    path = found.get(name)
    if path is None:
        names = ", ".join(sorted(found)) or "(none found)"
        raise StrategyError(f"unknown strategy {name!r}; available: {names}")
    strategy = load_strategy_file(path)
    if strategy.name != name:
        raise StrategyError(f"strategy file {path}: name: {strategy.name!r} differs from the file name")
    return strategy

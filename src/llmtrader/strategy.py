"""Strategies: TOML files naming the timeframes, the limits code enforces, and the prompt templates.

A strategy is found by name in the user's strategies directory first, then among the built-in ones
(``strategies/`` of the project). Unknown keys, bad values and placeholders the context does not
provide are refused with the file, the key and the reason.
"""

from __future__ import annotations

import string
import tomllib
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
    }
)


DEFAULT_TIMEFRAMES: tuple[Interval, ...] = ("15m", "1h", "4h")


class StrategyLimits(BaseModel):
    """Limits enforced by risk.py (never only by the prompt)."""

    model_config = ConfigDict(extra="forbid")
    max_leverage: int = Field(5, ge=1, le=125)
    min_reward_risk: float = Field(1.5, ge=0)
    min_confidence: float = Field(0.5, ge=0, le=1)
    maintenance_margin_rate: float = Field(
        0.01, ge=0, lt=0.5, description="Used to estimate the liquidation price of a new position."
    )


class StrategyContext(BaseModel):
    """What the model is shown."""

    model_config = ConfigDict(extra="forbid")
    candles: int = Field(200, ge=60, le=1500, description="Candles fetched per timeframe (warm-up).")
    candles_in_prompt: int = Field(12, ge=0, le=200, description="Recent candles shown per timeframe.")


class StrategyPrompt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system: str = Field(min_length=1)
    user: str = Field(min_length=1)

    @field_validator("system", "user")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        except ValueError as exc:
            raise ValueError(f"malformed template ({exc}); write {{{{ and }}}} for a literal brace") from None
        unknown = sorted(f for f in fields if f not in PLACEHOLDERS)
        if unknown:
            raise ValueError(
                f"placeholder {{{unknown[0]}}} is not provided by the context; "
                f"available: {', '.join(sorted(PLACEHOLDERS))}"
            )
        return template


class Strategy(BaseModel):
    """One strategy file."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    description: str
    interval: Interval = "1h"
    timeframes: list[Interval] = Field(default_factory=lambda: list(DEFAULT_TIMEFRAMES), min_length=1)
    limits: StrategyLimits = Field(default_factory=StrategyLimits)
    context: StrategyContext = Field(default_factory=StrategyContext)
    prompt: StrategyPrompt

    @model_validator(mode="after")
    def _check(self) -> Strategy:
        if len(set(self.timeframes)) != len(self.timeframes):
            raise ValueError("timeframes: each timeframe may appear once")
        return self


def builtin_dir() -> Path:
    """The built-in strategies: inside the installed package, or the project's strategies/."""
    here = Path(__file__).resolve().parent
    packaged = here / "_strategies"
    return packaged if packaged.is_dir() else here.parents[1] / "strategies"


def load_strategy_file(path: Path) -> Strategy:
    """Load and validate one strategy file."""
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
            parts.append(f"{key}: {msg}")
        raise StrategyError(f"strategy file {path}: " + "; ".join(parts)) from None


def available_strategies(user_dir: Path | None) -> dict[str, Path]:
    """Strategy names and their files; the user's directory shadows the built-in ones."""
    found: dict[str, Path] = {}
    for directory in (builtin_dir(), user_dir):
        if directory is not None and directory.is_dir():
            for path in sorted(directory.glob("*.toml")):
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

"""Which strategy an account is on: the one place that answers it (:func:`strategy_in_force`, for the cycle,
``status`` and backtests), the strategy loaded for a decision (:func:`resolve_strategy`), a choice made with
``strategy use`` (:func:`choose_strategy`) and the catalog ``strategy list`` shows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from llmtrader.config.strategies import available_strategies, builtin_dir, load_strategy
from llmtrader.core.strategy import Strategy
from llmtrader.errors import StrategyError
from llmtrader.storage.reader import Connection, strategy_choice

if TYPE_CHECKING:
    from llmtrader.config.settings import Settings
    from llmtrader.storage.store import Store

StrategySource = Literal["chosen", "configured"]


def strategy_in_force(store: Store | Connection | None, settings: Settings) -> tuple[str, StrategySource]:
    """The name of the account's strategy, unloaded: the one chosen with ``strategy use``, else the
    configured one; and which of the two it is.

    ``store`` is the agent's store, or a plain read connection to its database (``status`` and backtests do
    not create it), or None when there is no database yet.
    """
    if store is None:
        chosen = None
    elif isinstance(store, Connection):
        chosen = strategy_choice(store, settings.account)
    else:
        chosen = store.strategy_choice(settings.account)
    return (chosen, "chosen") if chosen is not None else (settings.strategy, "configured")


def resolve_strategy(store: Store, settings: Settings, override: str | None = None) -> Strategy:
    """The strategy of the next decision: ``override`` (decide --strategy), else the account's persisted
    choice, else the configured one. Called for every decision, so a new choice takes effect at the next.

    A persisted choice that no longer loads is a StrategyError naming it and how to switch.
    """
    if override is not None:
        return load_strategy(override, settings.strategies_dir)
    name, source = strategy_in_force(store, settings)
    try:
        return load_strategy(name, settings.strategies_dir)
    except StrategyError as exc:
        if source == "configured":
            raise
        raise StrategyError(
            f"account {settings.account!r} uses strategy {name!r} (chosen with `llmtrader strategy use`), "
            f"which no longer loads: {exc}. Fix the file, or switch with `llmtrader strategy use NAME` "
            f"(`llmtrader strategy list` shows the available ones)"
        ) from None


@dataclass(frozen=True)
class StrategyChoice:
    account: str
    previous: str
    strategy: str


def choose_strategy(store: Store, settings: Settings, name: str, *, via: str, now_ms: int) -> StrategyChoice:
    """Persist ``name`` as the account's strategy after checking that it loads, recorded in the audit table."""
    strategy = load_strategy(name, settings.strategies_dir)
    previous, _ = strategy_in_force(store, settings)
    store.record_strategy_choice(
        account=settings.account, strategy=strategy.name, previous=previous, via=via, now_ms=now_ms
    )
    return StrategyChoice(account=settings.account, previous=previous, strategy=strategy.name)


@dataclass(frozen=True)
class CatalogEntry:
    """One available strategy, or the error that keeps its file from loading."""

    name: str
    path: Path
    source: str  # built-in, user, or user (shadows built-in)
    strategy: Strategy | None
    error: str | None
    in_force: bool


def strategy_catalog(store: Store, settings: Settings) -> tuple[list[CatalogEntry], str, StrategySource]:
    """Every available strategy (the user's shadow built-in ones of the same name), each loaded or with its
    error, the one in force for the account marked; and that one's name and where it comes from."""
    in_force, source = strategy_in_force(store, settings)
    builtin = builtin_dir().resolve()
    entries = []
    for name, path in sorted(available_strategies(settings.strategies_dir).items()):
        origin = "built-in"
        if path.resolve().parent != builtin:
            origin = "user (shadows built-in)" if (builtin / path.name).is_file() else "user"
        strategy, error = None, None
        try:
            strategy = load_strategy(name, settings.strategies_dir)
        except StrategyError as exc:
            error = str(exc)
        entries.append(CatalogEntry(name, path, origin, strategy, error, name == in_force))
    return entries, in_force, source

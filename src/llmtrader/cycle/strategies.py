"""Which strategy an account is on: the one place that answers it, for the cycle, ``status`` and backtests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

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

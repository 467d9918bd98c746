"""What the dashboard page shows, per served account, gathered in one pass over a read connection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmtrader.core.times import DAY_MS, iso_utc
from llmtrader.errors import LLMTraderError
from llmtrader.storage import web as q
from llmtrader.storage.reader import Connection
from llmtrader.web import data

if TYPE_CHECKING:
    from llmtrader.config.settings import Settings

RECENT_DECISIONS = 20
GROUPS_DAYS = 30  # the page's figures per model and strategy cover this many days (the API's stats: any period)


def _groups(settings: Settings, conn: Connection | None, account: str, now_ms: int, by: str) -> Any:
    """The ``stats --by`` groups, or the reason they cannot be computed (the page still shows the rest)."""
    try:
        since = iso_utc(now_ms - GROUPS_DAYS * DAY_MS)
        return data.stats(settings, conn, account, now_ms, by, since)["groups"]
    except LLMTraderError as exc:
        return str(exc)


def dashboard(settings: Settings, conn: Connection | None, accounts: list[str], now_ms: int) -> dict[str, Any]:
    """The template's values: one entry per account."""
    views = []
    for row in data.status(settings, conn, accounts, now_ms):
        name = row["account"]
        recent = data.decisions(conn, {"account": name, "limit": str(RECENT_DECISIONS)}, accounts, True)["decisions"]
        views.append(
            {
                "status": row,
                "equity": data.equity(conn, name, None)["equity_curve"],
                "positions": data.positions(conn, name),
                "decisions": recent,
                "prices": data.prices(conn, name)["assets"],
                "by_model": _groups(settings, conn, name, now_ms, "model"),
                "by_strategy": _groups(settings, conn, name, now_ms, "strategy"),
                "guard_events": q.recent_guard_events(conn, name) if conn is not None else [],
                "controls": q.controls(conn, name, 5) if conn is not None else [],
            }
        )
    return {"accounts": views}

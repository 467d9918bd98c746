"""Helpers shared by the tests (imported by test modules, never from one test module into another)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from llmtrader.config.load import load_settings
from llmtrader.cycle.compose import build_services, close_services
from llmtrader.exchange.base import OrderRequest


class FakeClock:
    """The tests' one clock, moved by hand. ``now_ms()`` is the services' Clock port; calling it is the
    ``now_ms`` function the paper exchange and the fake venue take. Starts at ``now_ms``, else the wall time."""

    def __init__(self, now_ms: int | None = None) -> None:
        self.now = int(time.time() * 1000) if now_ms is None else now_ms

    def now_ms(self) -> int:
        return self.now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def rows(db: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    """The rows of one query on the database at ``db``, as dicts."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def place(order: OrderRequest) -> None:
    """Send one order through the project's own venue client, as the account's owner could by hand."""

    async def go() -> None:
        services = build_services(load_settings(), need_model=False)
        try:
            await services.exchange.place_order(order)
        finally:
            await close_services(services)

    asyncio.run(go())

"""An IP ban by the venue (HTTP 418), kept in the store so that the next process does not walk into it.

Bans escalate (2 minutes up to 3 days) when a client keeps sending, so the ban outlives the process
that hit it: every llmtrader process on this machine shares the IP and the database.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from llmtrader.core.times import DAY_MS
from llmtrader.storage.store import Store


class VenueBans:
    """The :class:`~llmtrader.exchange.asterdex.BanStore` of one venue base URL, over the store's cache."""

    def __init__(self, store: Store, base_url: str, now_ms: Callable[[], int] | None = None) -> None:
        self.store = store
        self.key = f"ban:{base_url}"
        self.now_ms = now_ms or (lambda: int(time.time() * 1000))

    def get_ban(self) -> tuple[int, str] | None:
        body = self.store.cache_get(self.key, 3 * DAY_MS, self.now_ms())
        if body is None:
            return None
        data = json.loads(body)
        return int(data["until_ms"]), str(data["message"])

    def put_ban(self, until_ms: int, message: str) -> None:
        self.store.cache_put(self.key, json.dumps({"until_ms": until_ms, "message": message}), self.now_ms())

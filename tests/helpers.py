"""Helpers shared by the tests (imported by test modules, never from one test module into another)."""

from __future__ import annotations

import time


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

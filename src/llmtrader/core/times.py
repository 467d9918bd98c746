"""Time: the epoch-ms arithmetic, the candle intervals, the UTC text formats and the clock port (pure)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal, Protocol

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def ms_of_iso(iso: str) -> int:
    """An ISO-8601 UTC time as the store writes it (:func:`~llmtrader.core.times.iso_utc`), in epoch ms."""
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


INTERVAL_MS = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}
Interval = Literal["1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d"]


def utc_day(now_ms: int) -> int:
    """The UTC day number of ``now_ms``."""
    return now_ms // DAY_MS


def day_start_ms(now_ms: int) -> int:
    """00:00 UTC of the day of ``now_ms``."""
    return now_ms - now_ms % DAY_MS


def _hour_prefix(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, tz=UTC).strftime("%Y-%m-%dT%H:")


def iso_utc(ms: int) -> str:
    """Milliseconds since the epoch as a sortable ISO-8601 UTC string, e.g. ``2025-11-03T04:05:06.007Z``."""
    hour, rest = divmod(ms, 3_600_000)
    minute, rest = divmod(rest, 60_000)
    second, milli = divmod(rest, 1000)
    return f"{_hour_prefix(hour)}{minute:02d}:{second:02d}.{milli:03d}Z"


def utc_minute(ms: int | None) -> str:
    """An epoch-ms time as 'YYYY-MM-DD HH:MM UTC' ('-' when unknown)."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    """Wall-clock time in milliseconds since the epoch."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)

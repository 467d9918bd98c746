"""The one bounded read-retry loop of the AsterDEX clients (public market data and the signed venue client).

Only reads (and other requests safe to repeat) come through here: an order POST is never retried blindly.
A timeout, a connection failure, HTTP 429 and what the caller's ``judge`` calls temporary are retried with
doubling waits; 429 waits as long as the venue's Retry-After says, up to a cap.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from llmtrader.errors import VenueError, VenueUnavailable

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Answer:
    """The attempt succeeded: ``body`` is the reply's JSON."""

    body: Any


@dataclass(frozen=True)
class Temporary:
    """The attempt failed in a way worth another: ``error`` is raised when none is left."""

    error: VenueError


@dataclass(frozen=True)
class RateLimited:
    """HTTP 429, with the venue's Retry-After (seconds) when it sent one."""

    retry_after_s: float | None


@dataclass(frozen=True)
class Resend:
    """Send again at once, not counted as an attempt (the venue client's fix of a rejected nonce or timestamp)."""


Judged = Answer | Temporary | RateLimited | Resend


def retry_after_s(resp: httpx.Response) -> float | None:
    """The reply's Retry-After in seconds, or None when it has none that reads as a finite, non-negative
    number (a venue's ``nan`` or ``inf`` must not reach the sleep)."""
    value = resp.headers.get("Retry-After")
    try:
        seconds = float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


async def read_with_retries(
    path: str,
    send: Callable[[], Awaitable[httpx.Response]],
    judge: Callable[[httpx.Response], Awaitable[Judged]],
    *,
    base_url: str,
    attempts: int,
    backoff_s: float,
    max_retry_after_s: float,
    over_cap: Literal["wait the cap", "raise"],
    sleep: Sleep,
    unreachable: type[httpx.HTTPError] = httpx.HTTPError,
) -> Any:
    """Send, judge the reply, and retry what is temporary up to ``attempts`` times; the last error is raised.

    ``judge`` returns the body or says what to do, and raises for a final error (a rejection, a ban).
    ``unreachable`` is the family of httpx errors read as "cannot reach the venue" (a timeout always is).
    A Retry-After above ``max_retry_after_s`` either waits the cap or, with ``over_cap="raise"``, ends the
    read at once: asking again before the venue allows it is what earns an IP ban (418).
    """
    last: VenueError | None = None
    attempt = 0
    while attempt < attempts:
        wait = backoff_s * (2**attempt)
        attempt += 1
        try:
            resp = await send()
        except httpx.TimeoutException as exc:
            last = VenueUnavailable(f"{path}: the venue did not answer within the timeout")
            last.__cause__ = exc
        except unreachable as exc:
            last = VenueUnavailable(f"{path}: cannot reach {base_url} ({type(exc).__name__})")
            last.__cause__ = exc
        else:
            judged = await judge(resp)
            if isinstance(judged, Answer):
                return judged.body
            if isinstance(judged, Resend):
                attempt -= 1
                continue
            if isinstance(judged, RateLimited):
                after = judged.retry_after_s
                if after is not None and after > max_retry_after_s and over_cap == "raise":
                    raise VenueUnavailable(f"{path}: rate limited by the venue for {after:.0f} s (HTTP 429)")
                wait = min(after if after is not None else wait, max_retry_after_s)
                last = VenueUnavailable(f"{path}: rate limited by the venue (HTTP 429)")
            else:
                last = judged.error
        if attempt < attempts:
            await sleep(wait)
    raise last or VenueUnavailable(f"{path}: no attempt was made")

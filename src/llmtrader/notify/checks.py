"""What ``doctor`` and ``status`` say about notifications: the URLs parse, and deliveries that failed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmtrader.notify.targets import Target, targets_of, url_problem
from llmtrader.storage.reader import Connection

if TYPE_CHECKING:
    from llmtrader.config.settings import Settings


def url_checks(accounts: dict[str, Settings]) -> list[tuple[str, str, str]]:
    """(name, status, detail) per account with notification URLs: ok when Apprise accepts every one of
    them, fail naming the bad ones (by place and scheme, never by value)."""
    out: list[tuple[str, str, str]] = []
    for name, settings in accounts.items():
        targets = targets_of(settings)
        if not targets:
            continue
        bad = [f"{t.label}: {problem}" for t in targets if (problem := url_problem(t.url)) is not None]
        label = f"notify ({name})" if len(accounts) > 1 else "notify"
        if bad:
            out.append((label, "fail", "; ".join(bad)))
        else:
            out.append((label, "ok", f"{len(targets)} URL(s) parse: {', '.join(t.label for t in targets)}"))
    return out


def delivery_check(conn: Connection | None) -> tuple[str, str, str] | None:
    """(name, status, detail) of the deliveries: warn when some failed for good or are being retried."""
    if conn is None:
        return None
    health = outbox_health(conn)
    if health is None or (not health["failed"] and not health["retrying"]):
        return None
    detail = f"{health['failed']} failed, {health['retrying']} being retried; last error: {health['last_error']}"
    return ("notify delivery", "warn", detail)


def outbox_health(conn: Connection) -> dict[str, Any] | None:
    """:func:`llmtrader.storage.outbox.health`, None on a database older than the outbox."""
    from llmtrader.storage.outbox import health_if_migrated

    return health_if_migrated(conn)


def unique_targets(accounts: dict[str, Settings]) -> list[Target]:
    """Every account's targets, each URL once."""
    seen: dict[str, Target] = {}
    for settings in accounts.values():
        for t in targets_of(settings):
            seen.setdefault(t.key, t)
    return list(seen.values())

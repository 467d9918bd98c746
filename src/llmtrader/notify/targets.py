"""Notification targets: the Apprise URLs of ``NOTIFY_URLS`` (environment only: they hold tokens), with the
events and minimum level ``[notify]`` gives each. A URL is never shown: a target is named ``#N scheme``."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmtrader.config.settings import NotifyConfig, Settings

LEVELS = {"info": 0, "warning": 1, "critical": 2}
_SPLIT = re.compile(r"[\s,]+")
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]{0,31})://", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    """One notification URL and what it receives."""

    index: int  # its place in NOTIFY_URLS, from 1
    url: str
    events: frozenset[str]
    min_level: str

    @property
    def key(self) -> str:
        """What the outbox's deliveries are keyed by: a hash of the URL, never the URL."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        """``#2 tgram``: how the target is shown (the scheme says the service; the rest holds tokens)."""
        match = _SCHEME.match(self.url)
        return f"#{self.index} {match.group(1).lower() if match else '?'}"

    def accepts(self, event: str, level: str) -> bool:
        return event in self.events and LEVELS[level] >= LEVELS[self.min_level]


def split_urls(raw: str | None) -> list[str]:
    """The URLs of a NOTIFY_URLS value: separated by spaces, newlines or commas."""
    return [u for u in _SPLIT.split(raw or "") if u]


def targets_of(settings: Settings) -> list[Target]:
    """The account's targets, from its NOTIFY_URLS (or the variable its env.notify_urls names)."""
    raw = settings.notify_urls.get_secret_value() if settings.notify_urls is not None else None
    return make_targets(split_urls(raw), settings.notify)


def make_targets(urls: list[str], config: NotifyConfig) -> list[Target]:
    out = []
    for i, url in enumerate(urls, start=1):
        own = config.urls.get(str(i))
        events = own.events if own is not None and own.events is not None else config.events
        level = own.min_level if own is not None and own.min_level is not None else config.min_level
        out.append(Target(i, url, frozenset(events), level))
    return out


def url_problem(url: str) -> str | None:
    """Why Apprise cannot use ``url`` (None when it can); the URL itself is never repeated."""
    import apprise

    match = _SCHEME.match(url)
    if match is None:
        return "not a URL: expected scheme://... (an Apprise URL such as tgram://, discord://, json://)"
    try:
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    except Exception:  # Apprise promises None; a plugin may still raise on a strange URL
        plugin = None
    if plugin is None:
        return f"Apprise does not accept this {match.group(1).lower()}:// URL (unknown service or missing token)"
    return None


def url_secrets(targets: list[Target]) -> list[str]:
    """Every URL and the parts of it that could be tokens, for redaction."""
    out: list[str] = []
    for t in targets:
        out.append(t.url)
        rest = t.url.split("://", 1)[-1]
        # Token-like parts only (8+ characters with a digit): a plain word of the path is no secret.
        out.extend(p for p in re.split(r"[/?&=@:#]+", rest) if len(p) >= 8 and any(c.isdigit() for c in p))
    return out

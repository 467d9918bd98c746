"""Delivery of the outbox: a background task of ``llmtrader run`` that never stands in a cycle's way.

The task reads the pending outbox rows on its own database connection, renders each one
(:mod:`llmtrader.notify.messages`) and sends it with Apprise to every target of the row's account that
takes the event at its level. A send runs in a worker thread of its own, bounded by a timeout, so a slow
or dead service holds up only this task: the cycles run on the event loop beside it and never wait for it.

Each (row, target) is recorded once answered: ``sent`` after the service acknowledged it, ``retry`` with
the time of the next attempt (exponential backoff, at most ``retry_max_wait_s``), ``failed`` after
``max_attempts``. A row is ``done`` when every target is sent or failed. So delivery is at least once: a
restart resends only what was not acknowledged, and a row's dedupe key keeps a record from being queued
twice. Failures show in ``status`` and ``doctor`` (:func:`llmtrader.storage.outbox.health`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmtrader.core.times import DAY_MS
from llmtrader.notify.messages import Message, finish, render
from llmtrader.notify.targets import Target, targets_of, url_secrets
from llmtrader.storage import outbox

if TYPE_CHECKING:
    from llmtrader.config.settings import NotifyConfig, Settings
    from llmtrader.storage.store import Store

POLL_S = 1.0
ALL_ACCOUNTS = "*"  # the account of a row that concerns every account (a venue ban)


def send(url: str, message: Message, timeout_s: float, secrets: list[str]) -> str | None:
    """Send ``message`` to one Apprise URL; None when the service acknowledged it, else why not (one line,
    secrets masked). Blocking: run it in a worker thread."""
    import apprise

    from llmtrader.core.redact import redact

    try:
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    except Exception:
        plugin = None
    if plugin is None:
        return "Apprise does not accept this URL"
    plugin.socket_connect_timeout = timeout_s
    plugin.socket_read_timeout = timeout_s
    sender = apprise.Apprise()
    sender.add(plugin)
    said: list[str] = []

    def heard(entry: Any, _plugin: Any = None) -> None:
        level = str(getattr(entry, "level", ""))
        if "WARN" in level or "ERROR" in level:
            said.append(str(getattr(entry, "message", entry)))

    kind = {"info": apprise.NotifyType.INFO, "warning": apprise.NotifyType.WARNING}.get(
        message.level, apprise.NotifyType.FAILURE
    )
    try:
        ok = sender.notify(
            body=message.body, title=message.title, notify_type=kind, body_format=apprise.NotifyFormat.TEXT,
            log_callback=heard,
        )  # fmt: skip
    except Exception as exc:  # a plugin's bug must not end the delivery task
        return redact(f"{type(exc).__name__}: {exc}", secrets)[:300]
    if ok:
        return None
    return redact(said[-1] if said else "the service did not acknowledge the message", secrets)[:300]


class Notifier:
    """The delivery task of one agent process (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        accounts: Mapping[str, Settings],
        *,
        now_ms: Callable[[], int],
        sender: Callable[[str, Message, float, list[str]], str | None] = send,
        poll_s: float = POLL_S,
    ) -> None:
        from llmtrader.core.redact import secrets_of
        from llmtrader.logs import get_logger

        self.store = store
        self.now_ms = now_ms
        self.accounts = dict(accounts)
        self.targets: dict[str, list[Target]] = {name: targets_of(s) for name, s in accounts.items()}
        first = next(iter(accounts.values()))
        self.config: NotifyConfig = first.notify
        secrets: list[str] = []
        for name, settings in accounts.items():
            secrets += secrets_of(settings) + url_secrets(self.targets[name])
        self.secrets = secrets
        self.sender = sender
        self.poll_s = poll_s
        self.log = get_logger("llmtrader.notify")
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmtrader-notify")
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._day = now_ms() // DAY_MS

    # ---- what the agent itself tells -------------------------------------------------------------------

    def agent(self, state: str, reason: str, *, clean: bool | None = None) -> None:
        """Queue "agent started/stopped" for every account of this process. Never raises: a database that
        cannot take the row (a full disk) must not keep the agent from trading; it is logged."""
        now = self.now_ms()
        try:
            for name, settings in self.accounts.items():
                payload = {"state": state, "reason": reason, "mode": settings.trading_mode, "clean": clean}
                key = f"agent:{name}:{state}:{os.getpid()}:{now}"
                outbox.add(self.store.db.conn, dedupe_key=key, kind="agent", account=name, payload=payload, now_ms=now)
        except Exception:
            self.log.exception("the agent's notification could not be queued", state=state)
        self._wake.set()

    def queue_daily(self, now_ms: int) -> None:
        """Queue the summary of each UTC day that ended since the last look (once a day and account)."""
        day = now_ms // DAY_MS
        if day <= self._day:
            return
        ended = day - 1
        for name, settings in self.accounts.items():
            payload = {"day_ms": ended * DAY_MS, "mode": settings.trading_mode}
            outbox.add(
                self.store.db.conn, dedupe_key=f"daily:{name}:{ended}", kind="daily_summary", account=name,
                payload=payload, now_ms=now_ms,
            )  # fmt: skip
        self._day = day

    # ---- delivery ---------------------------------------------------------------------------------------

    def _targets_of(self, account: str) -> list[Target] | None:
        """The row's targets; None when the account is not one of this process (left for its own agent)."""
        if account == ALL_ACCOUNTS:
            unique = {t.key: t for targets in self.targets.values() for t in targets}
            return list(unique.values())
        return self.targets.get(account)

    async def process_once(self) -> int:
        """One pass over the pending rows; returns how many sends were attempted."""
        conn = self.store.db.conn
        attempted = 0
        self.queue_daily(self.now_ms())
        for row in outbox.pending(conn):
            targets = self._targets_of(str(row["account"]))
            if targets is None:
                continue
            now = self.now_ms()
            try:
                message = render(self.store, row, now, self.config.failed_cycles)
            except Exception:
                self.log.exception("a notification could not be rendered", outbox_id=row["id"], kind=row["kind"])
                outbox.finish(conn, int(row["id"]), outbox.SKIPPED, now)
                continue
            if message is None:
                outbox.finish(conn, int(row["id"]), outbox.SKIPPED, now)
                continue
            message = finish(message, self.secrets)
            done = True
            answered = outbox.deliveries(conn, int(row["id"]))
            for target in targets:
                if not target.accepts(message.event, message.level):
                    continue
                seen = answered.get(target.key)
                if seen is not None and seen["status"] in (outbox.SENT, outbox.FAILED):
                    continue
                if seen is not None and int(seen["next_attempt_ms"] or 0) > now:
                    done = False
                    continue
                attempts = (int(seen["attempts"]) if seen is not None else 0) + 1
                attempted += 1
                error = await self._send(target, message)
                now = self.now_ms()
                if error is None:
                    outbox.record_attempt(
                        conn, int(row["id"]), target.key, status=outbox.SENT, attempts=attempts,
                        next_attempt_ms=None, error=None, now_ms=now,
                    )  # fmt: skip
                    continue
                final = attempts >= self.config.max_attempts
                wait_ms = int(min(2 ** (attempts - 1), self.config.retry_max_wait_s) * 1000)
                outbox.record_attempt(
                    conn, int(row["id"]), target.key, status=outbox.FAILED if final else outbox.RETRY,
                    attempts=attempts, next_attempt_ms=None if final else now + wait_ms,
                    error=f"{target.label}: {error}", now_ms=now,
                )  # fmt: skip
                self.log.warning(
                    "notification not delivered", target=target.label, what=message.event, attempts=attempts,
                    error=error, final=final,
                )  # fmt: skip
                done = done and final
            if done:
                outbox.finish(conn, int(row["id"]), outbox.DONE, self.now_ms())
        return attempted

    async def _send(self, target: Target, message: Message) -> str | None:
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(
            self._executor, self.sender, target.url, message, self.config.timeout_s, self.secrets
        )
        try:
            # The thread's own socket timeouts end a send; this bound is the backstop of a stuck plugin.
            return await asyncio.wait_for(asyncio.shield(call), self.config.timeout_s * 3 + 5)
        except TimeoutError:
            return f"no answer within {self.config.timeout_s * 3 + 5:g} s"

    async def run(self) -> None:
        """Deliver until cancelled; an error in a pass is logged and the next pass goes on."""
        while not self._closing:
            try:
                await self.process_once()
            except Exception:
                self.log.exception("a notification pass failed")
            self._wake.clear()
            # asyncio.wait, not wait_for: Python 3.11's wait_for can swallow a cancellation that arrives as
            # the event is set (close() sets it), and the task would never end.
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=self.poll_s)
            finally:
                waiter.cancel()

    def start(self) -> None:
        """Run :meth:`run` as a task of the running loop."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="llmtrader notify")

    async def close(self, *, flush_s: float = 0.0) -> None:
        """Stop the task: let the pass in progress finish (a send cut off after the service took it would be
        sent again), at most ``flush_s`` (1 s when 0); then one more pass of at most ``flush_s`` for what was
        queued last (agent stopped). A send still hanging is left to its worker thread, not waited for."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            _, late = await asyncio.wait({self._task}, timeout=flush_s if flush_s > 0 else 1.0)
            for task in late:
                task.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)
        if flush_s > 0:
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(self.process_once(), flush_s)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.store.close()


def open_notifier(db: Path, accounts: Mapping[str, Settings], now_ms: Callable[[], int]) -> Notifier | None:
    """The notifier of ``llmtrader run``, on its own connection to the database; None (logged) when it
    cannot be had: notifications never keep the agent from trading."""
    from llmtrader.logs import get_logger
    from llmtrader.storage.store import Store

    try:
        store = Store(db)
    except Exception:
        get_logger("llmtrader.notify").exception("notifications are off: the database cannot be opened for them")
        return None
    try:
        return Notifier(store, accounts, now_ms=now_ms)
    except Exception:
        store.close()
        get_logger("llmtrader.notify").exception("notifications are off: they could not be set up")
        return None

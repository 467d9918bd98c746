"""The scheduled agent (``llmtrader run``): one APScheduler job per account, aligned to candle closes.

Timing
------
Candles of an interval close at whole multiples of the interval since the epoch, in UTC (1h candles at
hh:00, 4h ones at 00:00, 04:00, ... UTC, 1d ones at 00:00 UTC). A cycle fires ``offset_s`` after that
close (:data:`DEFAULT_OFFSET_S`, 5 s: a 1h agent runs at hh:00:05), so the venue has closed the candle
the cycle decides on. :func:`next_fire_ms` is that rule as a pure function; the APScheduler trigger is an
``IntervalTrigger`` whose start date is the epoch plus the offset, so both give the same times.

Each job is ``max_instances=1, coalesce=True, misfire_grace_time=<the interval>``: after a pause (a
suspended VPS, a blocked event loop) the missed fires collapse into ONE catch-up cycle, never a burst.

Why the job only starts a task
------------------------------
The APScheduler job does not await the cycle: it starts it as a task this module owns and returns.
APScheduler's asyncio executor cancels the coroutines it runs when the scheduler shuts down, and a cycle
must never be cancelled in the middle of its exchange calls (an entry without its stop). Owning the task
lets a shutdown wait for it instead. The per-account overlap rule is enforced here, not by APScheduler:
when a fire finds the account's previous cycle still running (its lock held), the new cycle is skipped
and RECORDED (APScheduler's own "maximum number of running instances reached" would only log it).

Isolation
---------
Every account has its own settings (:func:`llmtrader.config.accounts.settings_for_account`), its own services
(store connection, market client, exchange, decision client) and its own lock. An exception in one
account's cycle is recorded as a skipped cycle of that account (by :func:`llmtrader.cycle.run.run_cycle`,
before it raises) and logged here; the other accounts go on.

Stopping
--------
SIGINT or SIGTERM stops new fires, waits for the cycles in progress (at most ``stop_timeout_s``), closes
every account's services and returns exit code 0. A second signal, or the timeout, cancels what is still
running and returns 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import math
import os
import signal
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlparse

from llmtrader.config.accounts import account_names, credential_problems, require_account, settings_for_account
from llmtrader.config.strategies import load_strategy
from llmtrader.core.times import INTERVAL_MS, iso_utc
from llmtrader.cycle.strategies import strategy_in_force
from llmtrader.errors import ConfigError, CredentialsError, LLMTraderError
from llmtrader.exchange.credentials import V3Credentials
from llmtrader.notify.checks import outbox_health
from llmtrader.notify.delivery import open_notifier
from llmtrader.notify.telegram import TelegramCommands
from llmtrader.storage.reader import (
    Connection,
    _guard_state,
    _paper_positions,
    last_cycles,
    session_summary,
)
from llmtrader.storage.web import pause_of

if TYPE_CHECKING:
    from structlog.stdlib import BoundLogger

    from llmtrader.config.settings import Settings
    from llmtrader.core.times import Clock
    from llmtrader.cycle.run import CycleResult
    from llmtrader.cycle.services import Services
    from llmtrader.storage.store import Store

# Seconds after a candle's close at which its cycle fires: enough for the venue to have closed the candle
# and published it, short enough that the decision is made on fresh data.
DEFAULT_OFFSET_S = 5.0
# How long a shutdown waits for the cycles in progress. A cycle's model call may take
# llm_timeout_s (180 s) several times over with retries and re-asks; keep deploy/llmtrader.service's
# TimeoutStopSec above this.
STOP_TIMEOUT_S = 900.0
OVERLAP_REASON = "overlap: the previous cycle was still running"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Local model servers (Ollama, vLLM) take any key: bootstrap.build_client uses "local" for them.
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
NO_MODEL_KEY = "baseline (no model key)"
T = TypeVar("T")


class CycleFn(Protocol):
    """``llmtrader.cycle.run.run_cycle``: one whole cycle of one account, recorded whatever its outcome."""

    def __call__(self, services: Services, *, now_ms: int | None = None) -> Awaitable[CycleResult]: ...


class SkipFn(Protocol):
    """``llmtrader.cycle.run.record_skipped_cycle``: record a cycle that did not run, and why."""

    def __call__(self, store: Store, account: str, *, now_ms: int, reason: str) -> CycleResult: ...


# ---- Timing (pure) --------------------------------------------------------------------------------------


def interval_ms(interval: str) -> int:
    """The length of a decision interval (``1h``...) in milliseconds."""
    try:
        return INTERVAL_MS[interval]
    except KeyError:
        raise ConfigError(f"interval {interval!r} is not one of {', '.join(INTERVAL_MS)}") from None


def _offset_ms(interval: str, offset_s: float) -> tuple[int, int]:
    step = interval_ms(interval)
    offset = round(offset_s * 1000)
    if not 0 <= offset < step:
        raise ConfigError(f"the cycle offset {offset_s} s must be at least 0 and shorter than the interval {interval}")
    return step, offset


def next_fire_ms(now_ms: int, interval: str, offset_s: float = DEFAULT_OFFSET_S) -> int:
    """The first cycle time at or after ``now_ms``: a close of an ``interval`` candle (a multiple of the
    interval since the epoch, UTC) plus ``offset_s``. The same rule as the APScheduler trigger."""
    step, offset = _offset_ms(interval, offset_s)
    return offset + -((offset - now_ms) // step) * step  # ceil((now - offset) / step) intervals


def previous_fire_ms(now_ms: int, interval: str, offset_s: float = DEFAULT_OFFSET_S) -> int:
    """The last cycle time at or before ``now_ms``."""
    step, offset = _offset_ms(interval, offset_s)
    return offset + (now_ms - offset) // step * step


def trigger_for(interval: str, offset_s: float = DEFAULT_OFFSET_S) -> Any:
    """The APScheduler trigger firing at :func:`next_fire_ms` times: every interval from the epoch + offset."""
    from apscheduler.triggers.interval import IntervalTrigger

    step, offset = _offset_ms(interval, offset_s)
    anchor = datetime.fromtimestamp(offset / 1000, tz=UTC)
    return IntervalTrigger(seconds=step / 1000, start_date=anchor, timezone=UTC)


# ---- Start-up checks ------------------------------------------------------------------------------------


def model_key_missing(settings: Settings) -> bool:
    """True when the configured model needs a key and none is set: the condition on which
    :func:`llmtrader.cycle.compose.build_client` falls back to the baseline rules in paper mode (and refuses
    in live mode). Kept here so that ``status`` does not import the decision pipeline."""
    if settings.is_baseline or settings.llm_api_key is not None:
        return False
    return (urlparse(settings.llm_base_url).hostname or "") not in _LOCAL_HOSTS


def model_label(settings: Settings) -> str:
    """The model an account decides with, as ``status`` and the start line show it."""
    if settings.trading_mode == "paper" and model_key_missing(settings):
        return NO_MODEL_KEY
    return settings.llm_model


def start_problems(settings: Settings, name: str, account: Settings) -> list[str]:
    """What stops account ``name`` (effective settings ``account``) from starting live: named credential
    variables unset, no or partial venue credentials, no model key. Empty for a sound account. For a
    paper account these are only warnings (it needs no venue key, and decides with baseline rules
    without a model key); the caller decides."""
    problems = credential_problems(settings, name)
    if account.trading_mode != "live":
        return problems
    named = settings.accounts[name].env.named() if settings.accounts else {}
    if model_key_missing(account) and "llm_api_key" not in named:
        problems.append(
            f"account {name!r} trades live with model {account.llm_model!r} but has no model key: set "
            "OPENROUTER_API_KEY (or LLM_API_KEY) in the environment"
            + (f", or name a variable in accounts.{name}.env.llm_api_key" if settings.accounts else "")
        )
    if not settings.accounts:  # an accounts table's venue keys are checked by credential_problems
        try:
            if account.venue_credentials() is None:
                problems.append(
                    f"account {name!r} trades live but has no venue credentials: set ASTERDEX_USER, "
                    "ASTERDEX_SIGNER and ASTERDEX_SIGNER_PRIVATE_KEY (V3 API wallet), or ASTERDEX_API_KEY and "
                    "ASTERDEX_API_SECRET (V1) in the environment"
                )
        except CredentialsError as exc:
            problems.append(f"account {name!r}: {exc}")
    return problems


@dataclass(frozen=True)
class Selection:
    """The accounts a ``run`` starts: effective settings by name, and warnings to show (paper accounts)."""

    accounts: dict[str, Settings]
    warnings: tuple[str, ...] = ()


def select_accounts(settings: Settings, names: Sequence[str] | None = None) -> Selection:
    """The effective settings of the accounts to run (``names``, else every configured one), checked.

    Any live account with a credential problem stops the start: one CredentialsError (exit code 2) lists
    every problem of every account, naming the environment variables. A paper account's problems are
    returned as warnings.
    """
    chosen = list(dict.fromkeys(names)) if names else account_names(settings)
    for name in chosen:
        require_account(settings, name)
    accounts: dict[str, Settings] = {}
    fatal: list[str] = []
    warnings: list[str] = []
    for name in chosen:
        account = settings_for_account(settings, name)
        accounts[name] = account
        problems = start_problems(settings, name, account)
        (fatal if account.trading_mode == "live" else warnings).extend(problems)
    if fatal:
        raise CredentialsError("cannot start live trading: " + "; ".join(fatal))
    return Selection(accounts, tuple(warnings))


# ---- The scheduler --------------------------------------------------------------------------------------


@dataclass
class _Account:
    name: str
    settings: Settings
    services: Services
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Scheduler:
    """Runs the cycles of several accounts on candle-aligned times, one at a time per account.

    ``cycle`` and ``record_skip`` are :func:`llmtrader.cycle.run.run_cycle` and
    :func:`llmtrader.cycle.run.record_skipped_cycle` (fakes in tests). The cycle records (and logs) every
    cycle it runs, even one that raises; the scheduler records only the skips it decides (overlap) and
    logs a cycle's exception, so one account's failure never reaches the others. ``services`` are every
    account's services, built by the caller and closed by :meth:`close` with ``close_services``.
    ``clock`` gives the time of each fire. :meth:`fire` is what the APScheduler job calls (through
    :meth:`launch`) and what tests call directly.

    ``interval_of(account)`` gives the interval in force of an account now (its strategy may be changed with
    ``strategy use`` while the agent runs): re-read after each of its cycles, and a change reschedules it
    (:meth:`follow_interval`). ``on_schedule(account, interval)`` is told the interval each account is
    scheduled with, at the start and at every change (the agent records it for ``status``).
    ``on_cycle(services, result)`` is told each cycle's result (``run`` on a terminal prints a line).
    """

    def __init__(
        self,
        services: Mapping[str, Services],
        *,
        cycle: CycleFn,
        record_skip: SkipFn,
        close_services: Callable[[Services], Awaitable[None]],
        clock: Clock,
        offset_s: float = DEFAULT_OFFSET_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        logger: BoundLogger | None = None,
        interval_of: Callable[[str], str] | None = None,
        on_schedule: Callable[[str, str], None] | None = None,
        on_cycle: Callable[[Services, CycleResult], None] | None = None,
    ) -> None:
        from llmtrader.logs import get_logger

        self._accounts = {name: _Account(name, s.settings, s) for name, s in services.items()}
        for account in self._accounts.values():
            _offset_ms(account.settings.interval, offset_s)  # a bad offset fails now, not at the first fire
        self._cycle = cycle
        self._record_skip = record_skip
        self._close_services = close_services
        self.clock = clock
        self.offset_s = offset_s
        self.stop_timeout_s = stop_timeout_s
        self.log = logger if logger is not None else get_logger("llmtrader.scheduler")
        self._tasks: set[asyncio.Task[CycleResult | None]] = set()
        self._aps: Any = None
        self._aps_stopped = False
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self._forced = False
        self.failures: list[str] = []  # why a `--once` cycle could not reach the venue or the model
        self._closed = False
        self._interval_of = interval_of
        self._on_schedule = on_schedule
        self._on_cycle = on_cycle

    async def exclusive(self, account: str, fn: Callable[[Services], Awaitable[T]]) -> T:
        """Run ``fn`` with the account's services while no cycle of it runs (a close asked from Telegram)."""
        acc = self._accounts[account]
        async with acc.lock:
            return await fn(acc.services)

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    @property
    def running(self) -> list[str]:
        """The accounts whose cycle is in progress."""
        return [name for name, a in self._accounts.items() if a.lock.locked()]

    def next_fire_ms(self, account: str, now_ms: int | None = None) -> int:
        """When ``account``'s next cycle fires (at or after ``now_ms``, default: now)."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        return next_fire_ms(now, self._accounts[account].settings.interval, self.offset_s)

    # ---- one fire ---------------------------------------------------------------------------------------

    async def fire(self, account: str, now_ms: int | None = None) -> CycleResult | None:
        """Run one cycle of ``account`` now, unless its previous cycle is still running: then skip this one
        and record it. Returns the cycle's result; None when the cycle raised (logged here; the cycle
        records itself even then, as :func:`llmtrader.cycle.run.run_cycle` does when its store allows), when
        the skip could not be recorded, or when the agent is stopping (nothing starts then)."""
        acc = self._accounts[account]
        now = self.clock.now_ms() if now_ms is None else now_ms
        if self._stopping:
            self.log.info("cycle not started: the agent is stopping", account=account)
            return None
        if acc.lock.locked():
            self.log.warning("cycle skipped: the previous cycle is still running", account=account)
            try:
                skipped = self._record_skip(acc.services.store, account, now_ms=now, reason=OVERLAP_REASON)
            except Exception:
                self.log.exception("the skipped cycle could not be recorded", account=account)
                return None
            self._report(acc, skipped)
            return skipped
        async with acc.lock:
            try:
                result = await self._cycle(acc.services, now_ms=now)
            except Exception:  # never BaseException: a cancellation must go through
                self.log.exception("cycle failed", account=account)
                result = None
            self.follow_interval(account)  # before the lock is free: the next fire sees the new interval
        if result is not None:
            self._report(acc, result)
        return result

    def _report(self, acc: _Account, result: CycleResult) -> None:
        """Tell ``on_cycle`` the result; a failure to show it never reaches the agent."""
        if self._on_cycle is None:
            return
        try:
            self._on_cycle(acc.services, result)
        except Exception:
            self.log.exception("the cycle line could not be shown", account=acc.name)

    def follow_interval(self, account: str) -> str | None:
        """Re-read the interval in force of ``account`` (``interval_of``); when it changed (a ``strategy use``
        of a strategy with another interval), its later cycles follow it: its settings take the new interval
        and its job is rescheduled. Logged once, at the change. Returns the new interval, else None."""
        if self._interval_of is None:
            return None
        acc = self._accounts[account]
        try:
            interval = self._interval_of(account)
            _offset_ms(interval, self.offset_s)
        except Exception:  # a store that cannot be read now: the schedule stays as it is
            self.log.exception("the interval in force could not be read", account=account)
            return None
        was = acc.settings.interval
        if interval == was:
            return None
        acc.settings = acc.settings.model_copy(update={"interval": interval})
        acc.services.settings = acc.services.settings.model_copy(update={"interval": interval})
        if self._aps is not None and not self._aps_stopped:
            job = f"cycle:{account}"
            self._aps.modify_job(job, misfire_grace_time=math.ceil(interval_ms(interval) / 1000))
            self._aps.reschedule_job(job, trigger=trigger_for(interval, self.offset_s))
        self.log.info(
            f"interval changed from {was} to {interval} (the strategy in force): cycles follow it",
            account=account, interval=interval, next_cycle=iso_utc(self.next_fire_ms(account)),
        )  # fmt: skip
        self._scheduled(account, interval)
        return interval

    def _scheduled(self, account: str, interval: str) -> None:
        if self._on_schedule is None:
            return
        try:
            self._on_schedule(account, interval)
        except Exception:
            self.log.exception("the schedule could not be recorded", account=account)

    async def run_once(self, now_ms: int | None = None) -> list[CycleResult | None]:
        """One cycle of every account, concurrently, in account order; each is isolated from the others'
        failures. A cycle cancelled by a second stop request gives None."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        tasks = [self.launch(name, now) for name in self._accounts]
        await asyncio.wait(tasks)
        return [None if t.cancelled() else t.result() for t in tasks]

    # ---- APScheduler ------------------------------------------------------------------------------------

    def launch(self, account: str, now_ms: int | None = None) -> asyncio.Task[CycleResult | None]:
        """Start :meth:`fire` as a task this scheduler owns (waited for at shutdown, never cancelled by
        APScheduler): all the APScheduler job does."""
        task = asyncio.get_running_loop().create_task(self.fire(account, now_ms), name=f"llmtrader cycle {account}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _job(self, account: str) -> None:
        self.launch(account)

    def start(self, *, last_cycle_ms: Mapping[str, int | None] | None = None) -> None:
        """Add one job per account to a new AsyncIOScheduler and start it (needs a running event loop).

        With ``last_cycle_ms`` (when each account's last recorded cycle started), an account whose cycle
        for the latest candle close has not run yet (a restart after the fire time, or a first start)
        runs one cycle at once: once, however long the agent was stopped.
        """
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self._stop = asyncio.Event()
        aps = AsyncIOScheduler(timezone=UTC)
        for name, acc in self._accounts.items():
            grace = math.ceil(interval_ms(acc.settings.interval) / 1000)
            aps.add_job(
                self._job,
                trigger=trigger_for(acc.settings.interval, self.offset_s),
                args=[name],
                id=f"cycle:{name}",
                name=f"llmtrader cycle of account {name}",
                max_instances=1,  # the job only starts the task; the overlap rule is fire()'s lock
                coalesce=True,  # missed fires after a pause collapse into one...
                misfire_grace_time=grace,  # ...which still runs if it is less than an interval late
                replace_existing=True,
            )
        aps.start()
        self._aps = aps
        for name, acc in self._accounts.items():
            self._scheduled(name, acc.settings.interval)
        if last_cycle_ms is not None:
            now = self.clock.now_ms()
            for name, acc in self._accounts.items():
                last = last_cycle_ms.get(name)
                if last is None or last < previous_fire_ms(now, acc.settings.interval, self.offset_s):
                    self.log.info("catch-up cycle: none recorded since the latest candle close", account=name)
                    self.launch(name, now)

    def request_stop(self, why: str = "stop requested") -> None:
        """Stop scheduling new cycles and let the running ones finish; a second request cancels them."""
        if self._stopping:
            if not self._forced:
                self._forced = True
                self.log.warning("second stop request: cancelling the cycles in progress", accounts=self.running)
                for task in list(self._tasks):
                    task.cancel()
            return
        self._stopping = True
        self.log.info(f"{why}: no new cycle; waiting for those in progress", accounts=self.running)
        self._stop_jobs()
        if self._stop is not None:
            self._stop.set()

    def _stop_jobs(self) -> None:
        """Shut APScheduler down, once (its shutdown runs later, in the loop, so `running` lags)."""
        if self._aps is not None and not self._aps_stopped:
            self._aps_stopped = True
            self._aps.shutdown(wait=False)

    async def wait_for_cycles(self) -> bool:
        """Wait for the cycles in progress, at most ``stop_timeout_s``; cancel what remains. True when
        every cycle finished by itself."""
        pending = {t for t in self._tasks if not t.done()}
        if not pending:
            return not self._forced
        _, late = await asyncio.wait(pending, timeout=self.stop_timeout_s)
        for task in late:
            task.cancel()
        if late:
            self.log.error(
                f"cycles still running after {self.stop_timeout_s:g} s were cancelled",
                tasks=sorted(t.get_name() for t in late),
            )
            await asyncio.wait(late)
        finished = [t for t in pending if t not in late and not t.cancelled()]
        return not late and len(finished) == len(pending) and not self._forced

    async def close(self) -> None:
        """Close every account's services (once)."""
        if self._closed:
            return
        self._closed = True
        for acc in self._accounts.values():
            try:
                await self._close_services(acc.services)
            except Exception:
                self.log.exception("closing the services failed", account=acc.name)

    @contextlib.contextmanager
    def _handling(self, signals: Sequence[signal.Signals]) -> Iterator[None]:
        """SIGINT and SIGTERM request a stop (a second one cancels) while the block runs."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in signals:
            try:
                loop.add_signal_handler(sig, self.request_stop, f"{sig.name} received")
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread, or no such support
                pass
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def serve(
        self,
        *,
        last_cycle_ms: Mapping[str, int | None] | None = None,
        signals: Sequence[signal.Signals] = STOP_SIGNALS,
    ) -> int:
        """Run until SIGINT/SIGTERM (or :meth:`request_stop`): start the jobs, wait for a stop, wait for
        the cycles in progress, close the services. Returns the exit code: 0, or 1 when a cycle had to
        be cancelled."""
        with self._handling(signals):
            try:
                self.start(last_cycle_ms=last_cycle_ms)
                assert self._stop is not None
                await self._stop.wait()
                clean = await self.wait_for_cycles()
            finally:
                self._stop_jobs()
                await self.close()
        self.log.info("stopped", clean=clean)
        return 0 if clean else 1

    async def serve_once(self, *, signals: Sequence[signal.Signals] = STOP_SIGNALS) -> int:
        """``run --once``: one cycle per account, concurrently, then close. A signal lets the cycles
        finish (a second one cancels them). Returns 3 when a cycle left a position that may be open without
        a stop-loss, else 1 when a cycle was not recorded or could not reach the venue or the model (cron
        and ``make run`` users see the failure; :attr:`failures` says why), else 0 (whatever was decided)."""
        from llmtrader.cycle.run import UNPROTECTED

        with self._handling(signals):
            try:
                results = await self.run_once()
            finally:
                await self.close()
        self.failures = [
            f"account {r.account!r}: the cycle could not reach the {r.unreachable}: {r.reason}"
            for r in results
            if r is not None and getattr(r, "unreachable", None) is not None  # a cycle function's own result type
        ]
        if any(r is not None and r.outcome == UNPROTECTED for r in results):
            return 3
        return 0 if all(r is not None for r in results) and not self.failures else 1


# ---- The command ----------------------------------------------------------------------------------------


def last_cycle_times(conn: Connection | None) -> dict[str, int | None]:
    """When each account's last recorded cycle started (empty without a database)."""
    if conn is None:
        return {}
    from llmtrader.core.times import ms_of_iso

    return {name: ms_of_iso(row["started_at"]) for name, row in last_cycles(conn).items()}


class RunLock:
    """One agent per account and database: an exclusive lock on ``<db>.<account>.run.lock`` while ``run``
    runs (``--once`` too), so a second ``run`` (a manual one beside the service, a cron job that overlaps)
    cannot trade the same account twice. The kernel releases it when the process dies, so a crash never
    leaves a stale lock. The file holds the holder's pid (for the error and for ``status``) and, once the
    agent has scheduled its cycles, its schedule (:meth:`record_schedule`).

    On Linux the lock is an open-file-description lock (``F_OFD_SETLK``): :meth:`holder` asks the kernel
    who holds it (``F_OFD_GETLK``) without taking any lock itself, so a ``status`` at any instant never makes
    the agent's lock attempt fail. (A shared ``flock`` probe did: the agent starting during that probe was
    refused as if another agent ran.) Elsewhere it is a ``flock``, probed with a brief shared lock.
    """

    # The schedule line is padded to this many bytes and rewritten in place: the file never shrinks or
    # grows, so a reader never sees it half truncated (a torn line fails to parse and reads as unknown).
    _SCHEDULE_BYTES = 160

    def __init__(self, db: Path, account: str) -> None:
        # Keyed by the database's resolved path: a symlink (or a relative path) to the same file is the same lock.
        real = Path(os.path.realpath(db))
        self.path = real.with_name(f"{real.name}.{account}.run.lock")
        self.account = account
        self.what = f"account {account!r}"
        self._fd: int | None = None
        self._head = b""

    @classmethod
    def for_venue(cls, settings: Settings) -> RunLock | None:
        """A live account's second lock, keyed by the venue account itself (the venue's address and the
        user's address, or a digest of the V1 API key) in the user's state directory: another database or
        another account name on the same venue account is refused too (two agents there would each reconcile,
        and cancel, the other's orders). None for a paper account or one without credentials."""
        import hashlib

        from platformdirs import user_state_dir

        if settings.trading_mode != "live":
            return None
        credentials = settings.venue_credentials()
        if credentials is None:
            return None
        if isinstance(credentials, V3Credentials):
            who, shown = f"user {credentials.user.lower()}", f"user {credentials.user}"
        else:
            who, shown = f"api key {credentials.api_key}", "its API key"
        url = urlparse(settings.asterdex_base_url)
        default_port = {"https": 443, "http": 80}.get(url.scheme)
        venue = (url.hostname or "").lower() + (f":{url.port}" if url.port not in (None, default_port) else "")
        digest = hashlib.sha256(f"llmtrader venue lock|{venue}|{who}".encode()).hexdigest()[:24]
        lock = cls(Path(user_state_dir("llmtrader", appauthor=False)) / "locks" / "venue", settings.account)
        lock.path = lock.path.parent / f"venue-{digest}.run.lock"
        lock.what = f"the venue account of {settings.account!r} ({shown} at {venue})"
        return lock

    def acquire(self, *, command: str | None = None) -> None:
        """Take the lock, or raise ConfigError (exit 2) naming the pid that holds it. ``command`` (``decide``,
        ``close``): a command that trades the account once, refused beside a running agent."""
        from llmtrader.privatefiles import make_private_dirs, private_opener

        try:
            make_private_dirs(self.path.parent)
            fd = private_opener(str(self.path), os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise ConfigError(
                f"cannot take the lock of {self.what} at {self.path} ({exc.strerror or exc}): the directory must be "
                "writable by this user"
            ) from None
        if not _try_lock(fd):
            holder = os.pread(fd, 32, 0).decode(errors="replace").partition("\n")[0].strip() or "unknown"
            os.close(fd)
            if command is not None:
                raise ConfigError(
                    f"{self.what} is traded by a running llmtrader process (pid {holder}, lock "
                    f"{self.path}): `{command}` would trade beside it unseen; stop the agent first (systemctl stop "
                    "llmtrader), or wait for its `run --once` to end"
                ) from None
            raise ConfigError(
                f"{self.what} is already run by another llmtrader process (pid {holder}, lock "
                f"{self.path}): stop it first (systemctl stop llmtrader), or run other accounts with --account"
            ) from None
        self._head = f"{os.getpid()}\n".encode()
        # Written over the old text, then cut to length: a reader never finds the file empty while it is held.
        os.pwrite(fd, self._head, 0)
        os.ftruncate(fd, len(self._head))
        self._fd = fd

    def record_schedule(self, interval: str, offset_s: float) -> None:
        """Record (beside the pid) the interval and cycle offset the agent schedules this account with now,
        for ``status`` to show the running agent's next cycle rather than the caller's configuration."""
        if self._fd is None:
            return
        line = json.dumps({"interval": interval, "offset_s": offset_s}).encode()
        os.pwrite(self._fd, self._head + line.ljust(self._SCHEDULE_BYTES) + b"\n", 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    @contextlib.contextmanager
    def held(self, command: str) -> Iterator[None]:
        """The lock for one trading command (``decide``, ``close``): one trader per account, so a manual
        order never lands beside a running agent's cycle unseen. Refused (ConfigError) while it is held."""
        self.acquire(command=command)
        try:
            yield
        finally:
            self.release()

    def holder(self) -> int | None:
        """The pid of the process running this account now, or None (read-only: creates nothing, locks
        nothing on Linux; -1 when the holder's pid cannot be read)."""
        held = self._read()
        if held is None:
            return None
        first = held.partition("\n")[0].strip()
        return int(first) if first.isdigit() else -1

    def schedule(self) -> tuple[str, float] | None:
        """The interval and cycle offset the running agent recorded (:meth:`record_schedule`), or None: no
        agent runs the account, or it recorded none (``run --once``), or the record cannot be read."""
        held = self._read()
        if held is None:
            return None
        try:
            data = json.loads(held.partition("\n")[2] or "null")
            interval, offset_s = data["interval"], float(data["offset_s"])
            interval_ms(interval)
        except (ValueError, TypeError, KeyError, ConfigError):
            return None
        return str(interval), offset_s

    def _read(self) -> str | None:
        """The file's text while another descriptor holds the lock, else None."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            if not _is_locked(fd):
                return None
            return os.pread(fd, 32 + self._SCHEDULE_BYTES + 1, 0).decode(errors="replace")
        finally:
            os.close(fd)


def _flock_struct(kind: int) -> bytes:
    """A ``struct flock`` for the whole file (64-bit offsets, as the OFD commands always take them)."""
    import struct

    return struct.pack("hhqqi", kind, os.SEEK_SET, 0, 0, 0) + bytes(4)


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` without waiting; False when another descriptor holds it."""
    import fcntl

    if hasattr(fcntl, "F_OFD_SETLK"):
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock_struct(fcntl.F_WRLCK))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _is_locked(fd: int) -> bool:
    """Whether another descriptor holds the lock of ``fd``'s file. With OFD locks, a query that takes no lock."""
    import fcntl
    import struct

    if hasattr(fcntl, "F_OFD_GETLK"):
        answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock_struct(fcntl.F_RDLCK))
        kind: int = struct.unpack_from("h", answer)[0]
        return kind != fcntl.F_UNLCK
    try:  # no OFD locks (macOS): a brief shared flock, which may make an agent starting at that instant fail
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


async def run_agent(
    selection: Selection,
    *,
    once: bool = False,
    dry_run: bool = False,
    clock: Clock | None = None,
    warn: Callable[[str], None] | None = None,
    offset_s: float = DEFAULT_OFFSET_S,
    on_cycle: Callable[[Services, CycleResult], None] | None = None,
) -> int:
    """``llmtrader run``: lock every selected account (:class:`RunLock`), build its services, log a start
    line per account, then run one cycle each (``once``) or the schedule until a signal. Returns the exit
    code: with ``once``, 3 when a position may be open without a stop-loss, 0 when every account's cycle was
    recorded (whatever its outcome), else 1.

    ``warn`` shows start-up warnings prominently (the baseline fallback of a paper account without a
    model key). ``on_cycle`` is told each cycle's result (``run`` on a terminal prints one line per cycle).
    An error building an account's services stops the start, after closing those built.

    Each account's interval follows its strategy in force: a ``strategy use`` while the agent runs takes effect
    from the account's next cycle. The agent records its schedule in the account's :class:`RunLock` file, for
    ``status``.
    """
    from llmtrader.core.times import SystemClock, iso_utc
    from llmtrader.cycle.compose import build_services, close_services
    from llmtrader.cycle.run import record_skipped_cycle, run_cycle
    from llmtrader.cycle.snapshot import require_one_way
    from llmtrader.logs import get_logger
    from llmtrader.storage.store import open_reader

    log = get_logger("llmtrader.scheduler")
    clock = clock or SystemClock()
    say = warn or (lambda message: log.warning(message))
    for message in selection.warnings:
        say(message)
    db = next(iter(selection.accounts.values())).db  # one database for every account
    held = {name: RunLock(db, name) for name in selection.accounts}
    # one agent per venue account too, whatever the database or account name (two [accounts] on one venue
    # account in this process are refused as well)
    venues = [RunLock.for_venue(settings) for settings in selection.accounts.values()]
    locks = [*held.values(), *(lock for lock in venues if lock is not None)]
    built: dict[str, Services] = {}
    try:
        for lock in locks:
            lock.acquire()
        try:
            for name, settings in selection.accounts.items():
                built[name] = build_services(settings, clock=clock)
                interval = interval_in_force(built[name].store, settings)
                if interval != settings.interval:  # the strategy's own interval (swing: every 4h)
                    built[name].settings = settings.model_copy(update={"interval": interval})
            for services in built.values():  # a live account in hedge mode cannot place a stop: refused now
                await require_one_way(services)
            # served: carry out serve's control requests and record a positions snapshot each cycle
            cycle: CycleFn = partial(run_cycle, dry_run=dry_run, served=True)
            scheduler = Scheduler(
                built, cycle=cycle, record_skip=record_skipped_cycle, close_services=close_services, clock=clock,
                offset_s=offset_s, on_cycle=on_cycle,
                interval_of=lambda name: interval_in_force(built[name].store, selection.accounts[name]),
                on_schedule=lambda name, interval: held[name].record_schedule(interval, offset_s),
            )  # fmt: skip
        except BaseException:
            for services in built.values():
                await close_services(services)
            raise
        now = clock.now_ms()
        for name, services in built.items():
            settings = services.settings
            for note in services.notes:
                say(f"account {name!r}: {note}")
            strategy, _ = strategy_in_force(services.store, settings)
            fields = {
                "account": name,
                "mode": settings.trading_mode,
                "dry_run": dry_run or None,
                "strategy": strategy,
                "model": NO_MODEL_KEY if model_key_missing(settings) else services.client.model,
                "interval": settings.interval,
                "assets": ",".join(settings.assets),
                "next_cycle": "now (--once)" if once else iso_utc(scheduler.next_fire_ms(name, now)),
            }
            # A live account's start is a WARNING: real orders follow, and it must stand out in the journal.
            start = log.warning if settings.trading_mode == "live" else log.info
            start("start", **{k: v for k, v in fields.items() if v is not None})
        # ---- notify: the outbox's delivery task runs beside the scheduler (llmtrader.notify.delivery) ----
        notifier = open_notifier(db, {name: s.settings for name, s in built.items()}, clock.now_ms)
        if notifier is not None:
            notifier.agent("started", "one cycle per account (--once)" if once else "scheduled cycles")
            notifier.start()
        telegram = start_telegram(built, scheduler, clock, poll=not once)
        code = 1
        try:
            # ---- end notify ----
            if once:
                code = await scheduler.serve_once()
                for failure in scheduler.failures:  # prominently, beside the log lines
                    say(failure)
                return code
            conn = open_reader(db)
            try:
                last = last_cycle_times(conn)
            finally:
                if conn is not None:
                    conn.close()
            code = await scheduler.serve(last_cycle_ms=last)
            _log_session(log, db, list(built), now)
            return code
        finally:  # ---- notify ----
            if telegram is not None:
                await telegram.close()
            if notifier is not None:
                notifier.agent("stopped", f"exit code {code}", clean=code == 0)
                await notifier.close(flush_s=notifier.config.timeout_s)
    finally:
        for lock in locks:
            lock.release()


def start_telegram(built: Mapping[str, Services], scheduler: Scheduler, clock: Clock, *, poll: bool) -> Any:
    """With ``poll``, TELEGRAM_BOT_TOKEN and an allow-list, llmtrader.notify.telegram answers commands beside
    the scheduler (/closeall under the cycle lock). Its /pause and /resume are control requests, carried out
    by the cycle as serve's are: a paused account is still reconciled and guarded, it only makes no decision."""
    from llmtrader.cycle.manual import close_positions
    from llmtrader.logs import get_logger
    from llmtrader.storage.store import Store

    log = get_logger("llmtrader.scheduler")
    first = next(iter(built.values())).settings
    if not poll or first.telegram_bot_token is None or not first.notify.telegram_chat_ids:
        return None

    async def close_all(account: str, note: str) -> str:
        async def close(services: Services) -> str:
            done = await close_positions(services, None, by="control", note=note)  # as serve's close_all
            return "nothing was open" if done.execution is None else f"closed (decision {done.record.id})"

        result: str = await scheduler.exclusive(account, close)
        return result

    try:
        commands = TelegramCommands(
            Store(first.db), {name: s.settings for name, s in built.items()}, now_ms=clock.now_ms,
            close_all=close_all,
        )  # fmt: skip
    except Exception:
        log.exception("Telegram commands are off: they could not be set up")
        return None
    commands.start()
    return commands


def interval_in_force(store: Store, settings: Settings) -> str:
    """How often the account of ``settings`` (as configured) decides now: :func:`cycle_interval` of its
    strategy in force (the one chosen with ``strategy use``, else the configured one)."""
    return cycle_interval(settings, store.strategy_choice(settings.account))


def cycle_interval(settings: Settings, strategy: str | None = None) -> str:
    """How often an account decides: its ``interval`` setting when one was given (file, environment, an
    account table), else the interval of its strategy in force (``strategy``, else the configured one), as a
    backtest does; the setting's default when the strategy does not load (the cycle reports why)."""
    if "interval" in settings.model_fields_set:
        return str(settings.interval)
    try:
        return str(load_strategy(strategy or settings.strategy, settings.strategies_dir).interval)
    except LLMTraderError:
        return str(settings.interval)


def _log_session(log: Any, db: Path, accounts: list[str], since_ms: int) -> None:
    """The session summary when `run` stops: per account, cycles by outcome, fills, realised PnL after fees,
    model cost. A summary that cannot be read is only logged as such: the agent has stopped cleanly."""
    from llmtrader.storage.store import open_reader

    try:
        conn = open_reader(db)
        if conn is None:
            return
        try:
            rows = session_summary(conn, accounts, since_ms)
        finally:
            conn.close()
    except Exception:
        log.exception("the session summary could not be read")
        return
    for row in rows:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(row["outcomes"].items())) or "none"
        log.info(
            f"session: {row['cycles']} cycles ({outcomes}), {row['fills']} fills, realised PnL "
            f"{row['realized_pnl_usd']} USD after fees, model cost {row['model_cost_usd']:.4f} USD",
            account=row["account"],
        )


# ---- Status ---------------------------------------------------------------------------------------------


def agent_status(
    settings: Settings, conn: Connection | None, *, now_ms: int, offset_s: float = DEFAULT_OFFSET_S
) -> list[dict[str, Any]]:
    """``llmtrader status``: per account, from the database only (plain sqlite3, no venue or model call).

    ``running``: an agent holds the account's :class:`RunLock` now (``pid``: which process); ``interval`` and
    ``next_cycle`` are then the ones that agent recorded it schedules with (else those of the configuration).
    Open positions are the paper account's as last saved; for a live account they are not known here
    (``None``): asking the venue is ``llmtrader positions``. Equity is the one the last cycle saw.
    ``conn`` None (no database yet) gives every account with nothing run.
    """
    from llmtrader.core.guards import describe
    from llmtrader.core.times import iso_utc

    names = account_names(settings)
    cycles = last_cycles(conn, names) if conn is not None else {}
    notify_health = outbox_health(conn) if conn is not None else None
    out: list[dict[str, Any]] = []
    for name in names:
        account = settings_for_account(settings, name)
        strategy, source = strategy_in_force(conn, account)
        interval = cycle_interval(account, strategy)
        account = account.model_copy(update={"interval": interval}) if interval != account.interval else account
        last = cycles.get(name)
        lock = RunLock(account.db, name)
        pid = lock.holder()
        # A running agent's own schedule (its strategy's interval, its offset), not the caller's configuration.
        scheduled = lock.schedule() if pid is not None else None
        if scheduled is not None:
            account = account.model_copy(update={"interval": scheduled[0]})
        offset = scheduled[1] if scheduled is not None else offset_s
        positions = None
        if account.trading_mode == "paper":
            positions = (_paper_positions(conn, name) if conn is not None else None) or 0
        out.append(
            {
                "account": name,
                "mode": account.trading_mode,
                "running": pid is not None,
                "pid": pid,
                "strategy": strategy,
                "strategy_source": source,
                "model": model_label(account),
                "baseline_fallback": account.trading_mode == "paper" and model_key_missing(account),
                "interval": account.interval,
                "assets": list(account.assets),
                "last_cycle": _cycle_json(last) if last is not None else None,
                "next_cycle": iso_utc(next_fire_ms(now_ms, account.interval, offset)),
                "equity_usd": last["equity_usd"] if last is not None else None,
                "open_positions": positions,
                "guards": describe(_guard_state(conn, name), now_ms),
                # who paused it and when (serve or Telegram: control_requests), None: not paused
                "paused": pause_of(conn, name) if conn is not None else None,
                "notifications": notify_health,  # llmtrader.notify: the outbox (the same for every account)
            }
        )
    return out


def _cycle_json(row: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("started_at", "finished_at", "duration_ms", "outcome", "reason", "decision_id", "cached", "reconcile")
    return {key: row.get(key) for key in keys}

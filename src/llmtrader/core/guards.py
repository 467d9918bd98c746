"""Guards of the scheduled cycle, per account: kill switches, circuit breaker, model-call rate limits, and
the decision cache. Pure functions of their inputs (the time is always passed in as ``now_ms``); the store
persists their state (:meth:`~llmtrader.storage.store.Store.load_guard_state` and friends), so every guard
survives a restart.

Kill switches (account-level, persisted; the strategy's own per-decision daily loss limit lives in
:mod:`llmtrader.core.risk` and stays as it is):

- daily loss: equity now vs the equity at 00:00 UTC (realized plus unrealized), in % of the latter. Reaching
  ``daily_loss_kill_pct`` latches until the next UTC day: only reductions and closes, even if equity recovers.
- maximum drawdown: equity vs its peak (the peak is persisted and raised every cycle). Reaching
  ``max_drawdown_pct`` closes everything and stops opening until a person runs ``llmtrader resume ACCOUNT``;
  while stopped, every cycle is told to close all (a no-op once flat) and holds. The stop stays set even if
  the setting is turned off: only :func:`resume` lifts it. Resume clears the peak (or sets it to an equity
  given), so the next cycle's equity becomes the new peak and the account does not trip again at once.
- model budget: the account's model spend today (UTC; the sum of ``decisions.cost_usd``) reaching
  ``daily_model_budget_usd`` holds the account (no model call) until the next UTC day. One decision can
  overshoot the budget by its own cost: the check runs before a decision, not during it.

Circuit breaker: ``circuit_failures`` consecutive model failures open it for ``circuit_cooldown_minutes``;
then it is half-open and allows one trial call: success closes it, failure opens it again.

Rate limits: model calls of the account in the trailing minute and hour, counted from the store, so a
restart does not reset them. Each recorded model call attempt counts (retries and re-asks included), at the
time of its decision. A decision may start while fewer than the limit were made in each window (it may
then exceed the limit by its own retries); otherwise it is refused with the wait.

Decision cache: :func:`context_key` is the SHA-256 of a canonical JSON of :class:`CacheContext`, the inputs
that make two contexts "identical". A decision whose key was stored less than ``decision_cache_ttl_s`` ago
(default: one interval; 0 turns the cache off) is reused without a model call.

The contract of a cycle (``llmtrader run``), in this order, for one account
-----------------------------------------------------------------------------

1. ``gs = GuardSettings.from_settings(settings)``; ``state = store.load_guard_state(account)``.
2. Reconcile, then read the account (``cycle.snapshot.account_state``): ``equity = account.equity_usd``. If the
   account cannot be read, skip the cycle (record it) and do not call :func:`check_guards`.
3. ``verdict = check_guards(state, account=..., now_ms=now, equity=equity,
   day_start_equity=day_start_baseline(store, account, now),
   spend_today_usd=store.model_spend_usd(account, since_ms=day_start_ms(now)),
   model_call_times_ms=store.model_call_times(account, since_ms=now - HOUR_MS), settings=gs,
   transfers=transfers_since(store, account, transfers_from_ms(state, now)))``
   (on a live account, after syncing the venue's history: its TRANSFER income);
   then at once ``store.save_guard_state(account, verdict.new_state, verdict.events, now_ms=now)`` (one
   transaction: the state and its events), before anything else can fail.
4. ``verdict.close_all``: close every position (``cycle.manual.close_positions(services, None)``), record the
   cycle as skipped (kill switch) and stop here.
5. ``not verdict.allow_decision``: record the cycle as skipped (kill switch: the model budget) and stop:
   positions keep their stops and targets at the venue.
6. Build the context (``decide.prepare_draft``); ``key = context_key(cache_context(...))`` from what it holds;
   ``hit = store.cached_decision(key, now_ms=now)``. On a hit, reuse ``hit.answer`` (the parsed decision)
   instead of a model call: validate it with the current marks, account and limits like a fresh one, apply
   step 8, execute, and record a new decision with no ``llm_calls`` rows, ``cost_usd`` NULL and a note
   ``cached: reuses decision <hit.decision_id>`` (recorded as cached). Do not store the key again (the TTL
   runs from the model call).
7. ``not verdict.allow_model_call`` (circuit open, or a rate limit reached): record the cycle as skipped
   with ``verdict.reasons`` (``verdict.blocked_by`` says which) and stop.
8. Call the model (``decide.ask_model``: it returns the outcome). Then ``state, events =
   record_model_result(verdict.new_state, ok=..., now_ms=clock.now_ms(), settings=gs, error=...)`` and save
   them, before a failed decision is recorded: ``ok`` is False exactly when the
   model gave no usable answer (``ModelError``; outcome ``model_error``), True for any answer (decided or
   all rejected). A venue error before the call is not a model result. If ``not verdict.allow_openings``,
   pass the validation report through :func:`refuse_openings` before executing (only reductions and
   closes survive). On a usable answer, ``store.cache_decision(key, account=..., decision_id=...,
   answer=record.parsed, now_ms=now, ttl_ms=gs.decision_cache_ttl_ms)``.
9. Every recorded cycle (skipped ones too) carries ``equity_usd``: the start-of-day equity of
   :func:`llmtrader.storage.facts.account_facts` is read from it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from llmtrader.core.formatting import fmt
from llmtrader.core.json_views import usd
from llmtrader.core.times import DAY_MS, HOUR_MS, INTERVAL_MS, MINUTE_MS, Interval, iso_utc, utc_day

if TYPE_CHECKING:
    from llmtrader.core.account import AccountState
    from llmtrader.core.market import MarketSnapshot
    from llmtrader.core.risk import ValidationReport
    from llmtrader.core.strategy import Strategy

# Percentages compared with a tolerance, as in risk.py: a loss of exactly the limit trips the switch even
# when floating point puts it a hair below.
PCT_EPSILON = 1e-9
CACHE_KEY_VERSION = 1


# ---- Settings -------------------------------------------------------------------------------------------


class GuardSource(Protocol):
    """What :meth:`GuardSettings.from_settings` reads of an account's settings (the account's effective
    :class:`~llmtrader.config.settings.Settings`): a structural type, so the pure guards need no config."""

    @property
    def interval(self) -> Interval: ...
    @property
    def daily_loss_kill_pct(self) -> float | None: ...
    @property
    def max_drawdown_pct(self) -> float | None: ...
    @property
    def daily_model_budget_usd(self) -> float | None: ...
    @property
    def model_calls_per_minute(self) -> int: ...
    @property
    def model_calls_per_hour(self) -> int: ...
    @property
    def circuit_failures(self) -> int: ...
    @property
    def circuit_cooldown_minutes(self) -> float: ...
    @property
    def decision_cache_ttl_s(self) -> int | None: ...


@dataclass(frozen=True)
class GuardSettings:
    """The guard settings of one account, in the units the guards use (None: that switch is off)."""

    daily_loss_kill_pct: float | None
    max_drawdown_pct: float | None
    daily_model_budget_usd: float | None
    model_calls_per_minute: int
    model_calls_per_hour: int
    circuit_failures: int
    circuit_cooldown_ms: int
    decision_cache_ttl_ms: int  # 0: the cache is off

    @classmethod
    def from_settings(cls, settings: GuardSource) -> GuardSettings:
        """From an account's effective settings (:func:`llmtrader.config.accounts.settings_for_account`)."""
        ttl_s = settings.decision_cache_ttl_s
        return cls(
            daily_loss_kill_pct=settings.daily_loss_kill_pct,
            max_drawdown_pct=settings.max_drawdown_pct,
            daily_model_budget_usd=settings.daily_model_budget_usd,
            model_calls_per_minute=settings.model_calls_per_minute,
            model_calls_per_hour=settings.model_calls_per_hour,
            circuit_failures=settings.circuit_failures,
            circuit_cooldown_ms=round(settings.circuit_cooldown_minutes * MINUTE_MS),
            decision_cache_ttl_ms=INTERVAL_MS[settings.interval] if ttl_s is None else ttl_s * 1000,
        )


# ---- State ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KillState:
    """The kill switches of one account. Days are UTC day numbers: epoch ms // 86,400,000."""

    peak_equity: float | None = None  # the highest equity seen since the last resume (None: next cycle's)
    peak_at_ms: int | None = None
    stopped_at_ms: int | None = None  # the drawdown switch tripped; only resume() clears it
    stopped_reason: str | None = None
    daily_loss_day: int | None = None  # the day the daily loss switch tripped (it holds for that day)
    daily_loss_reason: str | None = None
    budget_day: int | None = None  # the day the model budget was reached
    budget_reason: str | None = None
    # Deposits and withdrawals move the peak: those up to this time are in it (None: up to peak_at_ms).
    transfers_to_ms: int | None = None


CircuitStatus = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class CircuitState:
    """The circuit breaker of one account's model calls."""

    status: CircuitStatus = "closed"
    failures: int = 0  # consecutive model failures
    open_until_ms: int | None = None  # while open: when the trial call becomes allowed
    last_error: str | None = None


@dataclass(frozen=True)
class GuardState:
    """Everything the guards persist for one account (one JSON document in ``guard_state``)."""

    kill: KillState = field(default_factory=KillState)
    circuit: CircuitState = field(default_factory=CircuitState)

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "kill": asdict(self.kill), "circuit": asdict(self.circuit)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> GuardState:
        """Tolerant of missing and unknown keys, so an older or newer document still loads."""
        if not data:
            return cls()

        def section(kind: type[Any], raw: Any) -> Any:
            known = {f.name for f in fields(kind)}
            return kind(**{k: v for k, v in (raw or {}).items() if k in known})

        circuit = section(CircuitState, data.get("circuit"))
        if circuit.status not in ("closed", "open", "half_open"):
            circuit = CircuitState()
        return cls(kill=section(KillState, data.get("kill")), circuit=circuit)


@dataclass(frozen=True)
class GuardEvent:
    """One trip, reset, resume or circuit transition, appended to ``guard_events``."""

    kind: str
    message: str


# Event kinds.
DRAWDOWN_STOP = "drawdown_stop"
RESUME = "resume"
DAILY_LOSS_STOP = "daily_loss_stop"
DAILY_LOSS_RESET = "daily_loss_reset"
BUDGET_STOP = "budget_stop"
BUDGET_RESET = "budget_reset"
CIRCUIT_OPEN = "circuit_open"
CIRCUIT_HALF_OPEN = "circuit_half_open"
CIRCUIT_CLOSED = "circuit_closed"


# ---- Shared arithmetic ----------------------------------------------------------------------------------


def loss_pct(reference: float | None, equity: float) -> float | None:
    """How far ``equity`` is below ``reference``, in % of ``reference`` (negative above it); None without a
    positive reference. The daily loss (reference: start-of-day equity) and the drawdown (the peak)."""
    if reference is None or reference <= 0:
        return None
    return (reference - equity) / reference * 100


def limit_reached(pct: float | None, limit: float | None) -> bool:
    """True when a loss of ``pct`` % reaches ``limit`` % (exactly at the limit counts); False when either
    is None (unknown, or the switch is off)."""
    return pct is not None and limit is not None and pct + PCT_EPSILON >= limit


def _day_iso(day: int) -> str:
    return iso_utc(day * DAY_MS)[:10]


# ---- Rate limits ----------------------------------------------------------------------------------------


def rate_limit_wait(
    call_times_ms: Sequence[int], now_ms: int, *, per_minute: int, per_hour: int
) -> tuple[int, str] | None:
    """None when one more model call may start now; else (milliseconds to wait, the reason).

    A window holds the calls made in the last 60 s (or 3,600 s): at ``limit`` calls in it, the next is
    refused until the oldest call that must leave has left. Calls stamped after ``now_ms`` (a clock step
    back) count as in the window.
    """
    worst: tuple[int, str] | None = None
    for window, limit, label in ((MINUTE_MS, per_minute, "minute"), (HOUR_MS, per_hour, "hour")):
        recent = sorted(t for t in call_times_ms if t > now_ms - window)
        if len(recent) < limit:
            continue
        leaving = recent[len(recent) - limit]  # once it leaves, limit - 1 remain: one more fits
        wait = leaving + window - now_ms
        if worst is None or wait > worst[0]:
            reason = (
                f"model call rate limit: {len(recent)} calls in the last {label} (limit {limit} per {label}); "
                f"next call allowed in {wait / 1000:.1f} s"
            )
            worst = (wait, reason)
    return worst


# ---- Circuit breaker ------------------------------------------------------------------------------------


def _circuit_due(circuit: CircuitState, now_ms: int) -> tuple[CircuitState, tuple[GuardEvent, ...]]:
    """An open circuit whose cool-down is over becomes half-open (one trial call allowed)."""
    if circuit.status == "open" and (circuit.open_until_ms is None or now_ms >= circuit.open_until_ms):
        event = GuardEvent(
            CIRCUIT_HALF_OPEN,
            f"circuit half-open: the cool-down ended at {iso_utc(circuit.open_until_ms or now_ms)}; "
            "one trial model call is allowed",
        )
        return replace(circuit, status="half_open", open_until_ms=None), (event,)
    return circuit, ()


def record_model_result(
    state: GuardState, *, ok: bool, now_ms: int, settings: GuardSettings, error: str | None = None
) -> tuple[GuardState, tuple[GuardEvent, ...]]:
    """The circuit after one model call: ``ok`` False when the model gave no usable answer.

    closed: a success resets the count; the Nth consecutive failure opens the circuit for the cool-down.
    half-open: the trial's success closes it; its failure opens it again for a full cool-down.
    """
    c = state.circuit
    if ok:
        if c.status == "closed" and c.failures == 0:
            return state, ()
        events: tuple[GuardEvent, ...] = ()
        if c.status != "closed":
            events = (GuardEvent(CIRCUIT_CLOSED, "circuit closed: the trial model call succeeded"),)
        return replace(state, circuit=CircuitState()), events
    failures = c.failures + 1
    detail = f": {error}" if error else ""
    if c.status == "closed" and failures < settings.circuit_failures:
        return replace(state, circuit=replace(c, failures=failures, last_error=error)), ()
    until = now_ms + settings.circuit_cooldown_ms
    why = (
        "the trial model call failed"
        if c.status != "closed"
        else f"{failures} consecutive model failures (limit {settings.circuit_failures})"
    )
    event = GuardEvent(CIRCUIT_OPEN, f"circuit open until {iso_utc(until)}: {why}{detail}")
    circuit = CircuitState(status="open", failures=failures, open_until_ms=until, last_error=error)
    return replace(state, circuit=circuit), (event,)


# ---- The check before deciding --------------------------------------------------------------------------

Blocker = Literal["drawdown", "budget", "daily_loss", "circuit", "rate_limit"]


@dataclass(frozen=True)
class GuardVerdict:
    """What a cycle may do now. ``new_state`` and ``events`` must be saved whatever the cycle does next.

    ``allow_decision`` False: hold this cycle, no model call and no cached decision (drawdown stop, budget).
    ``allow_model_call``: a NEW model call may be made (implies ``allow_decision``; False while the circuit
    is open or a rate limit is reached; a cached decision may still be reused then).
    ``allow_openings`` False: only reductions and closes (daily loss switch, drawdown stop).
    ``close_all``: close every position now (the drawdown stop; repeated every cycle until resume).
    ``retry_after_ms``: when a model call refused by the circuit or a rate limit may be made.
    ``blocked_by``: which guards restrict the cycle, in ``reasons``' order.
    """

    allow_decision: bool
    allow_model_call: bool
    allow_openings: bool
    close_all: bool
    reasons: tuple[str, ...]
    new_state: GuardState
    events: tuple[GuardEvent, ...]
    blocked_by: tuple[Blocker, ...] = ()
    retry_after_ms: int | None = None


def check_guards(
    state: GuardState,
    *,
    account: str,
    now_ms: int,
    equity: float,
    day_start_equity: float | None,
    spend_today_usd: float,
    model_call_times_ms: Sequence[int],
    settings: GuardSettings,
    transfers: Sequence[tuple[int, float]] = (),
) -> GuardVerdict:
    """Evaluate every guard of ``account`` before a decision; pure. See the module docstring for the inputs.

    ``day_start_equity`` None (no equity recorded before or today) means the daily loss is not measured.
    ``transfers``: the account's deposits (+) and withdrawals (−) as (time ms, USD), at least those since
    :func:`transfers_from_ms`: they are no profit or loss, so they move the peak (those since the peak, or
    since its last shift) by their amount. (``day_start_equity`` comes moved by those of the day:
    :func:`llmtrader.storage.facts.day_start_baseline`.)
    """
    kill = state.kill
    today = utc_day(now_ms)
    events: list[GuardEvent] = []
    reasons: list[str] = []
    blocked: list[Blocker] = []

    # Maximum drawdown: shift the peak by the transfers since it, raise it, then compare (a new high is a
    # drawdown of 0).
    if kill.stopped_at_ms is None:
        since = transfers_from_ms(state, now_ms)
        moved = [(t, amount) for t, amount in transfers if since < t <= now_ms]
        if kill.peak_equity is not None and moved:
            peak = kill.peak_equity + sum(amount for _, amount in moved)
            kill = replace(kill, peak_equity=peak, transfers_to_ms=max(t for t, _ in moved))
        if kill.peak_equity is None or equity > kill.peak_equity:
            kill = replace(kill, peak_equity=equity, peak_at_ms=now_ms, transfers_to_ms=None)
        drawdown = loss_pct(kill.peak_equity, equity)
        if limit_reached(drawdown, settings.max_drawdown_pct):
            assert drawdown is not None and kill.peak_equity is not None
            reason = (
                f"maximum drawdown reached: equity {fmt(equity)} USD is {drawdown:.2f}% below the peak "
                f"{fmt(kill.peak_equity)} USD (limit {fmt(settings.max_drawdown_pct)}%): every position is "
                f"closed and no new one opened until `llmtrader resume {account}`"
            )
            kill = replace(kill, stopped_at_ms=now_ms, stopped_reason=reason)
            events.append(GuardEvent(DRAWDOWN_STOP, reason))
    stopped = kill.stopped_at_ms is not None
    if stopped:
        reasons.append(kill.stopped_reason or f"stopped by the drawdown switch: run `llmtrader resume {account}`")
        blocked.append("drawdown")

    # Model budget: reached today -> hold until the next UTC day.
    if kill.budget_day is not None and kill.budget_day != today:
        events.append(GuardEvent(BUDGET_RESET, f"model budget of {_day_iso(kill.budget_day)} reset: a new UTC day"))
        kill = replace(kill, budget_day=None, budget_reason=None)
    budget = settings.daily_model_budget_usd
    if budget is not None and spend_today_usd + PCT_EPSILON >= budget:
        if kill.budget_day != today:
            reason = (
                f"daily model budget reached: {fmt(spend_today_usd)} USD spent today (UTC) of "
                f"{fmt(budget)} USD: holding, no model call until 00:00 UTC"
            )
            kill = replace(kill, budget_day=today, budget_reason=reason)
            events.append(GuardEvent(BUDGET_STOP, reason))
        reasons.append(kill.budget_reason or "daily model budget reached")
        blocked.append("budget")
    elif kill.budget_day == today:  # the budget was raised (or turned off) since it was reached
        now_budget = "off" if budget is None else f"{fmt(budget)} USD"
        events.append(
            GuardEvent(BUDGET_RESET, f"model budget reset: {fmt(spend_today_usd)} USD spent today, budget {now_budget}")
        )
        kill = replace(kill, budget_day=None, budget_reason=None)

    # Daily loss: latched for the UTC day on which it tripped.
    if kill.daily_loss_day is not None and kill.daily_loss_day != today:
        events.append(
            GuardEvent(DAILY_LOSS_RESET, f"daily loss switch of {_day_iso(kill.daily_loss_day)} reset: a new UTC day")
        )
        kill = replace(kill, daily_loss_day=None, daily_loss_reason=None)
    if kill.daily_loss_day is None:
        daily = loss_pct(day_start_equity, equity)
        if limit_reached(daily, settings.daily_loss_kill_pct):
            assert daily is not None and day_start_equity is not None
            reason = (
                f"daily loss switch: equity {fmt(equity)} USD is {daily:.2f}% below the start-of-day equity "
                f"{fmt(day_start_equity)} USD (limit {fmt(settings.daily_loss_kill_pct)}%): only reductions and "
                "closes until 00:00 UTC"
            )
            kill = replace(kill, daily_loss_day=today, daily_loss_reason=reason)
            events.append(GuardEvent(DAILY_LOSS_STOP, reason))
    if kill.daily_loss_day == today:
        reasons.append(kill.daily_loss_reason or "daily loss switch tripped today")
        blocked.append("daily_loss")

    # Circuit breaker and rate limits: only about a new model call.
    circuit, circuit_events = _circuit_due(state.circuit, now_ms)
    events += circuit_events
    retry_after: int | None = None
    circuit_open = circuit.status == "open"
    if circuit_open:
        until = circuit.open_until_ms or now_ms
        retry_after = until - now_ms
        last = f" (last: {circuit.last_error})" if circuit.last_error else ""
        reasons.append(
            f"circuit open until {iso_utc(until)} after {circuit.failures} consecutive model failures{last}: "
            "no model call"
        )
        blocked.append("circuit")
    limited = rate_limit_wait(
        model_call_times_ms,
        now_ms,
        per_minute=settings.model_calls_per_minute,
        per_hour=settings.model_calls_per_hour,
    )
    if limited is not None:
        retry_after = max(retry_after or 0, limited[0])
        reasons.append(limited[1])
        blocked.append("rate_limit")

    allow_decision = not stopped and "budget" not in blocked
    return GuardVerdict(
        allow_decision=allow_decision,
        allow_model_call=allow_decision and not circuit_open and limited is None,
        allow_openings=not stopped and kill.daily_loss_day != today,
        close_all=stopped,
        reasons=tuple(reasons),
        new_state=GuardState(kill=kill, circuit=circuit),
        events=tuple(events),
        blocked_by=tuple(blocked),
        retry_after_ms=retry_after,
    )


def openings_refused_now(state: GuardState, *, account: str, now_ms: int) -> str | None:
    """Why the account's saved guard state refuses openings now, else None: the drawdown stop (until a person
    resumes) or today's daily loss switch, as the agent's cycles latched them. A manual ``decide`` honours
    them as the cycle does (only reductions and closes)."""
    kill = state.kill
    reasons: list[str] = []
    if kill.stopped_at_ms is not None:
        reasons.append(kill.stopped_reason or f"stopped by the drawdown switch: run `llmtrader resume {account}`")
    if kill.daily_loss_day is not None and kill.daily_loss_day == utc_day(now_ms):
        reasons.append(kill.daily_loss_reason or "daily loss switch tripped today")
    return "; ".join(reasons) or None


def transfers_from_ms(state: GuardState, now_ms: int) -> int:
    """The time after which transfers are not yet in the persisted peak: what :func:`check_guards` needs
    them from."""
    kill = state.kill
    if kill.transfers_to_ms is not None:
        return kill.transfers_to_ms
    return kill.peak_at_ms if kill.peak_at_ms is not None else now_ms


# ---- Resume ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResumeResult:
    """What ``llmtrader resume`` changed (``resumed`` False: the account was not stopped; nothing changed)."""

    resumed: bool
    stopped_at_ms: int | None
    reason: str | None
    previous_peak: float | None
    new_peak: float | None
    new_state: GuardState
    events: tuple[GuardEvent, ...]


def resume(state: GuardState, *, now_ms: int, equity: float | None = None, by: str = "cli") -> ResumeResult:
    """Lift the drawdown stop. The peak is reset: to ``equity`` when given, else cleared, so the next cycle's
    equity becomes the new peak (otherwise the old peak would trip the switch again at once). The daily
    switches and the circuit are left as they are."""
    kill = state.kill
    if kill.stopped_at_ms is None:
        return ResumeResult(False, None, None, kill.peak_equity, kill.peak_equity, state, ())
    new_peak_text = f"{fmt(equity)} USD" if equity is not None else "the next cycle's equity"
    message = (
        f"resumed by {by}: the drawdown stop of {iso_utc(kill.stopped_at_ms)} is lifted; the equity peak "
        f"{fmt(kill.peak_equity)} USD is reset to {new_peak_text}"
    )
    new_kill = replace(
        kill,
        stopped_at_ms=None,
        stopped_reason=None,
        peak_equity=equity,
        peak_at_ms=now_ms if equity is not None else None,
        transfers_to_ms=None,
    )
    return ResumeResult(
        resumed=True,
        stopped_at_ms=kill.stopped_at_ms,
        reason=kill.stopped_reason,
        previous_peak=kill.peak_equity,
        new_peak=equity,
        new_state=replace(state, kill=new_kill),
        events=(GuardEvent(RESUME, message),),
    )


# ---- Visibility -----------------------------------------------------------------------------------------


def describe(state: GuardState, now_ms: int) -> dict[str, Any]:
    """The guards' state as plain data for ``status``: each kill switch and the circuit, as of ``now_ms``
    (a daily switch of an earlier day shows as off; an open circuit past its cool-down as half-open)."""
    kill = state.kill
    today = utc_day(now_ms)
    circuit, _ = _circuit_due(state.circuit, now_ms)
    return {
        "drawdown": {
            "stopped": kill.stopped_at_ms is not None,
            "since": iso_utc(kill.stopped_at_ms) if kill.stopped_at_ms is not None else None,
            "reason": kill.stopped_reason,
            "peak_equity_usd": usd(kill.peak_equity),
            "peak_at": iso_utc(kill.peak_at_ms) if kill.peak_at_ms is not None else None,
        },
        "daily_loss": {
            "tripped": kill.daily_loss_day == today,
            "reason": kill.daily_loss_reason if kill.daily_loss_day == today else None,
        },
        "budget": {
            "reached": kill.budget_day == today,
            "reason": kill.budget_reason if kill.budget_day == today else None,
        },
        "circuit": {
            "state": circuit.status,
            "until": iso_utc(circuit.open_until_ms) if circuit.open_until_ms is not None else None,
            "consecutive_failures": circuit.failures,
            "last_error": circuit.last_error,
        },
    }


# ---- Openings under the daily loss switch ---------------------------------------------------------------


def refuse_openings(report: ValidationReport, account: AccountState, reason: str) -> ValidationReport:
    """The report with every opening and increase rejected for ``reason``: buy and sell, and an
    adjust_position that adds margin. Closes, reductions, order adjustments and holds pass unchanged."""
    from llmtrader.core.decision import OPENING_ACTIONS, Action
    from llmtrader.core.risk import AssetValidation, Status, ValidationReport

    out: list[AssetValidation] = []
    for v in report.assets:
        d = v.final
        opening = False
        if v.executable and d is not None:
            position = account.position(d.symbol)
            opening = d.action in OPENING_ACTIONS or (
                d.action is Action.ADJUST_POSITION
                and position is not None
                and d.allocation_usd > position.margin + 1e-9
            )
        if opening:
            v = AssetValidation(v.symbol, v.action, Status.REJECTED, [*v.reasons, reason], v.proposed, None)
        out.append(v)
    return ValidationReport(assets=out, notes=list(report.notes))


# ---- Decision cache -------------------------------------------------------------------------------------

CandleMark = tuple[str, str, int, float, float, float, float, float]
PositionMark = tuple[str, str, float, float, int, float | None, float | None]


@dataclass(frozen=True)
class CacheContext:
    """Exactly what makes two decision contexts identical (nothing else goes into :func:`context_key`).

    - ``account``: the account name; ``symbols``: the symbols decided on, in order.
    - ``candles``: per symbol and timeframe shown, the NEWEST CLOSED candle: (symbol, timeframe, open time
      ms, open, high, low, close, volume), sorted. A new candle closing on any series changes the key.
    - ``balance_usd``: the wallet balance (without unrealized PnL).
    - ``positions``: (symbol, side, size, entry price, leverage, stop-loss, take-profit), sorted.
    - ``strategy``, ``strategy_digest``: its name and :func:`strategy_digest` (any edit of the file that
      changes the strategy changes the key); ``model``, ``base_url``: the model and its endpoint; ``arm``:
      the A/B arm (None outside a test).

    Deliberately left out, as they move all the time: mark, index and last prices, funding, open interest,
    24 h figures, unrealized PnL, the clock. A reused decision is validated again on the current marks.
    """

    account: str
    symbols: tuple[str, ...]
    candles: tuple[CandleMark, ...]
    balance_usd: float
    positions: tuple[PositionMark, ...]
    strategy: str
    strategy_digest: str
    model: str
    base_url: str
    arm: str | None = None


def strategy_digest(strategy: Strategy) -> str:
    """SHA-256 of the loaded strategy's canonical JSON: every setting and prompt text that shapes a decision."""
    return hashlib.sha256(strategy.model_dump_json().encode()).hexdigest()


def cache_context(
    *,
    account_name: str,
    symbols: Sequence[str],
    snapshot: MarketSnapshot,
    account: AccountState,
    strategy: Strategy,
    model: str,
    base_url: str,
    arm: str | None = None,
) -> CacheContext:
    """The :class:`CacheContext` of a prepared decision (``cycle.snapshot.Prepared``: its snapshot, account,
    strategy)."""
    candles: list[CandleMark] = []
    for symbol, market in snapshot.assets.items():
        for timeframe, c in market.candles.items():
            if len(c):
                candles.append(
                    (
                        symbol,
                        timeframe,
                        int(c.open_time_ms[-1]),
                        float(c.open[-1]),
                        float(c.high[-1]),
                        float(c.low[-1]),
                        float(c.close[-1]),
                        float(c.volume[-1]),
                    )
                )
    positions: list[PositionMark] = [
        (p.symbol, p.side, p.size, p.entry_price, p.leverage, p.stop_loss, p.take_profit) for p in account.positions
    ]
    return CacheContext(
        account=account_name,
        symbols=tuple(symbols),
        candles=tuple(sorted(candles)),
        balance_usd=account.balance_usd,
        positions=tuple(sorted(positions, key=lambda p: (p[0], p[1]))),
        strategy=strategy.name,
        strategy_digest=strategy_digest(strategy),
        model=model,
        base_url=base_url,
        arm=arm,
    )


def context_key(context: CacheContext) -> str:
    """SHA-256 (hex) of the canonical JSON of ``context``: sorted keys, no spaces, floats as Python's
    shortest repr, with a version number so that a change of this definition never reuses old entries."""
    # Its fields are plain values and tuples of them: a shallow read gives what asdict would, without
    # asdict's deep copy of every candle figure (a cost of every cycle).
    material = {"v": CACHE_KEY_VERSION, **{f.name: getattr(context, f.name) for f in fields(context)}}
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CachedDecision:
    """A stored decision that an identical context may reuse until ``expires_at_ms``."""

    key: str
    account: str
    decision_id: str
    answer: dict[str, Any]  # the parsed decision (decisions.parsed) to validate again
    created_at_ms: int
    expires_at_ms: int

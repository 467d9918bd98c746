"""One scheduled cycle of one account (``llmtrader run``): reconcile, guards, decide, record.

The steps follow the contract in :mod:`llmtrader.core.guards`, in this order:

1. **Reconcile** the venue with the store (:func:`reconcile`): a position without a stop gets one re-armed at
   once (or is closed if that fails, an emergency), a position the store does not know is adopted with a
   warning, and orders the store believes open that the venue no longer has are marked. When the venue cannot
   be read, the cycle is skipped and positions stay as they are.
2. **Guards**: the account is read, the live venue's history synced (closes that filled there, deposits and
   withdrawals; when it cannot be read, the decision holds openings), every guard checked, and their state
   and events saved at once. The drawdown stop closes everything; a stop or the model budget skips the cycle.
3. **Decide**, step by step (:mod:`llmtrader.cycle.decide`): the draft and the prepared prompt; an identical
   context reuses a cached decision without a model call; an open circuit or a rate limit skips the cycle
   otherwise; the model's outcome is returned, and the cycle records it in the guard state (the circuit
   breaker) before a failed decision is recorded; the daily loss switch refuses openings; the decision is
   validated, its caps re-checked, recorded, and executed.
4. **Record** the cycle (the ``cycles`` table), whatever happened, with one outcome:

   - ``traded``: something was executed (execution executed, partial, or emergency);
   - ``held``: nothing to execute (holds only, or nothing executable, or a dry run);
   - ``model_error``: the model gave no usable answer;
   - ``risk_veto``: every asset decision was rejected by validation (or by a kill switch);
   - ``exchange_reject``: the venue rejected or failed every order, or execution could not start;
   - ``unprotected``: a position may be open without a stop-loss: none could be armed and the emergency
     close failed too (in reconcile or in execution), whatever else the cycle did. Logged at ERROR, and
     ``run --once`` exits 3;
   - ``skipped``: reconcile could not read the venue, a kill switch or the model budget holds the account,
     the circuit is open or a rate limit is reached (and no cached decision applies), the strategy or a
     symbol is broken, a read before the decision failed, or the scheduler skipped an overlapping cycle.

   Every cycle carries the account equity it saw (None when the account could not be read); the start-of-day
   equity of the daily loss switch is read from it.
5. **Log** one summary line (:func:`llmtrader.logs.cycle_summary`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmtrader.core.formatting import fmt
from llmtrader.core.guards import GuardSettings, check_guards, record_model_result, transfers_from_ms
from llmtrader.core.records import DecisionRecord
from llmtrader.core.risk import ValidationReport
from llmtrader.core.strategy import StrategyLimits
from llmtrader.core.times import HOUR_MS, day_start_ms
from llmtrader.cycle.decide import (
    arm_strategy,
    ask_model,
    cache_key,
    cached_answer,
    execute_decision,
    open_draft,
    prepare_draft,
    recheck_caps,
    record_decision,
    record_model_error,
    validate,
)
from llmtrader.cycle.execution import ExecutionReport, covers, ours
from llmtrader.cycle.manual import close_positions, position_rows, protect_positions
from llmtrader.cycle.services import Services
from llmtrader.cycle.snapshot import account_state, sync_live_history
from llmtrader.errors import ConfigError, ExecutionNotStarted, ModelError, NotFoundError, StrategyError, VenueError
from llmtrader.exchange.base import OrderState, OrderType, Side, VenuePosition, dec_str, together
from llmtrader.logs import cycle_summary, get_logger
from llmtrader.storage import web as controls
from llmtrader.storage import web as snapshots
from llmtrader.storage.facts import AccountFacts, day_start_baseline, transfers_since

if TYPE_CHECKING:
    from llmtrader.storage.store import Store

TRADED = "traded"
HELD = "held"
MODEL_ERROR = "model_error"
RISK_VETO = "risk_veto"
EXCHANGE_REJECT = "exchange_reject"
SKIPPED = "skipped"
UNPROTECTED = "unprotected"
OUTCOMES = (TRADED, HELD, MODEL_ERROR, RISK_VETO, EXCHANGE_REJECT, SKIPPED, UNPROTECTED)

ADOPTED = "adopted"  # execution event: a venue position llmtrader has no record of opening
RECONCILED = "reconcile"  # execution event: an order row marked with what the venue says now
EMERGENCY = "emergency"
# Order rows looked up at the venue per cycle (each one a request): the rest wait for the next cycles.
MAX_ORDER_CHECKS = 20
# Without an ATR, the re-armed stop sits this far from the mark.
FALLBACK_STOP_FRACTION = Decimal("0.03")
# A stop beyond the liquidation price never triggers: it is pulled in to this share of the way from the
# liquidation price to the mark.
LIQUIDATION_MARGIN = Decimal("0.2")
ATR_CANDLES = 100
# Guards that refuse openings, and guards that refuse a new model call (GuardVerdict.blocked_by).
_OPENING_BLOCKERS = ("daily_loss", "drawdown")
_MODEL_BLOCKERS = ("circuit", "rate_limit")


@dataclass
class CycleResult:
    """What one cycle of one account did (also the row recorded in ``cycles``)."""

    account: str
    started_ms: int
    finished_ms: int
    outcome: str  # one of OUTCOMES
    reason: str | None  # why, for every outcome but traded and held (which may still say something)
    decision_id: str | None
    reconcile: list[str] = field(default_factory=list)  # what reconcile did
    equity_usd: float | None = None
    cached: bool = False  # the decision reused a cached answer (no model call)
    unprotected: list[str] = field(default_factory=list)  # symbols that may be open without a stop-loss
    unreachable: str | None = None  # "venue" or "model": the cycle could not reach it (run --once exits 1)

    @property
    def duration_ms(self) -> int:
        return max(0, self.finished_ms - self.started_ms)


# ---- the cycle ------------------------------------------------------------------------------------------


async def run_cycle(
    services: Services, *, now_ms: int | None = None, dry_run: bool = False, served: bool = False
) -> CycleResult:
    """Run one cycle of the account of ``services`` (see the module docstring) and record it.

    ``now_ms`` is the cycle's time for the guards and the record (default: the services' clock). ``dry_run``
    sends no order at all: reconcile only reports the stops it would re-arm, the drawdown switch closes
    nothing, and the decision is recorded as a dry run. ``served`` (the scheduled agent, not a backtest) also
    carries out the control requests of ``llmtrader serve`` and records the positions at the cycle's end.

    The expected failures (the venue, the model, a broken strategy) are outcomes, never raised. Anything
    else (a StoreError: the audit trail is gone; a bug) is recorded as skipped when the store still allows,
    then raised, for the scheduler to report.
    """
    settings = services.settings
    now = now_ms if now_ms is not None else services.clock.now_ms()
    started = time.monotonic()
    result = CycleResult(settings.account, now, now, SKIPPED, None, None)
    fields: dict[str, Any] = {}
    try:
        await _cycle(services, result, now, dry_run, fields, served)
        if served:
            await _snapshot_positions(services)
        _flag_unprotected(result)
    except BaseException as exc:
        result.outcome = SKIPPED
        from llmtrader.core.redact import redact, secrets_of

        # An exception's text may quote anything, a key included: it is redacted before it is stored.
        result.reason = redact(f"the cycle failed: {type(exc).__name__}: {exc}", secrets_of(services.settings))
        _finish(services.store, result, started, fields, raising=True)
        raise
    _finish(services.store, result, started, fields)
    return result


def _flag_unprotected(result: CycleResult) -> None:
    """An unprotected position outranks whatever else the cycle did: the outcome says so, and why."""
    if not result.unprotected:
        return
    symbols = ", ".join(dict.fromkeys(result.unprotected))
    was = f"; the cycle was {result.outcome}" + (f": {result.reason}" if result.reason else "")
    result.outcome = UNPROTECTED
    result.reason = f"{symbols} may be open WITHOUT A STOP-LOSS: close it by hand (`llmtrader close`){was}"


def record_skipped_cycle(store: Store, account: str, *, now_ms: int, reason: str) -> CycleResult:
    """Record a cycle that did not run (the scheduler's overlap skip: the previous one is still running)."""
    result = CycleResult(account, now_ms, now_ms, SKIPPED, reason, None)
    _record(store, result)
    _log(result, {})
    return result


def _finish(store: Store, result: CycleResult, started: float, fields: dict[str, Any], raising: bool = False) -> None:
    result.finished_ms = result.started_ms + int((time.monotonic() - started) * 1000)
    if raising:
        # The original error is the one to raise; the store itself may be what failed.
        with contextlib.suppress(Exception):
            _record(store, result)
    else:
        _record(store, result)
    _log(result, fields)


def _record(store: Store, result: CycleResult) -> None:
    store.record_cycle(
        account=result.account,
        started_ms=result.started_ms,
        finished_ms=result.finished_ms,
        outcome=result.outcome,
        reason=result.reason,
        decision_id=result.decision_id,
        equity_usd=result.equity_usd,
        cached=result.cached,
        reconcile=result.reconcile,
    )


def _log(result: CycleResult, fields: dict[str, Any]) -> None:
    import logging

    level = logging.WARNING if "error" in result.outcome or "reject" in result.outcome else logging.INFO
    if result.outcome == UNPROTECTED:
        level = logging.ERROR
    if not logging.getLogger("llmtrader.cycle").isEnabledFor(level):
        return  # a backtest runs thousands of cycles with this line off: it costs nothing then

    cycle_summary(
        get_logger("llmtrader.cycle"),
        account=result.account,
        outcome=result.outcome,
        duration_ms=result.duration_ms,
        decision_id=result.decision_id,
        reason=result.reason,
        equity_usd=result.equity_usd,
        cached=result.cached or None,
        reconcile=result.reconcile or None,
        **fields,
    )


async def _cycle(
    services: Services, result: CycleResult, now: int, dry_run: bool, fields: dict[str, Any], served: bool = False
) -> None:
    settings, store = services.settings, services.store
    name = settings.account
    gs = GuardSettings.from_settings(settings)
    state = store.load_guard_state(name)

    # 1. Reconcile: protection first; a venue that cannot be read skips the cycle.
    try:
        await _reconcile(services, now, result.reconcile, dry_run=dry_run, unprotected=result.unprotected)
    except VenueError as exc:
        result.reason = f"reconcile failed, positions left as they are: {exc}"
        result.unreachable = "venue"
        return
    try:
        account = await account_state(services)
    except VenueError as exc:
        result.reason = f"the account cannot be read: {exc}"
        result.unreachable = "venue"
        return
    result.equity_usd = account.equity_usd
    paused = await _carry_out_controls(services, result, dry_run) if served else None
    # The venue's history (live): the closes that filled there while no one looked (for the cooldown and the
    # minimum hold) and the deposits and withdrawals (for the kill switches' baselines), whatever the strategy
    # shows the model. When it cannot be read, the decision holds openings (decide.validate).
    history = await sync_live_history(services)

    # 2. Guards: checked, then their state and events saved at once, before anything else can fail.
    verdict = check_guards(
        state,
        account=name,
        now_ms=now,
        equity=account.equity_usd,
        day_start_equity=day_start_baseline(store, name, now),
        spend_today_usd=store.model_spend_usd(name, since_ms=day_start_ms(now)),
        model_call_times_ms=store.model_call_times(name, since_ms=now - HOUR_MS),
        settings=gs,
        transfers=transfers_since(store, name, transfers_from_ms(state, now)),
    )
    if verdict.events or verdict.new_state != state:  # unchanged state: nothing to write
        store.save_guard_state(name, verdict.new_state, verdict.events, now_ms=now)
    if verdict.events:
        logger = get_logger("llmtrader.cycle")
        for event in verdict.events:
            logger.warning("guard", account=name, kind=event.kind, message=event.message)
    blocked = list(zip(verdict.blocked_by, verdict.reasons, strict=False))
    if not verdict.allow_openings and not verdict.close_all:
        # The daily loss switch: no opening, and none of llmtrader's entries resting from earlier may fill now.
        await _cancel_resting_entries(services, result.reconcile, dry_run, why="the daily loss switch is on")
    if verdict.close_all:
        result.reason = "; ".join(verdict.reasons)
        if account.positions or not dry_run:  # with no position, llmtrader's resting entries are still cancelled
            await _close_all(services, result, dry_run)
        return
    if not verdict.allow_decision:
        result.reason = "; ".join(verdict.reasons)
        return

    if paused is not None:  # after reconcile and the guards: a paused account is still protected
        result.reason = paused
        return

    # 3. The draft of the decision (its id, A/B arm, client and strategy), then the market read, the context
    #    built and the prompt rendered, on the account and history read above (not read again).
    try:
        draft = open_draft(services, settings.assets, dry_run=dry_run)
        prepared = await prepare_draft(services, draft, account=account, history=history)
    except VenueError as exc:  # the decision is recorded as venue_error
        result.decision_id = exc.decision_id
        result.reason = f"the venue could not be read for the decision: {exc}"
        result.unreachable = "venue"
        return
    except ConfigError as exc:  # a strategy that no longer loads, a symbol no longer listed
        result.reason = str(exc)
        return

    # 4. The answer: a cached one for an identical context, else the model's if the guards allow a call.
    key = cache_key(services, draft, prepared) if gs.decision_cache_ttl_ms > 0 else None
    cached = cached_answer(services, draft, key) if key is not None else None
    if cached is None and not verdict.allow_model_call:  # nothing is recorded
        result.reason = "; ".join(r for b, r in blocked if b in _MODEL_BLOCKERS) or "no model call allowed"
        return
    if cached is not None:
        decision = cached
    else:
        asked = await ask_model(draft, prepared)  # the answer, or the ModelError: returned, not raised
        # The cycle counts the model's result in its guard state (the circuit breaker) at once, before a failed
        # decision is recorded.
        at = services.clock.now_ms()
        failed = isinstance(asked, ModelError)
        counted, events = record_model_result(
            verdict.new_state, ok=not failed, now_ms=at, settings=gs, error=str(asked) if failed else None
        )
        if events or counted != verdict.new_state:
            store.save_guard_state(name, counted, events, now_ms=at)
        if isinstance(asked, ModelError):
            record_model_error(services, draft, asked)
            result.outcome, result.reason, result.decision_id = MODEL_ERROR, str(asked), draft.record.id
            result.unreachable = "model"
            return
        decision = asked.decision

    # 5. Validate (openings refused by the daily loss or drawdown switch), re-check the caps on the account
    #    read again, record the decision (a new answer cached), and execute what survived.
    openings = "; ".join(r for b, r in blocked if b in _OPENING_BLOCKERS) or None
    report = validate(draft, prepared, decision, openings_refused=openings)
    cache = (key, gs.decision_cache_ttl_ms) if key is not None and cached is None else None  # a new answer
    try:
        report = await recheck_caps(services, draft, prepared, report)
        record_decision(services, draft, report, cache=cache)
        execution = await execute_decision(services, draft, prepared, report)
    except ExecutionNotStarted as exc:  # the decision is recorded, execution failed
        result.decision_id = exc.decision_id
        result.outcome, result.reason = EXCHANGE_REJECT, f"execution did not start: {exc}"
        return

    # 6. The outcome.
    record = draft.record
    result.decision_id = record.id
    result.cached = cached is not None
    result.outcome, result.reason = _outcome(record, report, execution, openings)
    fields.update(model=record.model, cost_usd=record.cost_usd)
    if execution is not None:
        result.unprotected += execution.unprotected
        fields["orders"] = sum(1 for a in execution.assets for leg in a.legs if leg.client_order_id)


async def _close_all(services: Services, result: CycleResult, dry_run: bool) -> None:
    """The drawdown stop: close every position (recorded as a decision by the guards)."""
    if dry_run:
        result.reason = f"{result.reason}; dry run: the positions are not closed"
        return
    try:
        closed = await close_positions(
            services, None, by="guards", note=f"closed by the maximum drawdown switch: {result.reason}"
        )
    except VenueError as exc:
        result.decision_id = exc.decision_id
        result.reason = f"{result.reason}; closing the positions failed: {exc}"
        return
    if closed.execution is None:
        return  # nothing was open any more
    result.decision_id = closed.record.id
    result.unprotected += closed.execution.unprotected
    if closed.execution.summary != "executed":
        problems = [n for a in closed.execution.assets if a.outcome != "executed" for n in a.notes[-1:]]
        result.reason = f"{result.reason}; closing: {closed.execution.summary}: {'; '.join(problems)}"


# ---- serve's control requests and positions snapshot (llmtrader.web reads them; storage m012_web) --------


async def _carry_out_controls(services: Services, result: CycleResult, dry_run: bool) -> str | None:
    """Carry out the pending control requests of the dashboard (``serve --allow-control``), oldest first:
    close_all closes every position at market as `close --all` does (recorded as a decision by "control");
    pause and resume are marked done. Returns why the cycle must not decide (the account is paused), or None."""
    store, name = services.store, services.settings.account
    for request in controls.pending_controls(store, name):
        status, said = "done", f"{request['action']} carried out"
        if request["action"] == "close_all":
            note = f"closed at market from {request['source']} (control request {request['id']})"
            if dry_run:
                status, said = "failed", "dry run: the positions are not closed"
            else:
                try:
                    closed = await close_positions(services, None, by="control", note=note)
                except VenueError as exc:
                    status, said = "failed", f"closing failed: {exc}"
                else:
                    result.unprotected += closed.execution.unprotected if closed.execution is not None else []
                    said = f"decision {closed.record.id}: {closed.record.execution}"
                    if closed.execution is not None and closed.execution.summary != "executed":
                        status = "failed"
        controls.finish_control(store, request["id"], status=status, result=said, now_ms=services.clock.now_ms())
    return controls.is_paused(store, name)


async def _snapshot_positions(services: Services) -> None:
    """Record the open positions with their stops and targets as the cycle leaves them (for ``serve``); a
    venue that cannot be read now only costs the snapshot."""
    try:
        mode, rows = await position_rows(services)
    except VenueError as exc:
        get_logger("llmtrader.cycle").warning("positions snapshot skipped", reason=str(exc))
        return
    snapshots.record_positions(
        services.store, account=services.settings.account, mode=mode, time_ms=services.clock.now_ms(), rows=rows
    )


def _outcome(
    record: DecisionRecord, report: ValidationReport, execution: ExecutionReport | None, openings_refused: str | None
) -> tuple[str, str | None]:
    """The outcome of a recorded decision, and why."""
    if record.outcome == "all_rejected":
        rejected = [f"{v.symbol}: {'; '.join(v.reasons[:2])}" for v in report.assets]
        return RISK_VETO, "every asset decision was rejected: " + " | ".join(rejected)
    vetoed = [v for v in report.assets if v.status.value == "rejected" and v.action != "hold"]
    if execution is None:
        if vetoed and record.execution != "dry_run" and not openings_refused:  # the risk checks said no
            return RISK_VETO, "rejected: " + " | ".join(f"{v.symbol}: {'; '.join(v.reasons[:2])}" for v in vetoed)
        why = "dry run" if record.execution == "dry_run" else None
        return HELD, why or (f"openings refused: {openings_refused}" if openings_refused else None)
    summary = execution.summary
    if summary in ("executed", "partial", "emergency"):
        emergencies = [n for a in execution.assets if a.emergency for n in a.notes[-1:]]
        return TRADED, ("emergency: " + "; ".join(emergencies)) if emergencies else None
    if summary == "unfilled":
        return HELD, "; ".join(f"{a.symbol}: {a.notes[-1] if a.notes else a.outcome}" for a in execution.assets)
    if summary == "failed":
        failures = [f"{a.symbol}: {a.notes[-1] if a.notes else a.outcome}" for a in execution.assets]
        return EXCHANGE_REJECT, "; ".join(failures)
    return HELD, None


# ---- reconcile ------------------------------------------------------------------------------------------


async def reconcile(services: Services, now_ms: int, *, dry_run: bool = False) -> list[str]:
    """Make the store and the venue agree, protection first; returns what was done, one line each.

    - A venue position llmtrader has no record of opening (no filled entry since the symbol's last close, and
      no earlier adoption) is adopted: a warning, recorded as an ``adopted`` execution event.
    - A position without a stop-loss covering it (a reduce-only stop smaller than the position counts as none)
      gets one at once, through execution's protective-order path, recorded
      as a decision by ``reconcile``: at the last stop llmtrader recorded for it while that is still on the
      right side of the mark, else ``max_stop_atr`` x ATR(14) of the decision interval from the mark (3% when
      the ATR is unknown), pulled inside the liquidation price. If the stop is not acknowledged, the position
      is closed reduce-only: an emergency. (``dry_run``: nothing is placed, the list says what would be.)
    - Orders the store believes open (or whose outcome it does not know) that the venue no longer lists are
      looked up and marked with the venue's status, or ``vanished`` when it has no such order (at most
      :data:`MAX_ORDER_CHECKS` lookups per cycle).
    - Duplicate protective orders llmtrader placed (two stops, or two targets, on one position) are cancelled
      but the newest covering one; the owner's own orders are never touched.
    - Stops and targets llmtrader placed on a symbol with no position and no llmtrader entry resting (what a
      filled stop leaves of its target, and the reverse) are cancelled, each recorded as a ``cancel`` event.

    Raises VenueError when the positions or open orders cannot be read, or no stop could be sent.
    """
    notes: list[str] = []
    await _reconcile(services, now_ms, notes, dry_run=dry_run)
    return notes


async def _reconcile(
    services: Services, now: int, notes: list[str], *, dry_run: bool, unprotected: list[str] | None = None
) -> None:
    """:func:`reconcile`, appending to ``notes`` as it goes (so a failure keeps what was already done), and to
    ``unprotected`` the symbols that may be left open without a stop."""
    exchange, store = services.exchange, services.store
    name, mode = services.settings.account, exchange.mode
    positions, orders = await together(exchange, exchange.positions(), exchange.open_orders())
    # Entries recorded a little ahead of the cycle's clock count too: the venue's clock is not ours.
    horizon = now + HOUR_MS
    facts = services.cache.history.account_facts(store, name, horizon) if positions else AccountFacts()
    unknown = {p.symbol for p in positions if not _known(store, name, facts, p.symbol)}
    naked = [p for p in positions if not any(o.type == OrderType.STOP_MARKET and covers(o, p) for o in orders)]
    protector = None
    lost: list[str] = [] if unprotected is None else unprotected
    if naked:  # protection first: it must not wait for the order lookups below
        try:
            protector = await _protect(services, naked, unknown, facts, notes, lost, dry_run=dry_run)
        except VenueError:
            # No stop could be sent (the mark or the rules could not be read): they stay open without one.
            lost.extend(p.symbol for p in naked if p.symbol not in lost)
            raise
    rearmed = {p.symbol for p in naked}
    await _cancel_duplicates(services, positions, orders, notes, dry_run, stops_replaced=rearmed)
    await _cancel_stale_protection(services, positions, orders, notes, dry_run)
    marked = await _mark_orders(services, orders, notes, skip_decision=protector)
    if unknown and marked:  # an entry whose answer was lost may just have been found filled
        facts = services.cache.history.account_facts(store, name, horizon)
        unknown = {s for s in unknown if not _known(store, name, facts, s)}
    log = store.execution_log(name, mode, services.clock.now_ms)
    for p in positions:
        if p.symbol not in unknown:
            continue
        message = (
            f"adopted {p.symbol} {p.side} {dec_str(p.size)} @ {dec_str(p.entry_price)}: a position at the venue "
            "that llmtrader has no record of opening"
        )
        linked = protector if p.symbol in rearmed else None  # the stop it got
        log.event(decision_id=linked, symbol=p.symbol, kind=ADOPTED, message=message)
        # The trade ledger opens it at the venue's entry price, so that its close is booked as a close.
        store.record_adoption(
            account=name, mode=mode, symbol=p.symbol, amount=dec_str(p.amount), entry_price=dec_str(p.entry_price),
            time_ms=services.clock.now_ms(),
        )  # fmt: skip
        notes.append(message)


def _known(store: Store, account: str, facts: AccountFacts, symbol: str) -> bool:
    """Whether llmtrader opened (or already adopted) the position on ``symbol``: an entry filled since the
    symbol's last recorded close, or an adoption since then."""
    if symbol in facts.opened_at_ms:
        return True
    adopted_at = store.last_event_ms(account, symbol, ADOPTED)
    return adopted_at is not None and adopted_at >= facts.last_close_ms.get(symbol, 0)


async def _protect(
    services: Services,
    positions: list[VenuePosition],
    unknown: set[str],
    facts: AccountFacts,
    notes: list[str],
    lost: list[str],
    *,
    dry_run: bool,
) -> str | None:
    """Re-arm a stop on each of ``positions``; returns the id of the decision that recorded it (if any)."""
    levels: dict[str, tuple[Decimal, str]] = {}
    for p in positions:
        levels[p.symbol] = await _stop_level(services, p, unknown=p.symbol in unknown, facts=facts)
    if dry_run:
        for symbol, (level, why) in levels.items():
            notes.append(f"{symbol} has no stop-loss; dry run: none placed (it would be {dec_str(level)}, {why})")
        return None
    note = "reconcile: " + "; ".join(
        f"{s} had no stop-loss, re-armed at {dec_str(level)} ({why})" for s, (level, why) in levels.items()
    )
    protected = await protect_positions(services, {s: float(level) for s, (level, _) in levels.items()}, note=note)
    decision_id = protected.record.id
    assert protected.execution is not None
    for ex in protected.execution.assets:
        level, why = levels[ex.symbol]
        if ex.outcome == "executed":
            notes.append(f"re-armed the stop-loss of {ex.symbol} at {dec_str(level)} ({why}); decision {decision_id}")
        elif ex.emergency:
            if ex.unprotected:
                lost.append(ex.symbol)
            last = ex.notes[-1] if ex.notes else "see the decision's events"
            notes.append(
                f"EMERGENCY: the stop-loss of {ex.symbol} at {dec_str(level)} was not acknowledged; {last}; "
                f"decision {decision_id}"
            )
        else:
            # Not acknowledged, and whether another stop exists could not be told: never leave it naked.
            last = ex.notes[-1] if ex.notes else ex.outcome
            notes.append(
                f"EMERGENCY: the stop-loss of {ex.symbol} at {dec_str(level)} was not placed ({last}); closing the "
                f"position reduce-only"
            )
            reason = f"{ex.symbol}: the stop-loss could not be re-armed ({last})"
            message = await _emergency_close(services, ex.symbol, reason)
            if "WITHOUT A STOP" in message:
                lost.append(ex.symbol)
            notes.append("EMERGENCY: " + message)
    return decision_id


async def _cancel_duplicates(
    services: Services,
    positions: list[VenuePosition],
    orders: Sequence[OrderState],
    notes: list[str],
    dry_run: bool,
    *,
    stops_replaced: set[str],
) -> None:
    """Cancel llmtrader's duplicate stops and targets of each position: the newest covering one stays.
    (The stops of ``stops_replaced`` were just re-armed, which cancelled the old ones already.)"""
    exchange = services.exchange
    log = services.store.execution_log(services.settings.account, exchange.mode, services.clock.now_ms)
    for p in positions:
        closing = Side.SELL if p.amount > 0 else Side.BUY
        for kind in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET):
            if kind is OrderType.STOP_MARKET and p.symbol in stops_replaced:
                continue
            mine = [o for o in orders if o.symbol == p.symbol and o.type == kind and o.side is closing and ours(o)]
            if len(mine) < 2:
                continue
            mine.sort(key=lambda o: (covers(o, p), o.update_time_ms, o.order_id))
            for order in mine[:-1]:
                what = f"duplicate {kind} {order.client_order_id} of {p.symbol} (kept {mine[-1].client_order_id})"
                if dry_run:
                    notes.append(f"dry run: would cancel the {what}")
                    continue
                try:
                    await exchange.cancel_order(p.symbol, order.client_order_id)
                except VenueError as exc:
                    notes.append(f"cannot cancel the {what}: {exc}")
                    continue
                message = f"cancelled the {what}"
                log.event(decision_id=None, symbol=p.symbol, kind="cancel", message=message)
                notes.append(message)


async def _cancel_resting_entries(services: Services, notes: list[str], dry_run: bool, *, why: str) -> None:
    """Cancel llmtrader's limit entries resting on any symbol (they would open or add when they fill) while
    openings are refused. Their stops and targets stay until reconcile finds them stale (an entry that filled
    in the meantime keeps its protection). The owner's orders are never touched. A venue that cannot be read
    or cancel is noted; the next cycle tries again."""
    exchange = services.exchange
    try:
        orders = await exchange.open_orders()
    except VenueError as exc:
        notes.append(f"resting entries not checked ({why}): the open orders cannot be read: {exc}")
        return
    entries = [o for o in orders if ours(o) and o.type == OrderType.LIMIT and not (o.reduce_only or o.close_position)]
    if dry_run:
        notes.extend(
            f"dry run: would cancel the resting entry {o.client_order_id} of {o.symbol} ({why})" for o in entries
        )
        return
    await _cancel(services, [(o, f"resting entry {o.client_order_id} of {o.symbol} ({why})") for o in entries], notes)


async def _cancel_stale_protection(
    services: Services, positions: list[VenuePosition], orders: Sequence[OrderState], notes: list[str], dry_run: bool
) -> None:
    """Cancel llmtrader's stops and targets left on symbols with no position and no entry of llmtrader's resting
    (a stop that filled leaves its target, and the reverse): on a venue keeping one closePosition order per side,
    a stale one turns the next entry's stop into -4130. A resting entry's protection stays; the owner's orders
    are never touched. Sent first, recorded after: a store that cannot write raises once they are sent."""
    held = {p.symbol for p in positions}
    entries = {o.symbol for o in orders if ours(o) and not (o.reduce_only or o.close_position)}
    stale = [
        o
        for o in orders
        if ours(o)
        and o.type in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)
        and (o.close_position or o.reduce_only)
        and o.symbol not in held
        and o.symbol not in entries
    ]
    if not stale:
        return
    if dry_run:
        notes.extend(f"dry run: would cancel the stale {o.type} {o.client_order_id} of {o.symbol}" for o in stale)
        return
    exchange = services.exchange
    try:
        # An entry may have filled between the reads of the positions and the orders: its stop must stay.
        held = {p.symbol for p in await exchange.positions()}
    except VenueError as exc:
        notes.append(f"stale stops and targets left for the next cycle: the positions cannot be read again: {exc}")
        return
    why = "(no position, no entry resting)"
    await _cancel(
        services,
        [(o, f"stale {o.type} {o.client_order_id} of {o.symbol} {why}") for o in stale if o.symbol not in held],
        notes,
    )


async def _cancel(services: Services, orders: Sequence[tuple[OrderState, str]], notes: list[str]) -> None:
    """Cancel each of llmtrader's ``orders`` (each with what it is, for the notes); a failure is noted and the
    others go on. Sent first, recorded after (as events of no decision): a store that cannot write raises once
    they are sent."""
    exchange = services.exchange
    done: list[tuple[str, str]] = []
    for order, what in orders:
        try:
            state = await exchange.cancel_order(order.symbol, order.client_order_id)
        except VenueError as exc:
            notes.append(f"cannot cancel the {what}: {exc}")
            continue
        message = f"cancelled the {what}" if state is not None else f"the {what} was already filled or gone"
        done.append((order.symbol, message))
        notes.append(message)
    log = services.store.execution_log(services.settings.account, exchange.mode, services.clock.now_ms)
    for symbol, message in done:
        log.event(decision_id=None, symbol=symbol, kind="cancel", message=message)


async def _emergency_close(services: Services, symbol: str, reason: str) -> str:
    """Close ``symbol`` reduce-only (recorded as a decision by reconcile) and record the emergency; returns it."""
    log = services.store.execution_log(services.settings.account, services.exchange.mode, services.clock.now_ms)
    decision_id: str | None = None
    try:
        closed = await close_positions(services, [symbol], by="reconcile", note=f"emergency close: {reason}")
    except (VenueError, NotFoundError) as exc:
        decision_id = exc.decision_id
        message = f"{reason}; THE POSITION MAY BE OPEN WITHOUT A STOP: the close failed: {exc}"
    else:
        decision_id = closed.record.id
        done = closed.execution is not None and closed.execution.summary == "executed"
        outcome = "position closed reduce-only" if done else "THE POSITION IS OPEN WITHOUT A STOP: the close failed"
        message = f"{reason}; {outcome}; decision {decision_id}"
    log.event(decision_id=decision_id, symbol=symbol, kind=EMERGENCY, message=message)
    return message


async def _stop_level(
    services: Services, position: VenuePosition, *, unknown: bool, facts: AccountFacts
) -> tuple[Decimal, str]:
    """Where to re-arm the stop of ``position``, and why there."""
    settings, store, exchange = services.settings, services.store, services.exchange
    symbol = position.symbol
    long = position.amount > 0
    mark = position.mark_price
    if mark <= 0:
        mark = (await exchange.mark_prices([symbol]))[symbol]
    stale = ""
    if not unknown:  # a position llmtrader did not open: an old stop of the symbol means nothing for it
        since = facts.last_close_ms.get(symbol, 0)
        found = store.last_stop_level(settings.account, exchange.mode, symbol, since_ms=since)
        if found is not None:
            level = Decimal(str(found[0]))
            if (level < mark) if long else (level > mark):
                return _inside_liquidation(position, mark, level, f"the last recorded stop, {found[1]}")
            side = "below" if long else "above"
            stale = f"; the last recorded stop {dec_str(level)} ({found[1]}) is no longer {side} the mark"
    atr = await _atr(services, symbol)
    if atr is not None and atr > 0:
        multiple = _max_stop_atr(services)
        distance = Decimal(str(multiple)) * Decimal(str(atr))
        why = f"{fmt(multiple)} x ATR14 {fmt(atr, 6)} of {settings.interval} from the mark {dec_str(mark)}"
    else:
        distance = mark * FALLBACK_STOP_FRACTION
        why = f"3% from the mark {dec_str(mark)}, the ATR being unknown"
    if distance >= mark and long:
        distance, why = mark * FALLBACK_STOP_FRACTION, f"3% from the mark {dec_str(mark)}"
    level = mark - distance if long else mark + distance
    return _inside_liquidation(position, mark, level, why + stale)


def _inside_liquidation(position: VenuePosition, mark: Decimal, level: Decimal, why: str) -> tuple[Decimal, str]:
    """``level``, pulled in when it lies beyond the liquidation price (where it would never trigger)."""
    liq = position.liquidation_price
    if liq is None:
        return level, why
    long = position.amount > 0
    if (long and liq < mark and level <= liq) or (not long and liq > mark and level >= liq):
        pulled = liq + (mark - liq) * LIQUIDATION_MARGIN
        return pulled, f"{why}, pulled inside the liquidation price {dec_str(liq)}"
    return level, why


def _max_stop_atr(services: Services) -> float:
    """The strategy's widest stop in ATR(14) (the default when the strategy no longer loads)."""
    try:
        strategy = arm_strategy(services, None)
    except StrategyError:
        return StrategyLimits().max_stop_atr
    return strategy.limits.max_stop_atr


async def _atr(services: Services, symbol: str) -> float | None:
    """ATR(14) of the decision interval's closed candles; None when the candles cannot be read."""
    try:
        candles = await services.market.klines(symbol, services.settings.interval, ATR_CANDLES, services.clock.now_ms())
    except VenueError:
        return None
    from llmtrader.core.indicators import compute, latest

    return latest(compute(candles)).get("atr14")


async def _mark_orders(
    services: Services, open_orders: Sequence[OrderState], notes: list[str], *, skip_decision: str | None
) -> int:
    """Mark the order rows the store believes open that the venue no longer lists (see :func:`reconcile`);
    returns how many were marked."""
    exchange, store, clock = services.exchange, services.store, services.clock
    name, mode = services.settings.account, exchange.mode
    # Every pass compares the rows with what the venue lists now: reconcile trusts the venue, not a memo.
    rows = store.pending_orders(name, mode)
    if not rows:
        return 0
    log = store.execution_log(name, mode, clock.now_ms)
    listed = {o.client_order_id: o for o in open_orders}
    checked = later = marked = 0
    for row in rows:
        if row["decision_id"] is not None and row["decision_id"] == skip_decision:
            continue  # sent by this reconcile, after the open orders were read
        cid, symbol, was = str(row["client_order_id"]), str(row["symbol"]), str(row["status"])
        state: OrderState | None = listed.get(cid)
        if state is None:
            if checked >= MAX_ORDER_CHECKS:
                later += 1
                continue
            checked += 1
            try:
                state = await exchange.query_order(symbol, cid)
            except VenueError as exc:
                notes.append(f"order {cid} could not be looked up: {exc}")
                continue
        if state is not None and state.is_open:
            status = "acknowledged" if state.status.value == "NEW" else state.status.value.lower()
            if status == was:
                continue  # open as the store believes (listed after the read, or a lookup that found it)
            message = f"order {cid} ({symbol} {row['leg']}) was {was} in the store; the venue lists it open"
        else:
            status = "vanished" if state is None else state.status.value.lower()
            says = "has no such order" if state is None else f"says {state.status.value}"
            message = f"order {cid} ({symbol} {row['leg']}) was {was} in the store; the venue {says}"
        store.mark_order(int(row["id"]), status=status, state=state, now_ms=clock.now_ms())
        marked += 1
        message += f": marked {status}"
        log.event(decision_id=row["decision_id"], symbol=symbol, kind=RECONCILED, message=message)
        notes.append(message)
    if later:
        notes.append(f"{later} more order(s) the store believes open are looked up at the next cycles")
    return marked

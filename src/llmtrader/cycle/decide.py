"""One decision, as steps taken in order: the scheduled cycle (:func:`llmtrader.cycle.run.run_cycle`) and
``llmtrader decide`` (:func:`decide`) both walk them.

1. :func:`open_draft`: the decision's id, its A/B arm, client and strategy (nothing recorded yet);
2. :func:`prepare_draft`: the market and the account read, the context built, the prompt rendered;
3. :func:`cached_answer` (the cycle only, with its cache key :func:`cache_key`), else :func:`ask_model`,
   which returns the model's outcome (its answer, or the ModelError) for the caller to act on;
4. :func:`validate` against the limits (and the openings a guard refuses);
5. :func:`recheck_caps` right before sending: the account read again, every cap applied again;
6. :func:`record_decision` (and the answer cached);
7. :func:`execute_decision`: what survived is sent, every order and event recorded as it happens.

Whatever happens once the symbols are accepted is recorded: a step that fails stores the decision as it stands
(``venue_error``, ``model_error`` through :func:`record_model_error`, a ``failed`` execution) before the caller
sees the error, which then carries the decision's id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from pydantic import ValidationError

from llmtrader.core.account import AccountState
from llmtrader.core.decision import LenientDecision
from llmtrader.core.filters import SymbolRules
from llmtrader.core.guards import cache_context, context_key, openings_refused_now, refuse_openings
from llmtrader.core.records import AssetRow, CallRow, DecisionRecord, new_decision_id
from llmtrader.core.risk import (
    RECHECK_PREFIX,
    AssetValidation,
    ValidationReport,
    adds_risk,
    validate_decision,
)
from llmtrader.core.risk import recheck_caps as recheck
from llmtrader.core.strategy import Strategy
from llmtrader.cycle.execution import ExecutionReport, execute
from llmtrader.cycle.services import Arm, DecideResult, Services, execution_settings
from llmtrader.cycle.snapshot import Prepared, account_state, prepare
from llmtrader.cycle.strategies import resolve_strategy
from llmtrader.errors import (
    ExecutionNotStarted,
    LLMTraderError,
    ModelError,
    StrategyError,
    VenueError,
)
from llmtrader.exchange.base import HistoryRead
from llmtrader.llm.port import CallRecord, DecisionClient, DecisionRequest, ModelAnswer, reads_prompt

# The record of a decision by a client that reads no prompt (the baseline) says so in place of the prompt.
NO_PROMPT_NOTE = "{model} reads no prompt: none was rendered (`llmtrader strategy show` shows a model's)"

Confirm = Callable[[DecisionRecord, ValidationReport], bool]


@dataclass
class Draft:
    """A decision being made: its record (stored by the step that ends it), who decides, on what, and when."""

    record: DecisionRecord
    client: DecisionClient
    strategy: Strategy
    arm: Arm | None
    symbols: tuple[str, ...]
    now: int  # the decision's time (the services' clock when it opened)
    started: float  # time.monotonic() when it opened: the record's latency runs from here


async def decide(
    services: Services, symbols: Sequence[str], *, dry_run: bool, confirm: Confirm | None = None
) -> DecideResult:
    """One portfolio decision for ``symbols`` (``llmtrader decide``): recorded whatever its outcome, then
    executed unless ``dry_run`` (or ``confirm`` declines). Every order and event of the execution is recorded
    as it happens. It always asks the model (no circuit breaker, rate limit or decision cache: those are the
    cycle's), and honours the kill switches the cycles latched: no opening while one is on.

    Raises UnknownSymbolError (nothing recorded, no model call) for symbols the venue does not list
    (bad input, not a decision), StrategyError (nothing recorded) when the strategy does not load,
    VenueError or ModelError after recording the failed decision, and ExecutionNotStarted (a VenueError)
    when the recorded decision's execution could not start.
    """
    draft = open_draft(services, symbols, dry_run=dry_run)
    prepared = await prepare_draft(services, draft)
    asked = await ask_model(draft, prepared)
    if isinstance(asked, ModelError):
        record_model_error(services, draft, asked)
        raise asked
    # The kill switches the agent's cycles latched hold for a manual decision too: only reductions and closes.
    state = services.store.load_guard_state(services.settings.account)
    refused = openings_refused_now(state, account=services.settings.account, now_ms=draft.now)
    report = validate(draft, prepared, asked.decision, openings_refused=refused)
    if draft.record.execution is None and confirm is not None and not confirm(draft.record, report):
        draft.record.execution = "declined"
    report = await recheck_caps(services, draft, prepared, report)
    record_decision(services, draft, report)
    execution = await execute_decision(services, draft, prepared, report)
    return DecideResult(record=draft.record, report=report, execution=execution)


# ---- the steps, in order ------------------------------------------------------------------------------------


def open_draft(services: Services, symbols: Sequence[str], *, dry_run: bool) -> Draft:
    """The draft of a decision at the services' clock, nothing recorded yet. The strategy is resolved now
    (:func:`~llmtrader.cycle.strategies.resolve_strategy`); under an A/B test the decision's arm, derived from its
    id, picks the client and may pick the strategy, and is recorded with it.

    Raises StrategyError when the strategy does not load."""
    settings = services.settings
    started = time.monotonic()
    now = services.clock.now_ms()
    decision_id = new_decision_id(now)
    arm = choose_arm(services, decision_id)
    client = arm.client if arm is not None else services.client
    strategy = arm_strategy(services, arm)
    record = DecisionRecord(
        id=decision_id,
        created_at_ms=now,
        account=settings.account,
        mode=settings.trading_mode,
        dry_run=dry_run,
        strategy=strategy.name,
        model=client.model,
        base_url=client.base_url,
        symbols=list(symbols),
        outcome="pending",
        notes=list(arm.notes if arm is not None else services.notes),
        arm=arm.name if arm is not None else None,
    )
    return Draft(record, client, strategy, arm, tuple(symbols), now, started)


async def prepare_draft(
    services: Services, draft: Draft, *, account: AccountState | None = None, history: HistoryRead | None = None
) -> Prepared:
    """The market and the account read, the context built and the prompt rendered for the draft's client
    (:func:`~llmtrader.cycle.snapshot.prepare`), and the draft's record filled with them. ``account`` and
    ``history``: what the cycle already read for its guards (not read again).

    Raises UnknownSymbolError (nothing recorded) for symbols the venue does not list, and VenueError when a
    read failed, after recording the decision as ``venue_error``."""
    record = draft.record
    prompted = reads_prompt(draft.client)
    try:
        prepared = await prepare(
            services, draft.strategy, draft.symbols, draft.now, account=account, prompt=prompted, history=history
        )
    except VenueError as exc:
        _store(services, draft, "venue_error", exc)
        raise
    record.as_of_ms = prepared.snapshot.as_of_ms
    record.marks = {s: a.mark_price for s, a in prepared.snapshot.assets.items()}
    record.equity_usd = prepared.account.equity_usd
    record.notes += prepared.notes
    if prompted:
        record.system_prompt, record.user_prompt = prepared.system, prepared.user
    else:
        record.notes.append(NO_PROMPT_NOTE.format(model=draft.client.model))
    return prepared


def cache_key(services: Services, draft: Draft, prepared: Prepared) -> str:
    """The decision cache's key of this context (:func:`llmtrader.core.guards.context_key`)."""
    return context_key(
        cache_context(
            account_name=services.settings.account,
            symbols=draft.symbols,
            snapshot=prepared.snapshot,
            account=prepared.account,
            strategy=draft.strategy,
            model=draft.client.model,
            base_url=draft.client.base_url,
            arm=draft.arm.name if draft.arm is not None else None,
        )
    )


def cached_answer(services: Services, draft: Draft, key: str) -> LenientDecision | None:
    """The answer stored under ``key`` for an identical context, taken into the draft's record (which notes the
    decision it reuses); None when there is none, it expired, or it no longer parses (then: ask the model)."""
    hit = services.store.cached_decision(key, now_ms=draft.now)
    if hit is None:
        return None
    try:
        decision = LenientDecision.model_validate(hit.answer)
    except ValidationError:
        return None
    record = draft.record
    record.parsed = decision.model_dump(mode="json")
    record.portfolio_rationale = decision.portfolio_rationale
    record.notes.append(f"cached: reuses decision {hit.decision_id}")
    return decision


async def ask_model(draft: Draft, prepared: Prepared) -> ModelAnswer | ModelError:
    """Ask the draft's client for the decision, and fill the draft's record with what its calls said: the
    answer, or on a ModelError the failed calls (tokens, cost, the last raw response).

    The outcome is returned, never raised, and nothing is stored here: the caller acts on it (the cycle counts
    it in its guard state first), then records a failure with :func:`record_model_error`."""
    record = draft.record
    try:
        request = DecisionRequest(
            system=prepared.system, user=prepared.user, context=prepared.context, inputs=prepared.inputs
        )
        answer = await draft.client.decide(request)
    except ModelError as exc:
        record.calls = _call_rows(exc.calls)
        record.prompt_tokens = sum(c.prompt_tokens for c in record.calls)
        record.completion_tokens = sum(c.completion_tokens for c in record.calls)
        costs = [c.cost_usd for c in record.calls if c.cost_usd is not None]
        record.cost_usd = sum(costs) if costs else None
        record.model_latency_ms = sum(c.latency_ms for c in record.calls)
        record.raw_response = next((c.raw_response for c in reversed(record.calls) if c.raw_response), None)
        return exc
    record.calls = _call_rows(answer.calls)
    record.raw_response = answer.raw_response
    record.parsed = answer.decision_json
    record.parse_errors = answer.parse_errors
    record.portfolio_rationale = answer.decision.portfolio_rationale
    record.response_format = answer.response_format
    record.reasks = answer.reasks
    record.prompt_tokens = answer.prompt_tokens
    record.completion_tokens = answer.completion_tokens
    record.cost_usd = answer.cost_usd
    record.model_latency_ms = answer.latency_ms
    return answer


def record_model_error(services: Services, draft: Draft, error: ModelError) -> None:
    """Record the decision as ``model_error`` (the model gave no usable answer); ``error`` gets its id."""
    _store(services, draft, "model_error", error)


def validate(
    draft: Draft, prepared: Prepared, decision: LenientDecision, *, openings_refused: str | None = None
) -> ValidationReport:
    """Validate ``decision`` against the limits (:func:`llmtrader.core.risk.validate_decision`), and refuse its
    openings and increases when a guard says so (``openings_refused``: the daily loss or drawdown switch) or the
    venue's history could not be read; closes and reductions pass. The draft's record gets the asset rows, and
    its execution is settled when nothing will be sent (``dry_run``, ``nothing``)."""
    record, account = draft.record, prepared.account
    report = validate_decision(
        decision,
        symbols=draft.symbols,
        marks=record.marks,
        account=account,
        limits=prepared.limits,
        inputs=prepared.inputs,
    )
    if openings_refused:
        report = refuse_openings(report, account, openings_refused)
        record.notes.append(f"openings and increases refused: {openings_refused}")
    if prepared.history.problem is not None:
        held = f"openings held: {prepared.history.problem}, and a close found there would start a cooldown"
        report = refuse_openings(report, account, held)
        record.notes.append(held)
    record.notes += report.notes
    record.assets = [asset_row(v, record.marks) for v in report.assets]
    if record.dry_run:
        record.execution = "dry_run"
    elif not _executable(report):
        record.execution = "nothing"
    return report


async def recheck_caps(
    services: Services, draft: Draft, prepared: Prepared, report: ValidationReport
) -> ValidationReport:
    """Right before sending a decision that opens or adds, read the positions and balance again and re-apply
    every cap to them (:func:`llmtrader.core.risk.recheck_caps`): whatever traded on the account since the
    decision was validated counts. The draft's record gets the amended asset rows and notes. Nothing to do
    when nothing will be sent.

    When the account cannot be read, nothing is sent: the decision is recorded with execution ``failed``, and
    ExecutionNotStarted is raised from the venue's error."""
    record = draft.record
    if record.execution is not None:
        return report
    held = {p.symbol: p for p in prepared.account.positions}
    if any(adds_risk(v, held) for v in report.assets):
        try:
            fresh = await account_state(services)
        except VenueError as exc:
            record.execution = "failed"
            record.notes.append(f"execution did not start: the positions could not be read again: {exc}")
            _store(services, draft, "decided", exc)
            raise ExecutionNotStarted(exc) from exc
        report = recheck(report, marks=record.marks, account=fresh, limits=prepared.limits, inputs=prepared.inputs)
        record.notes += [n for n in report.notes if n.startswith(RECHECK_PREFIX) and n not in record.notes]
        record.assets = [asset_row(v, record.marks) for v in report.assets]
    if not _executable(report):
        record.execution = "nothing"
    return report


def record_decision(
    services: Services, draft: Draft, report: ValidationReport, *, cache: tuple[str, int] | None = None
) -> None:
    """Record the decision (``all_rejected`` or ``decided``). ``cache`` (key, TTL in ms): a new answer is also
    stored in the decision cache for that long, the TTL running from the decision (a reused answer is never
    stored again: the caller passes no cache then)."""
    record = draft.record
    _store(services, draft, "all_rejected" if report.all_rejected else "decided")
    if cache is not None and record.parsed is not None:
        key, ttl_ms = cache
        services.store.cache_decision(
            key,
            account=services.settings.account,
            decision_id=record.id,
            answer=record.parsed,
            now_ms=draft.now,
            ttl_ms=ttl_ms,
        )


async def execute_decision(
    services: Services, draft: Draft, prepared: Prepared, report: ValidationReport
) -> ExecutionReport | None:
    """Send what survived validation (None when nothing is to be sent: the record's execution says why);
    every order and event is recorded as it happens. Raises ExecutionNotStarted when the account could not be
    read before the first order (nothing was sent; the decision is marked ``failed``)."""
    record = draft.record
    if record.execution is not None:
        return None
    marks = {s: Decimal(str(m)) for s, m in record.marks.items()}
    return await execute_recorded(services, record, report.assets, prepared.snapshot.rules, marks)


# ---- helpers ----------------------------------------------------------------------------------------------------


def _store(services: Services, draft: Draft, outcome: str, error: LLMTraderError | None = None) -> None:
    """Store the draft's record with ``outcome`` (and ``error``, which gets the decision's id)."""
    record = draft.record
    record.outcome = outcome
    record.error = str(error) if error is not None else None
    record.latency_ms = int((time.monotonic() - draft.started) * 1000)
    services.store.record_decision(record)
    if error is not None:
        error.decision_id = record.id


def _executable(report: ValidationReport) -> bool:
    """Whether anything of ``report`` is to be sent (an accepted or amended action other than hold)."""
    return any(v.executable and v.final is not None and v.final.action.value != "hold" for v in report.assets)


def _call_rows(calls: Sequence[object]) -> list[CallRow]:
    rows = []
    for c in calls:
        if isinstance(c, CallRecord):
            rows.append(
                CallRow(
                    attempt=c.attempt,
                    response_format=c.response_format,
                    raw_response=c.raw_response,
                    error=c.error,
                    prompt_tokens=c.prompt_tokens,
                    completion_tokens=c.completion_tokens,
                    reasoning_tokens=c.reasoning_tokens,
                    cost_usd=c.cost_usd,
                    latency_ms=c.latency_ms,
                    finish_reason=c.finish_reason,
                    generation_id=c.generation_id,
                )
            )
    return rows


def choose_arm(services: Services, decision_id: str) -> Arm | None:
    """The A/B arm of a decision, derived from its id alone (None when no test runs)."""
    ab = services.settings.ab
    if ab is None or not services.arms:
        return None
    return services.arms[ab.arm_index(decision_id)]


def arm_strategy(services: Services, arm: Arm | None) -> Strategy:
    """The strategy of a decision made by ``arm`` (or by no arm)."""
    settings = services.settings
    if arm is None or arm.strategy is None:
        if services.strategy is not None:
            return services.strategy
        return resolve_strategy(services.store, settings, services.strategy_override)
    try:
        return resolve_strategy(services.store, settings, arm.strategy)
    except StrategyError as exc:
        raise StrategyError(f"A/B arm {arm.name!r} of [ab] in the config: {exc}") from None


def asset_row(v: AssetValidation, marks: dict[str, float]) -> AssetRow:
    source = v.final.model_dump(mode="json") if v.final is not None else (v.proposed or {})

    def num(key: str) -> float | None:
        value = source.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    leverage = source.get("leverage")
    return AssetRow(
        symbol=v.symbol,
        action=v.action,
        status=v.status.value,
        reasons=v.reasons,
        proposed=v.proposed,
        allocation_usd=num("allocation_usd"),
        leverage=leverage if isinstance(leverage, int) and not isinstance(leverage, bool) else None,
        entry_price=num("entry_price"),
        tp_price=num("tp_price"),
        sl_price=num("sl_price"),
        confidence=num("confidence"),
        risk_level=source.get("risk_level") if isinstance(source.get("risk_level"), str) else None,
        rationale=source.get("rationale") if isinstance(source.get("rationale"), str) else None,
        mark_price=marks.get(v.symbol),
    )


async def execute_recorded(
    services: Services,
    record: DecisionRecord,
    validations: Sequence[AssetValidation],
    rules: dict[str, SymbolRules],
    marks: dict[str, Decimal],
) -> ExecutionReport:
    """Execute a recorded decision (a model's, :func:`llmtrader.cycle.decide.execute_decision`, or one made
    without a model); its execution outcome is stored whatever happens."""
    log = services.store.execution_log(services.settings.account, services.exchange.mode, services.clock.now_ms)
    try:
        execution = await execute(
            services.exchange,
            validations,
            decision_id=record.id,
            recorder=log,
            rules=rules,
            marks=marks,
            settings=execution_settings(services.settings),
        )
    except VenueError as exc:  # the account could not be read before the first order: nothing was sent
        services.store.set_execution(record.id, "failed")
        log.event(decision_id=record.id, symbol=None, kind="error", message=f"execution did not start: {exc}")
        exc.decision_id = record.id
        raise ExecutionNotStarted(exc) from exc
    record.execution = execution.summary
    services.store.set_execution(record.id, execution.summary)
    return execution

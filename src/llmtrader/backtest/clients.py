"""The model clients of a backtest: one that records every answer, and one that replays recorded answers
byte for byte, keyed by the request hash (its text is pinned: stored runs replay against it)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from llmtrader.core.decision import LenientDecision, decision_json_schema
from llmtrader.core.times import utc_minute
from llmtrader.errors import ConfigError, ModelError
from llmtrader.llm.port import CallRecord, DecisionClient, DecisionRequest, ModelAnswer, reads_prompt
from llmtrader.storage import backtests as runs
from llmtrader.storage.backtests import StoredAnswer
from llmtrader.storage.store import Store

if TYPE_CHECKING:
    pass


def request_hash(model: str, base_url: str, system: str, user: str) -> str:
    """SHA-256 of the exact request a decision client is given: model, endpoint, both messages and the
    decision schema (part of every request as its response format), after a version tag of this definition."""
    digest = hashlib.sha256()
    # Each part prefixed with its length: no two different requests frame to the same bytes.
    for part in (REQUEST_HASH_VERSION, model, base_url, system, user, _schema_text()):
        data = part.encode()
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


REQUEST_HASH_VERSION = "llmtrader-request-v1"


_SCHEMA_TEXT: list[str] = []


def _schema_text() -> str:
    """The decision schema's canonical JSON, built once."""
    if not _SCHEMA_TEXT:
        _SCHEMA_TEXT.append(json.dumps(decision_json_schema(), sort_keys=True, separators=(",", ":")))
    return _SCHEMA_TEXT[0]


_CALL_FIELDS = tuple(f.name for f in fields(CallRecord))


def _call_json(call: CallRecord) -> dict[str, Any]:
    return {name: getattr(call, name) for name in _CALL_FIELDS}


def _answer_json(answer: ModelAnswer) -> dict[str, Any]:
    return {
        "raw_response": answer.raw_response,
        "decision": answer.decision_json,
        "calls": [_call_json(c) for c in answer.calls],
        "reasks": answer.reasks,
        "response_format": answer.response_format,
        "parse_errors": list(answer.parse_errors),
    }


def _free(calls: Sequence[dict[str, Any]]) -> list[CallRecord]:
    """Recorded calls as replayed: what the model said, at no cost and no latency."""
    return [CallRecord(**{**c, "cost_usd": 0.0, "latency_ms": 0}) for c in calls]


class RecordingClient:
    """A decision client that records every answer (and every failure) of ``inner`` by its request hash.

    A client that reads no prompt (the baseline) is not recorded: it has no request to hash, and its answers
    follow from the context alone, so running it again gives them again.
    """

    def __init__(self, inner: DecisionClient, store: Store, run_id: str) -> None:
        self.inner = inner
        self.model = inner.model
        self.base_url = inner.base_url
        self.reads_prompt = reads_prompt(inner)
        self.store = store
        self.run_id = run_id
        self.spent_usd = 0.0

    async def decide(self, request: DecisionRequest) -> ModelAnswer:
        if not self.reads_prompt:
            return await self.inner.decide(request)
        digest = request_hash(self.model, self.base_url, request.system, request.user)
        step = request.context.as_of_ms
        try:
            answer = await self.inner.decide(request)
        except ModelError as exc:
            calls = [c for c in exc.calls if isinstance(c, CallRecord)]
            self.spent_usd += sum(c.cost_usd or 0.0 for c in calls)
            body = {"error": str(exc), "calls": [_call_json(c) for c in calls]}
            runs.record_answer(
                self.store, self.run_id, StoredAnswer(step, digest, self.model, self.base_url, "error", body)
            )
            raise
        self.spent_usd += answer.cost_usd or 0.0
        stored = StoredAnswer(step, digest, self.model, self.base_url, "answer", _answer_json(answer))
        runs.record_answer(self.store, self.run_id, stored)
        return answer

    async def aclose(self) -> None:
        aclose = getattr(self.inner, "aclose", None)
        if aclose is not None:
            await aclose()


class ReplayClient:
    """Answers from a recorded run, never from the model.

    Each step gets the answer recorded at the same time in run ``source``. When the request's hash equals
    the recorded one, the replay is exact (same prompt, same answer, byte for byte); otherwise the prompt
    changed (other limits, another strategy file, an account that took another path) and the answer is
    reused as it was given, for the validator to judge under the new limits. A step with no recorded
    answer is a ModelError (the cycle records it and holds). The answers it gives are recorded in
    ``record_to`` (default: ``store``, where the source's are read).
    """

    def __init__(self, store: Store, source: str, run_id: str, *, record_to: Store | None = None) -> None:
        self.store = record_to if record_to is not None else store
        self.source = source
        self.run_id = run_id
        self.answers = runs.answers_of(store, source)
        if not self.answers:
            if runs.get_run(store, source).spec.get("model") == "baseline":
                raise ConfigError(
                    f"backtest {source} used the baseline model, which reads no prompt and whose answers are not "
                    "recorded: run it again with --model baseline (under the new limits) instead of replaying it"
                )
            raise ConfigError(f"backtest {source} recorded no model answer: there is nothing to replay")
        first = next(iter(self.answers.values()))
        self.model = first.model
        self.base_url = first.base_url
        self.spent_usd = 0.0
        self.exact = self.differs = self.missing = 0

    async def decide(self, request: DecisionRequest) -> ModelAnswer:
        step = request.context.as_of_ms
        recorded = self.answers.get(step)
        if recorded is None:
            self.missing += 1
            raise ModelError(f"replay of {self.source}: no answer was recorded for {utc_minute(step)}", calls=[])
        digest = request_hash(self.model, self.base_url, request.system, request.user)
        exact = digest == recorded.request_hash
        if exact:
            self.exact += 1
        else:
            self.differs += 1
        kind = "replay_exact" if exact else "replay_differs"
        runs.record_answer(
            self.store,
            self.run_id,
            StoredAnswer(
                step, digest, self.model, self.base_url, kind, {**recorded.answer, "replayed_from": self.source}
            ),
        )
        body = recorded.answer
        if "error" in body:
            calls: list[object] = list(_free(body.get("calls", [])))
            raise ModelError(str(body["error"]), calls=calls)
        return ModelAnswer(
            raw_response=str(body["raw_response"]),
            decision=LenientDecision.model_validate(body["decision"]),
            calls=_free(body["calls"]),
            reasks=int(body["reasks"]),
            response_format=str(body["response_format"]),
            parse_errors=list(body.get("parse_errors", [])),
        )

"""The decision-client port: the request, the answer and the call records of every decision client."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from llmtrader.core.context import DecisionContext
from llmtrader.core.decision import LenientDecision, decision_json_schema

if TYPE_CHECKING:
    from llmtrader.core.risk import RiskInputs

MODES = ("json_schema", "json_object", "text")


@dataclass(frozen=True)
class DecisionRequest:
    """What a decision client is asked: the rendered prompt and the context behind it."""

    system: str
    user: str
    context: DecisionContext
    # The facts the validator will judge the answer with (cooldowns, holds, DCA schedule): a rule-based
    # client reads them to stay inside the limits; a model never sees them (they are not part of the hash).
    inputs: RiskInputs | None = None


@dataclass
class CallRecord:
    """One HTTP call to the model, for the audit trail."""

    attempt: int
    response_format: str
    raw_response: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: int = 0
    finish_reason: str | None = None
    generation_id: str | None = None


@dataclass
class ModelAnswer:
    """A usable answer: the decision (salvaged per asset when the whole failed the schema)."""

    raw_response: str
    decision: LenientDecision
    calls: list[CallRecord]
    reasks: int
    response_format: str
    parse_errors: list[str] = field(default_factory=list)

    @cached_property
    def decision_json(self) -> dict[str, Any]:
        """The decision as JSON values, computed once (the decision record and the answer log both keep it)."""
        return self.decision.model_dump(mode="json")

    @property
    def prompt_tokens(self) -> int:
        return sum(c.prompt_tokens for c in self.calls)

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.calls)

    @property
    def cost_usd(self) -> float | None:
        costs = [c.cost_usd for c in self.calls if c.cost_usd is not None]
        return sum(costs) if costs else None

    @property
    def latency_ms(self) -> int:
        return sum(c.latency_ms for c in self.calls)


class DecisionClient(Protocol):
    """Anything that turns a decision request into a model answer.

    A client may declare ``reads_prompt = False`` (the built-in baseline, which decides from the context's
    numbers): then no prompt is rendered for it, and its requests carry empty messages (:func:`reads_prompt`).
    """

    model: str
    base_url: str

    async def decide(self, request: DecisionRequest) -> ModelAnswer: ...


def reads_prompt(client: object) -> bool:
    """Whether ``client`` reads the rendered prompt: every model does; a client saying ``reads_prompt = False``
    does not."""
    return bool(getattr(client, "reads_prompt", True))


def _schema_instructions() -> str:
    return "\n\nAnswer with one JSON object that matches this JSON schema exactly, and nothing else:\n" + json.dumps(
        decision_json_schema(), separators=(",", ":")
    )


def reask_message(errors: list[str]) -> str:
    """The message that asks the model again with the exact validation errors."""
    listed = "\n".join(f"- {e}" for e in errors)
    return (
        "Your answer is not a valid decision. These are the validation errors:\n"
        f"{listed}\n"
        "Answer again with the corrected JSON object only, for the same symbols."
    )

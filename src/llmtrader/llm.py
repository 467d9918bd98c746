"""The decision client protocol and its OpenAI-compatible implementation.

Structured output from the decision schema (``json_schema``; falling back to ``json_object``, then to
plain text with the schema in the prompt, for servers that lack it), tolerant parsing, re-asks with
the exact validation errors, bounded retries on 429 (honouring Retry-After), 5xx, timeouts and errors
that arrive with HTTP 200, and tokens, cost and latency recorded for every call.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from llmtrader.context import DecisionContext
from llmtrader.decision import (
    DecisionParseError,
    LenientDecision,
    decision_json_schema,
    extract_json_object,
    lenient_from_decision,
    parse_decision,
    salvage_decision,
)
from llmtrader.errors import ModelError, ModelRequestRefused, ModelTransientError
from llmtrader.logs import MIN_SECRET_LENGTH, redact

if TYPE_CHECKING:
    from llmtrader.config import ModelPrice
    from llmtrader.risk import RiskInputs

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


Sleep = Callable[[float], Awaitable[None]]
# Per process: the structured-output mode an endpoint and model accepted, so that later calls do not
# repeat the attempts it refused.
_MODE_MEMORY: dict[tuple[str, str], str] = {}


class OpenAIDecisionClient:
    """Decisions from any OpenAI-compatible chat-completions endpoint (OpenRouter by default)."""

    def __init__(
        self,
        *,
        model: str,
        base_url: str,
        api_key: str,
        timeout_s: float,
        max_retries: int,
        max_reasks: int,
        retry_max_wait_s: float,
        prices: dict[str, ModelPrice] | None = None,
        sleep: Sleep = asyncio.sleep,
        secrets: Sequence[str] = (),
    ) -> None:
        """``secrets``: the other secret values this process knows (venue keys), masked like ``api_key``
        in every answer and error before anything parses, stores or prints them."""
        from openai import AsyncOpenAI

        self.model = model
        self.base_url = base_url
        # Short values ("local" for keyless local servers) would mask ordinary words in the answers.
        self._secrets = [s for s in (api_key, *secrets) if len(s) >= MIN_SECRET_LENGTH]
        self._max_retries = max_retries
        self._max_reasks = max_reasks
        self._retry_max_wait_s = retry_max_wait_s
        self._prices = prices or {}
        self._sleep = sleep
        self._is_openrouter = "openrouter.ai" in base_url
        headers = {"HTTP-Referer": "https://github.com/llmtrader", "X-Title": "llmtrader"}
        self._client = AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,  # retries are ours: bounded, recorded, and honouring Retry-After
            default_headers=headers if self._is_openrouter else None,
        )

    async def aclose(self) -> None:
        await self._client.close()

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    async def decide(self, request: DecisionRequest) -> ModelAnswer:
        """Ask, re-ask with the validation errors at most ``max_reasks`` times, and salvage."""
        mode = _MODE_MEMORY.get((self.base_url, self.model), MODES[0])
        messages: list[dict[str, str]] = [
            {"role": "system", "content": request.system},
            {"role": "user", "content": request.user},
        ]
        calls: list[CallRecord] = []
        text = ""
        errors: list[str] = []
        for ask in range(self._max_reasks + 1):
            text, mode = await self._complete(messages, mode, calls)
            try:
                decision, _ = parse_decision(text)
            except DecisionParseError as exc:
                errors = exc.errors
                if ask < self._max_reasks:
                    messages = [
                        *messages,
                        {"role": "assistant", "content": text},
                        {"role": "user", "content": reask_message(errors)},
                    ]
                continue
            return ModelAnswer(text, lenient_from_decision(decision), calls, ask, mode)
        try:
            salvaged = salvage_decision(extract_json_object(text))
        except DecisionParseError as exc:
            raise ModelError(
                f"model {self.model} gave no valid decision after {self._max_reasks + 1} answers: "
                f"{'; '.join(exc.errors)}",
                calls=list(calls),
            ) from None
        if not salvaged.assets and not salvaged.invalid:
            raise ModelError(
                f"model {self.model} gave no valid decision after {self._max_reasks + 1} answers: "
                f"{'; '.join(errors[:5])}",
                calls=list(calls),
            )
        return ModelAnswer(text, salvaged, calls, self._max_reasks, mode, parse_errors=errors)

    async def _complete(self, messages: list[dict[str, str]], mode: str, calls: list[CallRecord]) -> tuple[str, str]:
        """One answer, with retries on temporary failures and structured-output fallback."""
        attempt = 0
        while True:
            try:
                return await self._call_once(messages, mode, calls), mode
            except ModelRequestRefused as exc:
                if exc.status in (400, 422) and mode != MODES[-1]:
                    mode = MODES[MODES.index(mode) + 1]
                    _MODE_MEMORY[(self.base_url, self.model)] = mode
                    continue
                raise ModelError(str(exc), calls=list(calls)) from exc
            except ModelTransientError as exc:
                attempt += 1
                if attempt > self._max_retries:
                    raise ModelError(f"{exc} (gave up after {attempt} attempts)", calls=list(calls)) from exc
                backoff = min(2.0 ** (attempt - 1), self._retry_max_wait_s)
                wait = exc.retry_after_s if exc.retry_after_s is not None else backoff
                await self._sleep(min(max(wait, 0.0), self._retry_max_wait_s))

    def _request_args(self, messages: list[dict[str, str]], mode: str) -> dict[str, Any]:
        msgs = [dict(m) for m in messages]
        args: dict[str, Any] = {"model": self.model, "messages": msgs}
        if mode == "json_schema":
            args["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": "portfolio_decision",
                    "strict": True,
                    "schema": decision_json_schema(),
                },
            }
        else:
            msgs[0]["content"] += _schema_instructions()
            if mode == "json_object":
                args["response_format"] = {"type": "json_object"}
        if self._is_openrouter and mode != "text":
            # Route only to providers that honour response_format (OpenRouter-only field).
            args["extra_body"] = {"provider": {"require_parameters": True}}
        return args

    async def _call_once(self, messages: list[dict[str, str]], mode: str, calls: list[CallRecord]) -> str:
        import openai

        record = CallRecord(attempt=len(calls) + 1, response_format=mode)
        calls.append(record)
        started = time.monotonic()
        try:
            response = await self._client.chat.completions.create(**self._request_args(messages, mode))
        except openai.APITimeoutError as exc:
            record.error = "timeout"
            raise ModelTransientError(f"model {self.model} timed out") from exc
        except openai.APIConnectionError as exc:
            record.error = "connection error"
            raise ModelTransientError(f"cannot reach the model endpoint {self.base_url}") from exc
        except openai.APIStatusError as exc:
            status = exc.status_code
            detail = self._redact(_error_detail(exc.body) or exc.message)
            record.error = f"HTTP {status}: {detail}"
            if status == 429 or status == 408 or status >= 500:
                retry_after = _retry_after(exc.response.headers.get("retry-after"))
                raise ModelTransientError(
                    f"model endpoint answered HTTP {status}: {detail}", retry_after_s=retry_after
                ) from exc
            raise ModelRequestRefused(
                f"model endpoint refused the request (HTTP {status}): {detail}", status=status
            ) from exc
        finally:
            record.latency_ms = int((time.monotonic() - started) * 1000)
        self._record_usage(record, response)
        extra = response.model_extra or {}
        if extra.get("error"):
            # OpenRouter: an error while generating arrives with HTTP 200.
            detail = self._redact(_error_detail({"error": extra["error"]}) or "error in body")
            record.error = f"error in a 200 reply: {detail}"
            code = extra["error"].get("code") if isinstance(extra["error"], dict) else None
            if isinstance(code, int) and 400 <= code < 500 and code not in (408, 429):
                raise ModelRequestRefused(f"model endpoint refused the request: {detail}", status=code)
            raise ModelTransientError(f"model endpoint reported an error: {detail}")
        if not response.choices:
            record.error = "reply has no choices"
            raise ModelTransientError("model endpoint replied with no choices")
        choice = response.choices[0]
        record.finish_reason = choice.finish_reason
        # The raw answer is untrusted: a key echoed in it must not reach the record, the log or the screen.
        text = self._redact(choice.message.content or "")
        record.raw_response = text
        if not text.strip():
            record.error = "empty answer"
            raise ModelTransientError("model gave an empty answer")
        return text

    def _record_usage(self, record: CallRecord, response: Any) -> None:
        record.generation_id = getattr(response, "id", None)
        usage = getattr(response, "usage", None)
        if usage is None:
            return
        record.prompt_tokens = int(usage.prompt_tokens or 0)
        record.completion_tokens = int(usage.completion_tokens or 0)
        details = getattr(usage, "completion_tokens_details", None)
        record.reasoning_tokens = int(getattr(details, "reasoning_tokens", 0) or 0)
        reported = (usage.model_extra or {}).get("cost")
        if isinstance(reported, (int, float)):
            record.cost_usd = float(reported)
        elif self.model in self._prices:
            price = self._prices[self.model]
            record.cost_usd = (
                record.prompt_tokens * price.prompt + record.completion_tokens * price.completion
            ) / 1_000_000


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _error_detail(body: Any) -> str:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("msg") or json.dumps(err)[:300])
        return str(err)[:300]
    return ""

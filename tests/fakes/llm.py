"""A fake OpenAI-compatible chat-completions server on loopback.

Tests queue behaviours (an answer, fenced or wrapped in prose, an HTTP error, an error inside a 200
reply, a slow answer, a refusal of ``json_schema``); with nothing queued it answers a valid all-hold
decision for the symbols the prompt asks about. Every request body and header is recorded.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Behaviour = Callable[[dict[str, Any]], tuple[int, dict[str, str], Any]]


def asset(symbol: str, action: str = "hold", **kw: Any) -> dict[str, Any]:
    """One asset decision as a model would write it."""
    base: dict[str, Any] = {
        "symbol": symbol, "action": action, "rationale": f"{action} {symbol}", "allocation_usd": 0,
        "leverage": 1, "entry_price": None, "tp_price": None, "sl_price": None, "confidence": 0.5,
        "risk_level": "low",
    }  # fmt: skip
    base.update(kw)
    return base


def decision(*assets: dict[str, Any], rationale: str = "test portfolio") -> dict[str, Any]:
    return {
        "assets": list(assets),
        "portfolio_rationale": rationale,
        "total_allocation_usd": sum(a.get("allocation_usd") or 0 for a in assets),
        "portfolio_risk_level": "medium",
    }


def asked_symbols(body: dict[str, Any]) -> list[str]:
    """The symbols named on the prompt's 'Decide for:' line."""
    for message in body.get("messages", []):
        match = re.search(r"Decide for: ([A-Z0-9, ]+)\.", message.get("content", ""))
        if match:
            return [s.strip() for s in match.group(1).split(",")]
    return []


def completion(content: str, *, cost: float | None = 0.0012, prompt_tokens: int = 1500,
               completion_tokens: int = 300) -> dict[str, Any]:  # fmt: skip
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    if cost is not None:
        usage["cost"] = cost
    return {
        "id": f"gen-{time.time_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fake/model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": usage,
    }


def answer(payload: Any, *, wrap: str = "plain", cost: float | None = 0.0012) -> Behaviour:
    """A 200 answer; ``wrap`` is plain, fenced (```json) or prose (text around the JSON)."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    if wrap == "fenced":
        text = f"```json\n{text}\n```"
    elif wrap == "prose":
        text = f"Here is my decision after careful thought.\n{text}\nLet me know if you need more."
    return lambda body: (200, {}, completion(text, cost=cost))


def error(status: int, message: str = "error", *, retry_after: str | None = None) -> Behaviour:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return lambda body: (status, headers, {"error": {"code": status, "message": message}})


def error_in_200(code: int = 502, message: str = "upstream provider failed mid-generation") -> Behaviour:
    return lambda body: (200, {}, {"id": "gen-x", "object": "chat.completion", "choices": [],
                                   "error": {"code": code, "message": message}})  # fmt: skip


def slow(seconds: float, then: Behaviour) -> Behaviour:
    def run(body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        time.sleep(seconds)
        return then(body)

    return run


def holds(body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    """The default: a valid all-hold decision for the asked symbols."""
    return 200, {}, completion(json.dumps(decision(*(asset(s) for s in asked_symbols(body)))))


@dataclass
class FakeLLM:
    """The fake model server; ``base_url`` ends in /v1 like OpenAI's."""

    reject_json_schema: bool = False
    reject_json_object: bool = False
    accepted_key: str | None = None  # when set, GET /v1/models refuses any other bearer key (401)
    models: tuple[str, ...] = ("fake/model",)
    queue: list[Behaviour] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self.queue.extend(behaviours)

    def _next(self, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        fmt = (body.get("response_format") or {}).get("type")
        if (self.reject_json_schema and fmt == "json_schema") or (self.reject_json_object and fmt == "json_object"):
            return 400, {}, {"error": {"code": 400, "message": f"response_format {fmt} is not supported"}}
        with self._lock:
            behaviour = self.queue.pop(0) if self.queue else holds
        return behaviour(body)

    def start(self) -> FakeLLM:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append(body)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path.rstrip("/") != "/v1/chat/completions":
                    status, headers, reply = 404, {}, {"error": {"code": 404, "message": "not found"}}
                else:
                    status, headers, reply = fake._next(body)
                payload = json.dumps(reply).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                if self.path.rstrip("/") != "/v1/models":
                    status, reply = 404, {"error": {"code": 404, "message": "not found"}}
                elif fake.accepted_key is not None and auth != f"Bearer {fake.accepted_key}":
                    status, reply = 401, {"error": {"code": 401, "message": "No auth credentials found"}}
                else:
                    status, reply = 200, {"data": [{"id": m, "context_length": 128000} for m in fake.models]}
                payload = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

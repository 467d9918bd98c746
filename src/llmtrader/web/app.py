"""The ASGI application of ``llmtrader serve``: JSON API, live stream, /metrics, health, and the dashboard.

It reads the store only (a plain sqlite3 connection per request; WAL readers never block the agent). The one
write it can make is a control request, with ``--allow-control`` and the token: the agent carries it out at
its next cycle (llmtrader.cycle), so the server needs no venue or model credentials.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from llmtrader.errors import ConfigError, LLMTraderError, NotFoundError
from llmtrader.web import data

if TYPE_CHECKING:
    from llmtrader.config.settings import Settings
    from llmtrader.storage.reader import Connection

HERE = Path(__file__).resolve().parent
COOKIE = "llmtrader_session"
LOGIN_FAILURES = 5  # failed logins allowed per client within LOGIN_WINDOW_S; then 429 until they age out
LOGIN_WINDOW_S = 60.0
CONTROL_ACTIONS = ("pause", "resume", "close_all", "resume_drawdown")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@dataclass
class ServeConfig:
    """What one server serves, and how it is guarded."""

    settings: Settings
    accounts: list[str]
    token: str | None = None
    narrowed: bool = False  # --account given: only those accounts' records, not every account in the store
    allow_control: bool = False
    secrets: list[str] = field(default_factory=list)
    poll_s: float = 0.5  # how often the stream looks for new rows
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def serves(self, account: Any) -> bool:
        return not self.narrowed or account in self.accounts

    def session_value(self) -> str:
        """The cookie's value: derived from the token (never the token itself)."""
        return _mac(self.token or "", "session")

    def csrf_value(self) -> str:
        return _mac(self.token or "", "csrf")


def _mac(key: str, what: str) -> str:
    return hmac.new(key.encode(), f"llmtrader-serve:{what}".encode(), hashlib.sha256).hexdigest()


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---- responses ----------------------------------------------------------------------------------------


def _scrub(cfg: ServeConfig, text: str) -> str:
    """Defence in depth: no configured secret value leaves the server, whatever a record quotes."""
    for secret in cfg.secrets:
        if secret in text:
            text = text.replace(secret, "[REDACTED]")
    return text


def _json(cfg: ServeConfig, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = _scrub(cfg, json.dumps(value, default=str))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _error(cfg: ServeConfig, status: int, message: str) -> Response:
    return _json(cfg, {"error": message}, status)


# ---- auth ---------------------------------------------------------------------------------------------


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _throttled(cfg: ServeConfig, request: Request) -> bool:
    recent = cfg.failures.get(_client(request))
    if not recent:
        return False
    cutoff = time.monotonic() - LOGIN_WINDOW_S
    while recent and recent[0] < cutoff:
        recent.popleft()
    return len(recent) >= LOGIN_FAILURES


def _failed(cfg: ServeConfig, request: Request) -> None:
    cfg.failures.setdefault(_client(request), deque()).append(time.monotonic())


def _by_cookie(cfg: ServeConfig, request: Request) -> bool:
    cookie = request.cookies.get(COOKIE)
    return cookie is not None and hmac.compare_digest(cookie.encode(), cfg.session_value().encode())


def _auth(cfg: ServeConfig, request: Request) -> Response | None:
    """None when the request may proceed; else the 401 (or 429 after repeated failures) to answer."""
    if cfg.token is None:
        return None
    if _throttled(cfg, request):
        return _error(cfg, 429, "too many failed logins: wait a minute")
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        if hmac.compare_digest(header[7:].strip().encode(), cfg.token.encode()):
            return None
        _failed(cfg, request)
        return _json(cfg, {"error": "wrong token"}, 401, {"WWW-Authenticate": "Bearer"})
    if _by_cookie(cfg, request):
        return None
    return _json(
        cfg, {"error": "a token is needed: Authorization: Bearer <token>"}, 401, {"WWW-Authenticate": "Bearer"}
    )


Handler = Callable[[ServeConfig, Request], Awaitable[Response]]


def _api(cfg: ServeConfig, fn: Handler) -> Callable[[Request], Awaitable[Response]]:
    """An API endpoint: authorized first; the project's errors become a JSON error with its status."""

    async def endpoint(request: Request) -> Response:
        denied = _auth(cfg, request)
        if denied is not None:
            return denied
        try:
            return await fn(cfg, request)
        except NotFoundError as exc:
            return _error(cfg, 404, str(exc))
        except ConfigError as exc:
            return _error(cfg, 400, str(exc))
        except LLMTraderError as exc:
            return _error(cfg, 503, str(exc))

    return endpoint


def _conn(cfg: ServeConfig) -> Connection | None:
    from llmtrader.storage.store import open_reader

    return open_reader(cfg.settings.db)


_local = threading.local()


def _thread_conn(cfg: ServeConfig) -> Connection | None:
    """The worker thread's own read connection, opened once (None until the database exists). Reads take no
    lasting transaction: each statement sees what the agent committed."""
    conn: Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = _conn(cfg)
        _local.conn = conn
    return conn


def _read(cfg: ServeConfig, fn: Callable[[Connection | None], Any]) -> Awaitable[Any]:
    """Run ``fn`` with the worker thread's read connection (the event loop keeps streaming)."""
    return run_in_threadpool(lambda: fn(_thread_conn(cfg)))


def _account(cfg: ServeConfig, request: Request, *, required: bool = True) -> str:
    name = request.query_params.get("account") or request.path_params.get("account")
    if not name:
        if len(cfg.accounts) == 1 or not required:
            return cfg.accounts[0]
        raise ConfigError(f"account is needed; served: {', '.join(cfg.accounts)}")
    if name not in cfg.accounts:
        raise NotFoundError(f"account {name!r} is not served; served: {', '.join(cfg.accounts)}")
    return str(name)


# ---- the API ------------------------------------------------------------------------------------------


async def api_status(cfg: ServeConfig, request: Request) -> Response:
    rows = await _read(cfg, lambda c: data.status(cfg.settings, c, cfg.accounts, _now_ms()))
    return _json(cfg, rows)


async def api_decisions(cfg: ServeConfig, request: Request) -> Response:
    params = dict(request.query_params)
    return _json(cfg, await _read(cfg, lambda c: data.decisions(c, params, cfg.accounts, cfg.narrowed)))


async def api_decision(cfg: ServeConfig, request: Request) -> Response:
    decision_id = str(request.path_params["decision_id"])
    return _json(cfg, await _read(cfg, lambda c: data.decision(c, decision_id, cfg.accounts, cfg.narrowed)))


async def api_positions(cfg: ServeConfig, request: Request) -> Response:
    if request.query_params.get("account"):
        account = _account(cfg, request)
        return _json(cfg, await _read(cfg, lambda c: data.positions(c, account)))
    return _json(cfg, await _read(cfg, lambda c: [data.positions(c, a) for a in cfg.accounts]))


async def api_trades(cfg: ServeConfig, request: Request) -> Response:
    account = _account(cfg, request)
    limit = data.parse_limit(request.query_params.get("limit"), 100)
    return _json(cfg, await _read(cfg, lambda c: data.trades(cfg.settings, c, account, limit)))


async def api_stats(cfg: ServeConfig, request: Request) -> Response:
    account = _account(cfg, request)
    by = request.query_params.get("by") or None
    since = request.query_params.get("since") or None
    return _json(cfg, await _read(cfg, lambda c: data.stats(cfg.settings, c, account, _now_ms(), by, since)))


async def api_equity(cfg: ServeConfig, request: Request) -> Response:
    account = _account(cfg, request)
    since = request.query_params.get("since") or None
    return _json(cfg, await _read(cfg, lambda c: data.equity(c, account, since)))


async def api_prices(cfg: ServeConfig, request: Request) -> Response:
    account = _account(cfg, request)
    return _json(cfg, await _read(cfg, lambda c: data.prices(c, account)))


async def api_backtests(cfg: ServeConfig, request: Request) -> Response:
    limit = data.parse_limit(request.query_params.get("limit"), 20)
    return _json(cfg, await run_in_threadpool(data.backtests, cfg.settings, limit))


async def api_backtest(cfg: ServeConfig, request: Request) -> Response:
    return _json(cfg, await run_in_threadpool(data.backtest, cfg.settings, str(request.path_params["run_id"])))


async def api_openapi(cfg: ServeConfig, request: Request) -> Response:
    from llmtrader.web.openapi import SCHEMA

    return _json(cfg, SCHEMA)


async def api_stream(cfg: ServeConfig, request: Request) -> Response:
    """Server-Sent Events: each new cycle, decision, order, fill, guard and execution event as recorded."""

    async def events() -> AsyncIterator[str]:
        from llmtrader.storage import web as q

        conn = None
        heads: dict[str, int] = {}
        yield "retry: 2000\n\n"
        idle = 0.0
        while not await request.is_disconnected():
            if conn is None:
                conn = _conn(cfg)
                if conn is not None and not heads:
                    heads = q.stream_heads(conn)
            if conn is not None:
                for kind, row in q.stream_since(conn, heads):
                    if cfg.serves(row.get("account")):
                        yield f"event: {kind}\ndata: {_scrub(cfg, json.dumps(row, default=str))}\n\n"
                        idle = 0.0
            await asyncio.sleep(cfg.poll_s)
            idle += cfg.poll_s
            if idle >= 15:  # a comment keeps proxies from closing an idle stream
                yield ": keep-alive\n\n"
                idle = 0.0
        if conn is not None:
            conn.close()

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


async def api_control(cfg: ServeConfig, request: Request) -> Response:
    """POST {"action": ..., "confirm": "<the account's name>"}: pause, resume, close_all, resume_drawdown."""
    if not cfg.allow_control:
        return _error(cfg, 403, "read-only: start the server with --allow-control to pause, resume or close")
    account = _account(cfg, request)
    if _by_cookie(cfg, request) and not hmac.compare_digest(
        request.headers.get("x-csrf-token", "").encode(), cfg.csrf_value().encode()
    ):
        return _error(cfg, 403, "missing or wrong X-CSRF-Token")
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise ConfigError('the body is not JSON: send {"action": "...", "confirm": "<account>"}') from None
    action = body.get("action") if isinstance(body, dict) else None
    confirm = body.get("confirm") if isinstance(body, dict) else None
    result = await run_in_threadpool(control, cfg, account, action, confirm, f"api ({_client(request)})")
    return _json(cfg, result, 202 if result["status"] == "pending" else 200)


def control(cfg: ServeConfig, account: str, action: Any, confirm: Any, source: str) -> dict[str, Any]:
    """Record (or, for resume_drawdown, carry out) one control action, as an audit row naming its source."""
    from llmtrader.storage import web as q

    if action not in CONTROL_ACTIONS:
        raise ConfigError(f"action {action!r} is not a control action; accepted: {', '.join(CONTROL_ACTIONS)}")
    if confirm != account:
        raise ConfigError(f"confirm with the account's name: {{'confirm': {account!r}}}")
    from llmtrader.storage.store import Store

    store = Store(cfg.settings.db)  # creates and migrates the file when the agent never ran
    try:
        now = _now_ms()
        if action == "resume_drawdown":
            from llmtrader.cycle.manual import resume_account

            resumed = resume_account(store, account, now_ms=now)
            said = "resumed: the drawdown stop is lifted" if resumed.resumed else "not stopped: nothing to resume"
            rid = q.request_control(
                store.db.conn, account=account, action=action, source=source, now_ms=now, status="done", result=said
            )
            return {"id": rid, "account": account, "action": action, "status": "done", "result": said}
        rid = q.request_control(store.db.conn, account=account, action=action, source=source, now_ms=now)
    finally:
        store.close()
    said = "recorded: the agent carries it out at its next cycle"
    return {"id": rid, "account": account, "action": action, "status": "pending", "result": said}


# ---- metrics and health -------------------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    return Response('{"status":"ok"}', media_type="application/json")


def _readyz(cfg: ServeConfig) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        rows = await _read(cfg, lambda c: data.status(cfg.settings, c, cfg.accounts, _now_ms()))
        accounts = {r["account"]: r["alive"] for r in rows}
        ready = bool(accounts) and all(accounts.values())
        return _json(cfg, {"ready": ready, "accounts": accounts}, 200 if ready else 503)

    return endpoint


async def metrics(cfg: ServeConfig, request: Request) -> Response:
    from llmtrader.web.metrics import render_metrics

    body, content_type = await _read(cfg, lambda c: render_metrics(cfg.settings, c, cfg.accounts, _now_ms()))
    return Response(_scrub(cfg, body.decode()), media_type=content_type)


# ---- the page -----------------------------------------------------------------------------------------


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(["html"], default=True),  # model and venue text is untrusted
    )
    from llmtrader.core.formatting import safe_text

    env.filters["safe_text"] = safe_text
    return env


def _page(cfg: ServeConfig, env: Environment, name: str, status: int = 200, **values: Any) -> Response:
    html = env.get_template(name).render(
        csrf=cfg.csrf_value() if cfg.token else "", allow_control=cfg.allow_control, token=bool(cfg.token), **values
    )
    return HTMLResponse(_scrub(cfg, html), status_code=status)


def _pages(cfg: ServeConfig) -> list[Route]:
    env = _templates()

    def guarded(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if cfg.token is not None and not _by_cookie(cfg, request):
                return RedirectResponse("/login", status_code=303)
            try:
                return await fn(request)
            except NotFoundError as exc:
                return _page(cfg, env, "message.html", 404, title="Not found", message=str(exc))
            except ConfigError as exc:
                return _page(cfg, env, "message.html", 400, title="Refused", message=str(exc))

        return endpoint

    async def index(request: Request) -> Response:
        from llmtrader.web.dashboard import dashboard

        view = await _read(cfg, lambda c: dashboard(cfg.settings, c, cfg.accounts, _now_ms()))
        return _page(cfg, env, "index.html", **view)

    async def decision_page(request: Request) -> Response:
        decision_id = str(request.path_params["decision_id"])
        record = await _read(cfg, lambda c: data.decision(c, decision_id, cfg.accounts, cfg.narrowed))
        return _page(cfg, env, "decision.html", d=record)

    async def control_page(request: Request) -> Response:
        if not cfg.allow_control:
            return _page(cfg, env, "message.html", 403, title="Read-only", message="start with --allow-control")
        account = _account(cfg, request)
        if request.method == "GET":  # the confirmation step
            action = request.query_params.get("action")
            if action not in CONTROL_ACTIONS:
                raise ConfigError(f"action {action!r} is not a control action; accepted: {', '.join(CONTROL_ACTIONS)}")
            return _page(cfg, env, "confirm.html", account=account, action=action)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        if not hmac.compare_digest(form.get("csrf", "").encode(), cfg.csrf_value().encode()):
            return _page(cfg, env, "message.html", 403, title="Refused", message="the form expired: reload the page")
        result = await run_in_threadpool(
            control, cfg, account, form.get("action"), form.get("confirm"), f"dashboard ({_client(request)})"
        )
        return _page(cfg, env, "message.html", title="Recorded", message=f"{result['action']}: {result['result']}")

    async def login(request: Request) -> Response:
        if cfg.token is None:
            return RedirectResponse("/", status_code=303)
        if request.method == "GET":
            return _page(cfg, env, "login.html")
        if _throttled(cfg, request):
            return _page(cfg, env, "login.html", 429, error="too many failed logins: wait a minute")
        form = parse_qs((await request.body()).decode(errors="replace"))
        given = form.get("token", [""])[0]
        if not hmac.compare_digest(given.encode(), cfg.token.encode()):
            _failed(cfg, request)
            return _page(cfg, env, "login.html", 401, error="wrong token")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE, cfg.session_value(), httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/login" if cfg.token else "/", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    return [
        Route("/", guarded(index)),
        Route("/decisions/{decision_id}", guarded(decision_page)),
        Route("/control/{account}", guarded(control_page), methods=["GET", "POST"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]


class _Headers:
    """Security headers on every response (no framing, no sniffing, the page's own scripts only)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


def create_app(cfg: ServeConfig) -> Any:
    """The application serving ``cfg``."""

    def api(path: str, fn: Handler, methods: list[str] | None = None) -> Route:
        return Route(f"/api/v1/{path}", _api(cfg, fn), methods=methods or ["GET"])

    async def metrics_endpoint(request: Request) -> Response:
        return await _api(cfg, metrics)(request)

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", _readyz(cfg)),
        Route("/metrics", metrics_endpoint),
        api("openapi.json", api_openapi),
        api("status", api_status),
        api("decisions", api_decisions),
        api("decisions/{decision_id}", api_decision),
        api("positions", api_positions),
        api("trades", api_trades),
        api("stats", api_stats),
        api("equity", api_equity),
        api("prices", api_prices),
        api("backtests", api_backtests),
        api("backtests/{run_id}", api_backtest),
        api("stream", api_stream),
        api("accounts/{account}/control", api_control, ["POST"]),
        *_pages(cfg),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("not found", status_code=404)

    app = Starlette(routes=routes, exception_handlers={404: not_found})
    return _Headers(app)

"""`llmtrader serve`: a separate process on loopback reading a store filled by real paper cycles (against the
fake venue and model): every endpoint's shape, filters and pagination, the live stream, /metrics, health, the
token rules, control requests carried out by the agent, and no secret in any response."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.logs import reset_logging
from tests.conftest import TEST_KEY
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision

TOKEN = "serve-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def _no_leftover_log_handlers() -> Iterator[None]:
    yield
    reset_logging()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`llmtrader serve` in its own process, with the test's environment."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmtrader", "serve", "--port", str(self.port), *args],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("serve did not answer /healthz")
            time.sleep(0.1)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kw)

    def json(self, path: str, **kw: Any) -> Any:
        r = self.get(path, **kw)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def long_btc(fake: FakeAster) -> dict[str, Any]:
    mark = fake.mark("BTCUSDT")
    return asset("BTCUSDT", "buy", allocation_usd=1000, leverage=2, confidence=0.7, risk_level="medium",
                 tp_price=round(mark * 1.04, 1), sl_price=round(mark * 0.98, 1))  # fmt: skip


def run_once(runner: CliRunner) -> None:
    result = runner.invoke(app, ["run", "--once"])
    assert result.exit_code == 0, result.output
    reset_logging()


@pytest.fixture
def seeded(paper: Path, fake_aster: FakeAster, fake_llm: FakeLLM, runner: CliRunner) -> Path:
    """Three real paper cycles: a long on BTCUSDT (with a rationale a page must escape), then two holds."""
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"), rationale="<script>alert(1)</script> go")))
    run_once(runner)
    run_once(runner)
    run_once(runner)
    return paper


@pytest.fixture
def server(seeded: Path) -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


def db_rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return [tuple(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def test_status_positions_equity_and_health(server: Server, seeded: Path) -> None:
    [row] = server.json("/api/v1/status")
    assert row["account"] == "default"
    assert row["alive"] is True and row["mode"] == "paper"
    assert row["last_cycle"]["outcome"] and row["next_cycle"]
    assert set(row["guards"]) == {"drawdown", "daily_loss", "budget", "circuit"}

    snap = server.json("/api/v1/positions?account=" + row["account"])
    [pos] = snap["positions"]
    assert pos["symbol"] == "BTCUSDT" and pos["side"] == "long"
    assert pos["sl_price"] is not None and pos["tp_price"] is not None and pos["entry_price"]
    assert snap["time"] and snap["mode"] == "paper"
    assert db_rows(seeded, "SELECT count(*) FROM positions_snapshots") == [(3,)]  # one per cycle

    curve = server.json("/api/v1/equity")["equity_curve"]
    assert len(curve) == 3 and all(p["equity_usd"] > 0 and p["drawdown_usd"] >= 0 for p in curve)

    trades = server.json("/api/v1/trades")["trades"]
    assert trades[0]["symbol"] == "BTCUSDT" and trades[0]["status"] == "open"

    assert server.json("/healthz") == {"status": "ok"}
    ready = server.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert server.json("/api/v1/openapi.json")["paths"]["/api/v1/decisions"]


def test_decisions_filters_and_cursor_pagination(server: Server, seeded: Path, runner: CliRunner) -> None:
    everything = server.json("/api/v1/decisions?limit=500")["decisions"]
    assert len(everything) == db_rows(seeded, "SELECT count(*) FROM decisions")[0][0] == 3
    # pages of one, following next_cursor, give the same decisions in the same order, then no cursor
    seen, cursor = [], None
    while True:
        page = server.json("/api/v1/decisions", params={"limit": 1, **({"cursor": cursor} if cursor else {})})
        seen += [d["decision_id"] for d in page["decisions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [d["decision_id"] for d in everything]

    [bought] = server.json("/api/v1/decisions?action=buy")["decisions"]
    assert [a["symbol"] for a in bought["assets"]] == ["BTCUSDT"]
    assert bought["assets"][0]["trade"]["status"] == "open"
    assert len(server.json("/api/v1/decisions?symbol=ethusdt")["decisions"]) == 3
    assert server.json("/api/v1/decisions?until=2000-01-01")["decisions"] == []
    assert len(server.json("/api/v1/decisions?since=2000-01-01")["decisions"]) == 3
    for bad in ("action=moon", "limit=0", "since=yesterday", "cursor=zz"):
        r = server.get("/api/v1/decisions?" + bad)
        assert r.status_code == 400 and r.json()["error"], bad

    record = server.json(f"/api/v1/decisions/{bought['decision_id']}")
    shown = runner.invoke(app, ["show", "--json", bought["decision_id"]])
    assert record == json.loads(shown.stdout)  # the same record as `show --json`
    assert server.get("/api/v1/decisions/nope").status_code == 404


def test_stats_and_backtests_are_the_cli_json(server: Server, runner: CliRunner) -> None:
    stats = server.json("/api/v1/stats?by=model")
    cli = json.loads(runner.invoke(app, ["stats", "--json", "--by", "model"]).stdout)
    assert stats.keys() == cli.keys()
    assert stats["decisions"] == cli["decisions"] and [g["key"] for g in stats["groups"]] == ["fake/model"]
    assert server.get("/api/v1/stats?by=planet").status_code == 400
    assert server.json("/api/v1/backtests") == []
    assert server.get("/api/v1/backtests/nope").status_code == 404


def test_metrics_parse_with_prometheus_client(server: Server) -> None:
    families = {f.name: f for f in text_string_to_metric_families(server.get("/metrics").text)}
    cycles = sum(s.value for s in families["llmtrader_cycles"].samples if s.name == "llmtrader_cycles_total")
    assert cycles == 3
    for name in (
        "llmtrader_asset_decisions", "llmtrader_model_latency_seconds", "llmtrader_model_tokens",
        "llmtrader_model_cost_usd", "llmtrader_equity_usd", "llmtrader_open_positions", "llmtrader_exposure_usd",
        "llmtrader_kill_switch", "llmtrader_circuit_state", "llmtrader_last_cycle_timestamp_seconds",
    ):  # fmt: skip
        assert families[name].samples, name
    [positions] = families["llmtrader_open_positions"].samples
    assert positions.value == 1
    last = families["llmtrader_last_cycle_timestamp_seconds"].samples[0].value
    assert abs(last - time.time()) < 3600


def test_a_decision_recorded_while_listening_is_streamed(
    server: Server, runner: CliRunner, fake_llm: FakeLLM, fake_aster: FakeAster
) -> None:
    got: list[tuple[str, dict[str, Any]]] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", server.url + "/api/v1/stream", timeout=30) as r:
            kind = None
            for line in r.iter_lines():
                ready.set()
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind is not None:
                    got.append((kind, json.loads(line[6:])))
                    if kind == "cycle":
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(10)
    time.sleep(1)  # the stream has read where the store is
    run_once(runner)
    t.join(30)
    kinds = [k for k, _ in got]
    assert "decision" in kinds and "cycle" in kinds
    newest = server.json("/api/v1/decisions?limit=1")["decisions"][0]
    assert [d["decision_id"] for k, d in got if k == "decision"] == [newest["decision_id"]]


def test_no_secret_in_any_response_and_the_page_escapes_model_text(server: Server) -> None:
    decision_id = server.json("/api/v1/decisions?action=buy")["decisions"][0]["decision_id"]
    paths = [
        "/api/v1/status", "/api/v1/decisions", f"/api/v1/decisions/{decision_id}", "/api/v1/positions",
        "/api/v1/trades", "/api/v1/stats?by=strategy", "/api/v1/equity", "/api/v1/prices", "/api/v1/backtests",
        "/metrics", "/readyz", "/", f"/decisions/{decision_id}",
    ]  # fmt: skip
    for path in paths:
        body = server.get(path).text
        assert TEST_KEY not in body, path
    page = server.get(f"/decisions/{decision_id}").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "script-src 'self'" in server.get("/").headers["content-security-policy"]


def test_serve_before_the_agent_ever_ran(paper: Path) -> None:
    assert not paper.exists()
    s = Server()
    try:
        [row] = s.json("/api/v1/status")
        assert row["last_cycle"] is None and row["alive"] is False
        assert s.json("/api/v1/decisions") == {"decisions": [], "next_cursor": None}
        assert s.json("/api/v1/positions")[0]["positions"] == []
        assert s.get("/readyz").status_code == 503
        assert s.get("/").status_code == 200
    finally:
        s.stop()
    assert not paper.exists()  # a reader: it created no database


def test_a_non_loopback_bind_without_a_token_refuses(clean_env: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "LLMTRADER_SERVE_TOKEN" in result.stderr
    result = runner.invoke(app, ["serve", "--allow-control"])
    assert result.exit_code == 2 and "--allow-control needs LLMTRADER_SERVE_TOKEN" in result.stderr


def test_token_rules_and_read_only_control(seeded: Path) -> None:
    s = Server(env={"LLMTRADER_SERVE_TOKEN": TOKEN})
    try:
        assert s.get("/api/v1/status").status_code == 401
        assert s.get("/api/v1/status", headers={"Authorization": "Bearer wrong-token-000000"}).status_code == 401
        assert s.get("/api/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert s.get("/metrics").status_code == 401
        assert s.get("/healthz").status_code == 200
        page = s.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login"
        control = httpx.post(
            s.url + "/api/v1/accounts/default/control",
            json={"action": "pause", "confirm": "default"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert control.status_code == 403 and "--allow-control" in control.json()["error"]
        # the login form sets an HttpOnly, SameSite=Strict cookie that opens the page
        login = httpx.post(s.url + "/login", data={"token": TOKEN}, follow_redirects=False)
        assert login.status_code == 303
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN.lower() not in cookie
        assert httpx.get(s.url + "/", cookies=login.cookies).status_code == 200
        # failed logins are rate-limited
        codes = [httpx.post(s.url + "/login", data={"token": "nope"}).status_code for _ in range(6)]
        assert codes[:4] == [401] * 4 and codes[-1] == 429
    finally:
        s.stop()


def test_control_requests_are_carried_out_by_the_agent(seeded: Path, runner: CliRunner) -> None:
    s = Server("--allow-control", env={"LLMTRADER_SERVE_TOKEN": TOKEN})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        [row] = s.json("/api/v1/status", headers=auth)
        name = row["account"]
        url = f"{s.url}/api/v1/accounts/{name}/control"
        assert httpx.post(url, json={"action": "pause", "confirm": "wrong"}, headers=auth).status_code == 400
        # a cookie session needs the CSRF token as well
        login = httpx.post(s.url + "/login", data={"token": TOKEN}, follow_redirects=False)
        no_csrf = httpx.post(url, json={"action": "pause", "confirm": name}, cookies=login.cookies)
        assert no_csrf.status_code == 403
        paused = httpx.post(url, json={"action": "pause", "confirm": name}, headers=auth)
        assert paused.status_code == 202 and paused.json()["status"] == "pending"
    finally:
        s.stop()
    run_once(runner)
    [(outcome, reason)] = db_rows(seeded, "SELECT outcome, reason FROM cycles ORDER BY id DESC LIMIT 1")
    assert outcome == "skipped" and "paused from api" in reason
    assert db_rows(seeded, "SELECT action, status FROM control_requests") == [("pause", "done")]
    s = Server("--allow-control", env={"LLMTRADER_SERVE_TOKEN": TOKEN})
    try:
        for action in ("resume", "close_all"):
            r = httpx.post(f"{s.url}/api/v1/accounts/{name}/control", json={"action": action, "confirm": name},
                           headers=auth)  # fmt: skip
            assert r.status_code == 202, r.text
    finally:
        s.stop()
    run_once(runner)
    assert db_rows(seeded, "SELECT action, status FROM control_requests ORDER BY id") == [
        ("pause", "done"), ("resume", "done"), ("close_all", "done"),
    ]  # fmt: skip
    [(execution,)] = db_rows(seeded, "SELECT execution FROM decisions WHERE model = 'control'")
    assert execution == "executed"
    snap = json.loads(db_rows(seeded, "SELECT positions FROM positions_snapshots ORDER BY id DESC LIMIT 1")[0][0])
    assert snap == []  # closed at market


# ---- the page in a real browser (the distribution's Chromium, never a downloaded one) ----------------------

BROWSER_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


def chromium() -> str:
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.path.exists(path):
            return path
    message = "no Chromium at /usr/bin/chromium: `apt-get install -y chromium` (.ci/run does)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: a missing browser is a failure, not a skip)", pytrace=False)
    pytest.skip(message)


def test_the_dashboard_in_a_real_browser_at_390_pixels(server: Server) -> None:
    executable = chromium()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=BROWSER_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + "/")
            page.wait_for_selector("#live:has-text('on')", timeout=15000)
            assert page.locator(".equity-chart canvas").count() > 0  # the seeded equity, drawn
            assert page.locator(".price-chart canvas").count() > 0
            assert "BTCUSDT" in page.locator("table.positions").inner_text()
            stop = page.locator("table.positions tbody tr td:nth-child(6)").first.inner_text()
            assert float(stop) > 0  # the seeded long shows its stop price (not NONE, not blank)
            assert page.locator("ul.decisions li[data-id]").count() == 3
            assert page.locator(".equity-now").inner_text().endswith(" USD")
            assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone

            # a cycle of the agent (another process) while the page is open: its decision shows, no reload
            result = subprocess.run(
                [sys.executable, "-m", "llmtrader", "run", "--once"], capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 0, result.stderr
            newest = server.json("/api/v1/decisions?limit=1")["decisions"][0]["decision_id"]
            page.wait_for_selector(f'ul.decisions li[data-id="{newest}"]', timeout=15000)
            assert page.locator("ul.decisions li[data-id]").count() == 4

            page.click(f'ul.decisions li[data-id="{newest}"] a')  # opens the whole audit record
            page.wait_for_selector("text=Raw answer")
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
        finally:
            browser.close()
    assert errors == []


def test_help_does_not_import_the_web_stack() -> None:
    code = (
        "import sys\nfrom llmtrader.cli.app import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('starlette', 'uvicorn', 'jinja2', 'prometheus_client', 'llmtrader.web') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "serve" in out.stdout  # the command is listed
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_page_control_form_has_a_confirmation_step_and_csrf(seeded: Path) -> None:
    s = Server("--allow-control", env={"LLMTRADER_SERVE_TOKEN": TOKEN})
    try:
        login = httpx.post(s.url + "/login", data={"token": TOKEN}, follow_redirects=False)
        confirm = httpx.get(s.url + "/control/default?action=close_all", cookies=login.cookies)
        assert confirm.status_code == 200 and 'name="csrf"' in confirm.text and "Type the account" in confirm.text
        form = {"action": "close_all", "confirm": "default"}
        forged = httpx.post(s.url + "/control/default", data=form, cookies=login.cookies)
        assert forged.status_code == 403  # no CSRF token: refused
        csrf = confirm.text.split('name="csrf" value="')[1].split('"')[0]
        unconfirmed = httpx.post(s.url + "/control/default", data={**form, "confirm": "", "csrf": csrf},
                                 cookies=login.cookies)  # fmt: skip
        assert unconfirmed.status_code == 400
        done = httpx.post(s.url + "/control/default", data={**form, "csrf": csrf}, cookies=login.cookies)
        assert done.status_code == 200 and "close_all" in done.text
    finally:
        s.stop()
    rows = db_rows(seeded, "SELECT action, source, status FROM control_requests")
    assert rows == [("close_all", "dashboard (127.0.0.1)", "pending")]

"""Logging: console or JSON lines, the private JSON log file, idempotence, and no credential in any output."""

from __future__ import annotations

import io
import json
import logging
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli import app as cli
from llmtrader.config.load import load_settings
from llmtrader.core.redact import MASK, is_secret_name, redact, secrets_of
from llmtrader.errors import ConfigError
from llmtrader.logs import configure_logging, cycle_summary, get_logger, reset_logging

OPENROUTER_KEY = "sk-or-v1-9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c"
V3_PRIVATE_KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
V3_USER = "0x63FaC9201494f0bd17B9892B9fae4d52fe3BD377"
V3_SIGNER = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
V1_KEY = "Zk8QpR2vLx9Wm4TnY7bC3dF6gH1jK5sA0eU8iO2pQ4rS6tV9wX3yZ7aB1cD5eF8g"
V1_SECRET = "Qm3NbV7cX1zL5kJ9hG2fD6sA4pO8iU0yT3rE7wQ1mN5bV9cX2zL6kJ0hG4fD8sA"
# A V3 order signature: 65 bytes, 130 hex digits.
SIGNATURE = "0x" + "5e1f" * 32 + "1b"


class Terminal(io.StringIO):
    """A captured stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def fresh_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("NO_COLOR", raising=False)
    yield
    reset_logging()


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# Console or JSON ------------------------------------------------------------------------------------


def test_a_stream_that_is_not_a_terminal_gets_json_lines() -> None:
    out = io.StringIO()
    configure_logging(json=None, log_file=None, stream=out)
    get_logger("llmtrader.test").info("started", accounts=2)
    [event] = lines(out.getvalue())
    assert event["event"] == "started" and event["accounts"] == 2
    assert event["level"] == "info" and event["logger"] == "llmtrader.test"
    assert event["timestamp"].endswith("Z")
    assert datetime.fromisoformat(event["timestamp"]).utcoffset() is not None


def test_a_terminal_gets_readable_coloured_lines() -> None:
    out = Terminal()
    configure_logging(json=None, log_file=None, stream=out)
    get_logger("llmtrader.test").info("started", accounts=2)
    text = out.getvalue()
    assert "started" in text and "accounts" in text and "\x1b[" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_log_json_forces_json_on_a_terminal() -> None:
    out = Terminal()
    configure_logging(json=True, log_file=None, stream=out)
    get_logger("llmtrader.test").warning("slow cycle", duration_ms=1200)
    [event] = lines(out.getvalue())
    assert event["event"] == "slow cycle" and event["level"] == "warning"


def test_readable_lines_off_a_terminal_have_no_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    configure_logging(json=False, log_file=None, stream=out)
    get_logger("llmtrader.test").info("started")
    assert "started" in out.getvalue() and "\x1b[" not in out.getvalue()

    monkeypatch.setenv("NO_COLOR", "1")
    out = Terminal()
    configure_logging(json=None, log_file=None, stream=out)
    get_logger("llmtrader.test").info("started")
    assert "started" in out.getvalue() and "\x1b[" not in out.getvalue()


def test_the_log_file_gets_json_lines_appended_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "llmtrader.log"
    configure_logging(json=None, log_file=path, stream=Terminal())
    get_logger("llmtrader.test").info("first")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    configure_logging(json=None, log_file=path, stream=Terminal())
    get_logger("llmtrader.test").info("second")
    assert [e["event"] for e in lines(path.read_text(encoding="utf-8"))] == ["first", "second"]


def test_configuring_twice_does_not_duplicate_output(tmp_path: Path) -> None:
    out = io.StringIO()
    path = tmp_path / "run.log"
    configure_logging(json=None, log_file=path, stream=out)
    configure_logging(json=None, log_file=path, stream=out)
    get_logger("llmtrader.test").info("once")
    assert [e["event"] for e in lines(out.getvalue())] == ["once"]
    assert [e["event"] for e in lines(path.read_text(encoding="utf-8"))] == ["once"]


def test_levels_and_chatty_libraries() -> None:
    out = io.StringIO()
    configure_logging(json=True, log_file=None, stream=out)
    get_logger("llmtrader.test").debug("hidden")
    logging.getLogger("httpx").info("HTTP Request: GET https://fapi.asterdex.com/fapi/v1/time")
    logging.getLogger("apscheduler.executors").warning("Run time of job was missed by 0:00:03")
    assert [e["event"] for e in lines(out.getvalue())] == ["Run time of job was missed by 0:00:03"]

    out = io.StringIO()
    configure_logging(json=True, log_file=None, level="debug", stream=out)
    get_logger("llmtrader.test").debug("shown")
    logging.getLogger("httpx").info("HTTP Request")
    assert [e["event"] for e in lines(out.getvalue())] == ["shown", "HTTP Request"]

    with pytest.raises(ConfigError, match="log level 'loud'"):
        configure_logging(json=True, log_file=None, level="loud", stream=out)


def test_cycle_summary_is_one_stable_event() -> None:
    out = io.StringIO()
    configure_logging(json=True, log_file=None, stream=out)
    log = get_logger("llmtrader.engine")
    cycle_summary(log, account="main", outcome="traded", duration_ms=812, decision_id="d-1", model="m", cost_usd=0.002)
    cycle_summary(log, account="main", outcome="model_error", duration_ms=30, decision_id=None, orders=0)
    traded, failed = lines(out.getvalue())
    assert traded["event"] == failed["event"] == "cycle"
    assert traded["level"] == "info" and traded["decision_id"] == "d-1" and traded["cost_usd"] == 0.002
    assert failed["level"] == "warning" and "decision_id" not in failed and failed["orders"] == 0


# Secrets --------------------------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)
    return load_settings(
        environ={
            "OPENROUTER_API_KEY": OPENROUTER_KEY,
            "ASTERDEX_USER": V3_USER,
            "ASTERDEX_SIGNER": V3_SIGNER,
            "ASTERDEX_SIGNER_PRIVATE_KEY": V3_PRIVATE_KEY,
            "ASTERDEX_API_KEY": V1_KEY,
            "ASTERDEX_API_SECRET": f" {V1_SECRET}\n",  # as pasted into an environment file
            "LLMTRADER_DB": str(tmp_path / "db.sqlite"),
        }
    )


def test_secrets_of_collects_every_secret_value(settings: Any, tmp_path: Path) -> None:
    found = secrets_of(settings)
    for value in (OPENROUTER_KEY, V3_PRIVATE_KEY, V3_PRIVATE_KEY[2:], V1_KEY, V1_SECRET, f" {V1_SECRET}\n"):
        assert value in found
    assert V3_USER not in found and V3_SIGNER not in found  # addresses are public

    short = load_settings(environ={"LLM_API_KEY": "abc", "LLMTRADER_DB": str(tmp_path / "db.sqlite")})
    assert secrets_of(short) == []


@dataclass
class Credentials:
    api_key: str
    api_secret: str


def _sign(private_key: str) -> None:
    raise RuntimeError(f"could not sign the order with {private_key}")


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "console"])
def test_no_credential_value_reaches_the_logs(
    settings: Any, tmp_path: Path, as_json: bool, caplog: pytest.LogCaptureFixture
) -> None:
    out = io.StringIO()
    log_file = tmp_path / "run.log"
    configure_logging(json=as_json, log_file=log_file, stream=out, secrets=secrets_of(settings))
    log = get_logger("llmtrader.test")
    url = f"https://fapi.asterdex.com/fapi/v3/order?symbol=BTCUSDT&side=BUY&nonce=1700000000&signature={SIGNATURE}"

    log.info(f"calling the model with key {OPENROUTER_KEY} for BTCUSDT")
    log.info("venue key %s in use", V1_KEY)
    log.info(
        "request sent",
        headers={"Authorization": f"Bearer {OPENROUTER_KEY}", "X-MBX-APIKEY": V1_KEY, "Accept": "application/json"},
        body=[{"note": f"hmac made with {V1_SECRET}"}, ("raw key", V3_PRIVATE_KEY[2:])],
        prompt_tokens=123,
    )
    log.info("credentials loaded", creds=Credentials(V1_KEY, V1_SECRET), signer=V3_SIGNER)
    try:
        _sign(V3_PRIVATE_KEY)
    except RuntimeError:
        log.exception("order failed", symbol="BTCUSDT")
    log.warning("order rejected", url=url)
    logging.getLogger("httpx").warning("HTTP Request: POST %s 400 Bad Request", url)
    # Values no setting holds, masked because of the key they are logged under.
    log.info("login", password="hunter2-correct-horse", token="tok-abcdef", api_secret="other-secret-value")

    captured = out.getvalue() + log_file.read_text(encoding="utf-8")
    leaked = [OPENROUTER_KEY, V3_PRIVATE_KEY, V1_KEY, V1_SECRET, SIGNATURE, "hunter2", "tok-abcdef", "other-secret"]
    for value in leaked:
        assert value not in captured
        assert not any(value[i : i + 12] in captured for i in range(len(value) - 11)), f"part of {value[:6]}..."
    assert V3_PRIVATE_KEY[2:][20:40] not in captured and SIGNATURE[2:][40:80] not in captured
    # Another handler on the root logger (here pytest's) gets our events redacted too, traceback included.
    ours = [r for r in caplog.records if r.name == "llmtrader.test"]
    assert len(ours) == 7 and all(r.exc_info is None for r in ours)
    assert not any(value in r.getMessage() for r in ours for value in leaked)

    for kept in (
        "calling the model with key",
        "for BTCUSDT",
        "venue key",
        "application/json",
        "hmac made with",
        "order failed",
        "could not sign the order with",
        "Traceback (most recent call last)",
        "_sign",
        "/fapi/v3/order?symbol=BTCUSDT&side=BUY&nonce=1700000000&signature=",
        "HTTP Request: POST",
        V3_SIGNER,
    ):
        assert kept in captured, kept
    assert captured.count(MASK) >= 12
    file_events = lines(log_file.read_text(encoding="utf-8"))
    assert file_events[2]["prompt_tokens"] == 123 and file_events[2]["headers"]["Authorization"] == MASK
    if as_json:
        assert lines(out.getvalue()) == file_events


def test_redact_masks_credential_shapes_and_keeps_the_rest() -> None:
    address = "0x63FaC9201494f0bd17B9892B9fae4d52fe3BD377"
    text = (
        f"Authorization: Bearer abcdefghijklmnop12 key=sk-ant-api03-abcdefghijklmnop pk={'ab' * 32} "
        f"pk0x=0x{'cd' * 32} url=/order?symbol=ETHUSDT&signature=0x{'ef' * 65}&recvWindow=5000 "
        f"addr={address} hash={'12' * 64} prompt_tokens=5 max_tokens=100 risk-management-framework-long"
    )
    masked = redact(text, ["known-secret-1"]) + redact("a known-secret-1 b", ["known-secret-1"])
    for gone in ("abcdefghijklmnop12", "sk-ant", "ab" * 32, "cd" * 32, "ef" * 65, "known-secret-1"):
        assert gone not in masked
    for kept in (
        "Authorization: Bearer **********",
        "symbol=ETHUSDT&signature=**********&recvWindow=5000",
        address,
        "12" * 64,
        "prompt_tokens=5 max_tokens=100",
        "risk-management-framework-long",
        "a ********** b",
    ):
        assert kept in masked
    assert redact(masked) == masked


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("api_key", True),
        ("apiKey", True),
        ("X-MBX-APIKEY", True),
        ("asterdex_signer_private_key", True),
        ("api_secret", True),
        ("Authorization", True),
        ("signature", True),
        ("access_token", True),
        ("password", True),
        ("prompt_tokens", False),
        ("signer", False),
        ("cache_key", False),
        ("symbol", False),
    ],
)
def test_secret_looking_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


# Import cost ----------------------------------------------------------------------------------------


def test_help_history_and_show_do_not_import_structlog(clean_env: Path) -> None:
    from llmtrader.storage.store import Store

    Store(clean_env).close()
    code = textwrap.dedent(
        """
        import sys
        import llmtrader.logs
        from llmtrader.cli import app

        for args in (["--help"], ["history", "--json"], ["show", "nope", "--json"]):
            try:
                app(args, standalone_mode=False)
            except BaseException:
                pass
        print("structlog" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_global_log_options_are_kept_for_commands(clean_env: Path, runner: CliRunner, tmp_path: Path) -> None:
    log_file = tmp_path / "run.log"
    result = runner.invoke(cli.app, ["--log-json", "--log-file", str(log_file), "-v", "history", "--json"])
    assert result.exit_code == 0, result.output
    assert (cli._state["log_json"], cli._state["log_file"], cli._state["log_level"]) == (True, log_file, "debug")

    result = runner.invoke(cli.app, ["history", "--json"])
    assert result.exit_code == 0, result.output
    assert (cli._state["log_json"], cli._state["log_file"], cli._state["log_level"]) == (None, None, "info")

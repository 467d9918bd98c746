"""End to end: `llmtrader decide` against the fake venue and the fake model, both real HTTP servers.

Each case asserts what the user sees (exit code, output) and what is recorded (via `show --json`).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.core.formatting import fmt
from tests.conftest import TEST_KEY
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision, error, error_in_200, slow
from tests.helpers import decide, history, long_btc, show


def by_symbol(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["symbol"]: a for a in out["assets"]}


def test_decide_json_happy_path_is_recorded(
    env: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))))
    code, out, _ = decide(runner)
    assert code == 0 and out is not None
    assert out["outcome"] == "decided"
    assert {"decision_id", "assets", "usage", "latency_ms"} <= set(out)
    btc = by_symbol(out)["BTCUSDT"]
    assert btc["action"] == "buy" and btc["allocation_usd"] == 1000 and btc["leverage"] == 2
    assert btc["validation"] == {"status": "accepted", "reasons": []}
    for key in ("symbol", "action", "allocation_usd", "leverage", "tp_price", "sl_price", "confidence"):
        assert key in btc
    assert out["usage"] == {"prompt_tokens": 1500, "completion_tokens": 300, "cost_usd": 0.0012}
    # paper mode is the default: the long was executed on the paper account, entry then stop and target
    assert out["executed"] is True and out["execution"] == "executed" and out["mode"] == "paper"
    (btc_orders,) = [o for o in out["orders"] if o["symbol"] == "BTCUSDT"]
    assert btc_orders["outcome"] == "executed"
    legs = [(leg["leg"], leg["status"]) for leg in btc_orders["orders"] if leg["leg"] in ("en", "sl", "tp")]
    assert legs == [("en", "filled"), ("sl", "acknowledged"), ("tp", "acknowledged")]
    # the request used structured output from the schema, with the key as a bearer token
    request = fake_llm.requests[0]
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["strict"] is True
    assert fake_llm.headers[0]["authorization"] == f"Bearer {TEST_KEY}"
    record = show(runner, out["decision_id"])
    assert record["prompt"]["system"] and "Decide for: BTCUSDT, ETHUSDT." in record["prompt"]["user"]
    assert json.loads(record["raw_response"])["assets"][0]["symbol"] == "BTCUSDT"
    assert record["model"] == "fake/model" and record["base_url"] == fake_llm.base_url
    assert record["outcome"] == "decided" and record["cost_usd"] == 0.0012
    assert [c["attempt"] for c in record["llm_calls"]] == [1]
    assert record["marks"]["BTCUSDT"] == fake_aster.mark("BTCUSDT")
    assert record["execution"] == "executed"
    assert [(o["leg"], o["status"]) for o in record["orders"]] == [
        ("en", "filled"),
        ("sl", "acknowledged"),
        ("tp", "acknowledged"),
    ]
    entry = record["orders"][0]
    assert entry["request"]["side"] == "BUY" and entry["request"]["type"] == "MARKET"
    assert entry["client_order_id"] == f"lt_{out['decision_id']}_BTCUSDT_en"


def test_decide_table_output(env: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"), rationale="BTC trend up")))
    result = runner.invoke(app, ["decide", "--symbols", "btcusdt,ETHUSDT"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "BTCUSDT" in result.stdout and "buy" in result.stdout and "accepted" in result.stdout
    assert "BTC trend up" in result.stdout
    assert "outcome decided" in result.stdout


def test_only_closed_candles_reach_the_prompt(env: Path, runner: CliRunner, fake_aster: FakeAster) -> None:
    code, out, _ = decide(runner, "--symbols", "BTCUSDT")
    assert code == 0 and out is not None
    user = show(runner, out["decision_id"])["prompt"]["user"]
    from datetime import UTC, datetime

    for tf in ("15m", "1h", "4h"):
        open_candle = fake_aster.open_candle("BTCUSDT", tf)
        last_closed = fake_aster.closed_candles("BTCUSDT", tf)[-1]

        def row(c: list[float]) -> str:
            stamp = datetime.fromtimestamp(c[0] / 1000, tz=UTC).strftime("%m-%d %H:%M")
            return f"{stamp},{fmt(c[1])},{fmt(c[2])},{fmt(c[3])},{fmt(c[4])}"

        assert row(last_closed) in user, tf
        assert row(open_candle) not in user, tf


@pytest.mark.parametrize("wrap", ["fenced", "prose"])
def test_fenced_or_prose_answers_are_parsed(
    env: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, wrap: str
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT")), wrap=wrap))
    code, out, _ = decide(runner)
    assert code == 0 and out is not None
    assert by_symbol(out)["BTCUSDT"]["validation"]["status"] == "accepted"
    assert out["reasks"] == 0 and len(fake_llm.requests) == 1
    record = show(runner, out["decision_id"])
    assert record["raw_response"].startswith("```json" if wrap == "fenced" else "Here is my decision")
    assert record["parsed"]["assets"][0]["symbol"] == "BTCUSDT"
    assert [(a["symbol"], a["status"]) for a in record["assets"]] == [("BTCUSDT", "accepted"), ("ETHUSDT", "accepted")]


def test_invalid_json_is_asked_again_with_the_error(env: Path, runner: CliRunner, fake_llm: FakeLLM) -> None:
    fake_llm.push(answer('{"assets": [ {"symbol": "BTCUSDT", '), answer(decision(asset("BTCUSDT"), asset("ETHUSDT"))))
    code, out, _ = decide(runner)
    assert code == 0 and out is not None and out["reasks"] == 1
    second = fake_llm.requests[1]["messages"]
    assert second[-2]["role"] == "assistant" and second[-2]["content"].startswith('{"assets"')
    assert "not a valid decision" in second[-1]["content"] and "invalid JSON" in second[-1]["content"]
    calls = show(runner, out["decision_id"])["llm_calls"]
    assert len(calls) == 2 and all(c["prompt_tokens"] == 1500 for c in calls)
    assert out["usage"]["prompt_tokens"] == 3000


def test_schema_violations_are_reasked_then_the_valid_assets_kept(
    env: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    bad = decision(asset("BTCUSDT", "yolo"), asset("ETHUSDT"))
    fake_llm.push(answer(bad), answer(bad), answer(bad))
    code, out, _ = decide(runner)
    assert code == 0 and out is not None
    assert len(fake_llm.requests) == 3 and out["reasks"] == 2
    assert "assets.0.action" in fake_llm.requests[1]["messages"][-1]["content"]
    assets = by_symbol(out)
    assert assets["BTCUSDT"]["validation"]["status"] == "rejected"
    assert any("assets.0.action" in r for r in assets["BTCUSDT"]["validation"]["reasons"])
    assert assets["ETHUSDT"]["validation"]["status"] == "accepted"
    record = show(runner, out["decision_id"])
    assert record["parse_errors"] and record["outcome"] == "decided"


def test_a_symbol_not_asked_for_is_rejected(env: Path, runner: CliRunner, fake_llm: FakeLLM) -> None:
    fake_llm.push(answer(decision(asset("BTCUSDT"), asset("ETHUSDT"), asset("DOGEUSDT", "buy"))))
    code, out, _ = decide(runner)
    assert code == 0 and out is not None
    doge = by_symbol(out)["DOGEUSDT"]
    assert doge["validation"]["status"] == "rejected"
    assert doge["validation"]["reasons"] == ["DOGEUSDT was not asked for (asked: BTCUSDT, ETHUSDT)"]
    rows = {a["symbol"]: a for a in show(runner, out["decision_id"])["assets"]}
    assert rows["DOGEUSDT"]["status"] == "rejected" and rows["DOGEUSDT"]["action"] == "buy"
    assert rows["DOGEUSDT"]["reasons"] == doge["validation"]["reasons"]
    assert history(runner, "--symbol", "DOGEUSDT")[0]["assets"][0]["status"] == "rejected"


def test_200x_leverage_is_clamped_to_the_limit(
    env: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster, leverage=200, allocation_usd=100), asset("ETHUSDT"))))
    code, out, _ = decide(runner)
    assert code == 0 and out is not None
    btc = by_symbol(out)["BTCUSDT"]
    assert btc["leverage"] == 2 and btc["validation"]["status"] == "amended"
    assert btc["validation"]["reasons"] == ["leverage 200 above the limit 2: set to 2"]
    row = show(runner, out["decision_id"])["assets"][0]
    assert row["proposed"]["leverage"] == 200 and row["leverage"] == 2


def test_tp_and_sl_on_the_wrong_side_are_rejected(
    env: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    mark = fake_aster.mark("BTCUSDT")
    wrong = long_btc(fake_aster, tp_price=round(mark * 0.97, 1), sl_price=round(mark * 1.02, 1))
    fake_llm.push(answer(decision(wrong, asset("ETHUSDT"))))
    code, out, _ = decide(runner)
    assert code == 0 and out is not None
    reasons = by_symbol(out)["BTCUSDT"]["validation"]["reasons"]
    assert any("sl_price" in r and "must be below the mark price" in r for r in reasons)
    assert any("tp_price" in r and "must be above the mark price" in r for r in reasons)
    row = show(runner, out["decision_id"])["assets"][0]
    assert row["status"] == "rejected" and row["reasons"] == reasons
    assert row["sl_price"] == wrong["sl_price"] and row["tp_price"] == wrong["tp_price"]


def test_all_rejected_outcome(env: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster, confidence=0.1), long_btc(fake_aster, "ETHUSDT", tp_price=1.0))))
    code, out, _ = decide(runner)
    assert code == 0 and out is not None and out["outcome"] == "all_rejected"


def test_429_is_retried_honouring_retry_after(env: Path, runner: CliRunner, fake_llm: FakeLLM) -> None:
    fake_llm.push(error(429, "rate limited", retry_after="0"))
    code, out, _ = decide(runner)
    assert code == 0 and out is not None and out["outcome"] == "decided"
    calls = show(runner, out["decision_id"])["llm_calls"]
    assert [c["error"] for c in calls] == ["HTTP 429: rate limited", None]


def test_persistent_500_is_a_recorded_model_error(
    env: Path, runner: CliRunner, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_MAX_RETRIES", "2")
    fake_llm.push(*(error(500, "upstream exploded") for _ in range(5)))
    code, out, stderr = decide(runner)
    assert code == 1
    assert out is not None and out["outcome"] == "model_error" and "HTTP 500" in out["error"]
    assert stderr.strip().count("\n") == 0, "one clear line"
    assert "HTTP 500" in stderr and "gave up after 3 attempts" in stderr
    assert f"(recorded as decision {out['decision_id']})" in stderr
    assert len(fake_llm.requests) == 3
    rows = history(runner)
    assert rows[0]["decision_id"] == out["decision_id"]
    assert rows[0]["outcome"] == "model_error" and "HTTP 500" in rows[0]["error"]
    record = show(runner, rows[0]["decision_id"])
    assert len(record["llm_calls"]) == 3 and record["assets"] == []
    assert record["prompt"]["user"]


def test_an_error_inside_a_200_reply_is_retried(env: Path, runner: CliRunner, fake_llm: FakeLLM) -> None:
    fake_llm.push(error_in_200(502))
    code, out, _ = decide(runner)
    assert code == 0 and out is not None
    calls = show(runner, out["decision_id"])["llm_calls"]
    assert calls[0]["error"].startswith("error in a 200 reply: upstream provider failed")


def test_a_refused_request_is_not_retried_and_the_key_never_shows(
    env: Path, runner: CliRunner, fake_llm: FakeLLM
) -> None:
    fake_llm.push(error(401, f"invalid key {TEST_KEY}"))
    code, _, stderr = decide(runner)
    assert code == 1 and len(fake_llm.requests) == 1
    assert "HTTP 401" in stderr and TEST_KEY not in stderr and "**********" in stderr


def test_slow_answers_are_waited_for_but_a_timeout_is_an_error(
    env: Path, runner: CliRunner, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_llm.push(slow(0.5, answer(decision(asset("BTCUSDT"), asset("ETHUSDT")))))
    code, out, _ = decide(runner)
    assert code == 0 and out is not None and out["usage"]["completion_tokens"] == 300
    monkeypatch.setenv("LLM_TIMEOUT_S", "1")
    monkeypatch.setenv("LLM_MAX_RETRIES", "1")
    fake_llm.push(slow(2, answer("{}")), slow(2, answer("{}")))
    code, out, stderr = decide(runner)
    assert code == 1 and "timed out" in stderr
    record = show(runner, history(runner, "--limit", "1")[0]["decision_id"])
    assert record["outcome"] == "model_error" and [c["error"] for c in record["llm_calls"]] == ["timeout", "timeout"]


def test_servers_without_json_schema_fall_back_to_json_object(env: Path, runner: CliRunner, fake_llm: FakeLLM) -> None:
    fake_llm.reject_json_schema = True
    code, out, _ = decide(runner)
    assert code == 0 and out is not None
    formats = [(r.get("response_format") or {}).get("type") for r in fake_llm.requests]
    assert formats == ["json_schema", "json_object"]
    assert "matches this JSON schema" in fake_llm.requests[1]["messages"][0]["content"]
    record = show(runner, out["decision_id"])
    assert record["response_format"] == "json_object"


def test_servers_without_any_response_format_get_plain_text_with_the_schema(
    env: Path, runner: CliRunner, fake_llm: FakeLLM
) -> None:
    fake_llm.reject_json_schema = fake_llm.reject_json_object = True
    fake_llm.push(answer(decision(asset("BTCUSDT"), asset("ETHUSDT")), wrap="prose"))
    code, out, _ = decide(runner)
    assert code == 0 and out is not None and out["outcome"] == "decided"
    formats = [(r.get("response_format") or {}).get("type") for r in fake_llm.requests]
    assert formats == ["json_schema", "json_object", None]
    assert "matches this JSON schema" in fake_llm.requests[2]["messages"][0]["content"]
    record = show(runner, out["decision_id"])
    assert record["response_format"] == "text"
    assert [c["error"] for c in record["llm_calls"]] == [
        "HTTP 400: response_format json_schema is not supported",
        "HTTP 400: response_format json_object is not supported",
        None,
    ]
    # the endpoint's answer is remembered: the next decision goes straight to plain text
    assert decide(runner)[0] == 0
    assert (fake_llm.requests[3].get("response_format") or {}).get("type") is None


def test_the_model_flag_overrides_the_configured_model(env: Path, runner: CliRunner, fake_llm: FakeLLM) -> None:
    code, out, _ = decide(runner, "--model", "deepseek/deepseek-chat-v3.1")
    assert code == 0 and out is not None and out["model"] == "deepseek/deepseek-chat-v3.1"
    assert fake_llm.requests[0]["model"] == "deepseek/deepseek-chat-v3.1"


def test_an_unlisted_symbol_is_refused_before_any_model_call(env: Path, runner: CliRunner, fake_llm: FakeLLM) -> None:
    code, _, stderr = decide(runner, "--symbols", "BTCUSDX,ETHUSDT")
    assert code == 2
    assert "BTCUSDX is not listed on the venue; closest listed: BTCUSDT" in stderr
    assert fake_llm.requests == [] and history(runner) == []
    code, _, stderr = decide(runner, "--symbols", "LUNAUSDT")
    assert code == 2 and "LUNAUSDT is listed but not trading (status SETTLING)" in stderr


def test_a_malformed_symbol_flag_exits_2(env: Path, runner: CliRunner) -> None:
    code, _, stderr = decide(runner, "--symbols", "BTC-USDT")
    assert code == 2 and "--symbols" in stderr and "BTC-USDT" in stderr


def test_an_unreachable_venue_is_recorded_and_exits_1(
    env: Path, runner: CliRunner, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASTERDEX_BASE_URL", "http://127.0.0.1:9")
    code, out, stderr = decide(runner)
    assert code == 1 and "cannot reach http://127.0.0.1:9" in stderr
    assert out is not None and out["outcome"] == "venue_error"
    assert fake_llm.requests == []
    assert history(runner)[0]["outcome"] == "venue_error"


def test_venue_5xx_on_reads_is_retried(env: Path, runner: CliRunner, fake_aster: FakeAster) -> None:
    fake_aster.fail("/fapi/v3/premiumIndex", 502, times=1)
    code, out, _ = decide(runner, "--symbols", "BTCUSDT")
    assert code == 0 and out is not None
    assert fake_aster.count("/fapi/v3/premiumIndex") == 2


def test_a_venue_error_code_with_http_200_is_an_error(env: Path, runner: CliRunner, fake_aster: FakeAster) -> None:
    fake_aster.fail("/fapi/v3/ticker/24hr", 200, code=-1003, msg="Too many requests", times=3)
    code, _out, stderr = decide(runner, "--symbols", "BTCUSDT")
    assert code == 1 and "venue error -1003: Too many requests" in stderr


def test_exchange_info_is_cached(env: Path, runner: CliRunner, fake_aster: FakeAster) -> None:
    assert decide(runner)[0] == 0 and decide(runner)[0] == 0
    assert fake_aster.count("/fapi/v3/exchangeInfo") == 1


def test_missing_open_interest_is_not_fatal(env: Path, runner: CliRunner, fake_aster: FakeAster) -> None:
    fake_aster.open_interest_supported = False
    code, out, _ = decide(runner, "--symbols", "BTCUSDT")
    assert code == 0 and out is not None
    assert "open interest -" in show(runner, out["decision_id"])["prompt"]["user"]


def test_without_a_key_paper_mode_uses_the_baseline_and_says_so(
    env: Path, runner: CliRunner, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENROUTER_API_KEY")
    monkeypatch.delenv("LLM_BASE_URL")  # OpenRouter, which needs a key
    result = runner.invoke(app, ["decide"])
    assert result.exit_code == 0, result.output
    assert "baseline" in result.stderr and "no model credentials" in result.stderr
    assert fake_llm.requests == []
    rows = history(runner)
    assert rows[0]["model"] == "baseline"
    code, _, stderr = decide(runner, "--model", "x-ai/grok-4")
    assert code == 2 and "needs an API key" in stderr


def test_a_local_server_needs_no_key(
    env: Path, runner: CliRunner, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENROUTER_API_KEY")
    code, out, _ = decide(runner)
    assert code == 0 and out is not None and out["model"] == "fake/model"
    assert fake_llm.headers[0]["authorization"] == "Bearer local"


def test_baseline_model_gives_a_full_valid_decision(env: Path, runner: CliRunner, fake_llm: FakeLLM) -> None:
    code, out, _ = decide(runner, "--model", "baseline", "--symbols", "BTCUSDT,ETHUSDT,SOLUSDT")
    assert code == 0 and out is not None
    assert [a["symbol"] for a in out["assets"]] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert all(a["validation"]["status"] != "rejected" for a in out["assets"])
    assert out["usage"]["cost_usd"] == 0.0 and fake_llm.requests == []


def test_dry_run_is_recorded(env: Path, runner: CliRunner) -> None:
    code, out, _ = decide(runner, "--dry-run")
    assert code == 0 and out is not None and out["dry_run"] is True
    assert show(runner, out["decision_id"])["dry_run"] == 1


def test_cost_from_the_price_table_when_the_endpoint_reports_none(
    env: Path, runner: CliRunner, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    config = tmp_path / "prices.toml"
    config.write_text('[llm_prices."fake/model"]\nprompt = 2.0\ncompletion = 10.0\n')
    fake_llm.push(answer(decision(asset("BTCUSDT"), asset("ETHUSDT")), cost=None))
    result = runner.invoke(app, ["--config", str(config), "decide", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["usage"]["cost_usd"] == pytest.approx((1500 * 2 + 300 * 10) / 1e6)


def test_no_secret_reaches_the_database_or_the_output(
    env: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    fake_llm.push(answer(decision(long_btc(fake_aster), asset("ETHUSDT"))), error(500, f"bad {TEST_KEY}"))
    outputs = [runner.invoke(app, ["decide"]), runner.invoke(app, ["decide", "--json"])]
    outputs += [runner.invoke(app, ["config", "show"]), runner.invoke(app, ["config", "show", "--json"])]
    for result in outputs:
        assert TEST_KEY not in result.output
    assert "**********" in outputs[2].stdout
    for path in env.parent.glob("llmtrader.db*"):
        assert TEST_KEY.encode() not in path.read_bytes()
    conn = sqlite3.connect(env)
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
        for row in conn.execute(f"SELECT * FROM {table}"):
            assert TEST_KEY not in json.dumps(row, default=str)


def test_the_decision_interval_is_always_shown(
    env: Path, runner: CliRunner, fake_aster: FakeAster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTERVAL", "5m")
    code, out, _ = decide(runner, "--symbols", "BTCUSDT")
    assert code == 0 and out is not None
    user = show(runner, out["decision_id"])["prompt"]["user"]
    assert "### 5m" in user and "### 15m" in user
    system = show(runner, out["decision_id"])["prompt"]["system"]
    assert "Every 5m you receive" in system

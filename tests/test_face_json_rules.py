"""Every --json document follows one set of rules (docs/json.md "Values"): an unknown value is null, never
"-"; yes/no fields are booleans; a key ending in `_pct` is a percentage number; every other ratio is a
fraction from 0 to 1; money, prices and sizes are JSON numbers, USD at the cent. Walks the documents of
decide, history, show, positions, close, stats, status, strategy list/show, config show, doctor, resume,
backtest (run, list, show), arena (run, list, show) and serve's JSON API after a trade was opened and
closed by hand."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient
from typer.testing import CliRunner

from llmtrader.cli.app import app
from llmtrader.config.load import load_settings
from llmtrader.web.app import ServeConfig, create_app
from tests.fakes.aster import FakeAster
from tests.fakes.llm import FakeLLM, answer, asset, decision

BOOLEANS = ("dry_run", "executed", "in_force", "emergency", "ok")
FRACTIONS = ("confidence", "win_rate", "exposure", "hit_rate")


def _leaves(doc: Any, path: str = "") -> list[tuple[str, str, Any]]:
    """(path, key, value) of every scalar in ``doc``."""
    if isinstance(doc, dict):
        return [leaf for k, v in doc.items() for leaf in _leaves(v, f"{path}.{k}") or [(f"{path}.{k}", k, v)]]
    if isinstance(doc, list):
        return [leaf for v in doc for leaf in _leaves(v, f"{path}[]")]
    return []


def _json(runner: CliRunner, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, (args, result.output)
    return json.loads(result.stdout)  # the whole of stdout: one document


def _open_a_long(runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM) -> Any:
    """`decide --json` opening a long on BTCUSDT with its stop and target."""
    mark = fake_aster.mark("BTCUSDT")
    fake_llm.push(answer(decision(
        asset("BTCUSDT", "buy", allocation_usd=1000, leverage=2, tp_price=round(mark * 1.04, 1),
              sl_price=round(mark * 0.98, 1), confidence=0.7),
    )))  # fmt: skip
    return _json(runner, "decide")


def test_every_json_document_follows_the_value_rules(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    docs: dict[str, Any] = {"decide": _open_a_long(runner, fake_aster, fake_llm)}
    docs["positions"] = _json(runner, "positions")
    docs["close"] = _json(runner, "close", "--all", "--yes")
    docs["history"] = _json(runner, "history")
    docs["show decide"] = _json(runner, "show", docs["decide"]["decision_id"])
    docs["show close"] = _json(runner, "show", docs["close"]["decision_id"])
    docs["stats"] = _json(runner, "stats")
    docs["status"] = _json(runner, "status")
    docs["strategy list"] = _json(runner, "strategy", "list")
    docs["config show"] = _json(runner, "config", "show")
    docs["doctor"] = json.loads(runner.invoke(app, ["doctor", "--json"]).stdout)
    assert docs["positions"] and docs["close"]["closed"] and docs["stats"]["trading"]["trades"] == 1

    problems: list[str] = []
    for name, doc in docs.items():
        for path, key, value in _leaves(doc):
            where = f"{name}{path}"
            if value == "-":
                problems.append(f'{where}: "-" (an unknown value is null)')
            counts = ".executions." in path  # stats: how many decisions ended in each execution state
            if key in BOOLEANS and not counts and not isinstance(value, bool):
                problems.append(f"{where}: {value!r} is not a boolean")
            if key.endswith("_pct") and value is not None and isinstance(value, (bool, str)):
                problems.append(f"{where}: {value!r} is not a percentage number")
            fraction = (key in FRACTIONS or key.endswith("_share")) and value is not None
            if fraction and (isinstance(value, (bool, str)) or not 0 <= value <= 1):
                problems.append(f"{where}: {value!r} is not a fraction from 0 to 1")
    assert not problems, "\n".join(problems)
    assert docs["close"]["strategy"] is None and docs["show close"]["base_url"] is None


# A leaf is money, a price or a size by its key: USD amounts end in _usd (docs/json.md "Values").
MONEY_KEY = re.compile(r"(_usd|price|_qty|^qty|^size|_pnl)$")
DECIMAL_TEXT = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")


def _money_documents(runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, perp_dir: Path) -> dict[str, Any]:
    """Every --json document with money in it, and serve's API, after a trade was opened, run once (which
    records the positions serve shows) and closed by hand, and a backtest and an arena ran."""
    docs: dict[str, Any] = {"decide": _open_a_long(runner, fake_aster, fake_llm)}
    assert runner.invoke(app, ["run", "--once"]).exit_code == 0  # the model holds (its default answer)
    docs["positions"] = _json(runner, "positions")
    docs["status"] = _json(runner, "status")
    docs["strategy show"] = _json(runner, "strategy", "show")
    docs["close"] = _json(runner, "close", "--all", "--yes")
    docs["history"] = _json(runner, "history")
    docs["show decide"] = _json(runner, "show", docs["decide"]["decision_id"])
    docs["show close"] = _json(runner, "show", docs["close"]["decision_id"])
    docs["stats"] = _json(runner, "stats")
    resumed = runner.invoke(app, ["resume", "default", "--json"])  # not stopped: exit 1, the peak still shown
    docs["resume"] = json.loads(resumed.stdout)
    assert resumed.exit_code == 1 and docs["resume"]["previous_peak_equity_usd"] > 0
    window = ["--data", str(perp_dir), "--symbols", "BTCUSDT,ETHUSDT", "--timeframes", "1h,4h", "--from",
              "2025-11-03", "--to", "2025-11-05"]  # fmt: skip
    docs["backtest"] = _json(runner, "backtest", *window, "--interval", "1h", "--model", "baseline")
    docs["backtest list"] = _json(runner, "backtest", "list")
    docs["backtest show"] = _json(runner, "backtest", "show", "latest")
    docs["arena"] = _json(runner, "arena", *window, "--models", "baseline", "--yes")
    docs["arena list"] = _json(runner, "arena", "list")
    docs["arena show"] = _json(runner, "arena", "show", "latest")

    settings = load_settings(read_only=True)
    with TestClient(create_app(ServeConfig(settings=settings, accounts=["default"]))) as api:
        paths = ["status", "decisions", f"decisions/{docs['decide']['decision_id']}", "positions?account=default",
                 "trades?account=default", "stats?account=default", "equity?account=default", "prices?account=default",
                 "backtests", f"backtests/{docs['backtest']['run']}"]  # fmt: skip
        for path in paths:
            answer_ = api.get(f"/api/v1/{path}")
            assert answer_.status_code == 200, (path, answer_.text)
            docs[f"api {path}"] = answer_.json()
    return docs


def test_money_prices_and_sizes_are_numbers_in_every_json_document(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM, perp_dir: Path
) -> None:
    docs = _money_documents(runner, fake_aster, fake_llm, perp_dir)
    assert docs["positions"] and docs["api positions?account=default"]["positions"]
    assert docs["api trades?account=default"]["trades"] and docs["close"]["closed"]
    problems: list[str] = []
    checked = 0
    for name, doc in docs.items():
        for path, key, value in _leaves(doc):
            where = f"{name}{path}"
            if ".request." in path:  # show: the order request as it was sent to the venue, its own strings
                continue
            if isinstance(value, str) and DECIMAL_TEXT.match(value) and not key.endswith("id"):
                problems.append(f"{where}: {value!r} is a number written as a string")
            if MONEY_KEY.search(key) and value is not None:
                checked += 1
                if isinstance(value, (bool, str)):
                    problems.append(f"{where}: {value!r} is not a number")
                elif key.endswith("_usd") and "cost" not in key and round(value, 2) != value:
                    problems.append(f"{where}: {value!r} is not rounded to the cent")
    assert not problems, "\n".join(problems)
    assert checked > 100
    # One name for the same thing: the unrealised PnL of a position, in USD, in the CLI and the API.
    assert "unrealized_pnl_usd" in docs["positions"][0]
    assert docs["api positions?account=default"]["positions"][0].keys() == docs["positions"][0].keys()
    assert docs["status"][0]["guards"]["drawdown"].keys() >= {"peak_equity_usd"}

"""Every --json document follows one set of rules (docs/json.md "Values"): an unknown value is null, never
"-"; yes/no fields are booleans; a key ending in `_pct` is a percentage number; every other ratio is a
fraction from 0 to 1. Walks the documents of decide, history, show, positions, close, stats, status,
strategy list, config show and doctor after a trade was opened and closed by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from llmtrader.cli.app import app
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


def test_every_json_document_follows_the_value_rules(
    paper: Path, runner: CliRunner, fake_aster: FakeAster, fake_llm: FakeLLM
) -> None:
    mark = fake_aster.mark("BTCUSDT")
    fake_llm.push(answer(decision(
        asset("BTCUSDT", "buy", allocation_usd=1000, leverage=2, tp_price=round(mark * 1.04, 1),
              sl_price=round(mark * 0.98, 1), confidence=0.7),
    )))  # fmt: skip
    docs: dict[str, Any] = {"decide": _json(runner, "decide")}
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

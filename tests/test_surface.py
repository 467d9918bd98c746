"""Goldens of the public surface that a re-layering of the modules must not change.

Every command's ``--help`` text (80 columns), the exact decision schema sent to the model, the request hash
of a fixed request (stored backtests replay by it).
Regenerate on purpose only: ``LLMTRADER_UPDATE_GOLDEN=1 pytest tests/test_surface.py``, then review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from llmtrader.backtest.replay import request_hash
from llmtrader.cli.app import app
from llmtrader.core.decision import decision_json_schema

GOLDEN = Path(__file__).parent / "golden" / "surface.json"


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for name in sorted(getattr(group, "commands", {})):
        out += _commands(group.commands[name], (*path, name))
    return out


def _surface(runner: CliRunner) -> dict[str, Any]:
    helps: dict[str, Any] = {}
    for path in _commands(typer.main.get_command(app)):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"})
        helps[" ".join(path) or "(top)"] = {"exit_code": result.exit_code, "output": result.stdout}
    return {
        "help": helps,
        "decision_schema": json.dumps(decision_json_schema(), sort_keys=False),
        "request_hash": request_hash("model-a", "http://127.0.0.1:1/v1", "system text", "user text"),
    }


def test_the_public_surface_matches_the_golden(clean_env: Path, runner: CliRunner) -> None:
    surface = _surface(runner)
    if os.environ.get("LLMTRADER_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(surface, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert sorted(surface["help"]) == sorted(golden["help"])
    for command, seen in surface["help"].items():
        assert seen == golden["help"][command], command
    assert surface["decision_schema"] == golden["decision_schema"]
    assert surface["request_hash"] == golden["request_hash"]

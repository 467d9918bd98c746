"""Goldens of the public surface that a re-layering of the modules must not change.

Every command's ``--help`` text (80 columns) as the console script prints it (``llmtrader.cli.app:main``,
which names option values after the option rather than their Python type), the exact decision schema sent
to the model, the request hash of a fixed request (stored backtests replay by it).
Regenerate on purpose only: ``LLMTRADER_UPDATE_GOLDEN=1 pytest tests/test_surface.py``, then review the diff.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from llmtrader.backtest.clients import request_hash
from llmtrader.cli.app import app, main
from llmtrader.core.decision import decision_json_schema

GOLDEN = Path(__file__).parent / "golden" / "surface.json"


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for name in sorted(getattr(group, "commands", {})):
        out += _commands(group.commands[name], (*path, name))
    return out


def _console_script(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Exit code and stdout of ``llmtrader ARGV`` run the way the installed console script runs it."""
    monkeypatch.setattr(sys, "argv", ["llmtrader", *argv])
    code: Any = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().out


def _surface(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    for name, value in {"COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"}.items():
        monkeypatch.setenv(name, value)
    helps: dict[str, Any] = {}
    for path in _commands(typer.main.get_command(app)):
        code, out = _console_script([*path, "--help"], monkeypatch, capsys)
        helps[" ".join(path) or "(top)"] = {"exit_code": code, "output": out}
    return {
        "help": helps,
        "decision_schema": json.dumps(decision_json_schema(), sort_keys=False),
        "request_hash": request_hash("model-a", "http://127.0.0.1:1/v1", "system text", "user text"),
    }


def test_the_public_surface_matches_the_golden(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    surface = _surface(monkeypatch, capsys)
    if os.environ.get("LLMTRADER_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(surface, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert sorted(surface["help"]) == sorted(golden["help"])
    for command, seen in surface["help"].items():
        assert seen == golden["help"][command], command
    assert surface["decision_schema"] == golden["decision_schema"]
    assert surface["request_hash"] == golden["request_hash"]


def test_the_help_of_the_console_script_shows_no_python_type_and_fits_80_columns(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    problems = []
    for command, seen in _surface(monkeypatch, capsys)["help"].items():
        assert seen["exit_code"] == 0 and "Usage: llmtrader" in seen["output"], command
        for line in seen["output"].splitlines():
            if re.search(r"<[a-z][a-z_\[\], ]*>|\d[<>]=x|x[<>]=\d", line):
                problems.append(f"{command}: a Python type: {line.strip()}")
            if len(line) > 80:
                problems.append(f"{command}: {len(line)} columns: {line.strip()}")
    assert not problems, "\n".join(problems)

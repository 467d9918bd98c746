"""`--help` through the console-script entry point names arguments and option values in words (SYMBOL,
--since SINCE), never by a Python type (<str>, <float>, <int range>), at 80 and 200 columns."""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest
import typer.main

from llmtrader.cli.app import app, main

TYPE_TAG = re.compile(r"<(str|int|float|bool|path|dir|file|int range|float range|text)>")


def _paths(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for name in sorted(getattr(group, "commands", {})):
        out += _paths(group.commands[name], (*path, name))
    return out


def _help(path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.setattr(sys, "argv", ["llmtrader", *path, "--help"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("width", (80, 200))
def test_no_help_shows_a_python_type(
    clean_env: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], width: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "dumb")
    paths = _paths(typer.main.get_command(app))
    assert len(paths) > 20
    for path in paths:
        text = _help(path, monkeypatch, capsys)
        assert not TYPE_TAG.search(text), (path, TYPE_TAG.findall(text), text)
        assert all(len(line) <= width for line in text.splitlines()), (path, text)
    close = _help(("close",), monkeypatch, capsys)
    assert "[SYMBOL]" in close and re.search(r"^\s+SYMBOL\s+The symbol whose position to close", close, re.M)
    assert re.search(r"--account ACCOUNT\b", close)

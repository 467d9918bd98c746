"""Help texts name values after their options, never after Python types; shell completion is installable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def help_of(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    done = subprocess.run([sys.executable, "-m", "llmtrader", *args, "--help"], capture_output=True, env=env,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


@pytest.mark.parametrize("command", [(), ("history",), ("decide",), ("backtest",), ("stats",), ("paper", "reset")])
def test_help_has_no_python_types(command: tuple[str, ...]) -> None:
    text = help_of(*command)
    for leaked in ("<bool>", "<str>", "<int", "<float>", "<list[", "<path>", "╭"):
        assert leaked not in text, (leaked, text)
    assert all(len(line) <= 80 for line in text.splitlines())


def test_completion_can_be_installed() -> None:
    assert "--install-completion" in help_of()

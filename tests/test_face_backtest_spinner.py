"""`backtest` on a terminal shows a spinner with the model and the elapsed time on stderr, and never puts it
in --json stdout (which stays one JSON document)."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest


def _read_all(fd: int) -> bytes:
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        out += chunk
    return out


@pytest.mark.parametrize("width", (80, 200))
def test_backtest_on_a_terminal_shows_the_model_and_elapsed_time_on_stderr_only(
    env: Path, perp_dir: Path, width: int
) -> None:
    master, slave = os.openpty()
    try:
        environ = {**os.environ, "CI": "", "COLUMNS": str(width), "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmtrader", "backtest", "--data", str(perp_dir), "--symbols", "BTCUSDT",
             "--from", "2025-10-01", "--to", "2025-10-02", "--model", "baseline", "--json"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=environ,
        )  # fmt: skip
        os.close(slave)
        shown = b""
        while proc.poll() is None:
            shown += _read_all(master)
        stdout = proc.stdout.read().decode() if proc.stdout else ""
        shown += _read_all(master)
        assert proc.wait(timeout=120) == 0, stdout + shown.decode(errors="replace")
    finally:
        os.close(master)
    doc = json.loads(stdout)  # stdout: one document, no spinner in it
    assert doc["metrics"] and "backtest baseline" not in stdout
    screen = shown.decode(errors="replace")
    assert "backtest baseline" in screen  # the model, beside the spinner
    # the elapsed time, then the time remaining: 25/25 0:00:01 0:00:00
    assert re.search(r"\d+/\d+ \d+:\d\d:\d\d [-\d]+:[-\d]{2}:[-\d]{2}", screen), screen

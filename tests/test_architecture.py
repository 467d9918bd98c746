"""The layers as the code shows them: what a pure module loads. import-linter (`make lint`) holds the contracts
of pyproject.toml; these tests check what it cannot see."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("pandas", "httpx", "openai", "pydantic_settings", "sqlite3", "sqlite_utils", "structlog", "typer", "rich")


@pytest.mark.parametrize(
    "module", ["llmtrader.core.risk", "llmtrader.core.trades", "llmtrader.core.guards", "llmtrader.core.limits"]
)
def test_the_pure_rules_load_no_io_library(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

"""The layers as the code shows them: what a pure module loads. import-linter (`make lint`) holds the contracts
of pyproject.toml; these tests check what it cannot see."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Function-local imports of llmtrader modules outside cli/ (see the last test): lower it when one goes.
LOCAL_IMPORTS_OUTSIDE_CLI = 41
# The same in web/, notify/ and arena/, counted apart: they came from main (merged into the re-layering) with
# their lazy imports as written there; a ratchet too, lower it as they are moved to the top of their modules.
OPTIONAL_PACKAGES = ("web/", "notify/", "arena/")
LOCAL_IMPORTS_OPTIONAL = 62
HEAVY = ("pandas", "httpx", "openai", "pydantic_settings", "sqlite3", "sqlite_utils", "structlog", "typer", "rich")


@pytest.mark.parametrize(
    "module", ["llmtrader.core.risk", "llmtrader.core.trades", "llmtrader.core.guards", "llmtrader.core.limits"]
)
def test_the_pure_rules_load_no_io_library(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


SRC = Path(__file__).resolve().parents[1] / "src" / "llmtrader"
SQL = re.compile(
    r"^\s*(SELECT|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|BEGIN|ROLLBACK|PRAGMA)\b", re.I
)


def _modules() -> list[tuple[str, ast.Module]]:
    return [
        (str(path.relative_to(SRC)), ast.parse(path.read_text(encoding="utf-8"))) for path in sorted(SRC.rglob("*.py"))
    ]


def test_every_sql_statement_is_in_storage() -> None:
    """import-linter sees imports, not strings: no SQL text and no query on a `.db`/`.conn` outside storage/."""
    found = []
    for name, tree in _modules():
        if name.startswith("storage/"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value):
                found.append(f"{name}:{node.lineno} {node.value[:40]!r}")
            if (
                isinstance(node, ast.Attribute)
                and node.attr in {"execute", "executemany", "query", "executescript"}
                and isinstance(node.value, ast.Attribute)
                and node.value.attr in {"db", "conn"}
            ):
                found.append(f"{name}:{node.lineno} .{node.value.attr}.{node.attr}")
    assert found == []


def _local_imports() -> list[str]:
    out = []
    for name, tree in _modules():
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llmtrader"):
                    out.append(f"{name}:{node.lineno} {node.module}")
    return sorted(set(out))


def test_function_local_imports_of_llmtrader_only_shrink() -> None:
    """Imports inside functions hide the import graph from import-linter. The command line keeps its lazy ones
    (`--help` stays fast); elsewhere they are a ratchet: this number may only go down."""
    outside_cli = [i for i in _local_imports() if not i.startswith(("cli/", *OPTIONAL_PACKAGES))]
    assert len(outside_cli) <= LOCAL_IMPORTS_OUTSIDE_CLI, "\n".join(outside_cli)
    optional = [i for i in _local_imports() if i.startswith(OPTIONAL_PACKAGES)]
    assert len(optional) <= LOCAL_IMPORTS_OPTIONAL, "\n".join(optional)

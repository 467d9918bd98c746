"""The suite's own shape: helpers shared by test modules live in tests/helpers.py (or another non-test module,
or conftest fixtures), never imported from one test module into another."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def test_no_test_module_imports_from_another_test_module() -> None:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.startswith("tests.test_") or (path.parent == TESTS and name.startswith("test_")):
                    found.append(f"{path.relative_to(TESTS)}:{node.lineno} imports {name}")
    assert found == []

"""The source outside tests: no `assert` for control flow (python -O removes it)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = ("callback_service", "handlers", "crypto", "config", "sandbox", "bench")


def test_no_assert_outside_tests() -> None:
    found = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for folder in SOURCE
        for path in sorted((REPO / folder).rglob("*.py"))
        if "tests" not in path.relative_to(REPO).parts
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Assert)
    ]
    assert found == []

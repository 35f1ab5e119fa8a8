"""What each part of the tree may import (README's Layout table), read from the source's own imports."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = ("callback_service", "handlers", "crypto", "config", "sandbox", "bench", "tests")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module a file imports, at its top or inside a function, absolute or relative."""
    package = module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])
            elif node.module:
                yield node.lineno, node.module


def files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def top(module: str) -> str:
    return module.split(".")[0]


def stdlib(module: str) -> bool:
    return top(module) in sys.stdlib_module_names or top(module) == "__future__"


def breaches(folder: str, allowed: tuple[str, ...], *, third_party: tuple[str, ...] = ()) -> list[str]:
    """Imports of ours outside `allowed` (prefixes), and of third-party packages outside `third_party`."""
    found = []
    for path in files(folder):
        for line, module in imports(path):
            if stdlib(module):
                continue
            if top(module) in OURS:
                ok = any(module == prefix or module.startswith(prefix + ".") for prefix in allowed)
            else:
                ok = top(module) in third_party
            if not ok:
                found.append(f"{path.relative_to(REPO)}:{line}: {module}")
    return found


def test_the_core_imports_only_the_standard_library_and_itself() -> None:
    assert breaches("handlers/core", ("handlers.core",)) == []


def test_the_core_does_no_io_and_has_no_coroutines() -> None:
    found = []
    for path in files("handlers/core"):
        for line, module in imports(path):
            if top(module) in {"asyncio", "logging", "socket", "sqlite3", "subprocess", "threading", "time"}:
                found.append(f"{path.relative_to(REPO)}:{line}: {module}")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.AsyncFunctionDef | ast.Await):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: async")
    assert found == []


def test_the_use_cases_import_the_core_and_nothing_of_the_service() -> None:
    assert breaches("handlers/usecases", ("handlers.core", "handlers.usecases")) == []


def test_handlers_holds_only_the_two_inner_packages() -> None:
    loose = [p.name for p in (REPO / "handlers").glob("*.py") if p.name != "__init__.py"]
    assert loose == []


@pytest.mark.parametrize(
    ("folder", "allowed", "third_party"),
    [
        ("crypto", ("crypto",), ("cryptography",)),
        ("config", ("config",), ("pydantic", "pydantic_settings")),
    ],
)
def test_the_outer_parts_keep_to_their_own(folder: str, allowed: tuple[str, ...], third_party: tuple[str, ...]) -> None:
    assert breaches(folder, allowed, third_party=third_party) == []


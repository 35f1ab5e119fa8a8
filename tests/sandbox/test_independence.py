"""The emulators play the other side: they import nothing of ours but crypto/, and ship apart."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"callback_service", "handlers", "config", "crypto", "sandbox", "tests", "bench"}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


EMULATORS = sorted(p for p in (ROOT / "sandbox").glob("*.py") if p.name != "demo.py")


@pytest.mark.parametrize("path", EMULATORS, ids=lambda p: p.name)
def test_an_emulator_imports_only_crypto_of_ours(path: Path) -> None:
    assert _imported_roots(path) & OURS <= {"crypto", "sandbox"}


def test_the_demo_is_the_one_module_that_composes_the_service() -> None:
    assert "callback_service" in _imported_roots(ROOT / "sandbox" / "demo.py")


def test_the_service_distribution_carries_no_emulator() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg", encoding="utf-8")
    included = setup["options.packages.find"]["include"].split()
    assert "callback_service" in included
    assert not [name for name in included if name.split(".")[0] in ("sandbox", "*")]


def test_nothing_of_the_service_imports_the_emulators() -> None:
    # The CLI's `demo` command is the one door, and it says how to install the emulators when absent.
    door = ROOT / "callback_service" / "ops" / "cli.py"
    for folder in ("callback_service", "handlers", "config", "crypto"):
        for path in (ROOT / folder).rglob("*.py"):
            if path != door:
                assert "sandbox" not in _imported_roots(path), path

"""What each part of the tree may import (README's Layout table), read from the source's own imports."""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = ("callback_service", "handlers", "crypto", "config", "sandbox", "testkit", "bench", "tests")
SERVICE = ("callback_service", "handlers", "crypto", "config")
"""The packages that ship (setup.cfg), as against the emulators, the tests' kit, the tests and the benchmarks."""


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



def service_modules() -> dict[str, Path]:
    """Every module of the service, by name."""
    return {module_name(path): path for folder in SERVICE for path in files(folder)}


def part(module: str) -> str:
    """The part of the service a module belongs to: callback_service's and handlers' subpackages
    (or top-level modules) each, and crypto and config as a whole."""
    names = module.split(".")
    return ".".join(names[:2]) if names[0] in ("callback_service", "handlers") and len(names) > 1 else names[0]


def import_graph(parts: bool) -> dict[str, set[str]]:
    """Who imports whom in the service, at a module's top or inside a function: modules, or parts."""
    modules = service_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        for _, imported in imports(path):
            target = imported
            while target and target not in modules:  # `from package.module import name`
                target = target.rpartition(".")[0]
            if not target:
                continue
            source, target = (part(name), part(target)) if parts else (name, target)
            if source != target:
                graph.setdefault(source, set()).add(target)
    return graph


def circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_circles_are_found() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_between_the_parts_of_the_service() -> None:
    graph = import_graph(parts=True)
    assert "callback_service.web" in graph  # the graph was read
    assert circles(graph) == []


def test_no_import_circle_between_the_modules_of_the_service() -> None:
    assert circles(import_graph(parts=False)) == []


def reaches_into(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    """The imports in folder of any of the forbidden packages."""
    return [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for path in files(folder)
        for line, module in imports(path)
        if top(module) in forbidden
    ]


@pytest.mark.parametrize("folder", SERVICE)
def test_the_service_never_imports_the_emulators_the_tests_or_the_benchmarks(folder: str) -> None:
    assert reaches_into(folder, ("sandbox", "testkit", "tests", "bench")) == []


@pytest.mark.parametrize(("folder", "forbidden"), [("testkit", ("sandbox", "tests", "bench")), ("bench", ("tests",))])
def test_what_the_tests_and_the_benchmarks_share_imports_neither(folder: str, forbidden: tuple[str, ...]) -> None:
    assert reaches_into(folder, forbidden) == []


BUILT_IN_COMPOSE = frozenset(
    {"WeComClient", "TokenProbe", "CasClient", "CallbackReceiver", "CallbackHandlers", "Inbox", "BindingFlow",
     "AdmissionGate", "SmsProof", "create_sms_sender", "open_store"}
)
"""What the composition root (callback_service/compose.py) alone builds: stores, clients, use cases."""


def builds(path: Path) -> Iterator[tuple[int, str]]:
    """The calls in a file of anything in BUILT_IN_COMPOSE, by its name."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name in BUILT_IN_COMPOSE:
                yield node.lineno, name


def test_stores_clients_and_use_cases_are_built_in_the_composition_root_only() -> None:
    # bench/store.py measures the backends themselves, each opened by its URL.
    exempt = {REPO / "callback_service" / "compose.py", REPO / "bench" / "store.py"}
    found = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for folder in ("callback_service", "sandbox", "bench")
        for path in files(folder)
        if path not in exempt
        for line, name in builds(path)
    ]
    assert found == []


SHARED = ("callback_service.client_address", "callback_service.qr", "callback_service.logs",
          "callback_service.metrics", "callback_service.answers", "callback_service.directory")


@pytest.mark.parametrize(
    ("part", "forbidden"),
    [
        ("callback_service/clients", ("callback_service",)),
        ("callback_service/store", ("callback_service.clients", "callback_service.callbacks", "callback_service.web",
                                    "callback_service.ops", "callback_service.compose", *SHARED)),
        ("callback_service/callbacks", ("callback_service.web", "callback_service.ops", "callback_service.compose",
                                        "callback_service.store")),
        ("callback_service/compose.py", ("callback_service.web", "callback_service.ops")),
        ("callback_service/web", ("callback_service.ops", "callback_service.admin")),
        ("callback_service/admin", ("callback_service.ops",)),
        *[(f"callback_service/{name.rpartition('.')[2]}.py", ("callback_service.web", "callback_service.ops",
                                                               "callback_service.callbacks", "callback_service.store",
                                                               "callback_service.compose"))
          for name in SHARED],
    ],
)
def test_each_part_of_the_service_keeps_to_its_layer(part: str, forbidden: tuple[str, ...]) -> None:
    paths = [REPO / part] if part.endswith(".py") else files(part)
    own = part.removesuffix(".py").replace("/", ".")
    found = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for path in paths
        for line, module in imports(path)
        if any(module == f or module.startswith(f + ".") for f in forbidden)
        and not (module == own or module.startswith(own + "."))
    ]
    assert paths
    assert found == []


def names_the_whole_store(source: str) -> list[int]:
    """The lines of a module that import the whole store (handlers.usecases.contracts.Store) or
    name it as an attribute, rather than a narrow Protocol of its pieces."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("contracts"):
            found += [node.lineno for alias in node.names if alias.name == "Store"]
        elif isinstance(node, ast.Attribute) and node.attr == "Store":
            found.append(node.lineno)
    return found


def test_the_whole_store_is_found() -> None:
    assert names_the_whole_store("from handlers.usecases.contracts import Claims, Store\n") == [1]
    assert names_the_whole_store("from . import contracts\n\ndef f(s: contracts.Store) -> None: ...\n") == [3]
    assert names_the_whole_store("from handlers.usecases.contracts import ReleaseStore, StoreUnavailable\n") == []


@pytest.mark.parametrize(
    "part",
    [
        "handlers/usecases",
        "callback_service/admin",
        "callback_service/directory.py",
        "callback_service/web/pages",
        "callback_service/web/health.py",
    ],
)
def test_no_use_case_nor_the_console_takes_the_whole_store(part: str) -> None:
    assert found_in(part, names_the_whole_store) == []


def found_in(part: str, finder: Callable[[str], list[int]]) -> list[str]:
    """Where the finder finds something in a part (a folder or one module), as path:line."""
    paths = [REPO / part] if part.endswith(".py") else files(part)
    assert paths, f"{part}: no module"
    return [
        f"{path.relative_to(REPO)}:{line}" for path in paths for line in finder(path.read_text(encoding="utf-8"))
    ]


def reads_the_whole_store_key(source: str) -> list[int]:
    """The lines of a module that import or name the app's whole-store key (callback_service.store.STORE),
    rather than a narrow key of its own (the console's CONSOLE_STORE, the pages' PAGES_STORE, health's
    HEALTH_STORE)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            found += [node.lineno for alias in node.names if alias.name == "STORE"]
        elif isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            found += [node.lineno] if name == "STORE" else []
    return found


def test_the_whole_store_key_is_found() -> None:
    assert reads_the_whole_store_key("from callback_service.store import STORE as S\n") == [1]
    assert reads_the_whole_store_key("import callback_service.store as s\n\nx = app[s.STORE]\n") == [3]
    assert reads_the_whole_store_key("from callback_service.store import CONSOLE_STORE\n\nx = app[CONSOLE_STORE]\n") == []


@pytest.mark.parametrize("part", ["callback_service/admin", "callback_service/web/pages", "callback_service/web/health.py"])
def test_the_console_pages_and_health_never_read_the_whole_store_key(part: str) -> None:
    """Only the app factory (web/app.py), which wires the use cases, reads STORE; each front its own key."""
    assert found_in(part, reads_the_whole_store_key) == []

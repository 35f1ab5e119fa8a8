"""Our four top-level packages bear generic names (crypto, config, handlers): check that they are ours.

Another distribution may install a package of the same name (a `crypto` or `config` of its own)
into the same environment; Python then imports whichever comes first, or one overwrites the other's
files. `wecom-bind serve` refuses to start when another distribution declares one of our names, or
when one of them was imported from outside the wecom-bind distribution.
"""

from __future__ import annotations

import importlib
import json
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

DISTRIBUTION: Final = "wecom-bind"
TOP_LEVEL: Final = ("callback_service", "handlers", "crypto", "config")


def _installed_file(name: str) -> Path | None:
    """Where our distribution put the package's __init__.py: in its files (an installed wheel) or
    under the project directory (an editable install); None when wecom-bind is not installed."""
    try:
        dist = distribution(DISTRIBUTION)
    except PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.as_posix() == f"{name}/__init__.py":
            return Path(str(dist.locate_file(file))).resolve()
    url = str(json.loads(dist.read_text("direct_url.json") or "{}").get("url", ""))
    if url.startswith("file://"):
        return (Path(unquote(urlsplit(url).path)) / name / "__init__.py").resolve()
    return None


def collisions() -> list[str]:
    """Describe each of our top-level names that another distribution also provides, or that was
    imported from outside wecom-bind; empty when all four are ours alone."""
    problems: list[str] = []
    providers = packages_distributions()
    for name in TOP_LEVEL:
        others = sorted(set(providers.get(name, ())) - {DISTRIBUTION})
        if others:
            problems.append(f"package {name!r} is also installed by {', '.join(others)}")
    for name in TOP_LEVEL:
        expected = _installed_file(name)
        if expected is None:
            problems.append(f"package {name!r}: the {DISTRIBUTION} distribution is not installed")
            continue
        loaded = getattr(importlib.import_module(name), "__file__", None)
        if loaded is None or Path(loaded).resolve() != expected:
            ours = f"not from {DISTRIBUTION} ({expected})"
            problems.append(f"package {name!r} was imported from {loaded}, {ours}")
    return problems

"""`python -m bench` (and `make bench`): run every benchmark module in this package, one after another.

Each module runs in its own interpreter (`python -m bench.<name>`), so that one benchmark's memory
and event loop do not colour the next one's figures.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path


def main() -> int:
    """Run each bench module; return the first failing exit status, or 0."""
    status = 0
    package = Path(__file__).resolve().parent
    for module in sorted(m.name for m in pkgutil.iter_modules([str(package)])):
        if module.startswith("_"):
            continue
        print(f"== bench.{module}", flush=True)
        code = subprocess.run([sys.executable, "-m", f"bench.{module}"], check=False).returncode
        status = status or code
        print(flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

"""The benchmarks still run: a bench that no test starts rots unseen (bench.binding once could not
write its own settings after a setting of another type was added). Figures are printed, never asserted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_binding_bench_runs_whole_flows_on_sqlite_with_none_failed() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.binding", "--no-redis", "--concurrency", "2", "--flows", "6", "--warmup", "1"],
        cwd=ROOT,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    row = re.search(r"^sqlite \(WAL, FULL\)\s+2\s+1\s+(\d+)\s+(\d+)\s", done.stdout, re.MULTILINE)
    assert row is not None, done.stdout[-2000:]
    assert (int(row.group(1)), int(row.group(2))) == (6, 0)  # flows, failed

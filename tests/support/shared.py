"""The project's shared folder, which sits beside the repository (here and in CI)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

SHARED: Final = Path(__file__).resolve().parents[2].parent / "shared"
VECTORS: Final = SHARED / "vectors" / "wecom-official-sample.json"
GUIDE_TEXT: Final = SHARED / "seeds" / "000_5c1885cd88d7328c.txt"

"""Reference material kept in the repository: Tencent's published crypto sample and the students' guide."""

from __future__ import annotations

from pathlib import Path
from typing import Final

_ROOT: Final = Path(__file__).resolve().parents[2]
# Tencent's WXBizMsgCrypt sample (the official vectors), as published.
VECTORS: Final = _ROOT / "tests" / "data" / "wecom-official-sample.json"
# The university's guide for students, the source of the help page's chapter 2 texts.
GUIDE_TEXT: Final = _ROOT / "docs" / "student-guide.txt"

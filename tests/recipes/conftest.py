"""Make the recipes' data preparation importable: their `local/` scripts import the helpers of
`tools/` by name, as they do when run under path.sh."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO / "tools", REPO / "recipes" / "wenetspeech" / "s0" / "local"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

"""Make the recipe helpers importable: `tools/` scripts and the mini recipe's `local/` modules
import their siblings by name, as they do when run as scripts (path.sh puts tools/ on the path)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
MINI_LOCAL = REPO / "recipes" / "mini" / "s0" / "local"

for _path in (TOOLS, MINI_LOCAL):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

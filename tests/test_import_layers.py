"""Imports point one way: the import-linter contracts of pyproject.toml hold (`make lint` checks
them too; this runs them in the test suite, which CI runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_imports_keep_the_layer_contracts():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache", "--no-logo"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wenet_eff layers" in result.stdout  # the layer contract was read and checked

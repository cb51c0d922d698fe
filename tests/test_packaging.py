"""The wheel a non-editable install (`pip install .`) builds carries every packaged config."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_every_packaged_config(tmp_path):
    # Build from a copy so the checkout gets no build/ or egg-info from the test.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "requirements.txt", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "wenet_eff", src / "wenet_eff", ignore=ignore)
    out = tmp_path / "wheel"
    build = "from setuptools import build_meta; import sys; build_meta.build_wheel(sys.argv[1])"
    subprocess.run(
        [sys.executable, "-c", build, str(out)], cwd=src, check=True, capture_output=True
    )
    (wheel,) = out.glob("*.whl")
    packaged = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".yaml")}
    configs = {p.relative_to(ROOT).as_posix() for p in (ROOT / "wenet_eff/conf").rglob("*.yaml")}
    assert "wenet_eff/conf/model/ffn/moe.yaml" in configs
    assert configs - packaged == set()

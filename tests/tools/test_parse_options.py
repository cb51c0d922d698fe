"""tools/parse_options.sh: Kaldi option semantics under `set -euo pipefail`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

PARSE_OPTIONS = Path(__file__).resolve().parents[2] / "tools" / "parse_options.sh"
SCRIPT = f"""
set -euo pipefail
stage=0
nj=4
use_gpu=false
train_opts=""
help_message="usage: demo [--stage N]"
. {PARSE_OPTIONS}
echo "stage=$stage nj=$nj use_gpu=$use_gpu train_opts=$train_opts rest=$*"
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", SCRIPT, "demo", *args], capture_output=True, text=True)


def test_sets_defined_variables_and_leaves_positional_args():
    out = _run("--stage", "2", "--nj=8", "--use-gpu", "true", "--train_opts", "a=1 b=2", "x", "y")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "stage=2 nj=8 use_gpu=true train_opts=a=1 b=2 rest=x y"


def test_defaults_and_double_dash():
    out = _run("--", "--stage", "3")
    assert out.stdout.strip() == "stage=0 nj=4 use_gpu=false train_opts= rest=--stage 3"


def test_help_prints_message_and_exits_zero():
    out = _run("--help")
    assert out.returncode == 0
    assert out.stdout.strip() == "usage: demo [--stage N]"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--bogus", "1"), "invalid option --bogus"),
        (("--use_gpu", "yes"), "takes true or false"),
        (("--stage",), "needs a value"),
        (("--config", "/nonexistent"), "--config needs an existing file"),
    ],
)
def test_errors_exit_nonzero_with_a_message(args, message):
    out = _run(*args)
    assert out.returncode != 0
    assert message in out.stderr
    assert out.stdout == ""


def test_config_file_sets_defaults(tmp_path):
    config = tmp_path / "opts.sh"
    config.write_text("nj=16\n")
    out = _run("--config", str(config), "--stage", "1")
    assert out.stdout.strip().startswith("stage=1 nj=16 ")

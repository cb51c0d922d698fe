"""The recipes' stage system: one stage table that every run.sh --help prints and that matches
the stages the scripts run (tools/recipe_defaults.sh, recipe_stages.sh), stage selection and
titles (run_stage), the options recipe_stages.sh requires, and the training launcher."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
RECIPES = ("mini", "librispeech", "aishell", "wenetspeech")


def _bash(script: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MAIN_ROOT"}
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=cwd, env=env, capture_output=True, text=True,
    )  # fmt: skip


def _section(help_text: str, title: str) -> list[str]:
    """The lines of a --help section from its title line to the next blank line (or the end)."""
    lines = [*help_text.splitlines(), ""]
    start = next(i for i, line in enumerate(lines) if line.startswith(title)) + 1
    return lines[start : lines.index("", start)]


def _numbers(lines: list[str]) -> list[int]:
    return [int(line.split()[0]) for line in lines]


def _run_stage_numbers(script: Path) -> set[int]:
    return {int(n) for n in re.findall(r"run_stage (-?\d+)", script.read_text())}


def _help(recipe: str) -> str:
    proc = _bash("bash run.sh --help", cwd=REPO / "recipes" / recipe / "s0")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_every_recipe_prints_the_same_stage_table_that_its_scripts_run():
    helps = {recipe: _help(recipe) for recipe in RECIPES}
    shared = _section(helps["mini"], "Stages of every recipe")
    assert _numbers(shared) == list(range(13))  # 0 .. 12, in order
    assert set(_numbers(shared)) == _run_stage_numbers(TOOLS / "recipe_stages.sh") | {0}
    for recipe, text in helps.items():
        assert _section(text, "Stages of every recipe") == shared, recipe
        run_sh = REPO / "recipes" / recipe / "s0" / "run.sh"
        own = [x for x in _section(text, "Stages of this recipe") if re.match(r" *-?\d+ ", x)]
        # the recipe runs stage 0 and its own stages, numbered where no shared stage is
        assert set(_numbers(own)) | {0} == _run_stage_numbers(run_sh), recipe
        assert all(n < 0 or n >= 20 for n in _numbers(own)), recipe
    assert _numbers(_section(helps["mini"], "Stages of this recipe")) == [-1, 20, 21, 22]


def test_help_lists_the_shared_options_with_the_recipes_defaults():
    mini = _help("mini")
    own = _section(mini, "Options of this recipe")
    shared = _section(mini, "Options of every recipe")
    assert "  --stage=-1" in own and "  --stage=0" in shared  # mini starts with synthesis
    assert any(line.startswith("  --compress_configs=") for line in own + shared)
    assert not any(re.match(r"  --(qat|sparse)_", line) for line in own + shared)
    names = [line.split("=")[0] for line in shared]
    for recipe in RECIPES[1:]:
        assert [line.split("=")[0] for line in _section(_help(recipe), "Options of every recipe")] \
            == names  # fmt: skip


def _with_defaults(script: str) -> subprocess.CompletedProcess:
    return _bash(
        f". {TOOLS / 'recipe_defaults.sh'}\n. {TOOLS / 'recipe_lib.sh'}\n"
        "corpus_stages() { echo '  20  an own stage'; }\n" + script
    )


def test_run_stage_selects_the_range_and_prints_the_stage_title():
    proc = _with_defaults(
        "stage=2 stop_stage=20\nfor n in 1 2 12 20 21; do run_stage $n || echo skip $n; done"
    )
    assert proc.stdout.splitlines() == [
        "skip 1",
        "stage 2: units (characters or sentencepiece BPE) and the word n-gram LM of the training "
        "text",
        "stage 12: tables and plots of every exp/*/ (python -m wenet_eff.bin.tables)",
        "stage 20: an own stage",
        "skip 21",
    ]


def test_other_nodes_run_only_the_training_stages():
    proc = _with_defaults(
        "stage=0 stop_stage=12 node_rank=1\n"
        "for n in $(seq 0 12); do run_stage $n > /dev/null && echo $n; done"
    )
    assert proc.stdout.split() == ["4", "8", "10"]


def test_recipe_stages_names_a_missing_option():
    proc = _with_defaults(f"MAIN_ROOT={REPO}\nunset compress_modes\n. {TOOLS / 'recipe_stages.sh'}")
    assert proc.returncode != 0
    assert "compress_modes: parameter null or not set" in proc.stderr


def _launcher(**options: str) -> str:
    settings = "".join(f"{k}={v}\n" for k, v in options.items())
    proc = _with_defaults(settings + "launcher")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "python"),
        ({"nproc": "2"},
         "env OMP_NUM_THREADS=1 torchrun --standalone --nnodes=1 --nproc_per_node=2"),
        ({"train_engine": "deepspeed"},
         "env OMP_NUM_THREADS=1 torchrun --standalone --nnodes=1 --nproc_per_node=1"),
        ({"num_gpus": "8"}, "torchrun --standalone --nnodes=1 --nproc_per_node=8"),
        ({"num_gpus": "8", "num_nodes": "2", "node_rank": "1", "master_addr": "node0",
          "master_port": "29400"},
         "torchrun --nnodes=2 --node_rank=1 --nproc_per_node=8 --rdzv_id=wenet_eff "
         "--rdzv_backend=c10d --rdzv_endpoint=node0:29400"),
    ],
)  # fmt: skip
def test_launcher(options, expected):
    assert _launcher(**options) == expected

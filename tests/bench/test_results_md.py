"""RESULTS.md from kept result JSON: the real writers (tools/wer_table.py run as a command,
bin.benchmark compress_size, bin.tables) record their provenance, bin.tables keeps their JSON
in a results folder and renders it; a JSON without provenance is refused; the render is a
function of the JSON alone."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import wenet_eff
from tests.tiny import TINY
from wenet_eff.bench.common import isa_class
from wenet_eff.bench.results_md import results_markdown
from wenet_eff.bin import benchmark, tables
from wenet_eff.config import save_config

REPO = Path(__file__).resolve().parents[2]
WER_LINE = "Overall -> {:.2f} % N=8 C={} S={} D=0 I=0\n"


def _sections(markdown: str) -> dict[str, str]:
    """{file name: section text} of a RESULTS.md."""
    parts = markdown.split("\n## ")[1:]
    return {part.split("`", 2)[1]: part for part in parts}


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    """exp/tiny decoded (wer files) and tabled by tools/wer_table.py, a compress_size JSON,
    then `bin.tables exp/tiny --results_dir recipe/results --keep compress_size.json`."""
    root = tmp_path_factory.mktemp("results_md")
    exp = root / "exp" / "tiny"
    save_config(wenet_eff.load_config("mini", TINY), exp / "train.yaml")
    for mode, errors in (("ctc_greedy_search", 3), ("attention_rescoring", 2)):
        (exp / "test" / mode).mkdir(parents=True)
        wer = WER_LINE.format(12.5 * errors, 8 - errors, errors)
        (exp / "test" / mode / "wer").write_text(f"utt: x\n{wer}")
    command = [sys.executable, str(REPO / "tools" / "wer_table.py"), "--test_sets", "test",
               "--modes", "ctc_greedy_search attention_rescoring", str(exp)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, cwd=root)
    size_json = root / "bench" / "compress_size.json"
    benchmark.main(["compress_size", "--models", "mini", "--configs", "qat_int4", "--vocab_size",
                    "12", "--out", str(size_json), "--override", *TINY])  # fmt: skip
    decode_json = root / "bench" / "decode_rtf.json"
    benchmark.main(["decode_rtf", "--model", "mini", "--threads", "1", "--seconds", "1",
                    "--repeats", "1", "--beam_size", "2", "--out", str(decode_json),
                    "--override", *TINY])  # fmt: skip
    results = root / "recipe" / "results"
    tables.main([str(exp), "--out_dir", str(root / "tables"), "--results_dir", str(results),
                 "--bench", str(decode_json), "--keep", str(size_json)])  # fmt: skip
    return {"root": root, "exp": exp, "results": results, "command": command}


def test_writers_record_provenance(kept):
    record = json.loads((kept["exp"] / "wer_table.json").read_text())
    prov = record["provenance"]
    # the command as it would be typed again: the script with its arguments
    assert prov["command"] == shlex.join(["python", *kept["command"][1:]])
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    assert prov["commit"] == head
    assert prov["date"].startswith("20") and prov["date"].endswith("+00:00")
    assert prov["cores"] >= 1 and prov["cpu"] and prov["isa"]
    size = json.loads((kept["root"] / "bench" / "compress_size.json").read_text())
    assert size["provenance"]["threads"] == size["threads"]


def test_results_md_has_every_kept_table_with_its_provenance(kept):
    results = kept["results"]
    assert sorted(p.name for p in results.iterdir()) == [
        "compress_size.json", "decode_rtf.json", "tables.json", "tiny.wer_table.json"
    ]  # fmt: skip
    md = (results.parent / "RESULTS.md").read_text()
    assert "`python -m wenet_eff.bin.tables --results_dir results`" in md
    sections = _sections(md)
    # bin.tables' section first, then the WER table, then the benchmarks
    assert list(sections) == [
        "tables.json", "tiny.wer_table.json", "decode_rtf.json", "compress_size.json"
    ]  # fmt: skip
    for name, text in sections.items():
        prov = json.loads((results / name).read_text())["provenance"]
        date = prov["date"][:10] + " " + prov["date"][11:16]
        assert f"- command: `{prov['command']}`\n" in text
        assert f"- commit `{prov['commit'][:12]}`" in text and f", {date} UTC\n" in text
        assert f"- machine: {prov['cpu']} ({prov['isa']}), {prov['cores']} cores" in text
    wer = sections["tiny.wer_table.json"]
    assert "| ctc_greedy_search | 37.50 |\n| attention_rescoring | 25.00 |" in wer
    assert "| tiny | " in sections["tables.json"] and "### Models" in sections["tables.json"]
    decode = json.loads((results / "decode_rtf.json").read_text())
    for stage in decode["results"]:
        cells = f"| {stage['stage']} | {stage['seconds']:.3f} | {stage['rtf']:.4f} |"
        assert cells in sections["decode_rtf.json"]
    assert ", 1 thread\n" in sections["decode_rtf.json"]  # the benchmark's --threads
    row = json.loads((results / "compress_size.json").read_text())["results"][0]
    cells = f"| mini | qat_int4 | {row['params'] / 1e6:.1f} | {row['float32_bytes'] / 1e6:.2f} |"
    assert cells in sections["compress_size.json"]


def test_render_is_a_function_of_the_json(kept, tmp_path):
    results = kept["results"]
    md = (results.parent / "RESULTS.md").read_bytes()
    assert results_markdown(str(results), str(results.parent / "RESULTS.md")).encode() == md
    moved = tmp_path / "elsewhere" / "results"  # another path, files copied in another order
    moved.mkdir(parents=True)
    for path in sorted(results.iterdir(), reverse=True):
        shutil.copy(path, moved / path.name)
    tables.main(["--results_dir", str(moved)])
    assert (moved.parent / "RESULTS.md").read_bytes() == md


def test_json_without_provenance_is_refused(kept, tmp_path):
    record = json.loads((kept["results"] / "tiny.wer_table.json").read_text())
    del record["provenance"]
    old = tmp_path / "old_wer_table.json"
    old.write_text(json.dumps(record))
    results = tmp_path / "results"
    with pytest.raises(SystemExit, match="old_wer_table.json: a wer_table JSON without provenance"):
        tables.main(["--results_dir", str(results), "--keep", str(old)])
    assert not results.exists() or not list(results.iterdir())  # nothing kept
    results.mkdir(exist_ok=True)
    shutil.copy(old, results / old.name)  # put there by hand: the render refuses it too
    with pytest.raises(SystemExit, match="old_wer_table.json: a wer_table JSON without provenance"):
        tables.main(["--results_dir", str(results)])
    (results / old.name).write_text('{"something": 1}')
    with pytest.raises(SystemExit, match="old_wer_table.json: not a result JSON of a known kind"):
        tables.main(["--results_dir", str(results)])


def test_empty_results_dir_says_nothing_was_produced(tmp_path):
    (tmp_path / "results").mkdir()
    tables.main(["--results_dir", str(tmp_path / "results")])
    md = (tmp_path / "RESULTS.md").read_text()
    assert "No result has been produced yet" in md and "\n## " not in md


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({"avx2": True, "avx512f": False, "int8_dot": []}, "AVX2"),
        ({"avx2": True, "avx512f": False, "int8_dot": ["avx_vnni"]}, "AVX2 + AVX-VNNI"),
        ({"avx2": True, "avx512f": True, "int8_dot": []}, "AVX-512"),
        (
            {"avx2": True, "avx512f": True, "int8_dot": ["avx512_vnni", "amx_int8"]},
            "AVX-512 VNNI + AMX",
        ),
    ],
)
def test_isa_class_names_the_int8_capable_cpus(flags, expected):
    assert isa_class({"model": "", **flags}) == expected

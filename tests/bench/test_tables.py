"""bin.tables on a small experiment tree as the recipe stages write it: real tiny models and
checkpoints, WER files from tools/compute_wer.py, decoder_main's rtf.json, bin.pack and
bin.masks outputs and benchmark JSON; the Pareto front on hand-made points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import torch

import wenet_eff
from tests.tiny import TINY
from wenet_eff.bench.pareto import pareto_front
from wenet_eff.bench.results import parse_overall, read_benchmark
from wenet_eff.bench.tables import reference_of
from wenet_eff.bin import benchmark, masks, pack, tables
from wenet_eff.config import save_config

COMPUTE_WER = Path(__file__).resolve().parents[2] / "tools" / "compute_wer.py"
MOE = ["model/ffn=moe", "model.encoder.n_expert=4", "model.decoder.n_expert=4"]
REFS = {"utt1": "A B C D", "utt2": "E F G H"}  # N=8: k errors give 12.5 k %
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _experiment(root: Path, name: str, *overrides: str, checkpoint: str = "avg_2.pt") -> Path:
    """train.yaml (as bin.train resolves it) and a checkpoint of a tiny model under exp/NAME."""
    exp = root / "exp" / name
    cfg = wenet_eff.load_config("mini", [*TINY, f"train.exp_dir=exp/{name}", *overrides])
    torch.manual_seed(0)
    model = wenet_eff.build_model(cfg)
    save_config(cfg, exp / "train.yaml")
    torch.save(model.state_dict(), exp / checkpoint)
    return exp


def _wer_file(root: Path, errors: int, cache: dict) -> str:
    """compute_wer.py's output for a hypothesis with `errors` substituted words."""
    if errors not in cache:
        ref, hyp = root / "ref", root / f"hyp{errors}"
        ref.write_text("".join(f"{k} {t}\n" for k, t in REFS.items()))
        words = " ".join(REFS.values()).split()
        words = ["X"] * errors + words[errors:]
        hyp.write_text(f"utt1 {' '.join(words[:4])}\nutt2 {' '.join(words[4:])}\n")
        cache[errors] = subprocess.run(
            [sys.executable, str(COMPUTE_WER), "--char=0", "--v=1", str(ref), str(hyp)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    return cache[errors]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _rtf_json(rtf: float, audio: float) -> str:
    """As decoder_main --rtf_json writes it."""
    return (
        f'{{"rtf": {rtf}, "audio_seconds": {audio}, "decode_seconds": {rtf * audio}, '
        '"encoder_seconds": 0.1, "search_seconds": 0.05, "rescore_seconds": 0.02, '
        '"utterances": 2, "skipped": 0, "threads": 1}\n'
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    cache: dict = {}
    init = ["train.init_checkpoint=exp/dense/avg_2.pt"]
    dense = _experiment(root, "dense")
    moe = _experiment(root, "moe", *MOE, checkpoint="final.pt")
    none = _experiment(root, "dense_none", *init)
    qat = _experiment(root, "dense_qat_int4", *init, "compress=qat_int4")
    sparse = _experiment(root, "dense_sparse_2_4", *init, "compress=sparse_2_4")
    wers = {  # (exp, test set, mode): substituted words of 8
        (dense, "test", "attention_rescoring"): 2,
        (dense, "test", "ctc_greedy_search"): 3,
        (dense, "test_real", "attention_rescoring"): 4,
        (moe, "test", "attention_rescoring"): 1,
        (none, "test", "attention_rescoring"): 3,
        (qat, "test", "attention_rescoring"): 4,
        (sparse, "test", "attention_rescoring"): 3,
    }
    for (exp, test_set, mode), errors in wers.items():
        _write(exp / test_set / mode / "wer", _wer_file(root, errors, cache))
    _write(moe / "test_real" / "attention_rescoring" / "wer", "utt: utt1\n")  # interrupted
    runtime = dense / "runtime_fp32"
    _write(runtime / "test" / "chunk-1" / "rtf.json", _rtf_json(0.02, 10.0))
    _write(runtime / "test" / "chunk-1" / "wer", _wer_file(root, 2, cache))
    _write(runtime / "test_real" / "chunk-1" / "rtf.json", _rtf_json(0.05, 30.0))
    _write(runtime / "test" / "chunk4" / "rtf.json", _rtf_json(0.3, 10.0))
    pack.main(["--config", str(qat / "train.yaml"), "--checkpoint", str(qat / "avg_2.pt"),
               "--out", str(qat / "packed.pt")])  # fmt: skip
    masks.main(["fold", "--config", str(sparse / "train.yaml"), "--checkpoint",
                str(sparse / "avg_2.pt"), "--out", str(sparse / "folded.pt")])  # fmt: skip
    decode_json = root / "bench" / "decode_rtf.json"
    benchmark.main(["decode_rtf", "--model", "mini", "--threads", "1", "--seconds", "1",
                    "--repeats", "1", "--beam_size", "2", "--chunks", "--out", str(decode_json),
                    "--override", *TINY])  # fmt: skip
    runtime_json = root / "bench" / "runtime_rtf.json"
    row = {"model": "moe", "precision": "fp32", "chunk": -1, "wer": 12.5}
    runtime_json.write_text(json.dumps({
        "threads": 1, "utterances": 2, "audio_seconds": 3.0, "chunk_size": 4,
        "num_left_chunks": 2, "active_flops_per_second": {"moe": 1e8}, "ratios": [],
        "rows": [{**row, "engine": "eager", "rtf": 0.5}, {**row, "engine": "cpp", "rtf": 0.1},
                 {**row, "engine": "cpp", "chunk": 4, "rtf": 0.2}],
    }))  # fmt: skip
    out = root / "tables"
    exps = [dense, moe, none, qat, sparse]
    result = tables.main(
        [*map(str, exps), "--label", "dense=Dense", "--label", "moe=MoE", "--label",
         "mini=Tiny bench", "--bench", str(decode_json), str(runtime_json), "--out_dir", str(out)]
    )  # fmt: skip
    return {"root": root, "out": out, "result": result, "exps": exps}


def _table(markdown: str, title: str) -> dict[str, dict[str, str]]:
    """{first cell: {column: cell}} of the Markdown table under `## title`."""
    section = markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {r[0]: dict(zip(header, r, strict=True)) for r in rows}


def test_model_table(tree):
    dense, moe, _, qat, _ = tree["exps"]
    md = (tree["out"] / "tables.md").read_text()
    assert md == tree["result"]["markdown"]
    rows = _table(md, "Models")
    assert list(rows) == ["Dense", "MoE", "dense_none", "dense_qat_int4", "dense_sparse_2_4",
                          "Tiny bench"]  # fmt: skip
    counts = {}
    for name, overrides in (("dense", []), ("moe", MOE)):
        cfg = wenet_eff.load_config("mini", [*TINY, *overrides])
        counts[name] = wenet_eff.build_model(cfg).num_params()
    assert counts["moe"]["active"] < counts["moe"]["total"]
    for label, name in (("Dense", "dense"), ("MoE", "moe")):
        p = counts[name]
        assert rows[label]["params M (total / active)"] == (
            f"{p['total'] / 1e6:.2f} / {p['active'] / 1e6:.2f}"
        )
    # size: float32 weights, or bin.pack's packed bytes; file: what is on disk
    packed = json.loads((qat / "packed.pt.size.json").read_text())["total"]
    for label, size, file in (
        ("Dense", 4 * counts["dense"]["total"], dense / "avg_2.pt"),
        ("MoE", 4 * counts["moe"]["total"], moe / "final.pt"),
        ("dense_qat_int4", packed["packed_bytes"], qat / "packed.pt"),
    ):
        assert rows[label]["size MB"] == f"{size / 1e6:.2f}"
        assert rows[label]["file MB"] == f"{file.stat().st_size / 1e6:.2f}"
    assert rows["Dense"]["test WER %"] == "25.00" and rows["Dense"]["test_real WER %"] == "50.00"
    assert rows["MoE"]["test WER %"] == "12.50"
    assert rows["MoE"]["test_real WER %"] == ""  # its wer file has no Overall line
    # decoder_main over both test sets: (0.02 x 10 s + 0.05 x 30 s) / 40 s
    assert rows["Dense"]["RTF"] == "0.0425"
    assert rows["Dense"]["RTF measured by"] == "decoder_main cpp fp32 full context, 1 thread"
    assert rows["MoE"]["RTF"] == "0.1000"  # runtime_rtf's C++ row, not its eager one
    assert rows["MoE"]["RTF measured by"].startswith("runtime_rtf cpp fp32 full context")
    assert rows["dense_none"]["RTF"] == "" and rows["dense_none"]["RTF measured by"] == ""
    decode = json.loads((tree["root"] / "bench" / "decode_rtf.json").read_text())
    stage = next(r for r in decode["results"] if r["stage"] == "attention_rescoring")
    assert rows["Tiny bench"]["RTF"] == f"{stage['rtf']:.4f}"
    assert rows["Tiny bench"]["test WER %"] == "" and rows["Tiny bench"]["file MB"] == ""
    assert "random weights" in rows["Tiny bench"]["RTF measured by"]


def test_compression_table(tree):
    rows = _table(tree["result"]["markdown"], "Compression")
    assert list(rows) == ["dense_none", "dense_qat_int4", "dense_sparse_2_4"]
    assert rows["dense_none"]["weights"] == "float32" and rows["dense_none"]["vs"] == ""
    assert rows["dense_none"]["test WER % (rel.)"] == "37.50"
    qat = rows["dense_qat_int4"]
    assert (qat["weights"], qat["sparsity"], qat["vs"]) == ("4-bit sym channel", "", "dense_none")
    assert qat["test WER % (rel.)"] == "50.00 (+33.3 %)"
    size = json.loads((tree["exps"][3] / "packed.pt.size.json").read_text())
    assert qat["x smaller"] == f"{size['total']['ratio']:.2f}" and size["total"]["ratio"] > 4
    sparse = rows["dense_sparse_2_4"]
    assert (sparse["weights"], sparse["sparsity"]) == ("float32", "2:4 SR-STE")
    assert sparse["zeros in masked layers"] == "50.0% (N:M exact)"
    assert sparse["test WER % (rel.)"] == "37.50 (+0.0 %)"
    assert "test_real WER % (rel.)" not in sparse  # no compressed run decoded test_real


def test_plots_json_and_pareto_fronts(tree):
    out, result = tree["out"], tree["result"]
    for name in ("wer_vs_rtf", "wer_vs_size"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert matplotlib.image.imread(png).ndim == 3
    # RTF: Dense is fastest, MoE most accurate; size: int4 smallest, Dense beats the float
    # runs of its size (dense_none, dense_sparse_2_4: same size, higher WER), MoE most accurate
    assert result["pareto_front"] == {
        "wer_vs_rtf": ["Dense", "MoE"],
        "wer_vs_size": ["dense_qat_int4", "Dense", "MoE"],
    }
    saved = json.loads((out / "tables.json").read_text())
    assert saved == json.loads(json.dumps(result))
    dense = saved["experiments"][0]
    assert dense["wer"]["test"]["ctc_greedy_search"] == {
        "wer": 37.5, "n": 8, "c": 5, "s": 3, "d": 0, "i": 0,
    }  # fmt: skip
    runtime = {(r["test_set"], r["chunk"]): r for r in dense["runtime"]}
    assert runtime["test", -1]["wer"] == 25.0 and runtime["test", 4]["rtf"] == 0.3
    assert {(m["precision"], m["chunk"]) for m in dense["rtf"]} == {("fp32", -1), ("fp32", 4)}


def test_selection_of_mode_and_chunk(tree, tmp_path):
    dense = tree["exps"][0]
    result = tables.main(
        [str(dense), "--mode", "ctc_greedy_search", "--chunk", "4", "--out_dir", str(tmp_path)]
    )
    (row,) = result["model_table"]
    assert row["wer"] == {"test": 37.5} and row["rtf"]["rtf"] == 0.3
    # the C++ runtime only rescores: its RTF stands, its mode named
    cells = _table(result["markdown"], "Models")["dense"]
    assert cells["RTF measured by"] == "decoder_main cpp fp32 chunk 4 attention_rescoring, 1 thread"
    assert (tmp_path / "wer_vs_size.png").exists() and (tmp_path / "wer_vs_rtf.png").exists()


def test_missing_or_foreign_directories_are_errors_naming_them(tree, tmp_path):
    with pytest.raises(SystemExit, match="nowhere: no such experiment directory"):
        tables.main([str(tmp_path / "nowhere"), "--out_dir", str(tmp_path)])
    (tmp_path / "not_exp").mkdir()
    with pytest.raises(SystemExit, match="not_exp: no train.yaml"):
        tables.main([str(tmp_path / "not_exp"), "--out_dir", str(tmp_path)])
    bad = tmp_path / "other.json"
    bad.write_text('{"results": []}')
    with pytest.raises(SystemExit, match="other.json: not a JSON of bin.benchmark"):
        tables.main([str(tree["exps"][0]), "--bench", str(bad), "--out_dir", str(tmp_path)])


def test_parse_overall_reads_compute_wer_output(tmp_path):
    path = tmp_path / "wer"
    path.write_text(_wer_file(tmp_path, 1, {}))
    assert parse_overall(path) == {"wer": 12.5, "n": 8, "c": 7, "s": 1, "d": 0, "i": 0}
    path.write_text("utt: utt1\n")
    with pytest.raises(ValueError, match="no 'Overall ->"):
        parse_overall(path)


def test_moe_rtf_json_gives_one_measurement_per_model_and_mode(tmp_path):
    path = tmp_path / "moe_rtf.json"
    params = {"total": 1051501406, "active": 342925406}
    rtf = {"ctc_greedy": 0.098, "streaming_chunk16": 0.401, "attention_rescoring": 0.160}
    path.write_text(json.dumps({  # the keys moe_rtf writes (values shortened)
        "dispatch": {"infer_speedup": 1.04}, "threads": 2, "cpu": "x86_64", "torch": "2",
        "models": [{"model": "paper_moe_1b", "params": params, "gflops_per_audio_second": 15.6,
                    "rtf": rtf, "expert_usage": {}}],
        "settings": {"seconds": 20.0, "chunk": 16},
    }))  # fmt: skip
    got = {(m["mode"], m["chunk"]): m for m in read_benchmark(str(path))}
    assert {k: m["rtf"] for k, m in got.items()} == {
        ("ctc_greedy_search", -1): 0.098,
        ("ctc_greedy_search", 16): 0.401,
        ("attention_rescoring", -1): 0.160,
    }
    m = got["attention_rescoring", -1]
    assert (m["model"], m["params"], m["threads"], m["random_weights"]) == (
        "paper_moe_1b", params, 2, True,
    )  # fmt: skip


def test_reference_is_the_same_init_control_else_the_base_run():
    def exp(name, compressed, init=""):
        return {"name": name, "exp_dir": f"exp/{name}", "compressed": compressed,
                "init_checkpoint": init}  # fmt: skip

    base, control = exp("m", False), exp("m_none", False, "exp/m/avg_2.pt")
    int4 = exp("m_qat_int4", True, "exp/m/avg_2.pt")
    other = exp("m_sparse", True, "exp/m/final.pt")
    scratch = exp("m_scratch_int4", True)
    runs = [base, control, int4, other, scratch]
    assert reference_of(int4, runs, {}) is control
    assert reference_of(other, runs, {}) is base
    assert reference_of(scratch, runs, {}) is None
    assert reference_of(int4, runs, {"m": "Dense"}, "Dense") is base
    with pytest.raises(ValueError, match="--reference nope"):
        reference_of(int4, runs, {}, "nope")


@pytest.mark.parametrize(
    "points, front",
    [
        ([], []),
        ([(1.0, 5.0)], [0]),
        # dominated (3, 6) and (2, 7); the front sorted by cost
        ([(3.0, 6.0), (1.0, 9.0), (2.0, 4.0), (5.0, 1.0), (2.0, 7.0)], [1, 2, 3]),
        # equal cost: only the lower WER; equal WER: only the lower cost
        ([(1.0, 5.0), (1.0, 4.0), (2.0, 4.0)], [1]),
        # identical points do not dominate each other
        ([(1.0, 2.0), (1.0, 2.0), (0.5, 3.0)], [2, 0, 1]),
    ],
)
def test_pareto_front(points, front):
    assert pareto_front(points) == front

"""End to end: the LibriSpeech recipe's stages 0-7 on a miniature corpus in the official layout
(three subsets of espeak-ng speech as FLAC), with sentencepiece BPE, shards and a tiny model
trained for a few updates; then a rerun keeps what exists."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.recipes.helpers import run_recipe, write_librispeech_subset
from tests.tiny import TINY

WORDS = (
    (
        "the cat sat on a mat near my old red house while seven green birds sang "
        "over quiet hills and two small dogs ran after one yellow ball"
    )
    .upper()
    .split()
)


def _sentence(i: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(3 + i % 4))


def _subset(root: Path, name: str, readers: dict[str, str], per_reader: int, first: int) -> None:
    utts, n = {}, first
    for reader in readers:
        for u in range(per_reader):
            utts[f"{reader}-{100 + len(reader)}-{u:04d}"] = _sentence(n)
            n += 1
    write_librispeech_subset(root / name, utts, readers)


@pytest.mark.slow
@pytest.mark.heavy  # the mini recipe is the default run's end-to-end test
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_librispeech_recipe_tiny_end_to_end(tmp_path):
    corpus = tmp_path / "LibriSpeech"
    _subset(corpus, "train-clean-100", {"19": "en-us", "26": "en-gb", "32": "en-us+f3"}, 8, 0)
    _subset(corpus, "dev-clean", {"84": "en-us+m3"}, 4, 40)
    _subset(corpus, "test-clean", {"61": "en-gb+f2"}, 4, 60)
    model = [o for o in TINY if not o.startswith("model.vocab_size")]
    train_opts = [*model, "optim.warmup_steps=5", "data.batch_type=static", "data.batch_size=4",
                  "data.num_workers=1", "train.max_steps=6", "train.log_interval=2"]  # fmt: skip
    opts = [
        "--corpus_dir", str(corpus), "--train_subsets", "train-clean-100",
        "--dev_subsets", "dev-clean", "--test_subsets", "test-clean", "--nj", "2",
        "--nbpe", "30", "--num_utts_per_shard", "10", "--model", "mini", "--dir", "exp/tiny",
        "--max_epoch", "2", "--average_num", "1", "--beam_size", "2",
        "--decode_modes", "ctc_greedy_search attention_rescoring", "--lm_order", "2",
        "--lm_modes", "attention_rescoring", "--runtime_precisions", "fp32",
        "--runtime_chunks", "16",
        "--train_opts", " ".join(train_opts),
    ]  # fmt: skip
    s0, log = run_recipe("librispeech", tmp_path, "--stage", "0", "--stop_stage", "7", *opts)

    data = s0 / "data"
    for name, n in (("train", 24), ("dev", 4), ("test_clean", 4)):
        entries = [
            json.loads(line) for line in (data / name / "data.list").read_text().splitlines()
        ]
        assert len(entries) == n and all(Path(e["wav"]).suffix == ".flac" for e in entries)
    assert len((data / "train" / "shards.list").read_text().split()) == 3  # 24 utts, 10 a shard
    units = (data / "dict" / "units_bpe30.txt").read_text().splitlines()
    assert units[:3] == ["<blank> 0", "<unk> 1", "<sos/eos> 2"]
    assert (data / "dict" / "bpe30.model").exists()
    exp = s0 / "exp" / "tiny"
    cfg = yaml.safe_load((exp / "train.yaml").read_text())
    assert cfg["tokenizer"]["type"] == "bpe" and cfg["model"]["vocab_size"] == len(units)
    assert cfg["data"]["data_type"] == "shard" and cfg["optim"]["warmup_steps"] == 5
    assert (exp / "avg_1.pt").exists()
    refs = {line.split()[0] for line in (data / "test_clean" / "text").read_text().splitlines()}
    for mode in ("ctc_greedy_search", "attention_rescoring"):
        hyp = (exp / "test_clean" / mode / "text").read_text().splitlines()
        assert {line.split(maxsplit=1)[0] for line in hyp} == refs
        assert re.search(r"^Overall -> \d+\.\d\d % N=\d+", (exp / "test_clean" / mode / "wer")
                         .read_text(), re.M)  # fmt: skip
    results = json.loads((exp / "wer_table.json").read_text())["results"]
    for mode in ("ctc_greedy_search", "attention_rescoring"):
        wer = results["test_clean"][mode]
        assert wer["n"] == sum(len(t.split()[1:]) for t in (data / "test_clean" / "text")
                               .read_text().splitlines())  # fmt: skip
        assert f"{wer['wer']:.2f}" in (exp / "wer_table.md").read_text()
    # the word bigram of the training transcripts (stage 2) fused over BPE pieces (stage 5)
    assert (data / "lm" / "2gram.arpa").exists()
    lm_wer = results["test_clean"]["lm/attention_rescoring"]
    assert lm_wer["n"] == results["test_clean"]["attention_rescoring"]["n"]

    # stages 6-7: the C++ runtime reads the FLAC test set through WAV copies
    wavs = [json.loads(x)["wav"] for x in (data / "test_clean" / "runtime_wav.list").read_text()
            .splitlines()]  # fmt: skip
    assert len(wavs) == 4 and all(w.endswith(".wav") and Path(w).exists() for w in wavs)
    result = exp / "runtime_fp32" / "test_clean" / "chunk16"
    assert {
        line.split(maxsplit=1)[0] for line in (result / "text").read_text().splitlines()
    } == refs
    assert json.loads((result / "rtf.json").read_text())["utterances"] == 4
    runtime_table = (exp / "runtime_table.md").read_text()
    assert "runtime_fp32 | test_clean | no | 16" in runtime_table
    assert "runtime_fp32 | test_clean | yes | 16" in runtime_table  # the LM fused in C++

    # stage 12: the tables of every experiment (RTF is of full context: not decoded here)
    run_recipe("librispeech", tmp_path, "--stage", "12", "--stop_stage", "12", *opts)
    md = (s0 / "exp" / "tables" / "tables.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| tiny |"))
    assert f"{results['test_clean']['attention_rescoring']['wer']:.2f}" in row
    assert re.fullmatch(r"\d+\.\d+ / \d+\.\d+", row.split("|")[2].strip())  # params total / active
    # ... and the run's JSON is kept in results/, from which RESULTS.md is rewritten
    kept = sorted(p.name for p in (s0 / "results").glob("*.json"))
    assert "tables.json" in kept and "tiny.wer_table.json" in kept, kept
    results_md = (s0 / "RESULTS.md").read_text()
    assert "## WER per decoding mode: `tiny.wer_table.json`" in results_md
    assert f"{results['test_clean']['attention_rescoring']['wer']:.2f}" in results_md

    # a rerun of the data and training stages keeps everything
    _, log = run_recipe("librispeech", tmp_path, "--stage", "0", "--stop_stage", "4", *opts)
    assert "exp/tiny/final.pt exists, kept" in log and "data/train/data.list exists, kept" in log

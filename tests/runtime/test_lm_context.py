"""The C++ runtime's word-LM fusion and context biasing against Python's
(wenet_eff.decode.lm, wenet_eff.decode.context): the same LM scores and the same n-best with
the same scores, bit for bit; the decoder and decoder_main with --lm and --context_path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from tests.decode.test_context import UNITS as HOTWORD_UNITS
from tests.decode.test_context import rare_word_posteriors
from tests.runtime.conftest import UNITS
from wenet_eff.data.tokenizer import CharTokenizer
from wenet_eff.decode.context import ContextGraph
from wenet_eff.decode.ctc import ctc_prefix_beam_search
from wenet_eff.decode.lm import EOS, UNK, NgramLM, WordLmFusion, train_kneser_ney
from wenet_eff.export.cpp import decoder_main
from wenet_eff.export.weights import load_graph

SENTENCES = ["BAD BED", "A BAD CAB", "FACE THE BED", "HEAD BED", "B B A", "DEAF CAB FADE"]
PHRASES = ["FADE", "BEACH", "B CAB"]


@pytest.fixture(scope="module")
def lm_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lm") / "3gram.arpa"
    train_kneser_ney([s.split() for s in SENTENCES], 3).write_arpa(path)
    return path


@pytest.fixture(scope="module")
def tokenizer() -> CharTokenizer:
    return CharTokenizer({u: i for i, u in enumerate(UNITS)})


def _phrase_ids(tokenizer) -> list[list[int]]:
    return [tokenizer.tokenize(p)[1] for p in PHRASES]


@pytest.mark.parametrize("order", [1, 2, 3])
def test_lm_scores_equal_python(runtime, tmp_path, order):
    train_kneser_ney([s.split() for s in SENTENCES], order).write_arpa(tmp_path / "lm.arpa")
    py = NgramLM.read_arpa(tmp_path / "lm.arpa")
    cpp = runtime.NgramLm(str(tmp_path / "lm.arpa"))
    assert cpp.order == order and cpp.num_words == len(py.vocab)
    words = [*sorted(py.vocab), EOS, UNK, "NEVER_SEEN"]
    contexts = [(), ("<s>",), ("<s>", "BAD"), ("A", "BAD"), ("FACE", "THE", "BED"), ("B", UNK)]
    contexts += [g[:-1] for g in py.prob if len(g) > 1]
    for ctx in contexts:
        for w in words:
            assert cpp.log_prob(list(ctx), w) == py.logprob(ctx, w), (ctx, w)


@pytest.mark.parametrize(
    ("frames", "with_lm", "with_context", "floor"),
    [(60, True, False, None), (60, False, True, None), (80, True, True, -4.0),
     (2000, True, True, None)],
)  # fmt: skip
def test_prefix_search_with_lm_and_context_equals_python(
    runtime, lm_path, tokenizer, frames, with_lm, with_context, floor
):
    """Same n-best, same scores (==), also past the 2^16 trie nodes that compact the C++ trie."""
    py_lm = NgramLM.read_arpa(lm_path)
    pieces = tokenizer.word_pieces()
    fusion = WordLmFusion(py_lm, pieces, 0.8, 1.5) if with_lm else None
    cpp_fusion = runtime.WordLmFusion(runtime.NgramLm(str(lm_path)), pieces, 0.8, 1.5)
    graph = ContextGraph(_phrase_ids(tokenizer), 2.0) if with_context else None
    cpp_graph = runtime.ContextGraph(_phrase_ids(tokenizer), 2.0)
    g = torch.Generator().manual_seed(frames)
    logp = torch.log_softmax(3 * torch.randn(frames, len(UNITS), generator=g), -1)
    expected = ctc_prefix_beam_search(logp, 8, lm=fusion, min_token_logp=floor, context=graph)
    got = runtime.ctc_prefix_beam_search(
        logp.numpy(), 8, lm=cpp_fusion if with_lm else None, min_token_logp=floor,
        context=cpp_graph if with_context else None,
    )  # fmt: skip
    assert [list(t) for t, _ in got] == [h.tokens for h in expected]
    assert [s for _, s in got] == [h.score for h in expected]
    assert any(h.extras.get("lm", 0) or h.extras.get("context", 0) for h in expected)


def test_hotword_turns_a_rare_word_in_cpp(runtime):
    log_probs = rare_word_posteriors().numpy()
    names = {i: u for u, i in HOTWORD_UNITS.items()}
    bed = runtime.ContextGraph([[HOTWORD_UNITS[c] for c in "BED"]], 1.0)
    plain = runtime.ctc_prefix_beam_search(log_probs, 4)[0][0]
    biased, score = runtime.ctc_prefix_beam_search(log_probs, 4, context=bed)[0]
    assert "".join(names[t] for t in plain) == "BAD"
    assert "".join(names[t] for t in biased) == "BED"
    assert score == ctc_prefix_beam_search(torch.from_numpy(log_probs), 4, context=ContextGraph(
        [[HOTWORD_UNITS[c] for c in "BED"]], 1.0))[0].score  # fmt: skip


def test_decoder_with_lm_and_context_equals_python_search(
    runtime, dense_fp32, lm_path, tokenizer, speech, tmp_path
):
    """Full context: the C++ decoder's transcripts equal Python's prefix search (with the same
    LM, phrases and settings) over the posteriors of the same encoder graph and fbank; the LM
    changes them; decoder_main with the flags prints what the Decoder gives."""
    (tmp_path / "hotwords.txt").write_text("\n".join(PHRASES) + "\n")
    model = runtime.Model(str(dense_fp32))
    opts = dict(chunk_size=-1, mode="ctc_prefix_beam_search", beam_size=6)
    lm = runtime.NgramLm(str(lm_path))  # one LM shared by the decoders
    fused = dict(lm=lm, lm_weight=2.0, word_bonus=0.5, min_token_logp=-6.0,
                 context_path=str(tmp_path / "hotwords.txt"), context_score=1.5)  # fmt: skip
    cpp = runtime.Decoder(model, **opts, **fused)
    encoder = load_graph(dense_fp32, "encoder_full.pt2")
    fusion = WordLmFusion(NgramLM.read_arpa(lm_path), tokenizer.word_pieces(), 2.0, 0.5)
    graph = ContextGraph(_phrase_ids(tokenizer), 1.5)
    got, expected, plain = [], [], []
    for _, _, wav in speech:
        got.append(cpp.decode(wav)["tokens"])
        logp = encoder(torch.from_numpy(runtime.fbank(wav, 16000))[None])[0][0]
        hyps = ctc_prefix_beam_search(logp, 6, lm=fusion, min_token_logp=-6.0, context=graph)
        expected.append(hyps[0].tokens)
        plain.append(runtime.Decoder(model, **opts).decode(wav)["tokens"])
    assert got == expected
    assert got != plain
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{n} {p}\n" for n, p, _ in speech))
    proc = subprocess.run(
        [str(decoder_main()), "--model_dir", str(dense_fp32), "--wav_scp", str(scp),
         "--chunk_size", "-1", "--mode", "ctc_prefix_beam_search", "--beam_size", "6",
         "--lm", str(lm_path), "--lm_weight", "2.0", "--word_bonus", "0.5",
         "--min_token_logp", "-6.0", "--context_path", str(tmp_path / "hotwords.txt"),
         "--context_score", "1.5"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "3-gram" in proc.stderr and "3 phrases" in proc.stderr
    texts = [tokenizer.detokenize(t)[0] for t in got]
    assert proc.stdout.splitlines() == [
        f"{n} {t}" for (n, _, _), t in zip(speech, texts, strict=True)
    ]


def test_decoder_rejects_bad_lm_and_context_input(runtime, dense_fp32, tmp_path):
    model = runtime.Model(str(dense_fp32))
    (tmp_path / "bad.arpa").write_text("\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0\t<unk>\n")
    with pytest.raises(RuntimeError, match="bad.arpa: the LM has no </s> unigram"):
        runtime.Decoder(model, lm=str(tmp_path / "bad.arpa"))
    (tmp_path / "hot.txt").write_text("xyz\n")
    with pytest.raises(RuntimeError, match="hot.txt: no phrase could be split"):
        runtime.Decoder(model, context_path=str(tmp_path / "hot.txt"))
    with pytest.raises(ValueError, match="min_token_logp=1.0.* must be <= 0"):
        runtime.Decoder(model, min_token_logp=1.0)


def test_runtime_lm_benchmark_small(runtime, tmp_path):
    """The benchmark's synthetic ARPA is valid (Python reads it with the same counts and
    scores) and every search setup is timed."""
    from wenet_eff.bench import runtime_lm

    r = runtime_lm.main(["--ngrams", "3000", "--phrases", "20", "--utts", "2", "--words", "5",
                         "--repeats", "1", "--work_dir", str(tmp_path),
                         "--out", str(tmp_path / "r.json")])  # fmt: skip
    assert r["order"] == 3 and r["ngrams"] == sum(r["counts"]) >= 2990
    py = NgramLM.read_arpa(r["arpa"])
    cpp = runtime.NgramLm(r["arpa"])
    for gram in list(py.prob)[::50]:
        assert cpp.log_prob(list(gram[:-1]), gram[-1]) == py.logprob(gram[:-1], gram[-1])
    assert set(r["search"]) == {"plain", "context", "lm", "lm+context"}
    assert all(s["cpu_ms_per_utt"] > 0 for s in r["search"].values())
    assert r["phrases"] > 0 and (tmp_path / "r.json").exists()

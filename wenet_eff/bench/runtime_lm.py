"""C++ runtime: the memory and load time of a word n-gram LM of LibriSpeech size, and the cost of
LM fusion and of context biasing (hotwords) in the prefix beam search.

    python -m wenet_eff.bin.benchmark runtime_lm --ngrams 1000000 --phrases 1000 --threads 1

1. A synthetic ARPA file (`--order`, `--ngrams` in all, a third of them unigrams: random
   upper-case words like LibriSpeech's vocabulary; every higher-order n-gram extends one of
   the order below, so its context exists) is written to `--work_dir`, then loaded by the C++
   runtime (`wenet_eff_runtime.NgramLm`, what decoder_main --lm loads once for all streams):
   load time, RSS increase and the tables' own byte count. With `--python` the Python reader
   (wenet_eff.decode.lm.NgramLM) loads it too, for comparison. Each reader loads in a fresh
   process, so the RSS increase is the model's alone.
2. Synthetic CTC posteriors (`--utts` utterances of `--words` words from the LM's vocabulary,
   spelt in character units, 2 frames per character with a blank between, peaky with noise)
   are searched by the C++ prefix beam search (`--beam`), without and with the LM, without and
   with `--phrases` biasing phrases (1 to 3 words from the vocabulary; a tenth of the
   utterances' words come from them). Reported: search milliseconds per utterance, CPU time
   (the figure that a shared machine does not blur) and wall time, medians of `--repeats`
   passes, and search RTF at 40 ms per frame; the LM and phrases are shared, the searches
   single-threaded.

Writes JSON (with provenance) and prints a table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import string
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from wenet_eff.bench.common import environment, write_json
from wenet_eff.bench.sections import runtime_lm
from wenet_eff.data.tokenizer import CharTokenizer
from wenet_eff.decode.context import split_phrase

UNITS = ["<blank>", "<unk>", "\u2581", *string.ascii_uppercase, "<sos/eos>"]
FRAME_SECONDS = 0.04  # an encoder frame at 4x subsampling of 10 ms features


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmRSS (not Linux?)")


def measure_load(reader: str, arpa: str) -> dict:
    """Load `arpa` with the C++ runtime ("cpp") or Python ("python") in this process: wall and
    CPU seconds, and the RSS increase."""
    if reader == "cpp":
        from wenet_eff.export.cpp import load_runtime

        load = load_runtime().NgramLm
    else:
        from wenet_eff.decode.lm import NgramLM

        load = NgramLM.read_arpa
    before = rss_bytes()
    start, cpu = time.perf_counter(), time.process_time()
    model = load(arpa)
    figures = {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}
    figures["rss_bytes"] = rss_bytes() - before
    del model
    return figures


def random_words(rng: np.random.Generator, n: int) -> list[str]:
    """`n` distinct upper-case words of 2 to 12 letters."""
    words: set[str] = set()
    letters = np.array(list(string.ascii_uppercase))
    while len(words) < n:
        lengths = rng.integers(2, 13, size=n)
        chars = letters[rng.integers(0, 26, size=(n, 12))]
        words.update("".join(row[:k]) for row, k in zip(chars, lengths, strict=True))
    return sorted(words)[:n]


def write_synthetic_arpa(path: Path, order: int, ngrams: int, seed: int) -> list[str]:
    """A valid ARPA file of about `ngrams` n-grams; returns its vocabulary (without specials)."""
    rng = np.random.default_rng(seed)
    per_order = [ngrams // 3] + [(ngrams - ngrams // 3) // max(order - 1, 1)] * (order - 1)
    words = random_words(rng, per_order[0] - 3)
    vocab = ["<unk>", "<s>", "</s>", *words]
    # Zipf-like word choice, so n-grams share frequent words as real text does; <s> is never
    # predicted and </s> ends every n-gram it is in
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights[1] = 0.0
    weights /= weights.sum()
    grams = [np.arange(len(vocab))[:, None]]
    for n in range(2, order + 1):
        contexts = grams[-1][(grams[-1] != 2).all(axis=1)]
        base = contexts[rng.integers(0, len(contexts), size=per_order[n - 1] * 2)]
        nxt = rng.choice(len(vocab), size=len(base), p=weights)
        cand = np.unique(np.concatenate([base, nxt[:, None]], axis=1), axis=0)
        grams.append(cand[rng.permutation(len(cand))[: per_order[n - 1]]])
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n\\data\\\n")
        f.writelines(f"ngram {n}={len(g)}\n" for n, g in enumerate(grams, 1))
        for n, g in enumerate(grams, 1):
            f.write(f"\n\\{n}-grams:\n")
            probs = rng.uniform(-6.0, -0.5, size=len(g))
            bows = rng.uniform(-1.5, 0.0, size=len(g))
            names = np.array(vocab, dtype=object)[g]
            text = [" ".join(row) for row in names]
            rows = zip(probs, text, bows, strict=True)
            if n < order:
                f.writelines(f"{p:.6f}\t{t}\t{b:.6f}\n" for p, t, b in rows)
            else:
                f.writelines(f"{p:.6f}\t{t}\n" for p, t, _ in rows)
        f.write("\n\\end\\\n")
    return words


def synthetic_posteriors(rng: np.random.Generator, tokens: list[int], vocab: int) -> np.ndarray:
    """(T, V) log posteriors: 2 frames per token, a blank frame after each, noisy and peaky."""
    frames = [t for tok in tokens for t in (tok, tok, 0)]
    logits = rng.normal(0.0, 1.5, size=(len(frames), vocab))
    logits[np.arange(len(frames)), frames] += 7.0
    logits -= np.log(np.exp(logits).sum(-1, keepdims=True))
    return logits.astype(np.float32)


def run(args: argparse.Namespace) -> dict:
    from wenet_eff.export.cpp import load_runtime

    rt = load_runtime()
    rt.set_num_threads(args.threads)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    arpa = work / f"synthetic_{args.order}gram_{args.ngrams}.arpa"
    start = time.perf_counter()
    words = write_synthetic_arpa(arpa, args.order, args.ngrams, args.seed)
    write_seconds = time.perf_counter() - start
    # each reader loads in a fresh process, so the RSS increase is the model's alone
    spawn = multiprocessing.get_context("spawn")
    load = {}
    for reader in ("cpp", "python") if args.python else ("cpp",):
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            figures = pool.submit(measure_load, reader, str(arpa)).result()
        load.update({f"{reader}_{key}": value for key, value in figures.items()})
    lm = rt.NgramLm(str(arpa))
    load["cpp_table_bytes"] = lm.memory_bytes
    counts = list(lm.counts)

    rng = np.random.default_rng(args.seed + 1)
    tok = CharTokenizer({u: i for i, u in enumerate(UNITS)})
    table = {u: i for i, u in enumerate(UNITS)}
    phrase_texts = [
        " ".join(words[i] for i in rng.integers(0, len(words), size=rng.integers(1, 4)))
        for _ in range(args.phrases)
    ]
    phrases = [split_phrase(p, table, False) for p in phrase_texts]
    context = rt.ContextGraph(phrases, 3.0)
    fusion = rt.WordLmFusion(lm, tok.word_pieces(), 0.5, 1.0)
    utts = []
    for _ in range(args.utts):
        text = [
            phrase_texts[rng.integers(len(phrase_texts))]
            if rng.random() < 0.1
            else words[rng.integers(len(words))]
            for _ in range(args.words)
        ]
        utts.append(synthetic_posteriors(rng, tok.tokenize(" ".join(text))[1], len(UNITS)))
    frames = sum(len(u) for u in utts)
    setups = {"plain": {}, "context": {"context": context}, "lm": {"lm": fusion},
              "lm+context": {"lm": fusion, "context": context}}  # fmt: skip
    passes: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
    for _ in range(args.repeats):  # setups take turns, so machine noise hits all alike
        for name, kwargs in setups.items():
            start, cpu = time.perf_counter(), time.process_time()
            for u in utts:
                rt.ctc_prefix_beam_search(u, args.beam, **kwargs)
            passes[name].append((time.perf_counter() - start, time.process_time() - cpu))
    search = {}
    for name, p in passes.items():
        wall, cpu = statistics.median(w for w, _ in p), statistics.median(c for _, c in p)
        search[name] = {
            "ms_per_utt": 1000 * wall / len(utts),
            "cpu_ms_per_utt": 1000 * cpu / len(utts),
            "rtf": wall / (frames * FRAME_SECONDS),
            "cpu_rtf": cpu / (frames * FRAME_SECONDS),
            "passes_seconds": [w for w, _ in p],
            "passes_cpu_seconds": [c for _, c in p],
        }
    plain = search["plain"]["cpu_ms_per_utt"]
    for s in search.values():
        s["cpu_vs_plain"] = s["cpu_ms_per_utt"] / plain
    return {
        "arpa": str(arpa),
        "order": args.order,
        "counts": counts,
        "ngrams": sum(counts),
        "arpa_bytes": arpa.stat().st_size,
        "arpa_write_seconds": write_seconds,
        "load": load,
        "phrases": context.num_phrases,
        "utterances": len(utts),
        "frames_per_utt": frames / len(utts),
        "beam_size": args.beam,
        "search": search,
        **environment(),
        "threads": args.threads,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--ngrams", type=int, default=1_000_000, help="n-grams in all orders")
    p.add_argument("--phrases", type=int, default=1000, help="context biasing phrases")
    p.add_argument("--utts", type=int, default=20)
    p.add_argument("--words", type=int, default=40, help="words per utterance")
    p.add_argument("--beam", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--python", action="store_true", help="also load the ARPA in Python")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work_dir", default="bench_results/runtime_lm")
    p.add_argument("--out", default="bench_results/runtime_lm.json")
    r = run(p.parse_args(argv))
    print(runtime_lm(r), end="")
    write_json(r, p.parse_args(argv).out)
    return r


if __name__ == "__main__":
    main()

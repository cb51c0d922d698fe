"""Is system B's WER really lower than system A's? A paired bootstrap over utterances.

Usage: compare_wer.py [--char=1] [--cs=0] [--num_samples N] [--seed S] [--json F] \
           ref_text hyp_a hyp_b

Scores both hypothesis files against the references with the alignment of compute_wer.py
(per utterance: errors S+D+I and reference tokens N), then resamples the test set's
utterances with replacement `num_samples` times, the same draw for both systems (Bisani and
Ney 2004, "Bootstrap estimates for confidence intervals in ASR performance evaluation"). For
each draw it computes WER(A) - WER(B) over the drawn utterances. Prints both WERs, the
difference (positive: B has fewer errors), its 95 % bootstrap interval and the probability of
improvement P(B better), the fraction of draws where B has fewer errors than A (and P(A
better); the other draws are ties). An interval that holds 0 means the test set cannot tell
the two systems apart.

A reference key missing from a hypothesis file counts as all deletions, as in compute_wer.py.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from compute_wer import align, count, read_scored_files, tokenize


def utterance_errors(refs: dict, hyps: dict, char: bool, cs: bool) -> list[tuple[int, int]]:
    """(errors, reference tokens) per reference utterance, in reference order."""
    out = []
    for key, ref_text in refs.items():
        counts = count(align(tokenize(ref_text, char, cs), tokenize(hyps.get(key, ""), char, cs)))
        out.append((counts.s + counts.d + counts.i, counts.n))
    return out


def paired_bootstrap(
    a: list[tuple[int, int]], b: list[tuple[int, int]], num_samples: int = 10000, seed: int = 0
) -> dict:
    """WERs (%) of A and B, their difference A - B, its 95 % interval and P(B better)."""
    if len(a) != len(b) or not a:
        raise ValueError("both systems need the same, non-empty list of utterances")
    total_n = sum(n for _, n in a)
    if total_n == 0:
        raise ValueError("the references have no tokens")
    errors_a = np.array([e for e, _ in a], dtype=np.int64)
    errors_b = np.array([e for e, _ in b], dtype=np.int64)
    tokens = np.array([n for _, n in a], dtype=np.int64)
    rng = np.random.default_rng(seed)
    size = len(a)
    diffs = []
    per_chunk = max(1, 2_000_000 // size)  # draws per batch: bounded memory on big test sets
    for start in range(0, num_samples, per_chunk):
        draws = rng.integers(0, size, (min(per_chunk, num_samples - start), size))
        ea, eb, n = errors_a[draws].sum(1), errors_b[draws].sum(1), tokens[draws].sum(1)
        diffs.append(100.0 * (ea - eb) / np.maximum(n, 1))
    diffs = np.sort(np.concatenate(diffs))
    better, worse = int((diffs > 0).sum()), int((diffs < 0).sum())
    wer_a = 100.0 * sum(e for e, _ in a) / total_n
    wer_b = 100.0 * sum(e for e, _ in b) / total_n
    return {
        "utterances": size,
        "tokens": total_n,
        "wer_a": wer_a,
        "wer_b": wer_b,
        "diff": wer_a - wer_b,
        "ci95": [
            float(diffs[int(0.025 * (num_samples - 1))]),
            float(diffs[int(0.975 * (num_samples - 1))]),
        ],
        "p_b_better": better / num_samples,
        "p_a_better": worse / num_samples,  # the rest of the draws are ties
        "num_samples": num_samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--char", type=int, default=0, choices=(0, 1), help="1: split CJK (Lo) characters"
    )
    parser.add_argument("--cs", type=int, default=0, choices=(0, 1), help="1: case sensitive")
    parser.add_argument("--num_samples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="", help="also write the result here")
    parser.add_argument("ref")
    parser.add_argument("hyp_a")
    parser.add_argument("hyp_b")
    args = parser.parse_args()
    if args.num_samples < 1:
        parser.error(f"--num_samples must be >= 1 (got {args.num_samples})")
    char, cs = bool(args.char), bool(args.cs)
    scores = []
    for path in (args.hyp_a, args.hyp_b):
        try:
            refs, hyps = read_scored_files(args.ref, path)
        except ValueError as exc:
            sys.exit(f"compare_wer: {exc}")
        extra = len(hyps.keys() - refs.keys())
        if extra:
            print(f"compare_wer: {extra} hypotheses in {path} have no reference", file=sys.stderr)
        scores.append(utterance_errors(refs, hyps, char, cs))
    result = paired_bootstrap(*scores, num_samples=args.num_samples, seed=args.seed)
    result.update(ref=args.ref, hyp_a=args.hyp_a, hyp_b=args.hyp_b)
    unit = "error rate" if char else "WER"  # --char=1: characters of Chinese, words of English
    low, high = result["ci95"]
    print(f"A: {args.hyp_a}  {unit} {result['wer_a']:.2f} %")
    print(f"B: {args.hyp_b}  {unit} {result['wer_b']:.2f} %")
    print(
        f"A - B: {result['diff']:+.2f} absolute, 95 % interval [{low:+.2f}, {high:+.2f}] "
        f"({result['utterances']} utterances, {result['num_samples']} bootstrap draws); "
        f"P(B better) = {result['p_b_better']:.3f}, P(A better) = {result['p_a_better']:.3f}"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()

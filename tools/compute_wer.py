"""Word (or character) error rate of hypotheses against references, in WeNet's output format.

Usage: compute_wer.py [--char=1] [--v=1] [--cs=0] ref_text hyp_text > wer

Both files hold `key text` lines. For every reference utterance (in reference order) it prints,
with --v=1 (the default):

    utt: KEY
    WER: 25.00 % N=4 C=3 S=1 D=0 I=0
    lab: THE CAT SAT DOWN
    rec: THE BAT SAT DOWN

and at the end `Overall -> X.XX % N=.. C=.. S=.. D=.. I=..`. A reference key missing from the
hypotheses counts as all deletions (their number is printed); hypothesis keys without a
reference are ignored and counted on stderr. --char=1 scores characters (spaces dropped), i.e.
CER; --cs=0 (default) upper-cases both sides first.

The alignment is a Levenshtein alignment with unit costs. Among equally cheap alignments it
keeps the common prefix and suffix as matches and, walking back from the end, prefers a
deletion, then an insertion, then a substitution/match: the same choice rapidfuzz (and so
jiwer) makes, so the S/D/I counts agree with jiwer, not only the error total.
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from dataclasses import dataclass

from kaldi_files import read_table

Pair = tuple[str | None, str | None]  # (reference token, hypothesis token); None is a gap


@dataclass
class ErrorCounts:
    """Alignment totals: N reference tokens, C correct, S substituted, D deleted, I inserted."""

    n: int = 0
    c: int = 0
    s: int = 0
    d: int = 0
    i: int = 0

    @property
    def errors(self) -> int:
        return self.s + self.d + self.i

    @property
    def rate(self) -> float:
        """Error rate in percent (0 for an empty reference without errors, inf with errors)."""
        if self.n == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return 100.0 * self.errors / self.n

    def __iadd__(self, other: ErrorCounts) -> ErrorCounts:
        self.n += other.n
        self.c += other.c
        self.s += other.s
        self.d += other.d
        self.i += other.i
        return self

    def summary(self) -> str:
        """`X.XX % N=.. C=.. S=.. D=.. I=..` as WeNet prints it."""
        return f"{self.rate:.2f} % N={self.n} C={self.c} S={self.s} D={self.d} I={self.i}"


def tokenize(text: str, char: bool = False, case_sensitive: bool = False) -> list[str]:
    """Words, or with `char` the non-space characters, of `text` (upper-cased unless told)."""
    if not case_sensitive:
        text = text.upper()
    return [ch for ch in text if not ch.isspace()] if char else text.split()


def align(ref: list[str], hyp: list[str]) -> list[Pair]:
    """A minimal-cost alignment of `ref` and `hyp` with the tie-break described above.

    Returns:
        pairs in order: (r, h) match or substitution, (r, None) deletion, (None, h) insertion.
    """
    prefix = 0
    while prefix < min(len(ref), len(hyp)) and ref[prefix] == hyp[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(ref), len(hyp)) - prefix and ref[-1 - suffix] == hyp[-1 - suffix]:
        suffix += 1
    r, h = ref[prefix : len(ref) - suffix], hyp[prefix : len(hyp) - suffix]
    # dist[a][b]: edit distance between r[:a] and h[:b].
    dist = [list(range(len(h) + 1))]
    for a in range(1, len(r) + 1):
        row = [a]
        for b in range(1, len(h) + 1):
            diagonal = dist[a - 1][b - 1] + (r[a - 1] != h[b - 1])
            row.append(min(diagonal, dist[a - 1][b] + 1, row[b - 1] + 1))
        dist.append(row)
    # Walk back from the end. Deleting r[a-1] is taken whenever it is optimal; else inserting
    # h[b-1] when it is at least as cheap as the diagonal step, which (distances never drop
    # along a diagonal) is exactly when dist[a][b-1] < dist[a-1][b-1]; else the diagonal.
    middle: list[Pair] = []
    a, b = len(r), len(h)
    while a and b:
        if dist[a][b] == dist[a - 1][b] + 1:
            middle.append((r[a - 1], None))
            a -= 1
        elif dist[a][b - 1] == dist[a - 1][b - 1] - 1:
            middle.append((None, h[b - 1]))
            b -= 1
        else:
            middle.append((r[a - 1], h[b - 1]))
            a, b = a - 1, b - 1
    middle.extend((r[k], None) for k in reversed(range(a)))
    middle.extend((None, h[k]) for k in reversed(range(b)))
    matched = [(t, t) for t in ref[:prefix]]
    return matched + middle[::-1] + [(t, t) for t in ref[len(ref) - suffix :]]


def count(pairs: list[Pair]) -> ErrorCounts:
    """Totals of an alignment."""
    counts = ErrorCounts()
    for r, h in pairs:
        if r is None:
            counts.i += 1
            continue
        counts.n += 1
        if h is None:
            counts.d += 1
        elif r == h:
            counts.c += 1
        else:
            counts.s += 1
    return counts


def _width(token: str) -> int:
    """Display width: East Asian wide and full-width characters take two columns."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in token)


def format_alignment(pairs: list[Pair]) -> tuple[str, str]:
    """(lab, rec) lines with each aligned pair padded to a common width; gaps are `*`s."""
    labs, recs = [], []
    for r, h in pairs:
        width = max(_width(r or ""), _width(h or ""), 1)
        for token, out in ((r, labs), (h, recs)):
            out.append("*" * width if token is None else token + " " * (width - _width(token)))
    return " ".join(labs).rstrip(), " ".join(recs).rstrip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--char", type=int, default=0, choices=(0, 1), help="1: CER")
    parser.add_argument("--v", type=int, default=1, choices=(0, 1), help="1: per-utterance")
    parser.add_argument("--cs", type=int, default=0, choices=(0, 1), help="1: case sensitive")
    parser.add_argument("ref")
    parser.add_argument("hyp")
    args = parser.parse_args()
    refs = read_table(args.ref, allow_empty=True)
    hyps = read_table(args.hyp, allow_empty=True)
    total = ErrorCounts()
    missing = 0
    for key, ref_text in refs.items():
        if key not in hyps:
            missing += 1
        ref = tokenize(ref_text, bool(args.char), bool(args.cs))
        hyp = tokenize(hyps.get(key, ""), bool(args.char), bool(args.cs))
        pairs = align(ref, hyp)
        counts = count(pairs)
        total += counts
        if args.v:
            lab, rec = format_alignment(pairs)
            print(f"utt: {key}\nWER: {counts.summary()}\nlab: {lab}\nrec: {rec}\n")
    extra = len(hyps.keys() - refs.keys())
    if extra:
        print(f"compute_wer: {extra} hypotheses in {args.hyp} have no reference", file=sys.stderr)
    print("=" * 75)
    print(f"Overall -> {total.summary()}")
    if missing:
        print(f"Missing -> {missing} of {len(refs)} utterances have no hypothesis (all deletions)")
    print("=" * 75)


if __name__ == "__main__":
    main()

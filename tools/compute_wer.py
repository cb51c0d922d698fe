#!/usr/bin/env python3
"""Word (or character) error rate of hypotheses against references, in WeNet's output format.

Usage: compute_wer.py [--char=1] [--v=1] [--cs=0] ref_text hyp_text > wer

Both files hold `key text` lines (key and text split at the first whitespace run: spaces or
tabs). For every reference utterance (in reference order) it prints, with --v=1 (the default):

    utt: KEY
    WER: 25.00 % N=4 C=3 S=1 D=0 I=0
    lab: THE CAT SAT DOWN
    rec: THE BAT SAT DOWN

and at the end `Overall -> X.XX % N=.. C=.. S=.. D=.. I=..`. A reference key missing from the
hypotheses counts as all deletions (their number is printed); hypothesis keys without a
reference are ignored and counted on stderr. An empty reference file, a reference line with no
text, or references none of whose keys is in the hypotheses (files without keys) are errors.

Tokens are WeNet's (tools/compute-wer.py): words split at whitespace, or with --char=1 each
"letter, other" character (Unicode category Lo: CJK ideographs, kana, Hangul, ...) on its own
while any other run of characters stays whole up to whitespace or a non-ASCII character, so
Chinese is scored by character and English by word; with --char=1 the punctuation of
`CHAR_PUNCTUATION` is dropped where a token would start. In both modes `<...>` tags (`<unk>`,
`<noise>`) are removed and --cs=0 (default) upper-cases both sides first.

The alignment is a Levenshtein alignment with unit costs. Among equally cheap alignments it
keeps the common prefix and suffix as matches and, walking back from the end, prefers a
deletion, then an insertion, then a substitution/match: the same choice rapidfuzz (and so
jiwer) makes, so the S/D/I counts agree with jiwer, not only the error total.
"""

from __future__ import annotations

import argparse
import re
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


# WeNet's list: with --char=1 these are dropped where a token would start (a word's trailing
# ASCII punctuation stays part of the word, as in WeNet)
CHAR_PUNCTUATION = frozenset("!,?、。！，；？：「」︰『』《》")
_SPACES = " \t\r\n"


def _split_chars(text: str) -> list[str]:
    """WeNet's --char=1 tokens of `text`: each Lo character alone; any other run up to a space,
    a non-ASCII character or, for a run starting with `<`, its closing `>` (so `<unk><noise>`
    is two tokens); spaces, unassigned code points and `CHAR_PUNCTUATION` between tokens dropped."""
    tokens = []
    i = 0
    while i < len(text):
        char = text[i]
        category = unicodedata.category(char)
        if char in CHAR_PUNCTUATION or category in ("Zs", "Cn") or char in _SPACES:
            i += 1
        elif category == "Lo":
            tokens.append(char)
            i += 1
        else:
            stop = ">" if char == "<" else " "
            j = i + 1
            while j < len(text) and ord(text[j]) < 128 and text[j] not in _SPACES + stop:
                j += 1
            if j < len(text) and text[j] == ">":
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


def _strip_tags(token: str) -> str:
    """`token` without its `<...>` spans (an unclosed `<` removes the rest), as WeNet scores."""
    return re.sub(r"<[^>]*(>|$)", "", token)


def tokenize(text: str, char: bool = False, case_sensitive: bool = False) -> list[str]:
    """The scored tokens of `text`: words, or with `char` WeNet's --char=1 split (see the module
    docstring); upper-cased unless `case_sensitive`, `<...>` tags removed."""
    tokens = _split_chars(text) if char else text.split()
    if not case_sensitive:
        tokens = [token.upper() for token in tokens]
    return [kept for token in tokens if (kept := _strip_tags(token))]


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


def read_scored_files(ref_path: str, hyp_path: str) -> tuple[dict[str, str], dict[str, str]]:
    """(references, hypotheses) as {key: text}; a hypothesis may be empty, a reference not.

    Raises:
        ValueError: naming the file (and line): a reference line without text, an empty
            reference file, or no reference key among the hypotheses' keys.
    """
    refs = read_table(ref_path)
    if not refs:
        raise ValueError(f"{ref_path}: no `key text` line: nothing to score against")
    hyps = read_table(hyp_path, allow_empty=True)
    if not refs.keys() & hyps.keys():
        raise ValueError(
            f"none of the {len(refs)} keys of {ref_path} (e.g. {next(iter(refs))!r}) is a key "
            f"of {hyp_path} ({len(hyps)} lines): both must be `key text` files of the same "
            "utterances"
        )
    return refs, hyps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--char", type=int, default=0, choices=(0, 1), help="1: split CJK (Lo) characters"
    )
    parser.add_argument("--v", type=int, default=1, choices=(0, 1), help="1: per-utterance")
    parser.add_argument("--cs", type=int, default=0, choices=(0, 1), help="1: case sensitive")
    parser.add_argument("ref")
    parser.add_argument("hyp")
    args = parser.parse_args()
    try:
        refs, hyps = read_scored_files(args.ref, args.hyp)
    except ValueError as exc:
        sys.exit(f"compute_wer: {exc}")
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

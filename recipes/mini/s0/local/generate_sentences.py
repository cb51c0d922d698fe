"""Generate unique, normalised sentences for the synthesised corpus, never a test_real sentence.

Writes `TRANSCRIPT<TAB>prompt` lines: the transcript is `normalize_english` of the grammar's
sentence (as for the real test set); the prompt is what the TTS engines read (the transcript in
lower case with its final `.` or `?` and spelled letters respelled, so every engine speaks exactly
the transcript's words).

Usage: generate_sentences.py --num 2500 --seed 7 --exclude data/local/test_real/exclude.txt out.tsv
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from lexicon import load_lexicon
from sentence_grammar import Grammar

from wenet_eff.data.text_norm import normalize_english

MAX_WORDS = 14
LETTER_NAMES = dict(zip(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "ay bee see dee ee ef gee aitch eye jay kay el em en oh pee cue ar ess tee you vee "
    "double-you ex why zee".split(),
    strict=True,
))  # fmt: skip


@dataclass(frozen=True)
class Sentence:
    """A transcript (normalised, upper case) and the prompt the TTS engines read."""

    text: str
    prompt: str


def generate_sentences(
    num: int, seed: int, exclude: set[str] = frozenset(), lexicon_size: int = 0
) -> list[Sentence]:
    """`num` distinct sentences drawn from the grammar with `random.Random(seed)`.

    Args:
        num: how many sentences.
        seed: the only source of randomness: the same seed gives the same list.
        exclude: normalised sentences that must never be produced (the test_real prompts).
        lexicon_size: > 0 uses only N words of each open-class word list.

    Raises:
        RuntimeError: the grammar cannot produce `num` distinct allowed sentences.
    """
    grammar = Grammar(load_lexicon(max_per_list=lexicon_size), random.Random(seed))
    seen: set[str] = set()
    sentences: list[Sentence] = []
    attempts = 0
    while len(sentences) < num:
        attempts += 1
        if attempts > 50 * num + 1000:
            raise RuntimeError(f"grammar gave only {len(sentences)} distinct sentences of {num}")
        raw = grammar.sentence()
        text = normalize_english(raw)
        if not text or text in seen or text in exclude or len(text.split()) > MAX_WORDS:
            continue
        seen.add(text)
        sentences.append(Sentence(text, tts_prompt(raw, text)))
    return sentences


def tts_prompt(raw: str, text: str) -> str:
    """What the engines read for transcript `text` of grammar sentence `raw`.

    Lower case with the sentence's final `.` or `?`; letters spelled out in `raw` (upper-case
    single letters) are respelled so no engine reads "A" as the article.
    """
    letters = {w for w in raw.split() if len(w) == 1 and w.isupper() and w != "I"}
    words = [LETTER_NAMES[w] if w in letters else w.lower() for w in text.split()]
    ending = "?" if raw.rstrip().endswith("?") else "."
    return " ".join(words) + ending


def read_exclude(path: str | Path) -> set[str]:
    """Normalised sentences, one per line (blank lines ignored)."""
    with open(path, encoding="utf-8") as f:
        return {line.strip() for line in f if line.strip()}


def write_sentences(path: str | Path, sentences: list[Sentence]) -> None:
    """Write `TRANSCRIPT<TAB>prompt` lines."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{s.text}\t{s.prompt}\n" for s in sentences)


def read_sentences(path: str | Path) -> list[Sentence]:
    """Read what `write_sentences` wrote; errors name the file and line."""
    sentences = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 2 or not all(fields):
                raise ValueError(f"{path}:{lineno}: expected 'TRANSCRIPT<TAB>prompt'")
            sentences.append(Sentence(*fields))
    return sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=2500, help="number of sentences")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--lexicon_size", type=int, default=0, help="N words of each word list (0: all)"
    )
    parser.add_argument("--exclude", help="normalised sentences to never produce, one per line")
    parser.add_argument("out", help="output TSV: TRANSCRIPT<TAB>prompt")
    args = parser.parse_args()
    exclude = read_exclude(args.exclude) if args.exclude else set()
    sentences = generate_sentences(args.num, args.seed, exclude, args.lexicon_size)
    write_sentences(args.out, sentences)
    words = {w for s in sentences for w in s.text.split()}
    print(
        f"{args.out}: {len(sentences)} sentences, {len(words)} distinct words, "
        f"{len(exclude)} excluded test_real sentences",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()

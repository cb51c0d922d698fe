"""Train a word n-gram LM (interpolated Kneser-Ney) from transcripts into an ARPA file.

    python -m wenet_eff.bin.train_lm --text data/train/text --order 3 --arpa data/lm/lm.arpa \\
        [--dev_text data/dev/text]

`--text` is a Kaldi text file (`key word word ...`; `--no_key` for plain sentences). With
`--dev_text` it prints the perplexity and out-of-vocabulary rate there. Decode with it:
`python -m wenet_eff.bin.recognize ... --lm data/lm/lm.arpa --lm_weight 0.5 --word_bonus 1`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

from wenet_eff.data.text_norm import get_normalizer
from wenet_eff.decode.lm import NgramLM, train_kneser_ney

logger = logging.getLogger("wenet_eff.train_lm")


def read_sentences(path: str, has_key: bool, normalize: str = "none") -> list[list[str]]:
    """Word lists of a text file, normalised as the tokenizer normalises transcripts (so the
    LM's words are the decoder's); empty transcripts are left out."""
    norm = get_normalizer(normalize)
    sentences = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            text = line.split(maxsplit=1)[1:] if has_key else [line]
            words = norm(text[0]).split() if text else []
            if words:
                sentences.append(words)
    if not sentences:
        raise ValueError(f"{path}: no sentences")
    return sentences


def evaluate(lm: NgramLM, sentences: list[list[str]]) -> dict:
    """Perplexity (per word incl. </s>) and out-of-vocabulary rate of `sentences`."""
    logprob = sum(lm.sentence_logprob(words) for words in sentences)
    num_words = sum(len(words) for words in sentences)
    oov = sum(w not in lm.vocab for words in sentences for w in words)
    return {
        "sentences": len(sentences),
        "words": num_words,
        "oov_rate": round(oov / num_words, 4),
        "perplexity": round(math.exp(-logprob / (num_words + len(sentences))), 2),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", required=True, help="training transcripts (Kaldi text)")
    p.add_argument("--arpa", required=True, help="ARPA file to write")
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--dev_text", default="", help="transcripts to report perplexity on")
    p.add_argument("--no_key", action="store_true", help="lines are sentences without keys")
    p.add_argument(
        "--normalize", default="none", help="the tokenizer's text normalisation: english | none"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    lm = train_kneser_ney(read_sentences(args.text, not args.no_key, args.normalize), args.order)
    Path(args.arpa).parent.mkdir(parents=True, exist_ok=True)
    lm.write_arpa(args.arpa)
    counts = {n: sum(len(g) == n for g in lm.prob) for n in range(1, lm.order + 1)}
    report = {"arpa": args.arpa, "order": lm.order, "vocab": len(lm.vocab), "ngrams": counts}
    if args.dev_text:
        dev = read_sentences(args.dev_text, not args.no_key, args.normalize)
        report["dev"] = evaluate(lm, dev)
    logger.info("%s", json.dumps(report))
    return report


if __name__ == "__main__":
    main()

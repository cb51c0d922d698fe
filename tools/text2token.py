"""Split the transcripts of a text file into tokens, as the training tokenizer splits them.

Usage: text2token.py [-s 1] [--space ▁] [--trans_type char|phn] [-m non_lang_syms.txt]
           [--bpe_model m.model] [--normalize none|english|chinese] text > tokens

Prints each line with its tokens separated by spaces; the first `-s` columns (e.g. the key of a
Kaldi `text` file) are copied unchanged. Characters become tokens with `▁` for a word boundary
(`--space` renames it), `--trans_type phn` keeps whitespace-separated units, `--bpe_model`
gives sentencepiece pieces. Non-language symbols listed in `-m` stay whole.
The splitting is `wenet_eff.data.tokenizer`'s, so a dictionary built from this output matches
what training produces. Reads stdin when `text` is `-`.
"""

from __future__ import annotations

import argparse
import sys

from wenet_eff.data.tokenizer import (
    BLANK,
    SOS_EOS,
    SPACE,
    UNK,
    BpeTokenizer,
    CharTokenizer,
    Tokenizer,
    read_non_lang_syms,
)

# The tokenizers need a vocabulary to be built; splitting text never consults it.
_MINIMAL_UNITS = {BLANK: 0, UNK: 1, SOS_EOS: 2}


def make_splitter(args: argparse.Namespace) -> Tokenizer:
    """The tokenizer whose `text_to_tokens` does the splitting the options ask for."""
    syms = read_non_lang_syms(args.non_lang_syms) if args.non_lang_syms else []
    if args.bpe_model:
        return BpeTokenizer(args.bpe_model, _MINIMAL_UNITS, syms, args.normalize)
    return CharTokenizer(_MINIMAL_UNITS, syms, args.trans_type == "phn", args.normalize)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-s", "--skip-ncols", type=int, default=0, help="columns to copy as is")
    parser.add_argument("--space", default=SPACE, help="token written for a word boundary")
    parser.add_argument("-t", "--trans_type", default="char", choices=("char", "phn"))
    parser.add_argument("-m", "--non-lang-syms", dest="non_lang_syms", help="file, one per line")
    parser.add_argument("--bpe_model", help="sentencepiece model: output pieces")
    parser.add_argument("--normalize", default="none", choices=("none", "english", "chinese"))
    parser.add_argument("text", help="input file, or - for stdin")
    args = parser.parse_args()
    splitter = make_splitter(args)
    source = sys.stdin if args.text == "-" else open(args.text, encoding="utf-8")
    with source:
        for line in source:
            fields = line.split(maxsplit=args.skip_ncols)
            head, text = fields[: args.skip_ncols], " ".join(fields[args.skip_ncols :])
            tokens = splitter.text_to_tokens(text)
            if args.space != SPACE:
                tokens = [args.space if t == SPACE else t for t in tokens]
            print(" ".join(head + tokens))


if __name__ == "__main__":
    main()

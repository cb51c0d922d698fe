"""Build `units.txt` (WeNet's dictionary) from the training transcripts.

Usage: make_units.py --token_type char|bpe [--nbpe 500 --bpe_model_prefix data/dict/bpe500]
           [--non_lang_syms file] [--normalize english] text units.txt

`text` is a Kaldi `text` file (`key transcript`). Char units are every character of the
transcripts (`▁` for a word boundary); bpe units come from a sentencepiece model trained on the
transcripts (written to `<prefix>.model`). Either way the file is `<blank> 0`, `<unk> 1`,
`<sos/eos> 2`, then the tokens (WeNet's current layout), split the way the training tokenizer
splits (`wenet_eff.data.tokenizer`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from kaldi_files import read_table

from wenet_eff.data.text_norm import get_normalizer
from wenet_eff.data.tokenizer import (
    bpe_units,
    char_units_from_texts,
    read_non_lang_syms,
    train_bpe,
    write_units,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--token_type", default="char", choices=("char", "bpe"))
    parser.add_argument("--nbpe", type=int, default=500, help="bpe vocabulary size")
    parser.add_argument("--bpe_model_prefix", help="bpe: where to write <prefix>.model")
    parser.add_argument("--non_lang_syms", help="non-language symbols, one per line")
    parser.add_argument("--normalize", default="english", choices=("none", "english", "chinese"))
    parser.add_argument("text", help="Kaldi text file: key transcript")
    parser.add_argument("units", help="output units.txt")
    args = parser.parse_args()
    texts = list(read_table(args.text, allow_empty=True).values())
    syms = read_non_lang_syms(args.non_lang_syms) if args.non_lang_syms else []
    if args.token_type == "char":
        units = char_units_from_texts(texts, syms, normalize=args.normalize)
    else:
        if not args.bpe_model_prefix:
            sys.exit("make_units.py: --token_type bpe needs --bpe_model_prefix")
        normalize = get_normalizer(args.normalize)
        os.makedirs(os.path.dirname(os.path.abspath(args.bpe_model_prefix)), exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as corpus:
            # The tokenizer keeps non-language symbols out of sentencepiece; so does training.
            for text in texts:
                for sym in syms:
                    text = text.replace(sym, " ")
                corpus.write(normalize(text) + "\n")
            corpus.flush()
            model = train_bpe(corpus.name, args.bpe_model_prefix, args.nbpe)
        units = bpe_units(model, syms)
    os.makedirs(os.path.dirname(os.path.abspath(args.units)), exist_ok=True)
    write_units(args.units, units)
    print(f"{args.units}: {len(units)} {args.token_type} units", file=sys.stderr)


if __name__ == "__main__":
    main()

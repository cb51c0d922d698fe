"""Transcripts of the Asterisk core sound prompts (real recorded speech) for the test_real set.

`core-sounds-en.txt` (Debian package asterisk-core-sounds-en) holds `name: text` lines,
e.g. `vm-goodbye: Goodbye`. Annotations in brackets (`[ascending tones]`, `(simple tone sound
plays)`, `<beep>`) are not speech and are removed; a prompt whose remaining text has symbols
the normaliser would silently drop (`press * to ...`) or that is left empty is dropped and
counted. Names without an audio file are dropped and counted too.

Writes, for stage -1 of run.sh:
  OUT_DIR/text         `asterisk-<name> TRANSCRIPT` (normalised with `normalize_english`)
  OUT_DIR/names        `asterisk-<name> <name>` (the sound file's name, no extension)
  OUT_DIR/exclude.txt  every normalised prompt and every sentence inside one: the sentence
                       generator must never produce them
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass

from wenet_eff.data.text_norm import normalize_english

DEFAULT_TXT = "/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
DEFAULT_SOUNDS = "/usr/share/asterisk/sounds/en"
AUDIO_EXTENSIONS = (".g722", ".wav")
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>")
_UNSPOKEN_SYMBOL = re.compile(r"[*#@$+=/\\|~^_{}\[\]()<>]")
_SENTENCE_END = re.compile(r"[.?!;:]+(?:\s+|$)")


@dataclass(frozen=True)
class Prompt:
    """One usable prompt: key, sound name, raw text (annotations removed), transcript."""

    key: str
    name: str
    raw: str
    text: str


def read_prompt_lines(path: str) -> list[tuple[str, str]]:
    """(name, text) pairs of `core-sounds-en.txt` (plain or .gz); comments and blanks skipped."""
    opener = gzip.open if path.endswith(".gz") else open
    pairs = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith(";"):
                continue
            name, sep, text = line.partition(":")
            if not sep or not name.strip():
                raise ValueError(f"{path}:{lineno}: expected 'name: text', got {line!r}")
            pairs.append((name.strip(), text.strip()))
    return pairs


def select_prompts(
    pairs: list[tuple[str, str]], sounds_dir: str
) -> tuple[list[Prompt], Counter[str]]:
    """Usable prompts, and the count of dropped ones by reason.

    Reasons: duplicate_name, no_audio, unspoken_symbols, empty_text.
    """
    prompts: list[Prompt] = []
    dropped: Counter[str] = Counter()
    seen: set[str] = set()
    for name, text in pairs:
        if name in seen:
            dropped["duplicate_name"] += 1
            continue
        seen.add(name)
        if not any(os.path.isfile(os.path.join(sounds_dir, name + e)) for e in AUDIO_EXTENSIONS):
            dropped["no_audio"] += 1
            continue
        raw = " ".join(_ANNOTATION.sub(" ", text).split())
        if _UNSPOKEN_SYMBOL.search(raw):
            dropped["unspoken_symbols"] += 1
            continue
        normalized = normalize_english(raw)
        if not normalized:
            dropped["empty_text"] += 1
            continue
        key = "asterisk-" + re.sub(r"[^A-Za-z0-9-]", "-", name)
        prompts.append(Prompt(key, name, raw, normalized))
    return prompts, dropped


def exclusion_set(prompts: list[Prompt]) -> set[str]:
    """Normalised prompts and the normalised sentences inside each one."""
    exclude = set()
    for prompt in prompts:
        exclude.add(prompt.text)
        for piece in _SENTENCE_END.split(prompt.raw):
            normalized = normalize_english(piece)
            if normalized:
                exclude.add(normalized)
    return exclude


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts_txt", default=DEFAULT_TXT, help="core-sounds-en.txt[.gz]")
    parser.add_argument("--sounds_dir", default=DEFAULT_SOUNDS, help="Asterisk sounds/en")
    parser.add_argument("out_dir")
    args = parser.parse_args()
    if not os.path.isfile(args.prompts_txt):
        sys.exit(f"{args.prompts_txt}: not found (apt-get install asterisk-core-sounds-en)")
    prompts, dropped = select_prompts(read_prompt_lines(args.prompts_txt), args.sounds_dir)
    if not prompts:
        sys.exit(f"{args.sounds_dir}: no prompt has an audio file (asterisk-core-sounds-en-g722)")
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "text"), "w", encoding="utf-8") as f:
        f.writelines(f"{p.key} {p.text}\n" for p in prompts)
    with open(os.path.join(args.out_dir, "names"), "w", encoding="utf-8") as f:
        f.writelines(f"{p.key} {p.name}\n" for p in prompts)
    exclude = sorted(exclusion_set(prompts))
    with open(os.path.join(args.out_dir, "exclude.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{sentence}\n" for sentence in exclude)
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(dropped.items())) or "none"
    print(
        f"{args.out_dir}/text, names: {len(prompts)} prompts kept, {sum(dropped.values())} "
        f"dropped ({reasons}); exclude.txt: {len(exclude)} sentences",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()

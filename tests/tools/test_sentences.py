"""The mini recipe's sentence generator and its exclusion of the real test prompts."""

from __future__ import annotations

import dataclasses
import gzip
import os

import pytest
from asterisk_prompts import (
    DEFAULT_SOUNDS,
    DEFAULT_TXT,
    exclusion_set,
    read_prompt_lines,
    select_prompts,
)
from generate_sentences import MAX_WORDS, generate_sentences, tts_prompt
from lexicon import load_lexicon

from wenet_eff.data.text_norm import normalize_english


def test_same_seed_same_sentences_other_seed_others():
    first = generate_sentences(300, seed=3)
    assert generate_sentences(300, seed=3) == first
    other = generate_sentences(300, seed=4)
    assert len({s.text for s in first} & {s.text for s in other}) < 100


def test_sentences_are_unique_normalised_and_varied():
    sentences = generate_sentences(1500, seed=1)
    texts = [s.text for s in sentences]
    assert len(set(texts)) == len(texts)
    assert all(normalize_english(t) == t and 1 <= len(t.split()) <= MAX_WORDS for t in texts)
    assert len({w for t in texts for w in t.split()}) > 1200
    assert all(s.prompt[-1] in ".?" for s in sentences)
    plain = [s for s in sentences if s.prompt == s.text.lower() + s.prompt[-1]]
    assert len(plain) > 0.9 * len(sentences)


def test_excluded_sentences_are_never_generated():
    first = generate_sentences(400, seed=5)
    exclude = {s.text for s in first[::2]}
    again = generate_sentences(400, seed=5, exclude=exclude)
    assert len(again) == 400
    assert not exclude & {s.text for s in again}


def test_spelled_letters_are_respelled_for_the_engines():
    assert tts_prompt("My code is A B 7.", "MY CODE IS A B SEVEN") == "my code is ay bee seven."
    assert tts_prompt("Is a cat here?", "IS A CAT HERE") == "is a cat here?"


def test_prompt_selection_and_exclusion(tmp_path):
    sounds = tmp_path / "sounds"
    (sounds / "digits").mkdir(parents=True)
    for name in ("hello", "beep", "star", "digits/5", "goodbye"):
        (sounds / f"{name}.g722").write_bytes(b"")
    txt = tmp_path / "core-sounds-en.txt.gz"
    with gzip.open(txt, "wt") as f:
        f.write("; comment\n\nhello: Hello. Press 1 to continue!\nbeep: [a beep tone]\n"
                "star: press * to pause\ndigits/5: five\nmissing: No audio here.\n"
                "goodbye: Goodbye (click)\nhello: duplicate\n")  # fmt: skip
    prompts, dropped = select_prompts(read_prompt_lines(str(txt)), str(sounds))
    assert [(p.key, p.text) for p in prompts] == [
        ("asterisk-hello", "HELLO PRESS ONE TO CONTINUE"),
        ("asterisk-digits-5", "FIVE"),
        ("asterisk-goodbye", "GOODBYE"),
    ]
    assert dropped == {"empty_text": 1, "unspoken_symbols": 1, "no_audio": 1, "duplicate_name": 1}
    assert exclusion_set(prompts) == {
        "HELLO PRESS ONE TO CONTINUE", "HELLO", "PRESS ONE TO CONTINUE", "FIVE", "GOODBYE",
    }  # fmt: skip


@pytest.mark.skipif(not os.path.isfile(DEFAULT_TXT), reason="asterisk-core-sounds-en not installed")
def test_default_corpus_avoids_every_real_prompt():
    exclude = exclusion_set(select_prompts(read_prompt_lines(DEFAULT_TXT), DEFAULT_SOUNDS)[0])
    assert len(exclude) > 300
    sentences = generate_sentences(2500, seed=7, exclude=exclude)
    assert not exclude & {s.text for s in sentences}


def test_lexicon_size_limits_the_vocabulary():
    full = {w for s in generate_sentences(1500, seed=1) for w in s.text.split()}
    small = {w for s in generate_sentences(1500, seed=1, lexicon_size=10) for w in s.text.split()}
    assert len(small) < 0.6 * len(full)
    lexicon = load_lexicon(max_per_list=10)
    assert all(len(getattr(lexicon, f.name)) <= 10 for f in dataclasses.fields(lexicon))
    # spread through each (alphabetical) list, not just its first entries
    assert lexicon.objects[-1].singular[0] > "m"

"""Word lists for the mini-corpus sentence grammar, with the few inflections it needs.

The lists live as plain text beside this file (`lexicon/*.txt`, one entry per line, `#` comments)
so a person can read and extend them; a noun line may give an irregular plural
(`child | children`), a verb line is `base past participle`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

LEXICON_DIR = Path(__file__).resolve().parent / "lexicon"


@dataclass(frozen=True)
class Noun:
    """A noun with its plural form."""

    singular: str
    plural: str


@dataclass(frozen=True)
class Verb:
    """A verb with the forms the grammar uses."""

    base: str
    past: str
    participle: str

    @property
    def third(self) -> str:
        """Third person singular present ("fixes", "carries", "opens")."""
        return inflect_s(self.base)


@dataclass(frozen=True)
class Lexicon:
    """All word lists, by grammatical role."""

    people: tuple[Noun, ...]
    objects: tuple[Noun, ...]
    places: tuple[Noun, ...]
    food: tuple[Noun, ...]
    animals: tuple[Noun, ...]
    abstract: tuple[Noun, ...]
    verbs: tuple[Verb, ...]
    intransitive: tuple[Verb, ...]
    adjectives: tuple[str, ...]
    adverbs: tuple[str, ...]
    first_names: tuple[str, ...]
    surnames: tuple[str, ...]
    cities: tuple[str, ...]

    @property
    def things(self) -> tuple[Noun, ...]:
        """Nouns that can be handled, bought or moved."""
        return self.objects + self.food


def inflect_s(word: str) -> str:
    """Regular English -s suffix for plurals and third person singular ("box" -> "boxes")."""
    if word.endswith(("s", "sh", "ch", "x", "z")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _read_entries(name: str, lexicon_dir: Path) -> list[list[str]]:
    """Lines of `lexicon_dir/name.txt` split into fields, comments and blanks dropped."""
    path = lexicon_dir / f"{name}.txt"
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entries.append(line.split())
    if not entries:
        raise ValueError(f"{path}: no entries")
    return entries


def _read_nouns(name: str, lexicon_dir: Path) -> tuple[Noun, ...]:
    """Nouns: `singular` or `singular | plural`; a regular plural inflects the last word."""
    nouns = []
    for fields in _read_entries(name, lexicon_dir):
        singular, _, plural = " ".join(fields).partition(" | ")
        if not plural:
            words = singular.split()
            plural = " ".join(words[:-1] + [inflect_s(words[-1])])
        nouns.append(Noun(singular, plural))
    return tuple(nouns)


def _read_verbs(name: str, lexicon_dir: Path) -> tuple[Verb, ...]:
    """Verbs: `base past participle` per line."""
    verbs = []
    for fields in _read_entries(name, lexicon_dir):
        if len(fields) != 3:
            raise ValueError(f"{lexicon_dir / name}.txt: expected 'base past participle': {fields}")
        verbs.append(Verb(*fields))
    return tuple(verbs)


def _read_words(name: str, lexicon_dir: Path) -> tuple[str, ...]:
    """Single words or fixed phrases, one per line."""
    return tuple(" ".join(fields) for fields in _read_entries(name, lexicon_dir))


def load_lexicon(lexicon_dir: Path = LEXICON_DIR, max_per_list: int = 0) -> Lexicon:
    """Read every word list from `lexicon_dir`.

    Args:
        max_per_list: > 0 keeps N entries of each list, evenly spaced through it (a smaller
            vocabulary, so each word is heard more often in a corpus of a given size); 0: all.
    """
    lexicon = Lexicon(
        people=_read_nouns("people", lexicon_dir),
        objects=_read_nouns("objects", lexicon_dir),
        places=_read_nouns("places", lexicon_dir),
        food=_read_nouns("food", lexicon_dir),
        animals=_read_nouns("animals", lexicon_dir),
        abstract=_read_nouns("abstract", lexicon_dir),
        verbs=_read_verbs("verbs", lexicon_dir),
        intransitive=_read_verbs("intransitive", lexicon_dir),
        adjectives=_read_words("adjectives", lexicon_dir),
        adverbs=_read_words("adverbs", lexicon_dir),
        first_names=_read_words("first_names", lexicon_dir),
        surnames=_read_words("surnames", lexicon_dir),
        cities=_read_words("cities", lexicon_dir),
    )
    if max_per_list > 0:
        names = [f.name for f in dataclasses.fields(Lexicon)]
        lexicon = Lexicon(**{n: _spread(getattr(lexicon, n), max_per_list) for n in names})
    return lexicon


def _spread(entries: tuple, n: int) -> tuple:
    """`n` entries evenly spaced through `entries` (all of them when there are at most n)."""
    if len(entries) <= n:
        return entries
    return tuple(entries[i * len(entries) // n] for i in range(n))

"""Transcript normalisation: English (LibriSpeech style) and Chinese (AISHELL style)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

_ONES = (
    "ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE THIRTEEN FOURTEEN "
    "FIFTEEN SIXTEEN SEVENTEEN EIGHTEEN NINETEEN"
).split()
_TENS = "_ _ TWENTY THIRTY FORTY FIFTY SIXTY SEVENTY EIGHTY NINETY".split()
_ORDINAL_WORDS = {
    "ONE": "FIRST",
    "TWO": "SECOND",
    "THREE": "THIRD",
    "FIVE": "FIFTH",
    "EIGHT": "EIGHTH",
    "NINE": "NINTH",
    "TWELVE": "TWELFTH",
}
_NUMBER = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:(st|nd|rd|th)(?![a-z]))?", re.IGNORECASE)
_APOSTROPHE_OUTSIDE_WORD = re.compile(r"(?<!\w)'|'(?!\w)")


def _below_thousand(n: int) -> list[str]:
    words = []
    if n >= 100:
        words += [_ONES[n // 100], "HUNDRED"]
        n %= 100
        if n == 0:
            return words
    if n < 20:
        words.append(_ONES[n])
    else:
        words.append(_TENS[n // 10])
        if n % 10:
            words.append(_ONES[n % 10])
    return words


def number_to_words(n: int) -> str:
    """Spell a cardinal 0..999999 (`1234` -> `ONE THOUSAND TWO HUNDRED THIRTY FOUR`).

    Larger numbers are read digit by digit.
    """
    if n < 0:
        raise ValueError(f"number_to_words: negative number {n}")
    if n >= 1_000_000:
        return " ".join(_ONES[int(d)] for d in str(n))
    thousands, rest = divmod(n, 1000)
    words = _below_thousand(thousands) + ["THOUSAND"] if thousands else []
    if rest or not thousands:
        words += _below_thousand(rest)
    return " ".join(words)


def year_to_words(year: int) -> str:
    """Spell a year the way it is read: 1995 NINETEEN NINETY FIVE, 1900 NINETEEN HUNDRED,
    2005 TWO THOUSAND FIVE, 2019 TWENTY NINETEEN, 1805 EIGHTEEN O FIVE."""
    century, rest = divmod(year, 100)
    if not 1000 <= year <= 9999 or year % 1000 < 10:
        return number_to_words(year)
    head = number_to_words(century)
    if rest == 0:
        return f"{head} HUNDRED"
    if rest < 10:
        return f"{head} O {_ONES[rest]}"
    return f"{head} {number_to_words(rest)}"


def _ordinal(words: str) -> str:
    *head, last = words.split()
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("Y"):
        last = last[:-1] + "IETH"
    else:
        last += "TH"
    return " ".join([*head, last])


def _spell_number(match: re.Match) -> str:
    digits, decimals, suffix = match.group(1), match.group(2), match.group(3)
    plain = digits.replace(",", "")
    value = int(plain)
    # A bare 4-digit number in 1100..2099 is most often a year in read speech.
    bare = plain == digits and not decimals and not suffix
    if bare and len(plain) == 4 and 1100 <= value < 2100:
        return f" {year_to_words(value)} "
    words = number_to_words(value)
    if decimals:
        words += " POINT " + " ".join(_ONES[int(d)] for d in decimals[1:])
    elif suffix:
        words = _ordinal(words)
    return f" {words} "


def _is_kept(ch: str) -> bool:
    """Letters, digits, marks (accents), apostrophes and private-use characters survive.

    Private-use characters are the tokenizer's placeholders for non-language symbols.
    """
    category = unicodedata.category(ch)
    return ch == "'" or category[0] in "LNM" or category == "Co"


def normalize_english(text: str) -> str:
    """Upper-case English with numbers spelled out and punctuation removed.

    Private-use characters (non-language symbol placeholders) are kept.
    `&` -> AND, `%` -> PERCENT, digits -> words (cardinals up to 999999, years, decimals,
    ordinals like 21st), apostrophes kept only inside words (DON'T), spaces collapsed.
    """
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("`", "'")
    text = text.replace("&", " AND ").replace("%", " PERCENT ")
    text = _NUMBER.sub(_spell_number, text).upper()
    text = "".join(ch if _is_kept(ch) else " " for ch in text)
    text = _APOSTROPHE_OUTSIDE_WORD.sub(" ", text)
    return " ".join(text.split())


def normalize_chinese(text: str) -> str:
    """Chinese text without spaces or punctuation; full-width ASCII becomes half-width and
    Latin letters are upper-cased (so mixed `iPhone`/`IPHONE` share units).
    Private-use characters (non-language symbol placeholders) are kept."""
    chars = []
    for ch in text:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E:
            ch = chr(code - 0xFEE0)
        if _is_kept(ch) and ch != "'":
            chars.append(ch.upper() if ch.isascii() else ch)
    return "".join(chars)


def normalize_none(text: str) -> str:
    """Only collapse whitespace."""
    return " ".join(text.split())


_NORMALIZERS: dict[str, Callable[[str], str]] = {
    "english": normalize_english,
    "chinese": normalize_chinese,
    "none": normalize_none,
}


def get_normalizer(name: str) -> Callable[[str], str]:
    """The normaliser for `tokenizer.normalize`: english | chinese | none."""
    try:
        return _NORMALIZERS[name]
    except KeyError:
        choices = ", ".join(_NORMALIZERS)
        raise ValueError(f"tokenizer.normalize: unknown '{name}' (choose from {choices})") from None

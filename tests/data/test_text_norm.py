"""English and Chinese transcript normalisation."""

import pytest

from wenet_eff.data.text_norm import (
    get_normalizer,
    normalize_chinese,
    normalize_english,
    number_to_words,
    year_to_words,
)


@pytest.mark.parametrize(
    "n, words",
    [
        (0, "ZERO"),
        (7, "SEVEN"),
        (13, "THIRTEEN"),
        (40, "FORTY"),
        (99, "NINETY NINE"),
        (100, "ONE HUNDRED"),
        (101, "ONE HUNDRED ONE"),
        (1000, "ONE THOUSAND"),
        (1234, "ONE THOUSAND TWO HUNDRED THIRTY FOUR"),
        (20017, "TWENTY THOUSAND SEVENTEEN"),
        (999999, "NINE HUNDRED NINETY NINE THOUSAND NINE HUNDRED NINETY NINE"),
        (1000000, "ONE ZERO ZERO ZERO ZERO ZERO ZERO"),
    ],
)
def test_number_to_words(n, words):
    assert number_to_words(n) == words


@pytest.mark.parametrize(
    "year, words",
    [
        (1995, "NINETEEN NINETY FIVE"),
        (1900, "NINETEEN HUNDRED"),
        (1805, "EIGHTEEN O FIVE"),
        (2005, "TWO THOUSAND FIVE"),
        (2019, "TWENTY NINETEEN"),
    ],
)
def test_year_to_words(year, words):
    assert year_to_words(year) == words


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello, world!", "HELLO WORLD"),
        ("Don’t stop -- it's 5 o'clock.", "DON'T STOP IT'S FIVE O'CLOCK"),
        ("'quoted' students' books", "QUOTED STUDENTS BOOKS"),
        ("salt & pepper: 50%", "SALT AND PEPPER FIFTY PERCENT"),
        (
            "In 1995 we had 1,250 cats",
            "IN NINETEEN NINETY FIVE WE HAD ONE THOUSAND TWO HUNDRED FIFTY CATS",
        ),
        ("the 21st and 2nd of 3.14", "THE TWENTY FIRST AND SECOND OF THREE POINT ONE FOUR"),
        ("  well-known   café ", "WELL KNOWN CAFÉ"),
        ("15kg", "FIFTEEN KG"),
        ("...", ""),
    ],
)
def test_normalize_english(text, expected):
    assert normalize_english(text) == expected


def test_normalize_chinese():
    assert normalize_chinese("你好， 世界！ＡＢＣ１２３ iPhone。") == "你好世界ABC123IPHONE"


def test_get_normalizer():
    assert get_normalizer("english") is normalize_english
    assert get_normalizer("none")("  a   b ") == "a b"
    with pytest.raises(ValueError, match="english, chinese, none"):
        get_normalizer("klingon")

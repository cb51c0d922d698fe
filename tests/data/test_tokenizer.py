"""units.txt conventions, char and sentencepiece tokenizers, round trips and unknown tokens."""

import pickle

import numpy as np
import pytest

from wenet_eff.data.tokenizer import (
    SPACE,
    BpeTokenizer,
    CharTokenizer,
    TokenizerConfig,
    UnknownTokenError,
    bpe_units,
    build_tokenizer,
    char_units_from_texts,
    read_units,
    train_bpe,
    write_units,
)

WORDS = (
    "the quick brown fox jumps over a lazy dog while seven zebras play happily in warm sunny "
    "weather near big old houses"
).split()


def units_of(texts: list[str], **kw) -> dict[str, int]:
    return {s: i for i, s in enumerate(char_units_from_texts(texts, **kw))}


def sentences(n: int = 200) -> list[str]:
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 10)))).upper() for _ in range(n)]


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    root = tmp_path_factory.mktemp("bpe")
    texts = root / "texts.txt"
    texts.write_text("\n".join(sentences()) + "\n", encoding="utf-8")
    model = train_bpe(texts, str(root / "bpe"), vocab_size=50)
    units = root / "units.txt"
    write_units(units, bpe_units(model, ["<noise>"]))
    return BpeTokenizer(model, units, ["<noise>"], normalize="english"), model, units


def test_units_round_trip_and_conventions(tmp_path):
    symbols = char_units_from_texts(["HELLO WORLD"])
    assert symbols[:3] == ["<blank>", "<unk>", "<sos/eos>"]  # WeNet's current layout
    assert symbols[3:] == sorted(set("HELLO WORLD".replace(" ", "▁")))
    write_units(tmp_path / "units.txt", symbols)
    lines = (tmp_path / "units.txt").read_text(encoding="utf-8").splitlines()
    assert lines[:3] == ["<blank> 0", "<unk> 1", "<sos/eos> 2"] and len(lines) == 11
    assert read_units(tmp_path / "units.txt") == {s: i for i, s in enumerate(symbols)}
    tok = CharTokenizer(tmp_path / "units.txt")
    assert (tok.blank_id, tok.unk_id, tok.sos_id, tok.eos_id, tok.vocab_size) == (0, 1, 2, 2, 11)
    with pytest.raises(ValueError, match="<blank>"):
        write_units(tmp_path / "bad.txt", ["a", "<unk>", "<sos/eos>"])
    with pytest.raises(ValueError, match="<sos/eos>"):
        write_units(tmp_path / "bad.txt", ["<blank>", "<unk>", "A", "<sos/eos>", "B"])


# WeNet's two dictionary layouts: <sos/eos> at 2 (current recipes) and last (older releases)
SOS2 = {"<blank>": 0, "<unk>": 1, "<sos/eos>": 2, "A": 3, "B": 4, SPACE: 5}
SOSLAST = {"<blank>": 0, "<unk>": 1, "A": 2, "B": 3, SPACE: 4, "<sos/eos>": 5}


@pytest.mark.parametrize("units, sos", [(SOS2, 2), (SOSLAST, 5)])
def test_both_layouts_tokenize_and_leave_special_ids_out_of_text(units, sos):
    tok = CharTokenizer(units)
    assert (tok.blank_id, tok.unk_id, tok.sos_id, tok.eos_id) == (0, 1, sos, sos)
    tokens, ids = tok.tokenize("AB BA")
    assert ids == [units[t] for t in "AB▁BA".replace("▁", SPACE)]
    assert tok.detokenize([0, sos, *ids[:2], 0, sos, *ids[2:], sos]) == ("AB BA", tokens)


def test_special_tokens_from_the_config_win_and_must_match_the_units():
    units = {"<blank>": 0, "<unk>": 1, "A": 2, "B": 3}  # no <sos/eos> unit: the config names it
    tok = CharTokenizer(units, special_tokens={"<sos>": 3, "<eos>": 3})
    assert (tok.sos_id, tok.eos_id) == (3, 3) and tok.detokenize([2, 3]) == ("A", ["A"])
    assert CharTokenizer(units).sos_id == 3  # WeNet's default: vocab - 1
    with pytest.raises(ValueError, match=r"<sos>=3, but units.txt has it at 2"):
        CharTokenizer(SOS2, special_tokens={"<sos>": 3})
    with pytest.raises(ValueError, match="unknown special token"):
        CharTokenizer(SOS2, special_tokens={"<pad>": 3})
    with pytest.raises(ValueError, match=r"<eos>=9 is outside the vocabulary \[0, 4\)"):
        CharTokenizer(units, special_tokens={"<eos>": 9})


@pytest.mark.parametrize(
    "content, match",
    [
        ("<blank> 0\nA\n", r"units.txt:2: expected 'symbol id'"),
        ("<blank> 0\nA 0\n", ":2: duplicate"),
    ],
)
def test_read_units_errors_name_file_and_line(tmp_path, content, match):
    (tmp_path / "units.txt").write_text(content)
    with pytest.raises(ValueError, match=match):
        read_units(tmp_path / "units.txt")


def test_tokenizer_rejects_units_with_gaps():
    with pytest.raises(ValueError, match="without gaps"):
        CharTokenizer({"<blank>": 0, "<unk>": 1, "A": 3, "<sos/eos>": 4})


def test_char_english_round_trip_with_space_token():
    tok = CharTokenizer(units_of([" ".join(WORDS)], normalize="english"), normalize="english")
    tokens, ids = tok.tokenize("The lazy dog!")
    assert tokens == list("THE▁LAZY▁DOG")
    assert ids == [tok.symbol_table[t] for t in tokens]
    assert tok.detokenize(ids) == ("THE LAZY DOG", tokens)


def test_char_non_language_symbols_kept_whole():
    syms = ["<noise>", "[laughter]"]
    texts = ["hello <noise> world [laughter]"]
    units = units_of(texts, non_lang_syms=syms, normalize="english")
    assert "<noise>" in units and "[laughter]" in units
    tok = CharTokenizer(units, syms, normalize="english")
    tokens, ids = tok.tokenize("hello <noise> world [laughter]")
    assert tokens == [*"HELLO▁", "<noise>", *"▁WORLD▁", "[laughter]"]
    assert tok.detokenize(ids)[0] == "HELLO <noise> WORLD [laughter]"


def test_non_language_symbols_add_no_word_boundary():
    units = units_of(["你好<noise>世界"], non_lang_syms=["<noise>"], normalize="chinese")
    assert "▁" not in units
    tok = CharTokenizer(units, ["<noise>"], normalize="chinese")
    assert tok.tokenize("你好 <noise>，世界")[0] == ["你", "好", "<noise>", "世", "界"]


def test_char_split_with_space():
    units = units_of(["sil ah b sil"], split_with_space=True)
    tok = CharTokenizer(units, split_with_space=True)
    tokens, ids = tok.tokenize("sil  ah b sil")
    assert tokens == ["sil", "ah", "b", "sil"]
    assert tok.detokenize(ids)[0] == "sil ah b sil"


def test_char_chinese():
    texts = ["你好，世界！", "ＡＢＣ 你好"]
    units = units_of(texts, normalize="chinese")
    assert "▁" not in units and "，" not in units
    tok = CharTokenizer(units, normalize="chinese")
    tokens, ids = tok.tokenize("世界 你好。")
    assert tokens == ["世", "界", "你", "好"]
    assert tok.detokenize(ids)[0] == "世界你好"
    assert tok.tokenize("ABC")[0] == ["A", "B", "C"]


def test_unknown_tokens_raise_with_the_bad_tokens():
    tok = CharTokenizer(units_of(["AB"]))
    with pytest.raises(UnknownTokenError) as info:
        tok.tokenize("ABZ QZ")
    assert info.value.bad_tokens == ["Z", "▁", "Q"]  # first-appearance order
    assert info.value.text == "ABZ QZ"


def test_unknown_tokens_map_to_unk_on_request():
    tok = CharTokenizer(units_of(["AB"]))
    tokens, ids = tok.tokenize("ABZ QZ", unk_policy="map")
    assert tokens == list("ABZ▁QZ")  # the text's own tokens, so the caller can name them
    table = tok.symbol_table
    assert ids == [table["A"], table["B"], *[tok.unk_id] * 4]
    assert tok.unknown_tokens(tokens) == ["Z", "▁", "Q"]
    assert tok.tokenize("BA", unk_policy="map") == tok.tokenize("BA")
    with pytest.raises(ValueError, match="unk_policy"):
        tok.tokenize("AB", unk_policy="skip")


def test_bpe_unknown_character_maps_to_unk(bpe):
    tok = bpe[0]
    tokens, ids = tok.tokenize("the fox ÆØ", unk_policy="map")
    unknown = tok.unknown_tokens(tokens)
    known = tok.tokenize("the fox")[0]
    assert unknown and tokens[: len(known)] == known
    assert ids == [tok.unk_id if t in unknown else tok.symbol_table[t] for t in tokens]


def test_empty_text_gives_no_tokens():
    tok = CharTokenizer(units_of(["AB"]), normalize="english")
    assert tok.tokenize(" ?! ") == ([], [])


def test_detokenize_rejects_out_of_range_ids():
    tok = CharTokenizer(units_of(["AB"]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.detokenize([99])


def test_bpe_units_and_round_trip(bpe):
    tok, model, units = bpe
    table = read_units(units)
    assert tok.vocab_size == len(table) == 50 - 3 + 1 + 3  # spm pieces - <unk><s></s> + sym + 3
    assert not {"<s>", "</s>"} & set(table)
    for text in sentences(20):
        tokens, ids = tok.tokenize(text.lower())
        assert all(t.startswith("▁") or t in table for t in tokens)
        assert tok.detokenize(ids) == (text, tokens)
    tokens, ids = tok.tokenize("the fox <noise> jumps 7")
    assert "<noise>" in tokens
    assert tok.detokenize(ids)[0] == "THE FOX <noise> JUMPS SEVEN"


def test_bpe_unknown_character_and_pickle(bpe):
    tok = bpe[0]
    with pytest.raises(UnknownTokenError) as info:
        tok.tokenize("the fox ÆØ")
    assert info.value.bad_tokens
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.tokenize("the lazy dog") == tok.tokenize("the lazy dog")


def test_build_tokenizer_from_config(bpe, tmp_path):
    _, model, units = bpe
    syms = tmp_path / "non_lang_syms.txt"
    syms.write_text("<noise>\n")
    cfg = TokenizerConfig(type="bpe", units=str(units), bpe_model=model, non_lang_syms=str(syms))
    tok = build_tokenizer(cfg)
    assert isinstance(tok, BpeTokenizer) and "<noise>" in tok.tokenize("a <noise>")[0]
    char_units = tmp_path / "units.txt"
    write_units(char_units, char_units_from_texts(["AB"]))
    assert isinstance(build_tokenizer(TokenizerConfig(units=str(char_units))), CharTokenizer)
    with pytest.raises(ValueError, match="tokenizer.type"):
        build_tokenizer(TokenizerConfig(type="word", units=str(char_units)))
    with pytest.raises(ValueError, match="tokenizer.units"):
        build_tokenizer(TokenizerConfig())
    with pytest.raises(FileNotFoundError, match="bpe_model"):
        build_tokenizer(TokenizerConfig(type="bpe", units=str(units), bpe_model="nope.model"))


def test_word_pieces_rebuild_the_words_of_detokenize(bpe):
    """Joining pieces at the word starts word_pieces marks gives detokenize's words."""
    tok = bpe[0]
    char = CharTokenizer({"<blank>": 0, "<unk>": 1, "A": 2, "B": 3, SPACE: 4, "<sos/eos>": 5})
    for tokenizer, text in ((tok, "the lazy dog <noise> jumps over"), (char, "AB  A B")):
        ids = tokenizer.tokenize(text)[1]
        pieces = tokenizer.word_pieces()
        words: list[str] = []
        for i in ids:
            starts, piece = pieces[i]
            if starts or not words:
                words.append(piece)
            else:
                words[-1] += piece
        assert [w for w in words if w] == tokenizer.detokenize(ids)[0].split()
    assert char.word_pieces()[1] == (False, "<unk>") and char.word_pieces()[4] == (True, "")

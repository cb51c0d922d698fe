"""Text <-> token ids with WeNet's `units.txt` conventions: character and sentencepiece tokenizers.

`units.txt` holds `symbol id` lines: `<blank> 0`, `<unk> 1`, `<sos/eos> 2`, then the tokens
(WeNet's current recipes; older WeNet releases put `<sos/eos>` last, and such files load too).
The special-token ids are data: `SpecialTokens.resolve` takes them from the config's
`tokenizer.special_tokens` (WeNet's `tokenizer_conf.special_tokens`), else from the units,
else WeNet's defaults. A word boundary in character units is the token `▁`. Non-language
symbols (`<noise>`, `[laughter]`) listed in a file are kept whole: they are swapped for
private-use placeholder characters while the text is normalised, so normalisation can neither
split nor drop them.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import sentencepiece as spm
from omegaconf import DictConfig

from wenet_eff.data.text_file import utf8_lines
from wenet_eff.data.text_norm import get_normalizer

BLANK = "<blank>"
UNK = "<unk>"
SOS_EOS = "<sos/eos>"
SPACE = "\u2581"  # "▁", also sentencepiece's word-start mark
_PLACEHOLDER_BASE = 0xE000  # Unicode private-use area
UNK_POLICIES = ("error", "map")  # `Tokenizer.tokenize`: raise on, or map to <unk>, unknown tokens
# WeNet's `tokenizer_conf.special_tokens` keys, and the units.txt symbols that name each
SPECIAL_SYMBOLS = {
    "<blank>": (BLANK,),
    "<unk>": (UNK,),
    "<sos>": (SOS_EOS, "<sos>"),
    "<eos>": (SOS_EOS, "<eos>"),
}


@dataclass
class TokenizerConfig:
    """Text to token ids: `char` (units.txt) or `bpe` (sentencepiece model + units.txt)."""

    type: str = "char"
    units: str = ""
    bpe_model: str = ""
    non_lang_syms: str = ""
    split_with_space: bool = False
    normalize: str = "english"  # english | chinese | none
    # WeNet's name: {<blank>: 0, <unk>: 1, <sos>: 2, <eos>: 2}; a token left out takes its id
    # from units.txt, else WeNet's default (see SpecialTokens.resolve)
    special_tokens: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the special tokens: CTC `blank`, `unk`, and the decoder's `sos` / `eos`."""

    blank: int
    unk: int
    sos: int
    eos: int

    def as_dict(self) -> dict[str, int]:
        """WeNet's `tokenizer_conf.special_tokens` form."""
        return {"<blank>": self.blank, "<unk>": self.unk, "<sos>": self.sos, "<eos>": self.eos}

    @classmethod
    def resolve(
        cls,
        vocab_size: int,
        given: Mapping[str, int] | None = None,
        units: Mapping[str, int] | None = None,
        source: str = "tokenizer.special_tokens",
    ) -> SpecialTokens:
        """Each id from `given` (the config's special_tokens), else from its symbol in `units`
        (`<blank>`, `<unk>`, `<sos/eos>`), else WeNet's default (blank 0, unk 1,
        sos = eos = vocab_size - 1, as WeNet's model does without special_tokens).

        Raises:
            ValueError: an unknown key, an id outside [0, vocab_size), or `given` and `units`
                disagreeing (named, with `source`).
        """
        given, units = dict(given or {}), dict(units or {})
        unknown = sorted(set(given) - set(SPECIAL_SYMBOLS))
        if unknown:
            raise ValueError(
                f"{source}: unknown special token(s) {unknown}; wenet_eff knows "
                f"{list(SPECIAL_SYMBOLS)}"
            )
        defaults = {"<blank>": 0, "<unk>": 1, "<sos>": vocab_size - 1, "<eos>": vocab_size - 1}
        ids = {}
        for token, symbols in SPECIAL_SYMBOLS.items():
            in_units = next((units[s] for s in symbols if s in units), None)
            value = given.get(token, in_units)
            if token in given and in_units is not None and in_units != given[token]:
                raise ValueError(
                    f"{source}.{token}={given[token]}, but units.txt has it at {in_units}: "
                    "the ids the model was trained with must match the units file"
                )
            value = defaults[token] if value is None else int(value)
            if not 0 <= value < vocab_size:
                raise ValueError(
                    f"{source}.{token}={value} is outside the vocabulary [0, {vocab_size})"
                )
            ids[token] = value
        return cls(ids["<blank>"], ids["<unk>"], ids["<sos>"], ids["<eos>"])


class UnknownTokenError(ValueError):
    """`text` has tokens (`bad_tokens`) that are not in the vocabulary."""

    def __init__(self, text: str, bad_tokens: list[str]) -> None:
        super().__init__(f"tokens {bad_tokens} of text {text!r} are not in units.txt")
        self.text = text
        self.bad_tokens = bad_tokens


def read_units(path: str | os.PathLike) -> dict[str, int]:
    """Read `units.txt` (`symbol id` per line) into {symbol: id}; errors name the file and line."""
    path = os.fspath(path)
    table: dict[str, int] = {}
    seen_ids: set[int] = set()
    for lineno, line in utf8_lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{lineno}: expected 'symbol id', got {line.rstrip()!r}")
        symbol, idx = fields[0], int(fields[1])
        if symbol in table or idx in seen_ids:
            raise ValueError(f"{path}:{lineno}: duplicate symbol or id in {line.rstrip()!r}")
        table[symbol] = idx
        seen_ids.add(idx)
    return table


def write_units(path: str | os.PathLike, symbols: Sequence[str]) -> None:
    """Write `symbols` as `units.txt` with ids 0..n-1 (atomically).

    `symbols` must start with `<blank>`, `<unk>` and hold `<sos/eos>` at 2 (WeNet's current
    layout) or last (older WeNet releases).
    """
    _check_conventions(list(symbols), os.fspath(path))
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(f"{symbol} {i}\n" for i, symbol in enumerate(symbols))
    os.replace(tmp, path)


def read_non_lang_syms(path: str | os.PathLike) -> list[str]:
    """One non-language symbol (e.g. `<noise>`) per line; blank lines ignored."""
    path = os.fspath(path)
    syms = [line.strip() for _, line in utf8_lines(path) if line.strip()]
    for sym in syms:
        if len(sym.split()) != 1:
            raise ValueError(f"{path}: non-language symbol {sym!r} contains whitespace")
    return syms


def _check_conventions(symbols: list[str], source: str) -> None:
    if len(symbols) < 3 or symbols[:2] != [BLANK, UNK] or SOS_EOS not in (symbols[2], symbols[-1]):
        raise ValueError(
            f"{source}: units must be '{BLANK}' (id 0), '{UNK}' (id 1), '{SOS_EOS}' (id 2, or "
            "last), then the tokens"
        )


class _Segmenter:
    """Normalises text and cuts it into (piece, is_non_lang_sym) segments."""

    def __init__(self, normalize: str, non_lang_syms: Iterable[str]) -> None:
        self.normalize = get_normalizer(normalize)
        self.non_lang_syms = list(non_lang_syms)
        self._to_placeholder = {
            sym: chr(_PLACEHOLDER_BASE + i) for i, sym in enumerate(self.non_lang_syms)
        }
        self._from_placeholder = {ch: sym for sym, ch in self._to_placeholder.items()}
        longest_first = sorted(self.non_lang_syms, key=len, reverse=True)
        self._sym_re = re.compile("|".join(map(re.escape, longest_first)))
        self._placeholder_re = re.compile("(" + "|".join(self._from_placeholder) + ")")

    def __call__(self, text: str) -> list[tuple[str, bool]]:
        if not self.non_lang_syms:
            return [(self.normalize(text), False)]
        text = self._sym_re.sub(lambda m: self._to_placeholder[m.group(0)], text)
        text = self.normalize(text)
        parts = []
        for part in self._placeholder_re.split(text):
            if part in self._from_placeholder:
                parts.append((self._from_placeholder[part], True))
            elif part:
                parts.append((part, False))
        return parts


def _char_tokens(segments: list[tuple[str, bool]], split_with_space: bool) -> list[str]:
    tokens: list[str] = []
    for piece, is_sym in segments:
        if is_sym:
            tokens.append(piece)
        elif split_with_space:
            tokens.extend(piece.split())
        else:
            tokens.extend(SPACE if ch == " " else ch for ch in piece)
    return tokens


def char_units_from_texts(
    texts: Iterable[str],
    non_lang_syms: Iterable[str] = (),
    split_with_space: bool = False,
    normalize: str = "none",
) -> list[str]:
    """Character units for `texts`, split exactly as `CharTokenizer` with the same options splits.

    Returns:
        [`<blank>`, `<unk>`, `<sos/eos>`, sorted tokens...], ready for `write_units`.
    """
    segmenter = _Segmenter(normalize, non_lang_syms)
    found: set[str] = set()
    for text in texts:
        found.update(_char_tokens(segmenter(text), split_with_space))
    found -= {BLANK, UNK, SOS_EOS}
    return [BLANK, UNK, SOS_EOS, *sorted(found)]


class Tokenizer(ABC):
    """Shared vocabulary handling; subclasses define how normalised text becomes tokens.

    Attributes:
        symbol_table: {symbol: id} from units.txt.
        vocab_size: number of units.
        special: the `SpecialTokens` (blank_id, unk_id, sos_id, eos_id are its ids).
        normalize: the text normaliser `tokenize` applies (e.g. for WER references).
    """

    _join = ""  # between tokens when detokenizing

    def __init__(
        self,
        units: str | os.PathLike | dict[str, int],
        non_lang_syms: Iterable[str] = (),
        normalize: str = "none",
        special_tokens: Mapping[str, int] | None = None,
    ) -> None:
        source = "units" if isinstance(units, dict) else os.fspath(units)
        self.symbol_table = dict(units) if isinstance(units, dict) else read_units(units)
        by_id = sorted(self.symbol_table.items(), key=lambda kv: kv[1])
        if [i for _, i in by_id] != list(range(len(by_id))):
            raise ValueError(f"{source}: unit ids must be 0..{len(by_id) - 1} without gaps")
        self.id_to_symbol = [symbol for symbol, _ in by_id]
        self.vocab_size = len(self.id_to_symbol)
        if UNK not in self.symbol_table and "<unk>" not in (special_tokens or {}):
            raise ValueError(f"{source}: no '{UNK}' unit (text outside the units maps to it)")
        self.special = SpecialTokens.resolve(
            self.vocab_size, special_tokens, self.symbol_table, f"{source}: special_tokens"
        )
        self.blank_id, self.unk_id = self.special.blank, self.special.unk
        self.sos_id, self.eos_id = self.special.sos, self.special.eos
        # never text: ids -> text leaves them out wherever the units put them
        self._silent_ids = {self.blank_id, self.sos_id, self.eos_id}
        self._segment = _Segmenter(normalize, non_lang_syms)
        self.normalize = self._segment.normalize

    @abstractmethod
    def text_to_tokens(self, text: str) -> list[str]:
        """Normalise `text` and split it into tokens (which may be out of vocabulary)."""

    def unknown_tokens(self, tokens: Iterable[str]) -> list[str]:
        """The distinct `tokens` that are not in units.txt, in first-appearance order."""
        return [t for t in dict.fromkeys(tokens) if t not in self.symbol_table]

    def tokenize(self, text: str, unk_policy: str = "error") -> tuple[list[str], list[int]]:
        """Normalise and tokenise `text`.

        Args:
            text: raw transcript.
            unk_policy: what a token missing from units.txt does: "error" raises (training
                must not learn `<unk>` for text it could have learnt), "map" gives it
                `unk_id` (decoding must not depend on the reference text).

        Returns:
            (tokens, ids); both empty when nothing is left after normalisation. `tokens` are
            the text's own tokens, so `unknown_tokens(tokens)` names the ones "map" replaced.

        Raises:
            UnknownTokenError: a token is not in units.txt and `unk_policy` is "error".
            ValueError: `unk_policy` is neither "error" nor "map".
        """
        if unk_policy not in UNK_POLICIES:
            raise ValueError(f"unk_policy: '{unk_policy}' is not one of {UNK_POLICIES}")
        tokens = self.text_to_tokens(text)
        if unk_policy == "error" and (bad := self.unknown_tokens(tokens)):
            raise UnknownTokenError(text, bad)
        return tokens, [self.symbol_table.get(t, self.unk_id) for t in tokens]

    def detokenize(self, ids: Iterable[int]) -> tuple[str, list[str]]:
        """Token ids -> (text with `▁` as space, stripped; tokens). Blank, sos and eos ids are
        left out of both."""
        tokens = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} outside the vocabulary [0, {self.vocab_size})")
            if i not in self._silent_ids:
                tokens.append(self.id_to_symbol[i])
        return self._tokens_to_text(tokens), tokens

    def word_pieces(self) -> list[tuple[bool, str]]:
        """Per token id: (starts a new word, its text without `▁`), for word-level LM fusion
        (`wenet_eff.decode.lm.WordLmFusion`): `▁THE` -> (True, "THE"), `S` -> (False, "S"),
        the space `▁` -> (True, ""), `<unk>` -> (False, "<unk>") as `detokenize` glues it to
        its neighbours. Non-language symbols are words of their own, and so is every token when
        tokens are joined with spaces."""
        pieces, specials = [], set(self._segment.non_lang_syms)
        for symbol in self.id_to_symbol:
            if self._join == " " or symbol in specials:
                pieces.append((True, symbol))
            else:
                pieces.append((symbol.startswith(SPACE), symbol.replace(SPACE, "")))
        return pieces

    def _tokens_to_text(self, tokens: list[str]) -> str:
        text = self._join.join(tokens).replace(SPACE, " ")
        return " ".join(text.split())


class CharTokenizer(Tokenizer):
    """Characters as tokens (`▁` for a space), or whitespace-separated words with
    `split_with_space` (pre-tokenised text such as phones)."""

    def __init__(
        self,
        units: str | os.PathLike | dict[str, int],
        non_lang_syms: Iterable[str] = (),
        split_with_space: bool = False,
        normalize: str = "none",
        special_tokens: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(units, non_lang_syms, normalize, special_tokens)
        self.split_with_space = split_with_space
        self._join = " " if split_with_space else ""

    def text_to_tokens(self, text: str) -> list[str]:
        return _char_tokens(self._segment(text), self.split_with_space)


class BpeTokenizer(Tokenizer):
    """Sentencepiece pieces as tokens; units.txt maps pieces to ids (see `bpe_units`)."""

    def __init__(
        self,
        bpe_model: str | os.PathLike,
        units: str | os.PathLike | dict[str, int],
        non_lang_syms: Iterable[str] = (),
        normalize: str = "none",
        special_tokens: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(units, non_lang_syms, normalize, special_tokens)
        self.sp = _load_sentencepiece(bpe_model)

    def _tokens_to_text(self, tokens: list[str]) -> str:
        # Pieces carry their own word starts; non-language symbols do not, so space them.
        syms = set(self._segment.non_lang_syms)
        return super()._tokens_to_text([f"{SPACE}{t}{SPACE}" if t in syms else t for t in tokens])

    def text_to_tokens(self, text: str) -> list[str]:
        tokens: list[str] = []
        for piece, is_sym in self._segment(text):
            if is_sym:
                tokens.append(piece)
            elif piece.strip():
                tokens.extend(self.sp.encode(piece.strip(), out_type=str))
        return tokens


def _load_sentencepiece(model: str | os.PathLike) -> spm.SentencePieceProcessor:
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: sentencepiece model not found (tokenizer.bpe_model)")
    sp = spm.SentencePieceProcessor()
    try:
        sp.load(path)
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"{path}: not a sentencepiece model ({exc})") from exc
    return sp


def train_bpe(
    texts_file: str | os.PathLike, model_prefix: str, vocab_size: int, model_type: str = "unigram"
) -> str:
    """Train a sentencepiece model on one sentence per line (full character coverage).

    Returns:
        the path `{model_prefix}.model`.
    """
    try:
        spm.SentencePieceTrainer.train(
            input=os.fspath(texts_file),
            model_prefix=model_prefix,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            input_sentence_size=100_000_000,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise ValueError(f"{texts_file}: sentencepiece training failed ({exc})") from exc
    return f"{model_prefix}.model"


def bpe_units(model: str | os.PathLike, non_lang_syms: Iterable[str] = ()) -> list[str]:
    """Units for a sentencepiece model: [`<blank>`, `<unk>`, `<sos/eos>`, pieces..., syms...].

    The model's own control and unknown pieces (`<s>`, `</s>`, `<unk>`) are left out;
    `non_lang_syms` are appended since the tokenizer keeps them out of sentencepiece.
    """
    sp = _load_sentencepiece(model)
    pieces = [
        sp.id_to_piece(i)
        for i in range(sp.get_piece_size())
        if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i))
    ]
    extra = [sym for sym in non_lang_syms if sym not in pieces]
    return [BLANK, UNK, SOS_EOS, *pieces, *extra]


def build_tokenizer(tok_cfg: TokenizerConfig | DictConfig) -> Tokenizer:
    """The tokenizer described by a `TokenizerConfig` (type char | bpe)."""
    if not tok_cfg.units:
        raise ValueError("tokenizer.units is empty: set it to the units.txt path")
    if not os.path.isfile(tok_cfg.units):
        raise FileNotFoundError(f"tokenizer.units: {tok_cfg.units} not found")
    syms = read_non_lang_syms(tok_cfg.non_lang_syms) if tok_cfg.non_lang_syms else []
    special = dict(tok_cfg.special_tokens)
    if tok_cfg.type == "char":
        return CharTokenizer(
            tok_cfg.units, syms, tok_cfg.split_with_space, tok_cfg.normalize, special
        )
    if tok_cfg.type == "bpe":
        if not tok_cfg.bpe_model:
            raise ValueError("tokenizer.type is bpe but tokenizer.bpe_model is empty")
        return BpeTokenizer(tok_cfg.bpe_model, tok_cfg.units, syms, tok_cfg.normalize, special)
    raise ValueError(f"tokenizer.type: unknown type '{tok_cfg.type}' (choose from char, bpe)")

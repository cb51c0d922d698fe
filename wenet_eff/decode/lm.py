"""Word n-gram language models (ARPA) and their shallow fusion into CTC prefix beam search.

`train_kneser_ney` estimates an interpolated Kneser-Ney model from transcripts and
`NgramLM.write_arpa` / `NgramLM.read_arpa` keep it in the ARPA text format that KenLM, SRILM
and WeNet's LM tools read and write, so a model built elsewhere loads here too. `WordLmFusion`
scores the words of a token prefix as the beam search grows it: a word is scored when the next
word starts (a `▁` token) and at the end of the utterance; a word that can no longer become an
in-vocabulary word is charged the `<unk>` probability at once, so misspellings leave the beam
early.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LOG10 = math.log(10.0)
ARPA_ZERO = -99.0  # log10 probability ARPA files give to <s> as a predicted word


class NgramLM:
    """A backoff word n-gram model: log10 probabilities and backoff weights per n-gram.

    Args:
        order: the highest n-gram order.
        prob: {n-gram tuple: log10 P(last word | the words before it)} for every order.
        bow: {context tuple: log10 backoff weight}; absent contexts back off at 0.
    """

    def __init__(self, order: int, prob: dict[tuple[str, ...], float], bow: dict):
        if UNK not in {g[0] for g in prob if len(g) == 1}:
            raise ValueError("the LM has no <unk> unigram: train it with an open vocabulary")
        self.order = order
        self.prob = prob
        self.bow = bow
        self.vocab = {g[0] for g in prob if len(g) == 1} - {BOS, EOS, UNK}

    def logprob(self, context: Sequence[str], word: str) -> float:
        """Natural-log P(word | context); out-of-vocabulary words are `<unk>`."""
        if word not in self.vocab and word != EOS:
            word = UNK
        ctx = tuple(context[max(len(context) - self.order + 1, 0) :]) if self.order > 1 else ()
        backoff = 0.0
        while (p := self.prob.get(ctx + (word,))) is None:
            if not ctx:
                raise KeyError(f"the LM has no unigram {word!r}")
            backoff += self.bow.get(ctx, 0.0)
            ctx = ctx[1:]
        return (p + backoff) * LOG10

    def sentence_logprob(self, words: Sequence[str]) -> float:
        """Natural-log P(words </s> | <s>); out-of-vocabulary words are `<unk>`, also as
        context (as in KenLM)."""
        history, total = [BOS], 0.0
        for word in [*words, EOS]:
            word = word if word in self.vocab or word == EOS else UNK
            total += self.logprob(history, word)
            history.append(word)
        return total

    def write_arpa(self, path: str | Path) -> None:
        by_order: list[list[tuple[str, ...]]] = [[] for _ in range(self.order)]
        for gram in self.prob:
            by_order[len(gram) - 1].append(gram)
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n\\data\\\n")
            for n, grams in enumerate(by_order, 1):
                f.write(f"ngram {n}={len(grams)}\n")
            for n, grams in enumerate(by_order, 1):
                f.write(f"\n\\{n}-grams:\n")
                for gram in sorted(grams):
                    line = f"{self.prob[gram]:.6f}\t{' '.join(gram)}"
                    if gram in self.bow:
                        line += f"\t{self.bow[gram]:.6f}"
                    f.write(line + "\n")
            f.write("\n\\end\\\n")

    @classmethod
    def read_arpa(cls, path: str | Path) -> NgramLM:
        """Load an ARPA file (ours, KenLM's or SRILM's); errors name the file and line."""
        prob: dict[tuple[str, ...], float] = {}
        bow: dict[tuple[str, ...], float] = {}
        counts: dict[int, int] = {}
        section = 0
        with open(path, encoding="utf-8") as f:
            for lineno, raw in enumerate(f, 1):
                line = raw.strip()
                if not line or line == "\\data\\":
                    continue
                if line == "\\end\\":
                    break
                if line.startswith("ngram ") and section == 0:
                    n, count = line[6:].split("=")
                    counts[int(n)] = int(count)
                elif line.startswith("\\") and line.endswith("-grams:"):
                    section = int(line[1 : line.index("-")])
                elif section:
                    fields = line.split()
                    if len(fields) not in (section + 1, section + 2):
                        raise ValueError(f"{path}:{lineno}: not a {section}-gram line: {line!r}")
                    gram = tuple(fields[1 : section + 1])
                    prob[gram] = float(fields[0])
                    if len(fields) == section + 2:
                        bow[gram] = float(fields[-1])
                else:
                    raise ValueError(f"{path}:{lineno}: unexpected line {line!r}")
        if not counts:
            raise ValueError(f"{path}: no \\data\\ header: not an ARPA file")
        found = Counter(len(g) for g in prob)
        for n, count in counts.items():
            if found[n] != count:
                raise ValueError(f"{path}: header says {count} {n}-grams, the file has {found[n]}")
        return cls(max(counts), prob, bow)


def _discount(counts: Iterable[int]) -> float:
    """Kneser-Ney's D = n1 / (n1 + 2 n2) from the counts of counts, kept within [0.1, 0.9]."""
    of = Counter(c for c in counts if c <= 2)
    d = of[1] / (of[1] + 2 * of[2]) if of[1] + of[2] else 0.5
    return min(max(d, 0.1), 0.9)


def train_kneser_ney(sentences: Iterable[Sequence[str]], order: int = 3) -> NgramLM:
    """Interpolated Kneser-Ney estimate from word sequences (open vocabulary: `<unk>`).

    The highest order uses raw counts; lower orders count distinct left contexts (n-grams that
    start with <s> have none and keep their raw counts). Each order has one discount from its
    counts of counts. The backoff weight of a context is the mass its discounts freed, which is
    exactly what the interpolated estimate gives an unseen word, so the ARPA file reproduces it.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    raw: list[Counter] = [Counter() for _ in range(order)]
    num_sentences = 0
    for words in sentences:
        padded = [BOS, *words, EOS]
        num_sentences += 1
        for n in range(1, order + 1):
            for i in range(len(padded) - n + 1):
                gram = tuple(padded[i : i + n])
                if gram != (BOS,):
                    raw[n - 1][gram] += 1
    if not num_sentences:
        raise ValueError("no sentences to train the LM on")
    # adjusted counts: continuation counts below the highest order
    adjusted = [Counter() for _ in range(order)]
    adjusted[-1] = raw[-1]
    for n in range(order - 1, 0, -1):
        for gram in raw[n]:
            adjusted[n - 1][gram[1:]] += 1
        for gram, count in raw[n - 1].items():
            if gram[0] == BOS:
                adjusted[n - 1][gram] = count
    vocab = {g[0] for g in raw[0]} | {UNK}
    prob: dict[tuple[str, ...], float] = {}
    bow: dict[tuple[str, ...], float] = {}
    lower: dict[tuple[str, ...], float] = {}  # natural-probability estimate of the order below
    for n in range(1, order + 1):
        d = _discount(adjusted[n - 1].values())
        totals: dict[tuple[str, ...], float] = defaultdict(float)
        types: dict[tuple[str, ...], int] = defaultdict(int)
        for gram, count in adjusted[n - 1].items():
            totals[gram[:-1]] += count
            types[gram[:-1]] += 1
        current: dict[tuple[str, ...], float] = {}
        for gram, count in adjusted[n - 1].items():
            ctx = gram[:-1]
            gamma = d * types[ctx] / totals[ctx]
            backed = lower[gram[1:]] if n > 1 else 1.0 / len(vocab)
            current[gram] = (count - d) / totals[ctx] + gamma * backed
        if n == 1:
            gamma = d * types[()] / totals[()]
            current.setdefault((UNK,), gamma / len(vocab))  # unseen: only the uniform share
        else:
            for ctx in totals:
                bow[ctx] = math.log10(d * types[ctx] / totals[ctx])
        for gram, p in current.items():
            prob[gram] = math.log10(p)
        lower = current
    prob[(BOS,)] = ARPA_ZERO
    return NgramLM(order, prob, bow)


class WordLmFusion:
    """Shallow fusion of a word n-gram LM into CTC prefix beam search.

    The state of a prefix is (last order-1 words, the partial word, whether that partial word
    has already been charged as `<unk>`). `extend` returns the score change of appending one
    token: weight * log P(word | history) + word_bonus for each word it completes.

    Args:
        lm: the word LM.
        pieces: per token id, (starts a new word, its text): `Tokenizer.word_pieces()`.
        weight: LM weight (natural-log LM scores are multiplied by it).
        word_bonus: added per word, against the LM's preference for short outputs.
    """

    name = "lm"  # its fused score appears as Hypothesis.extras["lm"]

    def __init__(
        self, lm: NgramLM, pieces: list[tuple[bool, str]], weight: float, word_bonus: float
    ):
        self.lm = lm
        self.pieces = pieces
        self.weight = weight
        self.word_bonus = word_bonus
        self.prefixes = {w[:i] for w in lm.vocab for i in range(1, len(w) + 1)}

    def initial(self) -> tuple:
        return ((BOS,), "", False)

    def _complete(self, state: tuple) -> tuple[tuple, float]:
        history, partial, charged = state
        if not partial and not charged:
            return state, 0.0
        score = self.word_bonus
        if not charged:
            score += self.weight * self.lm.logprob(history, partial)
        word = partial if partial in self.lm.vocab else UNK
        return ((*history, word)[-max(self.lm.order - 1, 1) :], "", False), score

    def extend(self, state: tuple, token: int) -> tuple[tuple, float]:
        """(state after appending `token`, score change)."""
        starts, text = self.pieces[token]
        score = 0.0
        if starts:
            state, score = self._complete(state)
        history, partial, charged = state
        partial += text
        if partial and not charged and partial not in self.prefixes:
            score += self.weight * self.lm.logprob(history, UNK)
            charged = True
        return (history, partial, charged), score

    def final(self, state: tuple) -> float:
        """Score change of ending the utterance: the last word and </s>."""
        state, score = self._complete(state)
        return score + self.weight * self.lm.logprob(state[0], EOS)

"""Context biasing (hotwords): phrases whose tokens get a score boost in CTC prefix beam search.

The phrases form an Aho-Corasick automaton over token ids; the state of a prefix is a node of
it (the current match), and the boost changes with each token appended to the prefix:
  - a token that extends the match adds `score`;
  - a token that breaks it moves the match to the longest suffix that the token does extend
    (the automaton's failure links; the root if none): the unfinished part of the old match
    (its tokens after the last phrase completed in it) gives its boost back, and the tokens of
    the new match are boosted;
  - at the end of the utterance the unfinished part of the match gives its boost back.
So a phrase the hypothesis completes keeps `score` per token, a partial match keeps nothing
(WeNet's `--context_path --context_score`, whose context graph behaves the same way).

Phrases are split into units by greedy longest match against `units.txt`, as WeNet's runtime
does (so the C++ runtime, which has no sentencepiece, splits them the same way): words joined
by `▁`, a `▁` word-start piece preferred for the first word; a standalone `▁` unit at the start
is dropped, so a phrase also matches at the start of an utterance. With space-separated units
each word is one unit. A phrase with a character no unit covers is skipped with a warning.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from wenet_eff.data.tokenizer import SPACE

log = logging.getLogger(__name__)


class ContextGraph:
    """Aho-Corasick automaton over the token ids of the biasing phrases.

    Args:
        phrases: token ids of each phrase (empty ones are ignored).
        score: boost per matched token (natural-log units, added to the hypothesis score).
    """

    name = "context"  # its fused score appears as Hypothesis.extras["context"]

    def __init__(self, phrases: Sequence[Sequence[int]], score: float):
        self.score = score
        self.next: dict[tuple[int, int], int] = {}  # (node, token) -> child; node 0: root
        self.depth = [0]
        is_end = [False]
        for phrase in phrases:
            node = 0
            for token in phrase:
                child = self.next.get((node, token))
                if child is None:
                    child = self.next[(node, token)] = len(self.depth)
                    self.depth.append(self.depth[node] + 1)
                    is_end.append(False)
                node = child
            is_end[node] = node != 0
        self.num_phrases = sum(is_end)
        # failure links (breadth first) and `kept`: the depth of the deepest phrase end on the
        # path to each node (its tokens up to there belong to a completed phrase)
        self.fail = [0] * len(self.depth)
        self.kept = [0] * len(self.depth)
        children: dict[int, list[tuple[int, int]]] = {}
        for (node, token), child in self.next.items():
            children.setdefault(node, []).append((token, child))
        queue = deque([0])
        while queue:
            node = queue.popleft()
            for token, child in children.get(node, []):
                if node:
                    self.fail[child] = self._goto(self.fail[node], token)
                self.kept[child] = self.depth[child] if is_end[child] else self.kept[node]
                queue.append(child)

    def _goto(self, node: int, token: int) -> int:
        """The node after `token` from `node`, following failure links (the root if none)."""
        while node and (node, token) not in self.next:
            node = self.fail[node]
        return self.next.get((node, token), 0)

    def initial(self) -> int:
        return 0

    def extend(self, state: int, token: int) -> tuple[int, float]:
        """(state after appending `token`, boost change)."""
        child = self.next.get((state, token))
        if child is not None:
            return child, self.score
        node = self._goto(state, token)
        return node, self.score * self.depth[node] - self._unfinished(state)

    def final(self, state: int) -> float:
        """Boost change at the end of the utterance: the unfinished match is taken back."""
        return -self._unfinished(state)

    def _unfinished(self, state: int) -> float:
        return self.score * (self.depth[state] - self.kept[state])

    @classmethod
    def from_file(
        cls, path: str | Path, symbol_table: dict[str, int], split_with_space: bool, score: float
    ) -> ContextGraph:
        """The graph of a phrase file (one phrase per line, blank lines ignored).

        Args:
            symbol_table: {unit: id} of units.txt.
            split_with_space: the units are space-separated words (CharTokenizer option).
        """
        phrases = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                ids = split_phrase(line, symbol_table, split_with_space)
                if ids is None:
                    log.warning("%s:%d: phrase %r has text no unit covers: skipped",
                                path, lineno, line.strip())  # fmt: skip
                elif ids:
                    phrases.append(ids)
        if not phrases:
            raise ValueError(f"{path}: no phrase could be split into units (units.txt): "
                             "give one phrase per line in the units' alphabet")  # fmt: skip
        return cls(phrases, score)


def split_phrase(
    phrase: str, symbol_table: dict[str, int], split_with_space: bool
) -> list[int] | None:
    """Token ids of `phrase` by greedy longest match against the units (see the module doc);
    None when some text is covered by no unit."""
    words = phrase.split()
    if split_with_space:
        ids = [symbol_table.get(w) for w in words]
        return None if None in ids else ids
    text = SPACE + SPACE.join(words)
    longest = max(len(unit) for unit in symbol_table)
    ids, i = [], 0
    while i < len(text):
        for j in range(min(len(text), i + longest), i, -1):
            if text[i:j] in symbol_table:
                ids.append(symbol_table[text[i:j]])
                i = j
                break
        else:
            return None
    if ids and ids[0] == symbol_table.get(SPACE):
        ids = ids[1:]
    return ids

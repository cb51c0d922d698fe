// Context biasing (hotwords), the C++ side of wenet_eff.decode.context: an Aho-Corasick
// automaton over the token ids of the phrases. A token that extends the current match adds
// `score`; a token that breaks it moves the match to the longest suffix the token extends and
// gives back the boost of the old match's unfinished part (its tokens after the last phrase
// completed in it) while the new match's tokens are boosted; at the end of the utterance the
// unfinished part gives its boost back. Phrases are split into units by greedy longest match
// (as WeNet's runtime does), identically in Python. The graph is read-only once built: one
// instance serves every stream, each prefix keeping only its node and accumulated boost.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "hash_index.h"
#include "symbol_table.h"

namespace wenet_eff {

class ContextGraph {
 public:
  // phrases: token ids of each phrase (empty ones are ignored); score: boost per token.
  ContextGraph(const std::vector<std::vector<int>>& phrases, double score);
  // One phrase per line of `path` (blank lines ignored), split against `symbols`; a phrase
  // with text no unit covers is skipped with a warning on stderr. Throws std::runtime_error
  // when the file cannot be read or none of its phrases can be split.
  static std::shared_ptr<const ContextGraph> FromFile(const std::string& path,
                                                      const SymbolTable& symbols,
                                                      const std::string& join, double score);

  int Initial() const { return 0; }
  // The state after appending `token`; *delta: the boost change.
  int Extend(int state, int token, double* delta) const;
  // The boost change of ending the utterance in `state`.
  double Final(int state) const { return -Unfinished(state); }
  int num_phrases() const { return num_phrases_; }

 private:
  int Goto(int node, int token) const;
  int Child(int node, int token) const;
  double Unfinished(int state) const { return score_ * (depth_[state] - kept_[state]); }

  double score_;
  int num_phrases_ = 0;
  HashIndex next_;  // (node << 32 | token) -> child; node 0: root
  std::vector<int> depth_, fail_;
  std::vector<int> kept_;  // depth of the deepest phrase end on the path to the node
};

// Token ids of `phrase` by greedy longest match against the units: words joined by "▁" with
// a leading "▁" (a standalone "▁" unit at the start is dropped); with `join` " " each word is
// one unit. Returns false when some text is covered by no unit
// (wenet_eff.decode.context.split_phrase).
bool SplitPhrase(const std::string& phrase, const std::unordered_map<std::string, int>& units,
                 size_t longest_unit, const std::string& join, std::vector<int>* ids);

}  // namespace wenet_eff

// CTC decoding over log posteriors, incremental so a stream can be searched chunk by chunk:
// greedy (best path) and prefix beam search. The prefix beam search follows
// wenet_eff.decode.ctc.CtcPrefixBeam step for step (same candidate order, same stable ranking,
// double-precision scores), so both give the same n-best on the same posteriors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace wenet_eff {

struct CtcHypothesis {
  std::vector<int> tokens;
  double score = 0;  // log P(prefix) summed over its alignments (greedy: best-path log prob)
};

class CtcGreedySearch {
 public:
  explicit CtcGreedySearch(int blank = 0) : blank_(blank) {}
  // Consume `frames` rows of `vocab` log posteriors (row-major).
  void Advance(const float* log_probs, int frames, int vocab);
  CtcHypothesis Best() const { return best_; }
  void Reset();

 private:
  int blank_;
  int last_ = -1;
  CtcHypothesis best_;
};

class CtcPrefixBeamSearch {
 public:
  // beam_size prefixes kept per frame; token_beam tokens expanded per frame (0: beam_size).
  CtcPrefixBeamSearch(int beam_size, int blank = 0, int token_beam = 0);

  void Advance(const float* log_probs, int frames, int vocab);
  // The current hypotheses, best first.
  std::vector<CtcHypothesis> NBest() const;
  int frames() const { return frames_; }
  void Reset();

 private:
  // Prefixes are nodes of a trie (node 0: the empty prefix), so a candidate is an int: no
  // token vector is copied or hashed per candidate and frame.
  struct Prefix {
    int node;
    int last;    // its last token (-1: empty)
    double pb;   // log prob of the paths ending in blank
    double pnb;  // log prob of the paths ending in the last token
  };
  struct Node {
    int parent;
    int token;
  };
  // The node of `node`'s prefix followed by `token`, created on first use.
  int Child(int node, int token);
  std::vector<int> Tokens(int node) const;
  // Rebuild the trie from the beam's prefixes alone (bounds its size on long streams).
  void Compact();

  int beam_size_;
  int blank_;
  int token_beam_;
  int frames_ = 0;
  std::vector<Prefix> beam_;  // ranked, best first
  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, int> children_;  // (parent << 32 | token) -> node
};

}  // namespace wenet_eff

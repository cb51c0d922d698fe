// CTC decoding over log posteriors, incremental so a stream can be searched chunk by chunk:
// greedy (best path) and prefix beam search. The prefix beam search follows
// wenet_eff.decode.ctc.CtcPrefixBeam step for step (same candidate order, same stable ranking,
// double-precision scores, the same fused word-LM and context-biasing scores), so both give
// the same n-best on the same posteriors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <unordered_map>
#include <vector>

#include "context_graph.h"
#include "ngram_lm.h"

namespace wenet_eff {

struct CtcHypothesis {
  std::vector<int> tokens;
  // log P(prefix) summed over its alignments (greedy: best-path log prob), plus the fused
  // scores below with the utterance ending here
  double score = 0;
  double ctc = 0;      // log P(prefix) alone
  double lm = 0;       // fused word-LM score (0 without an LM)
  double context = 0;  // context-biasing boost (0 without phrases)
};

struct CtcPrefixBeamOptions {
  int beam_size = 10;  // prefixes kept per frame
  int blank = 0;
  int token_beam = 0;  // tokens expanded per frame (0: beam_size)
  // tokens whose log posterior in a frame is below this are not expanded (the frame's best
  // always is); compared in float, as torch compares float32 posteriors with a Python float
  double min_token_logp = -std::numeric_limits<double>::infinity();
  std::shared_ptr<const WordLmFusion> lm;        // shallow fusion of a word LM, or none
  std::shared_ptr<const ContextGraph> context;  // context biasing (hotwords), or none
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
  // Throws std::invalid_argument for a beam_size < 1 or a min_token_logp > 0.
  explicit CtcPrefixBeamSearch(const CtcPrefixBeamOptions& options);

  void Advance(const float* log_probs, int frames, int vocab);
  // The current hypotheses, best first (by score: with fused scores, as if the utterance
  // ended here).
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
    // fused scores of its tokens so far and the scorers' states
    double lm_score = 0, context_score = 0;
    LmState lm;
    int context = 0;
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

  // `prefix` followed by `token` (at `node`): the scorers' states and scores moved on.
  Prefix Extended(const Prefix& prefix, int node, int token) const;

  CtcPrefixBeamOptions opts_;
  int frames_ = 0;
  std::vector<Prefix> beam_;  // ranked, best first
  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, int> children_;  // (parent << 32 | token) -> node
};

}  // namespace wenet_eff

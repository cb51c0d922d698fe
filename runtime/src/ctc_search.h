// CTC decoding over log posteriors, incremental so a stream can be searched chunk by chunk:
// greedy (best path) and prefix beam search. The prefix beam search follows
// wenet_eff.decode.ctc.CtcPrefixBeam step for step (same candidate order, same stable ranking,
// double-precision scores), so both give the same n-best on the same posteriors.
#pragma once

#include <cstddef>
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
  struct Prefix {
    std::vector<int> tokens;
    double pb;   // log prob of the paths ending in blank
    double pnb;  // log prob of the paths ending in the last token
  };
  struct VectorHash {
    size_t operator()(const std::vector<int>& v) const;
  };

  int beam_size_;
  int blank_;
  int token_beam_;
  int frames_ = 0;
  std::vector<Prefix> beam_;  // ranked, best first
};

}  // namespace wenet_eff

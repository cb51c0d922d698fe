#include "ctc_search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace wenet_eff {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

double LogAddExp(double a, double b) {
  if (a == kNegInf) return b;
  if (b == kNegInf) return a;
  double hi = a > b ? a : b, lo = a > b ? b : a;
  return hi + std::log1p(std::exp(lo - hi));
}

}  // namespace

void CtcGreedySearch::Advance(const float* log_probs, int frames, int vocab) {
  for (int t = 0; t < frames; ++t) {
    const float* row = log_probs + static_cast<size_t>(t) * vocab;
    int best = static_cast<int>(std::max_element(row, row + vocab) - row);
    best_.score += row[best];
    if (best != blank_ && best != last_) best_.tokens.push_back(best);
    last_ = best;
  }
}

void CtcGreedySearch::Reset() {
  last_ = -1;
  best_ = CtcHypothesis();
}

size_t CtcPrefixBeamSearch::VectorHash::operator()(const std::vector<int>& v) const {
  size_t h = v.size();
  for (int x : v) h ^= static_cast<size_t>(x) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h;
}

CtcPrefixBeamSearch::CtcPrefixBeamSearch(int beam_size, int blank, int token_beam)
    : beam_size_(beam_size), blank_(blank), token_beam_(token_beam > 0 ? token_beam : beam_size) {
  Reset();
}

void CtcPrefixBeamSearch::Reset() {
  frames_ = 0;
  beam_.clear();
  beam_.push_back({{}, 0.0, kNegInf});
}

void CtcPrefixBeamSearch::Advance(const float* log_probs, int frames, int vocab) {
  const int k = std::min(token_beam_, vocab);
  std::vector<int> ids(vocab);
  for (int t = 0; t < frames; ++t, ++frames_) {
    const float* row = log_probs + static_cast<size_t>(t) * vocab;
    // top-k tokens of the frame, best first (ties: lower id first, as torch.topk on CPU)
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [row](int a, int b) {
      return row[a] > row[b] || (row[a] == row[b] && a < b);
    });
    // candidates in first-insertion order, as the Python dict keeps them
    std::vector<Prefix> next;
    std::unordered_map<std::vector<int>, size_t, VectorHash> index;
    auto accumulate = [&](std::vector<int>&& tokens, double pb, double pnb) {
      auto it = index.find(tokens);
      if (it == index.end()) {
        index.emplace(tokens, next.size());
        next.push_back({std::move(tokens), pb, pnb});
      } else {
        Prefix& cur = next[it->second];
        cur.pb = LogAddExp(cur.pb, pb);
        cur.pnb = LogAddExp(cur.pnb, pnb);
      }
    };
    for (const Prefix& prefix : beam_) {
      const double total = LogAddExp(prefix.pb, prefix.pnb);
      const int last = prefix.tokens.empty() ? -1 : prefix.tokens.back();
      for (int j = 0; j < k; ++j) {
        const int s = ids[j];
        const double p = row[s];
        if (s == blank_) {
          accumulate(std::vector<int>(prefix.tokens), total + p, kNegInf);
        } else {
          std::vector<int> extended(prefix.tokens);
          extended.push_back(s);
          if (s == last) {
            accumulate(std::vector<int>(prefix.tokens), kNegInf, prefix.pnb + p);  // repeat
            if (prefix.pb != kNegInf) {  // blank-separated: a new token
              accumulate(std::move(extended), kNegInf, prefix.pb + p);
            }
          } else {
            accumulate(std::move(extended), kNegInf, total + p);
          }
        }
      }
    }
    std::stable_sort(next.begin(), next.end(), [](const Prefix& a, const Prefix& b) {
      return LogAddExp(a.pb, a.pnb) > LogAddExp(b.pb, b.pnb);
    });
    if (static_cast<int>(next.size()) > beam_size_) next.resize(beam_size_);
    beam_ = std::move(next);
  }
}

std::vector<CtcHypothesis> CtcPrefixBeamSearch::NBest() const {
  std::vector<CtcHypothesis> out;
  out.reserve(beam_.size());
  for (const Prefix& p : beam_) out.push_back({p.tokens, LogAddExp(p.pb, p.pnb)});
  return out;
}

}  // namespace wenet_eff

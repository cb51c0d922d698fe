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

CtcPrefixBeamSearch::CtcPrefixBeamSearch(int beam_size, int blank, int token_beam)
    : beam_size_(beam_size), blank_(blank), token_beam_(token_beam > 0 ? token_beam : beam_size) {
  Reset();
}

void CtcPrefixBeamSearch::Reset() {
  frames_ = 0;
  nodes_.assign(1, {-1, -1});
  children_.clear();
  beam_.clear();
  beam_.push_back({0, -1, 0.0, kNegInf});
}

int CtcPrefixBeamSearch::Child(int node, int token) {
  const uint64_t key = (static_cast<uint64_t>(node) << 32) | static_cast<uint32_t>(token);
  auto [it, inserted] = children_.try_emplace(key, static_cast<int>(nodes_.size()));
  if (inserted) nodes_.push_back({node, token});
  return it->second;
}

std::vector<int> CtcPrefixBeamSearch::Tokens(int node) const {
  std::vector<int> tokens;
  for (; node > 0; node = nodes_[node].parent) tokens.push_back(nodes_[node].token);
  std::reverse(tokens.begin(), tokens.end());
  return tokens;
}

void CtcPrefixBeamSearch::Compact() {
  std::vector<std::vector<int>> paths;
  for (const Prefix& p : beam_) paths.push_back(Tokens(p.node));
  nodes_.assign(1, {-1, -1});
  children_.clear();
  for (size_t i = 0; i < beam_.size(); ++i) {
    int node = 0;
    for (int token : paths[i]) node = Child(node, token);
    beam_[i].node = node;
  }
}

void CtcPrefixBeamSearch::Advance(const float* log_probs, int frames, int vocab) {
  const int k = std::min(token_beam_, vocab);
  std::vector<int> ids(vocab);
  std::vector<Prefix> next;
  std::unordered_map<int, size_t> index;  // node -> its place in next
  for (int t = 0; t < frames; ++t, ++frames_) {
    const float* row = log_probs + static_cast<size_t>(t) * vocab;
    // top-k tokens of the frame, best first (ties: lower id first, as torch.topk on CPU)
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [row](int a, int b) {
      return row[a] > row[b] || (row[a] == row[b] && a < b);
    });
    // candidates in first-insertion order, as the Python dict keeps them
    next.clear();
    index.clear();
    auto accumulate = [&](int node, int last, double pb, double pnb) {
      auto [it, inserted] = index.try_emplace(node, next.size());
      if (inserted) {
        next.push_back({node, last, pb, pnb});
      } else {
        Prefix& cur = next[it->second];
        cur.pb = LogAddExp(cur.pb, pb);
        cur.pnb = LogAddExp(cur.pnb, pnb);
      }
    };
    for (const Prefix& prefix : beam_) {
      const double total = LogAddExp(prefix.pb, prefix.pnb);
      for (int j = 0; j < k; ++j) {
        const int s = ids[j];
        const double p = row[s];
        if (s == blank_) {
          accumulate(prefix.node, prefix.last, total + p, kNegInf);
        } else if (s == prefix.last) {
          accumulate(prefix.node, s, kNegInf, prefix.pnb + p);  // repeat
          if (prefix.pb != kNegInf) {  // blank-separated: a new token
            accumulate(Child(prefix.node, s), s, kNegInf, prefix.pb + p);
          }
        } else {
          accumulate(Child(prefix.node, s), s, kNegInf, total + p);
        }
      }
    }
    std::stable_sort(next.begin(), next.end(), [](const Prefix& a, const Prefix& b) {
      return LogAddExp(a.pb, a.pnb) > LogAddExp(b.pb, b.pnb);
    });
    if (static_cast<int>(next.size()) > beam_size_) next.resize(beam_size_);
    beam_.swap(next);
    if (nodes_.size() > (1u << 16)) Compact();
  }
}

std::vector<CtcHypothesis> CtcPrefixBeamSearch::NBest() const {
  std::vector<CtcHypothesis> out;
  out.reserve(beam_.size());
  for (const Prefix& p : beam_) out.push_back({Tokens(p.node), LogAddExp(p.pb, p.pnb)});
  return out;
}

}  // namespace wenet_eff

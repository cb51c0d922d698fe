#include "ctc_search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

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

CtcPrefixBeamSearch::CtcPrefixBeamSearch(const CtcPrefixBeamOptions& options)
    : opts_(options) {
  if (opts_.beam_size < 1) throw std::invalid_argument("beam_size must be >= 1");
  if (opts_.min_token_logp > 0)
    throw std::invalid_argument("min_token_logp=" + std::to_string(opts_.min_token_logp) +
                                " is a log probability floor: it must be <= 0 (e.g. -9.2 for "
                                "p >= 1e-4)");
  if (opts_.token_beam <= 0) opts_.token_beam = opts_.beam_size;
  Reset();
}

void CtcPrefixBeamSearch::Reset() {
  frames_ = 0;
  nodes_.assign(1, {-1, -1});
  children_.clear();
  beam_.clear();
  Prefix empty;
  empty.node = 0;
  empty.last = -1;
  empty.pb = 0.0;
  empty.pnb = kNegInf;
  if (opts_.lm) empty.lm = opts_.lm->Initial();
  if (opts_.context) empty.context = opts_.context->Initial();
  beam_.push_back(empty);
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

CtcPrefixBeamSearch::Prefix CtcPrefixBeamSearch::Extended(const Prefix& prefix, int node,
                                                          int token) const {
  Prefix p = prefix;
  p.node = node;
  p.last = token;
  double delta;
  if (opts_.lm) {
    p.lm = opts_.lm->Extend(prefix.lm, token, &delta);
    p.lm_score = prefix.lm_score + delta;
  }
  if (opts_.context) {
    p.context = opts_.context->Extend(prefix.context, token, &delta);
    p.context_score = prefix.context_score + delta;
  }
  return p;
}

void CtcPrefixBeamSearch::Advance(const float* log_probs, int frames, int vocab) {
  if (opts_.lm && vocab > opts_.lm->num_pieces())
    throw std::invalid_argument("the LM fusion knows " + std::to_string(opts_.lm->num_pieces()) +
                                " tokens, the posteriors have " + std::to_string(vocab) +
                                " (units.txt of another model?)");
  const int k = std::min(opts_.token_beam, vocab);
  const float floor = static_cast<float>(opts_.min_token_logp);
  std::vector<int> ids(vocab);
  std::vector<Prefix> next;
  std::unordered_map<int, size_t> index;  // node -> its place in next
  std::vector<double> keys;
  std::vector<size_t> order;
  for (int t = 0; t < frames; ++t, ++frames_) {
    const float* row = log_probs + static_cast<size_t>(t) * vocab;
    // top-k tokens of the frame, best first (ties: lower id first, as torch.topk on CPU)
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [row](int a, int b) {
      return row[a] > row[b] || (row[a] == row[b] && a < b);
    });
    int n = 1;  // the first n of them reach the floor (the best always counts)
    while (n < k && row[ids[n]] >= floor) ++n;
    // candidates in first-insertion order, as the Python dict keeps them
    next.clear();
    index.clear();
    // `from` itself (token -1) or `from` followed by `token`
    auto accumulate = [&](const Prefix& from, int token, double pb, double pnb) {
      const int node = token < 0 ? from.node : Child(from.node, token);
      auto [it, inserted] = index.try_emplace(node, next.size());
      if (inserted) {
        next.push_back(token < 0 ? from : Extended(from, node, token));
        next.back().pb = pb;
        next.back().pnb = pnb;
      } else {
        Prefix& cur = next[it->second];
        cur.pb = LogAddExp(cur.pb, pb);
        cur.pnb = LogAddExp(cur.pnb, pnb);
      }
    };
    for (const Prefix& prefix : beam_) {
      const double total = LogAddExp(prefix.pb, prefix.pnb);
      for (int j = 0; j < n; ++j) {
        const int s = ids[j];
        const double p = row[s];
        if (s == opts_.blank) {
          accumulate(prefix, -1, total + p, kNegInf);
        } else if (s == prefix.last) {
          accumulate(prefix, -1, kNegInf, prefix.pnb + p);  // repeat
          if (prefix.pb != kNegInf) {  // blank-separated: a new token
            accumulate(prefix, s, kNegInf, prefix.pb + p);
          }
        } else {
          accumulate(prefix, s, kNegInf, total + p);
        }
      }
    }
    // the best beam_size by CTC + fused score, ties in insertion order (Python's stable sort)
    keys.resize(next.size());
    order.resize(next.size());
    for (size_t i = 0; i < next.size(); ++i)
      keys[i] = LogAddExp(next[i].pb, next[i].pnb) + (next[i].lm_score + next[i].context_score);
    std::iota(order.begin(), order.end(), 0);
    const size_t keep = std::min(next.size(), static_cast<size_t>(opts_.beam_size));
    std::partial_sort(order.begin(), order.begin() + keep, order.end(), [&](size_t a, size_t b) {
      return keys[a] > keys[b] || (keys[a] == keys[b] && a < b);
    });
    beam_.clear();
    for (size_t j = 0; j < keep; ++j) beam_.push_back(next[order[j]]);
    if (nodes_.size() > (1u << 16)) Compact();
  }
}

std::vector<CtcHypothesis> CtcPrefixBeamSearch::NBest() const {
  std::vector<CtcHypothesis> out;
  out.reserve(beam_.size());
  for (const Prefix& p : beam_) {
    CtcHypothesis h;
    h.tokens = Tokens(p.node);
    h.ctc = LogAddExp(p.pb, p.pnb);
    if (opts_.lm) h.lm = p.lm_score + opts_.lm->Final(p.lm);
    if (opts_.context) h.context = p.context_score + opts_.context->Final(p.context);
    h.score = h.ctc + (h.lm + h.context);
    out.push_back(std::move(h));
  }
  std::stable_sort(out.begin(), out.end(), [](const CtcHypothesis& a, const CtcHypothesis& b) {
    return a.score > b.score;
  });
  return out;
}

}  // namespace wenet_eff

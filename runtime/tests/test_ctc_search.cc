// CTC search: greedy collapsing, prefix beam search against brute-force enumeration of all
// alignments, and chunked search equal to one-shot search (also with a word LM, hotwords and a
// token floor, whose states carry over between chunks).
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "check.h"
#include "ctc_search.h"

using wenet_eff::CtcGreedySearch;
using wenet_eff::CtcPrefixBeamOptions;
using wenet_eff::CtcPrefixBeamSearch;

namespace {

CtcPrefixBeamOptions Beam(int beam_size, int token_beam = 0) {
  CtcPrefixBeamOptions o;
  o.beam_size = beam_size;
  o.token_beam = token_beam;
  return o;
}

std::vector<float> RandomLogProbs(int frames, int vocab, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> out(static_cast<size_t>(frames) * vocab);
  for (int t = 0; t < frames; ++t) {
    float* row = out.data() + static_cast<size_t>(t) * vocab;
    double sum = 0;
    for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] = dist(gen));
    for (int v = 0; v < vocab; ++v) row[v] -= static_cast<float>(std::log(sum));
  }
  return out;
}

// Exact log P(labelling) by enumerating every alignment (vocab^frames paths).
std::map<std::vector<int>, double> Enumerate(const std::vector<float>& lp, int frames, int vocab) {
  std::map<std::vector<int>, double> probs;
  std::vector<int> path(frames, 0);
  while (true) {
    double logp = 0;
    std::vector<int> label;
    int prev = -1;
    for (int t = 0; t < frames; ++t) {
      logp += lp[static_cast<size_t>(t) * vocab + path[t]];
      if (path[t] != 0 && path[t] != prev) label.push_back(path[t]);
      prev = path[t];
    }
    probs[label] += std::exp(logp);
    int t = 0;
    while (t < frames && ++path[t] == vocab) path[t++] = 0;
    if (t == frames) break;
  }
  return probs;
}

}  // namespace

int main() {
  {  // greedy: argmax path a a - b b - b -> [a, b, b]
    const int vocab = 3;
    std::vector<int> best = {1, 1, 0, 2, 2, 0, 2};
    std::vector<float> lp(best.size() * vocab, std::log(0.1f));
    for (size_t t = 0; t < best.size(); ++t) lp[t * vocab + best[t]] = std::log(0.8f);
    CtcGreedySearch greedy;
    greedy.Advance(lp.data(), 3, vocab);  // in two pieces: the repeat state carries over
    greedy.Advance(lp.data() + 3 * vocab, 4, vocab);
    CHECK((greedy.Best().tokens == std::vector<int>{1, 2, 2}));
  }
  {  // a full beam equals exact enumeration
    const int frames = 5, vocab = 3;
    auto lp = RandomLogProbs(frames, vocab, 1);
    auto exact = Enumerate(lp, frames, vocab);
    CtcPrefixBeamSearch search(Beam(1000, vocab));
    search.Advance(lp.data(), frames, vocab);
    auto nbest = search.NBest();
    // impossible labellings (longer than the frames allow) stay in the beam at -inf, as in
    // the Python search; every possible one is there with its exact probability
    size_t possible = 0;
    for (const auto& h : nbest) {
      if (std::isinf(h.score)) {
        CHECK(exact.count(h.tokens) == 0);
        continue;
      }
      ++possible;
      CHECK(exact.count(h.tokens) == 1);
      CHECK(exact.count(h.tokens) == 1 && std::abs(h.score - std::log(exact.at(h.tokens))) < 1e-5);
    }
    CHECK(possible == exact.size());
    for (size_t i = 1; i < nbest.size(); ++i) CHECK(nbest[i - 1].score >= nbest[i].score);
  }
  {  // chunked == one shot
    const int frames = 40, vocab = 12;
    auto lp = RandomLogProbs(frames, vocab, 2);
    CtcPrefixBeamSearch whole(Beam(5)), chunked(Beam(5));
    whole.Advance(lp.data(), frames, vocab);
    for (int t = 0; t < frames; t += 7)
      chunked.Advance(lp.data() + static_cast<size_t>(t) * vocab, std::min(7, frames - t), vocab);
    auto a = whole.NBest(), b = chunked.NBest();
    CHECK(a.size() == b.size());
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
      CHECK(a[i].tokens == b[i].tokens);
      CHECK(a[i].score == b[i].score);
    }
    CHECK(chunked.frames() == frames);
    chunked.Reset();
    CHECK(chunked.NBest().size() == 1 && chunked.NBest()[0].tokens.empty());
  }
  {  // chunked == one shot with fused scores; they change the n-best
    std::ofstream("unigram.arpa") << "\\data\\\nngram 1=5\n\\1-grams:\n-1.0\t<unk>\n-99\t<s>\n"
                                     "-1.2\t</s>\n-0.5\tA\n-0.7\tAB\n\\end\\\n";
    const int frames = 60, vocab = 5;  // <blank> <unk> ▁ A B
    auto lp = RandomLogProbs(frames, vocab, 3);
    CtcPrefixBeamOptions o = Beam(6);
    o.min_token_logp = -3.0;
    o.lm = std::make_shared<const wenet_eff::WordLmFusion>(
        std::make_shared<const wenet_eff::NgramLm>("unigram.arpa"),
        std::vector<wenet_eff::WordPiece>{
            {false, "<blank>"}, {false, "<unk>"}, {true, ""}, {false, "A"}, {false, "B"}},
        0.7, 0.3);
    o.context = std::make_shared<const wenet_eff::ContextGraph>(
        std::vector<std::vector<int>>{{3, 4, 2}}, 1.0);
    CtcPrefixBeamSearch whole(o), chunked(o), plain(Beam(6));
    whole.Advance(lp.data(), frames, vocab);
    plain.Advance(lp.data(), frames, vocab);
    for (int t = 0; t < frames; t += 9)
      chunked.Advance(lp.data() + static_cast<size_t>(t) * vocab, std::min(9, frames - t), vocab);
    auto a = whole.NBest(), b = chunked.NBest(), c = plain.NBest();
    CHECK(a.size() == b.size());
    bool differs = a.size() != c.size();
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
      CHECK(a[i].tokens == b[i].tokens && a[i].score == b[i].score);
      CHECK(a[i].score == a[i].ctc + (a[i].lm + a[i].context) && a[i].lm != 0);
      differs = differs || i >= c.size() || a[i].tokens != c[i].tokens;
    }
    CHECK(differs);
  }
  return TEST_RESULT();
}

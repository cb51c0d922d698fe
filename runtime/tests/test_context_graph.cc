// Context biasing: the boost of matched tokens, given back when a match breaks or the
// utterance ends unfinished, kept for completed phrases (also one completed inside a longer
// match that then breaks, and overlapping occurrences); phrases split by greedy longest match.
#include <string>
#include <unordered_map>
#include <vector>

#include "check.h"
#include "context_graph.h"

using wenet_eff::ContextGraph;

namespace {

// The total boost of `tokens` ending the utterance there.
double Boost(const ContextGraph& g, const std::vector<int>& tokens) {
  int state = g.Initial();
  double total = 0, delta;
  for (int t : tokens) {
    state = g.Extend(state, t, &delta);
    total += delta;
  }
  return total + g.Final(state);
}

}  // namespace

int main() {
  // phrases: 3 4 | 1 2 | 1 2 5 6 | 7 8 9 | 8 9 6
  ContextGraph g({{3, 4}, {1, 2}, {1, 2, 5, 6}, {7, 8, 9}, {8, 9, 6}, {}}, 2.0);
  CHECK(g.num_phrases() == 5);
  {  // per token while matching, kept once complete
    int state = g.Initial();
    double d;
    state = g.Extend(state, 3, &d);
    CHECK(d == 2.0 && g.Final(state) == -2.0);  // unfinished at the end: given back
    state = g.Extend(state, 4, &d);
    CHECK(d == 2.0 && g.Final(state) == 0.0);
    state = g.Extend(state, 10, &d);
    CHECK(d == 0.0 && state == 0);
  }
  CHECK(Boost(g, {3, 4}) == 4.0);
  CHECK(Boost(g, {3, 10, 4}) == 0.0);           // a broken match gives its boost back
  CHECK(Boost(g, {10, 3, 3, 4, 10}) == 4.0);    // 3 3 4: the match restarts at the second 3
  CHECK(Boost(g, {1, 2, 5, 10}) == 4.0);        // "1 2" completed inside "1 2 5 6" stays
  CHECK(Boost(g, {1, 2, 5, 6}) == 8.0);
  CHECK(Boost(g, {7, 8, 10}) == 0.0);
  CHECK(Boost(g, {7, 8, 9, 6}) == 12.0);        // "7 8 9" then "8 9 6" overlapping it
  CHECK(Boost(g, {7, 8, 6}) == 0.0);
  {  // greedy longest match: char units with "▁", word-start pieces, space-joined words
    std::unordered_map<std::string, int> units = {
        {"<blank>", 0}, {"\xe2\x96\x81", 1}, {"A", 2}, {"B", 3}, {"\xe2\x96\x81" "AB", 4},
        {"AB", 5}, {"\xc3\xa9", 6}};
    std::vector<int> ids;
    CHECK(wenet_eff::SplitPhrase(" AB  B", units, 7, "", &ids) &&
          (ids == std::vector<int>{4, 1, 3}));
    CHECK(wenet_eff::SplitPhrase("BAB \xc3\xa9", units, 7, "", &ids) &&
          (ids == std::vector<int>{3, 5, 1, 6}));  // the leading "▁" dropped
    CHECK(!wenet_eff::SplitPhrase("ABC", units, 7, "", &ids));
    CHECK(wenet_eff::SplitPhrase("AB A", units, 7, " ", &ids) && (ids == std::vector<int>{5, 2}));
    CHECK(!wenet_eff::SplitPhrase("AB C", units, 7, " ", &ids));
  }
  return TEST_RESULT();
}

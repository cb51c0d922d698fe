// ARPA loading and backoff scoring against values worked out by hand from a small ARPA file
// (seen n-grams, backoff through one and two orders, a trigram whose bigram context the file
// lacks), the vocabulary trie, word-LM fusion step by step, and load errors naming the file.
#include <cmath>
#include <fstream>
#include <stdexcept>
#include <string>

#include "check.h"
#include "ngram_lm.h"

using wenet_eff::LmState;
using wenet_eff::NgramLm;
using wenet_eff::WordLmFusion;

namespace {

const char kArpa[] =
    "\n\\data\\\nngram 1=6\nngram 2=4\nngram 3=2\n\n"
    "\\1-grams:\n-1.0\t<unk>\t0\n-99\t<s>\t-0.5\n-1.2\t</s>\n-0.7\tA\t-0.3\n-0.9\tAB\t-0.2\n"
    "-1.5\tB\t-0.1\n\n"
    "\\2-grams:\n-0.4\t<s> A\t-0.25\n-0.6\tA B\t-0.15\n-0.3\tA </s>\n-0.8\tB A\n\n"
    "\\3-grams:\n-0.05\t<s> A B\n-0.2\tAB B A\n\n\\end\\\n";

std::string Write(const std::string& name, const std::string& text) {
  std::ofstream(name) << text;
  return name;
}


std::string ErrorOf(const std::string& text) {
  try {
    NgramLm lm(Write("bad.arpa", text));
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

int main() {
  const double ln10 = std::log(10.0);
  NgramLm lm(Write("small.arpa", kArpa));
  CHECK(lm.order() == 3 && lm.num_words() == 3);
  CHECK((lm.counts() == std::vector<size_t>{6, 4, 2}));
  const int a = lm.FindWord("A"), ab = lm.FindWord("AB"), b = lm.FindWord("B");
  const int s = lm.bos(), e = lm.eos(), unk = lm.unk();
  CHECK(a >= 0 && ab >= 0 && b >= 0 && a != ab && ab != b);
  {  // the partial-word check knows words and their prefixes, not the special symbols
    NgramLm::Prefix p = lm.AnyWord(), q = lm.AnyWord();
    CHECK(!lm.Extend(&p, "C") && !lm.Extend(&p, "<") && lm.WordAt(p) == -1);
    CHECK(lm.Extend(&p, "A") && lm.WordAt(p) == a && !lm.Extend(&p, "BB"));
    CHECK(lm.Extend(&p, "B") && lm.WordAt(p) == ab && lm.Extend(&q, "AB") && lm.WordAt(q) == ab);
    CHECK(lm.FindWord("<unk>") == -1 && lm.FindWord("ABA") == -1 && lm.FindWord("") == -1);
  }
  {  // scores: seen, backed off once, twice, a missing context, the longest context only
    int32_t ctx[] = {s, a};
    CHECK(lm.LogProb(ctx, 2, b) == -0.05 * ln10);
    CHECK(lm.LogProb(ctx, 2, e) == (-0.3 + (0.0 + -0.25)) * ln10);
    int32_t ab_ctx[] = {a, b};
    CHECK(lm.LogProb(ab_ctx, 2, ab) == (-0.9 + (0.0 + -0.15 + -0.1)) * ln10);
    int32_t missing[] = {ab, b};  // no bigram "AB B", yet the trigram "AB B A"
    CHECK(lm.LogProb(missing, 2, a) == -0.2 * ln10);
    CHECK(lm.LogProb(missing, 2, unk) == (-1.0 + (0.0 + -0.1)) * ln10);
    int32_t longer[] = {b, s, a};  // only the last order-1 words count
    CHECK(lm.LogProb(longer, 3, b) == lm.LogProb(ctx, 2, b));
    CHECK(lm.LogProb(nullptr, 0, a) == -0.7 * ln10);
  }
  {  // fusion over the units <blank> <unk> ▁ A B: "AB A" then "BB" charged as <unk> at once
    std::vector<wenet_eff::WordPiece> pieces = {
        {false, "<blank>"}, {false, "<unk>"}, {true, ""}, {false, "A"}, {false, "B"}};
    auto shared = std::make_shared<const NgramLm>("small.arpa");
    WordLmFusion fusion(shared, pieces, 0.5, 1.0);
    double d = 1;
    LmState st = fusion.Extend(fusion.Initial(), 3, &d);
    CHECK(d == 0.0);
    st = fusion.Extend(st, 4, &d);
    CHECK(d == 0.0);
    st = fusion.Extend(st, 2, &d);  // "▁" completes AB
    int32_t start[] = {s};
    CHECK(d == 1.0 + 0.5 * lm.LogProb(start, 1, ab));
    LmState a_partial = fusion.Extend(st, 3, &d);
    int32_t after_ab[] = {s, ab}, ab_a[] = {ab, a};
    CHECK(fusion.Final(a_partial) ==
          1.0 + 0.5 * lm.LogProb(after_ab, 2, a) + 0.5 * lm.LogProb(ab_a, 2, e));
    LmState bb = fusion.Extend(fusion.Extend(st, 4, &d), 4, &d);
    CHECK(d == 0.5 * lm.LogProb(after_ab, 2, unk) && bb.partial.size == -1);
    fusion.Extend(bb, 3, &d);  // charged once only
    CHECK(d == 0.0);
    int32_t ab_unk[] = {ab, unk};
    CHECK(fusion.Final(bb) == 1.0 + 0.5 * lm.LogProb(ab_unk, 2, e));
  }
  {  // word pieces: "▁" marks a word start, space-joined units are words of their own
    std::ofstream("units.txt") << "<blank> 0\n<unk> 1\n\xe2\x96\x81THE 2\nS 3\n\xe2\x96\x81 4\n";
    wenet_eff::SymbolTable units("units.txt");
    using wenet_eff::WordPiece;
    auto pieces = wenet_eff::WordPieces(units, "");
    CHECK(pieces[2] == WordPiece(true, "THE") && pieces[3] == WordPiece(false, "S"));
    CHECK(pieces[4] == WordPiece(true, "") && pieces[1] == WordPiece(false, "<unk>"));
    CHECK(wenet_eff::WordPieces(units, " ")[3] == WordPiece(true, "S"));
  }
  {  // errors name the file, the line and what is wrong
    std::string text = kArpa;
    std::string err = ErrorOf(std::string(text).replace(text.find("-0.6\tA B"), 14, "-0.6\tA"));
    CHECK(err.find("bad.arpa:") != std::string::npos &&
          err.find("not a 2-gram line") != std::string::npos);
    err = ErrorOf(std::string(text).replace(text.find("ngram 2=4"), 9, "ngram 2=5"));
    CHECK(err.find("header says 5 2-grams, the file has 4") != std::string::npos);
    err = ErrorOf(std::string(text).replace(text.find("-1.0\t<unk>\t0"), 12, "-1.0\tC\t0"));
    CHECK(err.find("no <unk> unigram") != std::string::npos);
    err = ErrorOf(std::string(text).replace(text.find("-0.8\tB A"), 8, "-0.8\tB Z"));
    CHECK(err.find("bad.arpa:19: word 'Z' is not among the 1-grams") != std::string::npos);
    CHECK(ErrorOf("hello\n").find("unexpected line 'hello'") != std::string::npos);
    CHECK(ErrorOf("\n").find("no \\data\\ header") != std::string::npos);
  }
  return TEST_RESULT();
}

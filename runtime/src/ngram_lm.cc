#include "ngram_lm.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string_view>

namespace wenet_eff {

namespace {

constexpr int kWordBits = 24;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kLog10 = std::log(10.0);
const char* const kSpecials[] = {"<s>", "</s>", "<unk>"};  // word ids 0, 1, 2

uint64_t Key(int64_t context, int32_t word) {
  return (static_cast<uint64_t>(context) << kWordBits) | static_cast<uint32_t>(word);
}

// Python's str.strip() for ASCII whitespace.
std::string Strip(const std::string& s) {
  const char* space = " \t\r\n\v\f";
  const size_t first = s.find_first_not_of(space);
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(space) - first + 1);
}

// Python's str.split() for ASCII whitespace.
void Split(const std::string& line, std::vector<std::string>* fields) {
  fields->clear();
  size_t i = 0;
  while (true) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    if (i == line.size()) return;
    size_t j = i;
    while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j]))) ++j;
    fields->emplace_back(line, i, j - i);
    i = j;
  }
}

}  // namespace

namespace {

// Word text -> id while an ARPA file loads: the texts in one buffer, open addressing on their
// hashes, the text compared (on a 64-bit hash collision the probe goes on with the next key).
class WordIds {
 public:
  WordIds() {
    for (const char* special : kSpecials) Add(special);
  }
  void Reserve(size_t n) { index_.Reserve(n); }
  int32_t Find(std::string_view word) const {
    for (uint64_t h = std::hash<std::string_view>{}(word);; h = Next(h)) {
      const int64_t id = index_.Find(h == HashIndex::kEmpty ? 0 : h);
      if (id < 0 || Word(static_cast<int32_t>(id)) == word) return static_cast<int32_t>(id);
    }
  }
  int32_t Add(std::string_view word) {  // `word` must be new
    const auto id = static_cast<int32_t>(size());
    uint64_t h = std::hash<std::string_view>{}(word);
    while (index_.Insert(h == HashIndex::kEmpty ? 0 : h, id) != static_cast<uint32_t>(id))
      h = Next(h);
    bytes_.insert(bytes_.end(), word.begin(), word.end());
    start_.push_back(bytes_.size());
    return id;
  }
  std::string_view Word(int32_t id) const {
    return {bytes_.data() + start_[id], start_[id + 1] - start_[id]};
  }
  size_t size() const { return start_.size() - 1; }

 private:
  static uint64_t Next(uint64_t h) { return h * 0x9E3779B97F4A7C15ULL + 1; }
  HashIndex index_;
  std::vector<char> bytes_;
  std::vector<size_t> start_ = {0};
};

}  // namespace

NgramLm::NgramLm(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open the ARPA file");
  WordIds ids;  // while loading only
  std::vector<size_t> found;
  std::vector<std::string> fields;
  std::vector<int32_t> words;
  std::string raw;
  size_t line_no = 0;
  int section = 0;
  auto fail = [&](const std::string& what) {
    throw std::runtime_error(path + ":" + std::to_string(line_no) + ": " + what);
  };
  auto start_sections = [&]() {  // once the header is read: the tables, sized by its counts
    if (!orders_.empty()) return;
    orders_.resize(order_);
    found.assign(order_, 0);
    ids.Reserve(counts_[0]);
    for (int n = 1; n < order_; ++n) orders_[n].index.Reserve(counts_[n]);
    for (int n = 1; n <= order_; ++n) {
      orders_[n - 1].prob.reserve(counts_[n - 1]);
      if (n < order_) orders_[n - 1].bow.reserve(counts_[n - 1]);
    }
    orders_[0].prob.assign(3, kNaN);
    orders_[0].bow.assign(3, 0.0);
  };
  while (std::getline(in, raw)) {
    ++line_no;
    Split(raw, &fields);
    if (fields.empty()) continue;
    const std::string line = Strip(raw);
    if (line == "\\data\\") continue;
    if (line == "\\end\\") break;
    if (section == 0 && fields[0] == "ngram") {
      int n = 0;
      long long count = -1;
      char rest = 0;
      if (std::sscanf(line.c_str() + 5, " %d = %lld %c", &n, &count, &rest) != 2 || n < 1 ||
          count < 0)
        fail("expected 'ngram N=COUNT', got '" + line + "'");
      if (n > kMaxOrder)
        fail("order " + std::to_string(n) + ": the runtime takes n-grams up to order " +
             std::to_string(kMaxOrder));
      if (static_cast<int>(counts_.size()) < n) counts_.resize(n, 0);
      counts_[n - 1] = static_cast<size_t>(count);
      order_ = std::max(order_, n);
    } else if (fields.size() == 1 && line[0] == '\\' && line.size() > 8 &&
               line.compare(line.size() - 7, 7, "-grams:") == 0) {
      section = std::atoi(line.c_str() + 1);
      if (counts_.empty()) fail("an n-gram section before the \\data\\ header: not an ARPA file");
      if (section < 1 || section > order_)
        fail("'" + line + "': the \\data\\ header declares orders 1 to " +
             std::to_string(order_));
      start_sections();
    } else if (section > 0) {
      const size_t n = static_cast<size_t>(section);
      if (fields.size() != n + 1 && fields.size() != n + 2)
        fail("not a " + std::to_string(n) + "-gram line: '" + line + "'");
      char* end = nullptr;
      const double prob = std::strtod(fields[0].c_str(), &end);
      if (*end != '\0') fail("'" + fields[0] + "' is not a number");
      double bow = kNaN;  // none given
      if (fields.size() == n + 2) {
        bow = std::strtod(fields[n + 1].c_str(), &end);
        if (*end != '\0') fail("'" + fields[n + 1] + "' is not a number");
      }
      words.clear();
      for (size_t i = 1; i <= n; ++i) {
        int32_t id = ids.Find(fields[i]);
        if (id < 0) {
          if (n > 1) fail("word '" + fields[i] + "' is not among the 1-grams");
          if (ids.size() >= (size_t{1} << kWordBits)) fail("more than 2^24 words");
          id = ids.Add(fields[i]);
          orders_[0].prob.push_back(kNaN);
          orders_[0].bow.push_back(0.0);
        }
        words.push_back(id);
      }
      if (orders_[n - 1].prob.size() >= (size_t{1} << 32) - 1)
        fail("more than 2^32 n-grams of one order");
      if (Add(words.data(), static_cast<int>(n), prob, bow)) ++found[n - 1];
    } else {
      fail("unexpected line '" + line + "'");
    }
  }
  if (counts_.empty()) throw std::runtime_error(path + ": no \\data\\ header: not an ARPA file");
  start_sections();
  for (int n = 1; n <= order_; ++n)
    if (found[n - 1] != counts_[n - 1])
      throw std::runtime_error(path + ": header says " + std::to_string(counts_[n - 1]) + " " +
                               std::to_string(n) + "-grams, the file has " +
                               std::to_string(found[n - 1]));
  for (int special : {kUnk, kEos})
    if (std::isnan(orders_[0].prob[special]))
      throw std::runtime_error(path + ": the LM has no " + kSpecials[special] +
                               " unigram: train it with an open vocabulary");
  // the vocabulary (all but <s>, </s>, <unk>) sorted by bytes
  vocab_size_ = ids.size() - 3;
  sorted_ids_.resize(vocab_size_);
  std::iota(sorted_ids_.begin(), sorted_ids_.end(), 3);
  std::sort(sorted_ids_.begin(), sorted_ids_.end(),
            [&ids](int32_t a, int32_t b) { return ids.Word(a) < ids.Word(b); });
  word_start_.reserve(vocab_size_ + 1);
  for (int32_t id : sorted_ids_) {
    word_start_.push_back(static_cast<uint32_t>(word_bytes_.size()));
    word_bytes_.insert(word_bytes_.end(), ids.Word(id).begin(), ids.Word(id).end());
  }
  word_start_.push_back(static_cast<uint32_t>(word_bytes_.size()));
}

bool NgramLm::Add(const int32_t* words, int n, double prob, double bow) {
  // the n-gram's entry; contexts the file lacks become context-only entries (NaN)
  int64_t id = words[0];
  for (int j = 1; j < n; ++j) {
    Order& o = orders_[j];
    const size_t next = o.prob.size();
    id = o.index.Insert(Key(id, words[j]), static_cast<uint32_t>(next));
    if (static_cast<size_t>(id) == next) {
      o.prob.push_back(kNaN);
      if (j + 1 < order_) o.bow.push_back(0.0);
    }
  }
  Order& o = orders_[n - 1];
  const bool fresh = std::isnan(o.prob[id]);
  o.prob[id] = prob;
  if (!std::isnan(bow) && n < order_) o.bow[id] = bow;
  return fresh;
}

namespace {

// -1, 0, 1: the bytes of `word` from `from` on (at most text.size() of them) against `text`.
int CompareFrom(const char* word, size_t size, size_t from, const std::string& text) {
  const size_t n = std::min(size - from, text.size());
  const int c = std::memcmp(word + from, text.data(), n);
  if (c != 0) return c < 0 ? -1 : 1;
  return n < text.size() ? -1 : 0;
}

}  // namespace

bool NgramLm::Extend(Prefix* prefix, const std::string& text) const {
  const size_t from = static_cast<size_t>(prefix->size);
  auto compare = [&](int32_t i) {
    return CompareFrom(word_bytes_.data() + word_start_[i], word_start_[i + 1] - word_start_[i],
                       from, text);
  };
  int32_t lo = prefix->begin, hi = prefix->end;
  while (lo < hi) {  // the first word whose bytes from `from` on reach `text`
    const int32_t mid = lo + (hi - lo) / 2;
    if (compare(mid) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  int32_t end = lo, top = prefix->end;
  while (end < top) {  // past the last word that goes on with `text`
    const int32_t mid = end + (top - end) / 2;
    if (compare(mid) <= 0)
      end = mid + 1;
    else
      top = mid;
  }
  if (lo == end) return false;
  *prefix = {lo, end, prefix->size + static_cast<int32_t>(text.size())};
  return true;
}

int NgramLm::WordAt(const Prefix& prefix) const {
  if (prefix.size <= 0 || prefix.begin == prefix.end) return -1;
  const uint32_t size = word_start_[prefix.begin + 1] - word_start_[prefix.begin];
  return size == static_cast<uint32_t>(prefix.size) ? sorted_ids_[prefix.begin] : -1;
}

int NgramLm::FindWord(const std::string& word) const {
  Prefix p = AnyWord();
  return !word.empty() && Extend(&p, word) ? WordAt(p) : -1;
}

int64_t NgramLm::Find(const int32_t* words, int n) const {
  int64_t id = words[0];
  for (int j = 1; j < n && id >= 0; ++j) id = orders_[j].index.Find(Key(id, words[j]));
  return id;
}

double NgramLm::LogProb(const int32_t* context, int n, int word) const {
  const int k = order_ > 1 ? std::min(n, order_ - 1) : 0;
  const int32_t* ctx = context + (n - k);
  double backoff = 0.0;
  for (int len = k; len > 0; --len, ++ctx) {
    const int64_t c = Find(ctx, len);
    if (c < 0) continue;  // an unseen context backs off at 0 (and has no n-grams)
    const int64_t id = orders_[len].index.Find(Key(c, word));
    if (id >= 0 && !std::isnan(orders_[len].prob[id]))
      return (orders_[len].prob[id] + backoff) * kLog10;
    backoff += orders_[len - 1].bow[c];
  }
  const double p = orders_[0].prob[word];
  if (std::isnan(p))
    throw std::runtime_error("the LM has no unigram for word id " + std::to_string(word));
  return (p + backoff) * kLog10;
}

size_t NgramLm::MemoryBytes() const {
  size_t bytes = word_bytes_.capacity() + word_start_.capacity() * sizeof(uint32_t) +
                 sorted_ids_.capacity() * sizeof(int32_t);
  for (const Order& o : orders_)
    bytes += o.index.bytes() + (o.prob.capacity() + o.bow.capacity()) * sizeof(double);
  return bytes;
}

std::vector<WordPiece> WordPieces(const SymbolTable& symbols, const std::string& join) {
  static const std::string kSpace = "\xe2\x96\x81";  // "▁"
  std::vector<WordPiece> pieces;
  for (int id = 0; id < symbols.size(); ++id) {
    std::string text = symbols.Symbol(id);
    if (join == " ") {
      pieces.emplace_back(true, text);
      continue;
    }
    const bool starts = text.compare(0, kSpace.size(), kSpace) == 0;
    for (size_t pos = text.find(kSpace); pos != std::string::npos; pos = text.find(kSpace, pos))
      text.erase(pos, kSpace.size());
    pieces.emplace_back(starts, text);
  }
  return pieces;
}

WordLmFusion::WordLmFusion(std::shared_ptr<const NgramLm> lm, std::vector<WordPiece> pieces,
                           double weight, double word_bonus)
    : lm_(std::move(lm)), pieces_(std::move(pieces)), weight_(weight), word_bonus_(word_bonus) {}

LmState WordLmFusion::Initial() const {
  LmState s;
  s.history[0] = lm_->bos();
  s.history_size = 1;
  return s;
}

LmState WordLmFusion::Complete(const LmState& state, double* score) const {
  if (state.partial.size == 0) {
    *score = 0.0;
    return state;
  }
  *score = word_bonus_;
  int word = lm_->unk();
  if (state.partial.size > 0) {
    const int w = lm_->WordAt(state.partial);
    if (w >= 0) word = w;
    *score += weight_ * lm_->LogProb(state.history.data(), state.history_size, word);
  }
  LmState next;
  const int keep = std::max(lm_->order() - 1, 1);
  const int drop = std::max(state.history_size + 1 - keep, 0);
  for (int i = drop; i < state.history_size; ++i)
    next.history[next.history_size++] = state.history[i];
  next.history[next.history_size++] = word;
  return next;
}

LmState WordLmFusion::Extend(const LmState& state, int token, double* delta) const {
  const WordPiece& piece = pieces_[token];
  double score = 0.0;
  LmState next = piece.first ? Complete(state, &score) : state;
  if (next.partial.size >= 0 && !piece.second.empty()) {
    if (next.partial.size == 0) next.partial = lm_->AnyWord();
    if (!lm_->Extend(&next.partial, piece.second)) {
      score += weight_ * lm_->LogProb(next.history.data(), next.history_size, lm_->unk());
      next.partial.size = -1;
    }
  }
  *delta = score;
  return next;
}

double WordLmFusion::Final(const LmState& state) const {
  double score = 0.0;
  const LmState last = Complete(state, &score);
  return score + weight_ * lm_->LogProb(last.history.data(), last.history_size, lm_->eos());
}

}  // namespace wenet_eff

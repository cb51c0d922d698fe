// Word n-gram language models in the ARPA format and their shallow fusion into CTC prefix beam
// search, the C++ side of wenet_eff.decode.lm (NgramLM.read_arpa, NgramLM.logprob,
// WordLmFusion): the same scores, bit for bit (double precision throughout, ARPA values parsed
// as Python's float() parses them), so both searches keep the same beams.
//
// Memory: one NgramLm is loaded once and shared read-only (std::shared_ptr<const NgramLm>) by
// every decoder and stream; a stream keeps only small per-prefix states (LmState). Words are
// integer ids; unigrams are arrays indexed by word id, and each higher order is an
// open-addressing hash table of 64-bit keys (the id of the n-gram's (n-1)-word context << 24 |
// last word id) -> the n-gram's index into its order's probability (and backoff) arrays. The
// vocabulary is kept once, sorted, for the "can the partial word still become a word" check.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "hash_index.h"
#include "symbol_table.h"

namespace wenet_eff {

class NgramLm {
 public:
  static constexpr int kMaxOrder = 8;
  // Loads an ARPA file (ours, KenLM's or SRILM's). Throws std::runtime_error naming the file
  // and line of a malformed line, a count that disagrees with the \data\ header, or a missing
  // <unk> or </s> unigram.
  explicit NgramLm(const std::string& arpa_path);

  int order() const { return order_; }
  int bos() const { return kBos; }
  int eos() const { return kEos; }
  int unk() const { return kUnk; }
  size_t num_words() const { return vocab_size_; }  // without <s>, </s>, <unk>
  // n-grams per order, as the \data\ header counts them
  const std::vector<size_t>& counts() const { return counts_; }
  // Bytes of the model's tables (capacity, not size).
  size_t MemoryBytes() const;

  // Natural-log P(word | the last words of context[0..n)), with ARPA backoff; `word` and the
  // context are word ids (out-of-vocabulary words are <unk>).
  double LogProb(const int32_t* context, int n, int word) const;

  // The vocabulary words that start with a partial word (the words [begin, end) of the
  // vocabulary sorted by bytes, which all share its first `size` bytes).
  struct Prefix {
    int32_t begin = 0, end = 0, size = 0;
  };
  Prefix AnyWord() const { return {0, static_cast<int32_t>(vocab_size_), 0}; }
  // Narrows *prefix to the words that go on with `text`; false (*prefix unchanged) when none.
  bool Extend(Prefix* prefix, const std::string& text) const;
  // The word id the prefix spells, or -1 when it is only the start of words.
  int WordAt(const Prefix& prefix) const;
  // The id of a vocabulary word, or -1 (<s>, </s>, <unk> are not vocabulary words).
  int FindWord(const std::string& word) const;

 private:
  static constexpr int kBos = 0, kEos = 1, kUnk = 2;
  struct Order {
    HashIndex index;           // (context id << 24 | word) -> n-gram id
    std::vector<double> prob;  // log10; NaN: only a context of higher orders
    std::vector<double> bow;   // log10 backoff weights (none for the highest order)
  };
  // The id of the n-gram words[0..n) in its order (n >= 1), or -1.
  int64_t Find(const int32_t* words, int n) const;
  // Sets the n-gram's log10 probability and backoff weight (NaN: none given); true when it
  // was not in the model yet.
  bool Add(const int32_t* words, int n, double prob, double bow);

  int order_ = 0;
  std::vector<size_t> counts_;
  std::vector<Order> orders_;  // [n - 1]: n-grams of order n ([0]: unigrams, by word id)
  size_t vocab_size_ = 0;
  // the vocabulary sorted by bytes: word i is word_bytes_[word_start_[i], word_start_[i + 1])
  std::vector<char> word_bytes_;
  std::vector<uint32_t> word_start_;
  std::vector<int32_t> sorted_ids_;  // word id of each
};

// The fusion state of a prefix: the last words (oldest first) and the partial word, as the
// vocabulary words it starts (partial.size 0: none; -1: charged as <unk>, as no word starts so).
struct LmState {
  std::array<int32_t, NgramLm::kMaxOrder - 1> history{};
  int32_t history_size = 0;
  NgramLm::Prefix partial;
};

// Per token id: whether it starts a new word and its text without "▁"
// (wenet_eff.data.tokenizer.Tokenizer.word_pieces).
using WordPiece = std::pair<bool, std::string>;

// The word pieces of units.txt: with `join` " " every unit is a word of its own, else a unit
// starts a word when it begins with "▁" (non-language symbols are not known to the runtime
// and follow the same rule).
std::vector<WordPiece> WordPieces(const SymbolTable& symbols, const std::string& join);

// Shallow fusion of a word LM: weight * ln P(word | history) + word_bonus for each completed
// word, <unk> charged as soon as the partial word can no longer become a vocabulary word,
// </s> at the end (wenet_eff.decode.lm.WordLmFusion).
class WordLmFusion {
 public:
  WordLmFusion(std::shared_ptr<const NgramLm> lm, std::vector<WordPiece> pieces, double weight,
               double word_bonus);
  LmState Initial() const;
  // The state after appending `token`; *delta: the score change.
  LmState Extend(const LmState& state, int token, double* delta) const;
  // The score change of ending the utterance: the last word and </s>.
  double Final(const LmState& state) const;
  const NgramLm& lm() const { return *lm_; }
  int num_pieces() const { return static_cast<int>(pieces_.size()); }

 private:
  LmState Complete(const LmState& state, double* score) const;
  std::shared_ptr<const NgramLm> lm_;
  std::vector<WordPiece> pieces_;
  double weight_, word_bonus_;
};

}  // namespace wenet_eff

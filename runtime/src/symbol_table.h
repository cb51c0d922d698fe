// units.txt (WeNet format: "symbol id" per line) and token ids -> text, as
// wenet_eff.data.tokenizer.Tokenizer.detokenize does it: the silent ids (blank, sos, eos,
// wherever the units put them) left out, tokens joined (with "" for characters and
// sentencepiece pieces, " " for space-split units), "▁" becomes a space, whitespace runs
// collapse and the ends are stripped.
#pragma once

#include <set>
#include <string>
#include <vector>

namespace wenet_eff {

class SymbolTable {
 public:
  // Throws std::runtime_error naming the file and line for a missing file or a bad line.
  // `silent`: ids Detokenize leaves out (the model's blank, sos and eos).
  explicit SymbolTable(const std::string& path, std::set<int> silent = {});

  int size() const { return static_cast<int>(symbols_.size()); }
  const std::string& Symbol(int id) const;
  std::string Detokenize(const std::vector<int>& ids, const std::string& join) const;

 private:
  std::vector<std::string> symbols_;
  std::set<int> silent_;
};

}  // namespace wenet_eff

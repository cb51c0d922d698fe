// units.txt (WeNet format: "symbol id" per line) and token ids -> text, as
// wenet_eff.data.tokenizer.Tokenizer.detokenize does it: tokens joined (with "" for characters
// and sentencepiece pieces, " " for space-split units), "▁" becomes a space, whitespace runs
// collapse and the ends are stripped.
#pragma once

#include <string>
#include <vector>

namespace wenet_eff {

class SymbolTable {
 public:
  // Throws std::runtime_error naming the file and line for a missing file or a bad line.
  explicit SymbolTable(const std::string& path);

  int size() const { return static_cast<int>(symbols_.size()); }
  const std::string& Symbol(int id) const;
  std::string Detokenize(const std::vector<int>& ids, const std::string& join) const;

 private:
  std::vector<std::string> symbols_;
};

}  // namespace wenet_eff

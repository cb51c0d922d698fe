// SymbolTable: ids -> text leaves the silent ids (blank, sos, eos) out wherever the units put
// them (<sos/eos> at 2 as in WeNet's current recipes, or last as in older ones), joins, turns
// "▁" into spaces; an id outside the units is an error, silent or not.
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "symbol_table.h"

using wenet_eff::SymbolTable;

namespace {

void WriteUnits(const std::string& path, const std::vector<std::string>& symbols) {
  std::ofstream out(path);
  for (size_t i = 0; i < symbols.size(); ++i) out << symbols[i] << " " << i << "\n";
}

bool Throws(const SymbolTable& table, const std::vector<int>& ids) {
  try {
    table.Detokenize(ids, "");
  } catch (const std::out_of_range&) {
    return true;
  }
  return false;
}

}  // namespace

int main() {
  const std::string kSpace = "\xe2\x96\x81";
  WriteUnits("sos2_units.txt", {"<blank>", "<unk>", "<sos/eos>", "a", "b", kSpace});
  SymbolTable sos2("sos2_units.txt", {0, 2});
  CHECK(sos2.size() == 6 && sos2.Symbol(2) == "<sos/eos>");
  CHECK(sos2.Detokenize({0, 3, 2, 4, 5, 0, 3, 2}, "") == "ab a");
  CHECK(sos2.Detokenize({2, 3, 4}, " ") == "a b");  // the join skips silent ids too
  CHECK(sos2.Detokenize({2, 0}, "") == "");
  CHECK(Throws(sos2, {6}) && Throws(sos2, {-1}));

  WriteUnits("soslast_units.txt", {"<blank>", "<unk>", "a", "b", kSpace, "<sos/eos>"});
  SymbolTable soslast("soslast_units.txt", {0, 5});
  CHECK(soslast.Detokenize({5, 2, 4, 3, 5}, "") == "a b" && soslast.Detokenize({1}, "") == "<unk>");
  SymbolTable plain("soslast_units.txt");
  CHECK(plain.Detokenize({2, 5}, "") == "a<sos/eos>");
  return TEST_RESULT();
}

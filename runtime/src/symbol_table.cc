#include "symbol_table.h"

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace wenet_eff {

SymbolTable::SymbolTable(const std::string& path, std::set<int> silent)
    : silent_(std::move(silent)) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open units file");
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::string symbol;
    long id = -1;
    if (!(fields >> symbol >> id) || id < 0 || id > 10000000)
      throw std::runtime_error(path + ":" + std::to_string(line_no) +
                               ": expected 'symbol id', got '" + line + "'");
    if (static_cast<size_t>(id) >= symbols_.size()) symbols_.resize(id + 1);
    symbols_[id] = symbol;
  }
  if (symbols_.empty()) throw std::runtime_error(path + ": no units");
}

const std::string& SymbolTable::Symbol(int id) const {
  if (id < 0 || id >= size())
    throw std::out_of_range("token id " + std::to_string(id) + " outside the vocabulary");
  return symbols_[id];
}

std::string SymbolTable::Detokenize(const std::vector<int>& ids, const std::string& join) const {
  static const std::string kSpace = "\xe2\x96\x81";  // U+2581 "▁"
  std::string joined;
  bool first = true;
  for (int id : ids) {
    const std::string& symbol = Symbol(id);  // checks the range of silent ids too
    if (silent_.count(id)) continue;
    if (!first) joined += join;
    joined += symbol;
    first = false;
  }
  for (size_t pos = joined.find(kSpace); pos != std::string::npos;
       pos = joined.find(kSpace, pos + 1))
    joined.replace(pos, kSpace.size(), " ");
  std::string text;
  std::istringstream words(joined);
  std::string word;
  while (words >> word) {
    if (!text.empty()) text += ' ';
    text += word;
  }
  return text;
}

}  // namespace wenet_eff

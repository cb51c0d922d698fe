#include "context_graph.h"

#include <algorithm>
#include <cctype>
#include <deque>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

namespace wenet_eff {

namespace {

const char kSpace[] = "\xe2\x96\x81";  // "▁"

uint64_t Key(int node, int token) {
  return (static_cast<uint64_t>(node) << 32) | static_cast<uint32_t>(token);
}

// Byte offsets of the UTF-8 code points of `s`, and s.size() at the end.
std::vector<size_t> CodePoints(const std::string& s) {
  std::vector<size_t> starts;
  for (size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) starts.push_back(i);
  starts.push_back(s.size());
  return starts;
}

}  // namespace

ContextGraph::ContextGraph(const std::vector<std::vector<int>>& phrases, double score)
    : score_(score), depth_(1, 0) {
  std::vector<bool> is_end(1, false);
  std::vector<std::vector<std::pair<int, int>>> children(1);  // (token, child) per node
  for (const auto& phrase : phrases) {
    int node = 0;
    for (int token : phrase) {
      const auto fresh = static_cast<uint32_t>(depth_.size());
      const int child = static_cast<int>(next_.Insert(Key(node, token), fresh));
      if (child == static_cast<int>(fresh)) {
        children[node].emplace_back(token, child);
        depth_.push_back(depth_[node] + 1);
        is_end.push_back(false);
        children.emplace_back();
      }
      node = child;
    }
    if (node != 0) is_end[node] = true;
  }
  num_phrases_ = static_cast<int>(std::count(is_end.begin(), is_end.end(), true));
  // failure links breadth first: a node's link is shallower, so it is known when needed
  fail_.assign(depth_.size(), 0);
  kept_.assign(depth_.size(), 0);
  std::deque<int> queue = {0};
  while (!queue.empty()) {
    const int node = queue.front();
    queue.pop_front();
    for (const auto& [token, child] : children[node]) {
      if (node != 0) fail_[child] = Goto(fail_[node], token);
      kept_[child] = is_end[child] ? depth_[child] : kept_[node];
      queue.push_back(child);
    }
  }
}

int ContextGraph::Child(int node, int token) const {
  return static_cast<int>(next_.Find(Key(node, token)));
}

int ContextGraph::Goto(int node, int token) const {
  int child;
  while ((child = Child(node, token)) < 0 && node != 0) node = fail_[node];
  return child < 0 ? 0 : child;
}

int ContextGraph::Extend(int state, int token, double* delta) const {
  const int child = Child(state, token);
  if (child >= 0) {
    *delta = score_;
    return child;
  }
  const int node = Goto(state, token);
  *delta = score_ * depth_[node] - Unfinished(state);
  return node;
}

bool SplitPhrase(const std::string& phrase, const std::unordered_map<std::string, int>& units,
                 size_t longest_unit, const std::string& join, std::vector<int>* ids) {
  ids->clear();
  std::istringstream in(phrase);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  if (join == " ") {
    for (const auto& w : words) {
      auto it = units.find(w);
      if (it == units.end()) return false;
      ids->push_back(it->second);
    }
    return true;
  }
  std::string text = kSpace;
  for (size_t i = 0; i < words.size(); ++i) text += (i > 0 ? kSpace : "") + words[i];
  const std::vector<size_t> cp = CodePoints(text);
  const size_t n = cp.size() - 1;
  for (size_t i = 0; i < n;) {
    size_t j = std::min(n, i + longest_unit);
    for (; j > i; --j) {
      auto it = units.find(text.substr(cp[i], cp[j] - cp[i]));
      if (it != units.end()) {
        ids->push_back(it->second);
        break;
      }
    }
    if (j == i) return false;
    i = j;
  }
  auto space = units.find(kSpace);
  if (!ids->empty() && space != units.end() && ids->front() == space->second)
    ids->erase(ids->begin());
  return true;
}

std::shared_ptr<const ContextGraph> ContextGraph::FromFile(const std::string& path,
                                                           const SymbolTable& symbols,
                                                           const std::string& join,
                                                           double score) {
  std::unordered_map<std::string, int> units;
  size_t longest = 0;
  for (int id = 0; id < symbols.size(); ++id) {
    const std::string& unit = symbols.Symbol(id);
    units.emplace(unit, id);
    longest = std::max(longest, CodePoints(unit).size() - 1);
  }
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open the context phrase file");
  std::vector<std::vector<int>> phrases;
  std::vector<int> ids;
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r\n\v\f") == std::string::npos) continue;
    if (!SplitPhrase(line, units, longest, join, &ids)) {
      std::cerr << path << ":" << line_no << ": phrase '" << line
                << "' has text no unit covers: skipped\n";
    } else if (!ids.empty()) {
      phrases.push_back(ids);
    }
  }
  if (phrases.empty())
    throw std::runtime_error(path +
                             ": no phrase could be split into units (units.txt): give one "
                             "phrase per line in the units' alphabet");
  return std::make_shared<const ContextGraph>(phrases, score);
}

}  // namespace wenet_eff

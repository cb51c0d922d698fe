// The weights of a runtime model directory (wenet_eff.export.weights): weights.bin holds every
// constant of every graph once, at 64-byte aligned offsets; weights.json names them
// ({"tensors": [{name, dtype, shape, offset}], "graphs": [{file, constants: [[constant in
// the graph, tensor], ...]}]}).
// The .pt2 graphs are compiled without constants; packed layers are stored as their packed
// records (b-bit levels, float16 scales, zero points, N:M positions) and the graphs unpack them
// once, when AOTInductor folds its constants after they are handed over.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include <ATen/Tensor.h>

namespace wenet_eff {

class WeightFile {
 public:
  // Reads model_dir/weights.json and the file it names. Throws std::runtime_error naming the
  // file when one is missing, malformed or shorter than its index says.
  explicit WeightFile(const std::string& model_dir);

  // {constant name in graph `graph_file`: tensor}, views of the file's bytes (kept alive by
  // this object). Throws when weights.json has no entry for the graph.
  std::unordered_map<std::string, at::Tensor> Constants(const std::string& graph_file) const;
  int64_t bytes() const { return bytes_; }

 private:
  std::string index_path_;
  at::Tensor blob_;  // uint8, the whole of weights.bin
  int64_t bytes_ = 0;
  std::unordered_map<std::string, at::Tensor> tensors_;
  std::unordered_map<std::string, std::vector<std::pair<std::string, std::string>>> graphs_;
};

}  // namespace wenet_eff

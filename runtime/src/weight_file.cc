#include "weight_file.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include <ATen/ATen.h>

#include "json.h"

namespace wenet_eff {

namespace {

at::ScalarType ParseDtype(const std::string& name, const std::string& where) {
  static const std::unordered_map<std::string, at::ScalarType> kTypes{
      {"float32", at::kFloat}, {"float16", at::kHalf}, {"bfloat16", at::kBFloat16},
      {"int8", at::kChar},     {"uint8", at::kByte},   {"int16", at::kShort},
      {"int32", at::kInt},     {"int64", at::kLong},   {"bool", at::kBool}};
  auto it = kTypes.find(name);
  if (it == kTypes.end()) throw std::runtime_error(where + ": dtype '" + name + "' unknown");
  return it->second;
}

}  // namespace

WeightFile::WeightFile(const std::string& model_dir) : index_path_(model_dir + "/weights.json") {
  std::ifstream index_in(index_path_, std::ios::binary);
  if (!index_in)
    throw std::runtime_error(index_path_ + ": cannot open (export the model again with "
                             "wenet_eff.bin.export: its graphs read their weights from it)");
  std::ostringstream text;
  text << index_in.rdbuf();
  try {
    const Json j = Json::Parse(text.str());
    if (j.StringOr("format", "") != "wenet_eff.weights/2")
      throw std::runtime_error("format is not wenet_eff.weights/2 (export the model again)");
    const std::string blob_path = model_dir + "/" + j["file"].String();
    bytes_ = static_cast<int64_t>(j["bytes"].Number());
    std::ifstream in(blob_path, std::ios::binary | std::ios::ate);
    if (!in) throw std::runtime_error(blob_path + ": cannot open");
    const int64_t size = static_cast<int64_t>(in.tellg());
    if (size < bytes_)
      throw std::runtime_error(blob_path + ": " + std::to_string(size) + " bytes, the index says " +
                               std::to_string(bytes_));
    blob_ = at::empty({bytes_}, at::kByte);  // the CPU allocator aligns to 64 bytes
    in.seekg(0);
    in.read(reinterpret_cast<char*>(blob_.data_ptr<uint8_t>()), bytes_);
    const Json& tensors = j["tensors"];
    std::vector<std::string> names;  // a graph's constants name tensors by their index here
    for (size_t i = 0; i < tensors.size(); ++i) {
      const Json& t = tensors[i];
      const std::string& name = t["name"].String();
      names.push_back(name);
      const at::ScalarType dtype = ParseDtype(t["dtype"].String(), index_path_);
      std::vector<int64_t> shape;
      int64_t count = 1;
      for (size_t d = 0; d < t["shape"].size(); ++d) {
        shape.push_back(static_cast<int64_t>(t["shape"][d].Number()));
        count *= shape.back();
      }
      const int64_t offset = static_cast<int64_t>(t["offset"].Number());
      const int64_t nbytes = count * static_cast<int64_t>(c10::elementSize(dtype));
      if (offset < 0 || offset + nbytes > bytes_)
        throw std::runtime_error("tensor '" + name + "' lies outside " + blob_path);
      tensors_[name] = blob_.narrow(0, offset, nbytes).view(dtype).view(shape);
    }
    const Json& graphs = j["graphs"];
    for (size_t g = 0; g < graphs.size(); ++g) {
      const std::string& file = graphs[g]["file"].String();
      const Json& constants = graphs[g]["constants"];
      auto& entries = graphs_[file];
      for (size_t i = 0; i < constants.size(); ++i) {
        const double index = constants[i][1].Number();
        if (index < 0 || index >= static_cast<double>(names.size()) ||
            index != static_cast<double>(static_cast<size_t>(index)))
        {
          std::ostringstream what;  // 12, not 12.000000
          what << file << " needs tensor " << index << " of " << names.size()
               << ", which is not listed";
          throw std::runtime_error(what.str());
        }
        entries.emplace_back(constants[i][0].String(), names[static_cast<size_t>(index)]);
      }
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(index_path_ + ": " + e.what());
  }
}

std::unordered_map<std::string, at::Tensor> WeightFile::Constants(
    const std::string& graph_file) const {
  auto it = graphs_.find(graph_file);
  if (it == graphs_.end())
    throw std::runtime_error(index_path_ + ": no constants listed for " + graph_file +
                             " (export the model again)");
  std::unordered_map<std::string, at::Tensor> out;
  for (const auto& [constant, tensor] : it->second) out[constant] = tensors_.at(tensor);
  return out;
}

}  // namespace wenet_eff

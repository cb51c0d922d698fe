#include "asr_model.h"

#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include "cpu_features.h"
#include "weight_file.h"

namespace wenet_eff {

namespace {

bool Exists(const std::string& path) { return std::ifstream(path).good(); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<int64_t> Shape(const Json& meta, const std::string& key) {
  std::vector<int64_t> shape;
  if (!meta.Has(key)) return shape;
  for (size_t i = 0; i < meta[key].size(); ++i) shape.push_back(meta[key][i].Int());
  return shape;
}

ModelMeta ParseMeta(const std::string& path) {
  Json j;
  try {
    j = Json::Parse(ReadFile(path));
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  if (j.NumberOr("format_version", 0) != 2)
    throw std::runtime_error(path + ": unsupported format_version (this runtime reads 2: "
                             "export the model again with wenet_eff.bin.export)");
  ModelMeta m;
  try {
    m.sample_rate = j["sample_rate"].Int();
    m.num_mel_bins = j["num_mel_bins"].Int();
    m.frame_length_ms = static_cast<float>(j["frame_length_ms"].Number());
    m.frame_shift_ms = static_cast<float>(j["frame_shift_ms"].Number());
    m.subsampling_rate = j["subsampling_rate"].Int();
    m.right_context = j["right_context"].Int();
    for (size_t i = 0; i < j["subsampling_layout"].size(); ++i)
      m.subsampling_layout.emplace_back(j["subsampling_layout"][i][0].Int(),
                                        j["subsampling_layout"][i][1].Int());
    m.chunk_size = j["chunk_size"].Int();
    m.num_left_chunks = j["num_left_chunks"].Int();
    m.chunk_window = j["chunk_window"].Int();
    m.chunk_batch_max = static_cast<int>(j.NumberOr("chunk_batch_max", 0));
    m.att_cache_shape = Shape(j, "att_cache");
    m.cnn_cache_shape = Shape(j, "cnn_cache");
    m.output_size = j["output_size"].Int();
    m.vocab_size = j["vocab_size"].Int();
    m.blank = j["blank"].Int();
    m.sos = j["sos"].Int();
    m.eos = j["eos"].Int();
    m.has_right_decoder = j["has_right_decoder"].Bool();
    m.int8 = j.BoolOr("int8", false);
    m.moe = j.BoolOr("moe", false);
    for (size_t i = 0; i < j["precisions"].size(); ++i)
      m.precisions.push_back(j["precisions"][i].String());
    m.int8_share = j["kernel_paths"].Has("int8")
                       ? j["kernel_paths"]["int8"]["int8_share"].Number()
                       : 0.0;
    m.token_join = j.StringOr("token_join", "");
    m.max_feature_frames = static_cast<int>(j.NumberOr("max_feature_frames", 360000));
    m.decoder_max_len = static_cast<int>(j.NumberOr("decoder_max_len", 4096));
    m.decoder_min_frames = static_cast<int>(j.NumberOr("decoder_min_frames", 2));
    m.decoder_max_frames = static_cast<int>(j.NumberOr("decoder_max_frames", 90000));
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  return m;
}

// The package `piece` on kernel path `precision` (file names as wenet_eff.export.package's
// graph_file), given its weights and its folded constants computed; nullptr when absent.
std::unique_ptr<torch::inductor::AOTIModelPackageLoader> LoadIfPresent(
    const std::string& model_dir, const std::string& piece, const std::string& precision,
    const WeightFile& weights) {
  const std::string file = piece + (precision == "fp32" ? "" : "." + precision) + ".pt2";
  const std::string path = model_dir + "/" + file;
  if (!Exists(path)) return nullptr;
  try {
    auto loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path);
    auto constants = weights.Constants(file);
    // user_managed: the graph reads the tensors of weights.bin in place, no copy
    loader->load_constants(constants, /*use_inactive=*/false, /*check_full_update=*/true,
                           /*user_managed=*/true);
    loader->get_runner()->run_const_fold(/*use_inactive=*/false);
    return loader;
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": cannot load the AOTInductor package: " + e.what());
  }
}

}  // namespace

int ModelMeta::SubsampledFrames(int num_feats) const {
  int t = num_feats;
  for (const auto& [kernel, stride] : subsampling_layout) {
    if (t < kernel) return 0;
    t = (t - kernel) / stride + 1;
  }
  return t;
}

AsrModel::AsrModel(const std::string& model_dir, const std::string& precision) {
  meta_ = ParseMeta(model_dir + "/meta.json");
  symbols_ = std::make_unique<SymbolTable>(model_dir + "/units.txt",
                                           std::set<int>{meta_.blank, meta_.sos, meta_.eos});
  if (symbols_->size() != meta_.vocab_size)
    throw std::runtime_error(model_dir + "/units.txt: " + std::to_string(symbols_->size()) +
                             " units, meta.json says vocab_size " +
                             std::to_string(meta_.vocab_size));
  const KernelChoice choice =
      ChooseKernelPath(DetectCpuFeatures(), meta_.precisions, meta_.int8_share, precision);
  precision_ = choice.precision;
  precision_reason_ = choice.reason;
  std::cerr << model_dir << ": kernel path " << precision_ << " (" << precision_reason_
            << ")\n";
  weights_ = std::make_unique<const WeightFile>(model_dir);
  chunk_ = LoadIfPresent(model_dir, "encoder_chunk", precision_, *weights_);
  chunk_batch_ = LoadIfPresent(model_dir, "encoder_chunk_batch", precision_, *weights_);
  full_ = LoadIfPresent(model_dir, "encoder_full", precision_, *weights_);
  decoder_ = LoadIfPresent(model_dir, "decoder", precision_, *weights_);
  if (!chunk_ && !full_)
    throw std::runtime_error(model_dir + ": neither encoder_chunk.pt2 nor encoder_full.pt2");
}

AsrModel::~AsrModel() = default;

std::vector<at::Tensor> AsrModel::EncoderChunk(const std::vector<at::Tensor>& inputs) const {
  return chunk_->run(inputs);
}

std::vector<at::Tensor> AsrModel::EncoderChunkBatch(
    const std::vector<at::Tensor>& inputs) const {
  return chunk_batch_->run(inputs);
}

std::vector<at::Tensor> AsrModel::EncoderFull(const at::Tensor& feats) const {
  return full_->run({feats});
}

std::vector<at::Tensor> AsrModel::Rescore(const at::Tensor& encoder_out, const at::Tensor& hyps,
                                          const at::Tensor& hyps_lens) const {
  return decoder_->run({encoder_out, hyps, hyps_lens});
}

}  // namespace wenet_eff

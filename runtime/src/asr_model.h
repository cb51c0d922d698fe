// An exported model directory (wenet_eff.export.package): meta.json, units.txt, the
// AOTInductor packages, run through torch::inductor::AOTIModelPackageLoader, and their
// weights (weights.bin, weight_file.h).
//
//   encoder_chunk.pt2  one streaming step: (feats, offset, num_valid, att_cache, cnn_cache)
//                      -> (ctc_log_probs, encoder_out, new_att_cache, new_cnn_cache)
//   encoder_chunk_batch.pt2  the same step for B streams at their own positions (the server's
//                      batches): feats (B, W, F), offset (B), num_valid (B),
//                      att_cache (B, L, H, C, 2 d_k), cnn_cache (B, L, D, kernel - 1)
//   encoder_full.pt2   feats (1, T, F) -> (ctc_log_probs (1, T', V), encoder_out (1, T', D))
//   decoder.pt2        (encoder_out, hyps (N, L), hyps_lens (N)) -> (l2r (N), r2l (N)) scores
//
// Each graph may come in several kernel paths (NAME.pt2 fp32, NAME.int8.pt2, NAME.bf16.pt2,
// meta.json "precisions"); the model loads one, chosen for this CPU (cpu_features.h) or
// requested, hands it the weights and lets it fold what it computes from them alone (unpacking
// packed layers, int8 codes, bf16 copies) before the first call.
//
// One AsrModel can serve several AsrDecoder instances (the packages are loaded once).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "json.h"
#include "symbol_table.h"

namespace torch::inductor {
class AOTIModelPackageLoader;
}

namespace wenet_eff {

class WeightFile;

struct ModelMeta {
  int sample_rate, num_mel_bins;
  float frame_length_ms, frame_shift_ms;
  int subsampling_rate, right_context;
  std::vector<std::pair<int, int>> subsampling_layout;  // (kernel, stride) per Conv2d
  int chunk_size, num_left_chunks, chunk_window;        // -1, -1, 0: no streaming step
  int chunk_batch_max;  // most streams encoder_chunk_batch takes in one call
  std::vector<int64_t> att_cache_shape, cnn_cache_shape;
  int output_size, vocab_size, blank, sos, eos;
  bool has_right_decoder, int8, moe;
  std::vector<std::string> precisions;  // kernel paths with graphs: fp32, int8, bf16
  double int8_share;                    // of the seam's weights on int8 in the int8 graphs
  std::string token_join;
  // bounds of the exported graphs: feature frames of the full-context encoder, hypothesis
  // length and encoder frames of the rescoring decoder
  int max_feature_frames, decoder_max_len, decoder_min_frames, decoder_max_frames;

  // Encoder frames the subsampling makes of `num_feats` feature frames (0 if too few).
  int SubsampledFrames(int num_feats) const;
};

class AsrModel {
 public:
  // Loads model_dir/meta.json, units.txt, the .pt2 packages present on kernel path
  // `precision` ("auto": ChooseKernelPath for this CPU, or fp32 / int8 / bf16) and their
  // weights. Throws std::runtime_error naming the file when one is missing or malformed,
  // std::invalid_argument when the precision is not in the directory.
  explicit AsrModel(const std::string& model_dir, const std::string& precision = "auto");
  ~AsrModel();

  const ModelMeta& meta() const { return meta_; }
  const SymbolTable& symbols() const { return *symbols_; }
  bool has_chunk_encoder() const { return chunk_ != nullptr; }
  bool has_chunk_batch_encoder() const { return chunk_batch_ != nullptr; }
  bool has_full_encoder() const { return full_ != nullptr; }
  bool has_decoder() const { return decoder_ != nullptr; }
  // The kernel path loaded and why (the CPU features, or "requested").
  const std::string& precision() const { return precision_; }
  const std::string& precision_reason() const { return precision_reason_; }

  std::vector<at::Tensor> EncoderChunk(const std::vector<at::Tensor>& inputs) const;
  std::vector<at::Tensor> EncoderChunkBatch(const std::vector<at::Tensor>& inputs) const;
  std::vector<at::Tensor> EncoderFull(const at::Tensor& feats) const;
  std::vector<at::Tensor> Rescore(const at::Tensor& encoder_out, const at::Tensor& hyps,
                                  const at::Tensor& hyps_lens) const;

 private:
  ModelMeta meta_;
  std::string precision_, precision_reason_;
  std::unique_ptr<SymbolTable> symbols_;
  // the graphs read these tensors in place (user-managed constants): declared first, so the
  // loaders are destroyed before them
  std::unique_ptr<const WeightFile> weights_;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> chunk_, chunk_batch_, full_, decoder_;
};

}  // namespace wenet_eff

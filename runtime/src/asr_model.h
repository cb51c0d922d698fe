// An exported model directory (wenet_eff.export.package): meta.json, units.txt and the
// AOTInductor packages, run through torch::inductor::AOTIModelPackageLoader.
//
//   encoder_chunk.pt2  one streaming step: (feats, offset, num_valid, att_cache, cnn_cache)
//                      -> (ctc_log_probs, encoder_out, new_att_cache, new_cnn_cache)
//   encoder_full.pt2   feats (1, T, F) -> (ctc_log_probs (1, T', V), encoder_out (1, T', D))
//   decoder.pt2        (encoder_out, hyps (N, L), hyps_lens (N)) -> (l2r (N), r2l (N)) scores
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

struct ModelMeta {
  int sample_rate, num_mel_bins;
  float frame_length_ms, frame_shift_ms;
  int subsampling_rate, right_context;
  std::vector<std::pair<int, int>> subsampling_layout;  // (kernel, stride) per Conv2d
  int chunk_size, num_left_chunks, chunk_window;        // -1, -1, 0: no streaming step
  std::vector<int64_t> att_cache_shape, cnn_cache_shape;
  int output_size, vocab_size, blank, sos, eos;
  bool has_right_decoder, int8, moe;
  std::string token_join;
  // bounds of the exported graphs: feature frames of the full-context encoder, hypothesis
  // length and encoder frames of the rescoring decoder
  int max_feature_frames, decoder_max_len, decoder_min_frames, decoder_max_frames;

  // Encoder frames the subsampling makes of `num_feats` feature frames (0 if too few).
  int SubsampledFrames(int num_feats) const;
};

class AsrModel {
 public:
  // Loads model_dir/meta.json, units.txt and the .pt2 packages present. Throws
  // std::runtime_error naming the file when one is missing or malformed.
  explicit AsrModel(const std::string& model_dir);
  ~AsrModel();

  const ModelMeta& meta() const { return meta_; }
  const SymbolTable& symbols() const { return *symbols_; }
  bool has_chunk_encoder() const { return chunk_ != nullptr; }
  bool has_full_encoder() const { return full_ != nullptr; }
  bool has_decoder() const { return decoder_ != nullptr; }

  std::vector<at::Tensor> EncoderChunk(const std::vector<at::Tensor>& inputs) const;
  std::vector<at::Tensor> EncoderFull(const at::Tensor& feats) const;
  std::vector<at::Tensor> Rescore(const at::Tensor& encoder_out, const at::Tensor& hyps,
                                  const at::Tensor& hyps_lens) const;

 private:
  ModelMeta meta_;
  std::unique_ptr<SymbolTable> symbols_;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> chunk_, full_, decoder_;
};

}  // namespace wenet_eff

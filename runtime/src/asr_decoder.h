// The streaming decoder: fbank -> encoder chunk by chunk (caches carried between steps) or
// the full-context encoder -> CTC greedy / prefix beam search, incremental -> attention
// rescoring of the CTC n-best at the end of each segment. With continuous decoding an endpoint
// (endpoint.h) closes a segment and decoding starts afresh on the audio that follows.
//
// The step-for-step Python equivalent is the eager model: ASRModel.encoder.forward_chunk over
// the same chunks (or the full-context encoder), wenet_eff.decode.ctc and
// wenet_eff.decode.attention.attention_rescoring.
#pragma once

#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "asr_model.h"
#include "ctc_search.h"
#include "decode_mode.h"
#include "endpoint.h"
#include "fbank.h"

namespace wenet_eff {

struct DecodeOptions {
  int chunk_size = 0;        // encoder frames per step; -1 full context; 0: the exported chunk
  int num_left_chunks = 0;   // must equal the exported one (0: take it)
  DecodeMode mode = DecodeMode::kAttentionRescoring;  // ParseDecodeMode of the flag
  int beam_size = 10;
  double ctc_weight = 0.3;      // weight of the CTC score in rescoring
  double reverse_weight = 0.5;  // weight of the right-to-left decoder in rescoring
  // prefix search: word n-gram LM fusion (WordLmFusion of the model's WordPieces) and context
  // biasing (hotwords), each built once and shared read-only by every decoder (none: off), and
  // the per-frame token floor (CtcPrefixBeamOptions)
  std::shared_ptr<const WordLmFusion> lm;
  std::shared_ptr<const ContextGraph> context;
  double min_token_logp = -std::numeric_limits<double>::infinity();
  bool continuous_decoding = false;  // close segments at endpoints (streaming only)
  EndpointConfig endpoint;
};

// One stretch of audio between endpoints (the whole input without continuous decoding).
struct Segment {
  std::string text;
  std::vector<int> tokens;
  double start = 0;  // seconds of input: the first feature frame the segment decoded
  double end = 0;    // seconds: where the next segment starts (the audio's end for the last)
};

struct DecodeResult {
  std::string text;          // all segments, space-separated
  std::vector<int> tokens;   // of all segments
  double encoder_seconds = 0;  // time in the encoder graphs
  double search_seconds = 0;   // CTC search
  double rescore_seconds = 0;  // attention rescoring
  std::vector<Segment> segments;
};

class AsrDecoder {
 public:
  // Throws std::invalid_argument when the options do not fit the model (e.g. a chunk size
  // other than the exported one, or rescoring without decoder.pt2).
  AsrDecoder(std::shared_ptr<const AsrModel> model, const DecodeOptions& options);

  // Streaming interface: samples in [-1, 1] at the model's sample rate.
  void AcceptWaveform(const float* samples, size_t n);
  void InputFinished();
  // Runs every step whose features are ready (all that is left after InputFinished()).
  void Advance();
  // The text so far: closed segments plus the current best CTC hypothesis.
  std::string PartialText() const;
  // After InputFinished(): closes the last segment (rescoring it) and returns everything.
  DecodeResult Finish();
  void Reset();

  // Whole utterance: Reset, accept, finish.
  DecodeResult Decode(const float* samples, size_t n);

 private:
  bool streaming() const { return options_.chunk_size > 0; }
  void RunChunk(int start, int available);
  void RunFull();
  void Consume(const at::Tensor& log_probs, const at::Tensor& encoder_out, int frames);
  // Rescores the current segment into the result; `end_frame`: the feature frame it ends at.
  void CloseSegment(int end_frame);
  std::vector<int> Best() const;
  void ResetSegment();

  std::shared_ptr<const AsrModel> model_;
  DecodeOptions options_;
  OnlineFbank fbank_;
  bool input_finished_ = false;
  bool full_done_ = false;
  int next_frame_ = 0;   // first feature frame of the next step
  int segment_start_ = 0;  // first feature frame of the current segment
  int64_t samples_ = 0;    // samples accepted since Reset()
  int64_t offset_ = 0;   // encoder frames of the current segment
  at::Tensor att_cache_, cnn_cache_;
  std::vector<at::Tensor> encoder_out_;  // valid rows of each step of the current segment
  CtcGreedySearch greedy_;
  CtcPrefixBeamSearch beam_;
  Endpoint endpoint_;
  DecodeResult result_;
};

}  // namespace wenet_eff

// The streaming decoder: fbank -> encoder chunk by chunk (caches carried between steps) or
// the full-context encoder -> CTC greedy / prefix beam search, incremental -> attention
// rescoring of the CTC n-best at the end of each segment. With continuous decoding an endpoint
// (endpoint.h) closes a segment and decoding starts afresh on the audio that follows.
//
// A caller that runs the encoder itself (the server's cross-stream batches, scheduler.h)
// takes each streaming step apart: NextChunk gives the step's input, the caller runs it with
// other streams' steps, AcceptChunk hands this stream's rows back; Advance() is that loop on
// encoder_chunk.pt2 alone.
//
// The step-for-step Python equivalent is the eager model: ASRModel.encoder.forward_chunk over
// the same chunks (or the full-context encoder), wenet_eff.decode.ctc and
// wenet_eff.decode.attention.attention_rescoring.
#pragma once

#include <limits>
#include <memory>
#include <string>
#include <utility>
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
  // the n-best texts, best first (text is the first): the rescored order, or the CTC one
  std::vector<std::string> nbest;
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
  // The current segment's `n` best CTC hypotheses as text, best first (greedy: one).
  std::vector<std::string> SegmentNBest(int n) const;
  // The segments closed so far (at endpoints, then by Finish).
  const std::vector<Segment>& segments() const { return result_.segments; }

  // The streaming step by step, for a caller that runs the encoder (see the file comment).
  // Complete steps whose features are ready (after InputFinished: also a short last one).
  int ChunksReady() const;
  // The next step's input (ChunksReady() > 0): writes its chunk_window x num_mel_bins
  // features into `feats` (zero-padded) and returns its {offset, valid encoder frames}; the
  // caches it continues are att_cache() (L, H, C, 2 d_k) and cnn_cache() (L, 1, D, k - 1).
  // The same step until AcceptChunk.
  std::pair<int64_t, int64_t> NextChunk(float* feats);
  const at::Tensor& att_cache() const { return att_cache_; }
  const at::Tensor& cnn_cache() const { return cnn_cache_; }
  // This stream's outputs of the step NextChunk gave: log_probs (1, chunk, V), encoder_out
  // (1, chunk, D) and the new caches as above. Searches them and, with continuous decoding,
  // closes the segment at an endpoint.
  void AcceptChunk(const at::Tensor& log_probs, const at::Tensor& encoder_out,
                   at::Tensor att_cache, at::Tensor cnn_cache);
  // After InputFinished(): closes the last segment (rescoring it) and returns everything.
  DecodeResult Finish();
  void Reset();

  // Whole utterance: Reset, accept, finish.
  DecodeResult Decode(const float* samples, size_t n);

 private:
  bool streaming() const { return options_.chunk_size > 0; }
  void RunFull();
  void Consume(const at::Tensor& log_probs, const at::Tensor& encoder_out, int frames);
  // Rescores the current segment into the result; `end_frame`: the feature frame it ends at.
  void CloseSegment(int end_frame);
  // Attention-rescoring totals of the n-best (hypotheses padded to `width` tokens).
  std::vector<float> RescoreTotals(const std::vector<CtcHypothesis>& nbest, int64_t width) const;
  std::vector<int> Best() const;
  void ResetSegment();

  std::shared_ptr<const AsrModel> model_;
  DecodeOptions options_;
  OnlineFbank fbank_;
  bool input_finished_ = false;
  bool full_done_ = false;
  int next_frame_ = 0;   // first feature frame of the next step
  int chunk_frames_ = 0;  // feature frames the step NextChunk gave reads (0: none given)
  int64_t chunk_valid_ = 0;  // and its valid encoder frames
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

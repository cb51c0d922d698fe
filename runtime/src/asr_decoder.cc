#include "asr_decoder.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <stdexcept>

#include <ATen/ATen.h>

namespace wenet_eff {

namespace {

constexpr float kInt16Scale = 32768.0f;  // WeNet's fbank input scale

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

FbankOptions FbankOptionsOf(const ModelMeta& meta) {
  FbankOptions opts;
  opts.sample_rate = meta.sample_rate;
  opts.num_mel_bins = meta.num_mel_bins;
  opts.frame_length_ms = meta.frame_length_ms;
  opts.frame_shift_ms = meta.frame_shift_ms;
  return opts;
}

DecodeOptions Checked(const AsrModel& model, DecodeOptions o) {
  const ModelMeta& m = model.meta();
  if (o.chunk_size == 0) o.chunk_size = model.has_chunk_encoder() ? m.chunk_size : -1;
  if (o.chunk_size > 0) {
    if (!model.has_chunk_encoder())
      throw std::invalid_argument("chunk_size " + std::to_string(o.chunk_size) +
                                  ": the model directory has no encoder_chunk.pt2");
    if (o.num_left_chunks == 0) o.num_left_chunks = m.num_left_chunks;
    if (o.chunk_size != m.chunk_size || o.num_left_chunks != m.num_left_chunks)
      throw std::invalid_argument(
          "chunk_size " + std::to_string(o.chunk_size) + " / num_left_chunks " +
          std::to_string(o.num_left_chunks) + ": the streaming step was exported for " +
          std::to_string(m.chunk_size) + " / " + std::to_string(m.num_left_chunks) +
          " (re-export, or use -1 for full context)");
  } else if (!model.has_full_encoder()) {
    throw std::invalid_argument("chunk_size -1: the model directory has no encoder_full.pt2");
  }
  if (o.mode == DecodeMode::kAttentionRescoring && !model.has_decoder())
    throw std::invalid_argument("attention_rescoring: the model directory has no decoder.pt2");
  if (o.beam_size < 1) throw std::invalid_argument("beam_size must be >= 1");
  if (o.lm && o.lm->num_pieces() != m.vocab_size)
    throw std::invalid_argument("the LM fusion has word pieces of " +
                                std::to_string(o.lm->num_pieces()) + " units, the model " +
                                std::to_string(m.vocab_size) + " (WordPieces of its units.txt)");
  if (!(o.endpoint.blank_threshold >= 0 && o.endpoint.blank_threshold <= 1))
    throw std::invalid_argument("blank_threshold must be a probability in [0, 1]");
  if (o.endpoint.rule1.min_trailing_silence_ms <= 0 ||
      o.endpoint.rule2.min_trailing_silence_ms <= 0 ||
      o.endpoint.rule3.min_utterance_length_ms <= 0)
    throw std::invalid_argument(
        "endpoint rule times must be > 0 ms (a rule with 0 would end every chunk; a very "
        "large value disables it)");
  if (o.continuous_decoding && o.chunk_size < 0)
    throw std::invalid_argument(
        "continuous_decoding needs a streaming chunk size: the full-context graph sees the "
        "whole input at once");
  o.endpoint.blank = m.blank;
  o.endpoint.frame_shift_ms = static_cast<int>(m.frame_shift_ms * m.subsampling_rate);
  return o;
}

CtcPrefixBeamOptions SearchOptions(const AsrModel& model, const DecodeOptions& o) {
  CtcPrefixBeamOptions s;
  s.beam_size = o.beam_size;
  s.blank = model.meta().blank;
  s.min_token_logp = o.min_token_logp;
  s.lm = o.lm;
  s.context = o.context;
  return s;
}

}  // namespace

AsrDecoder::AsrDecoder(std::shared_ptr<const AsrModel> model, const DecodeOptions& options)
    : model_(std::move(model)),
      options_(Checked(*model_, options)),
      fbank_(FbankOptionsOf(model_->meta())),
      greedy_(model_->meta().blank),
      beam_(SearchOptions(*model_, options_)),
      endpoint_(options_.endpoint) {
  Reset();
}

void AsrDecoder::Reset() {
  fbank_.Reset();
  input_finished_ = false;
  full_done_ = false;
  next_frame_ = 0;
  samples_ = 0;
  result_ = DecodeResult();
  ResetSegment();
}

void AsrDecoder::ResetSegment() {
  const ModelMeta& m = model_->meta();
  offset_ = 0;
  segment_start_ = next_frame_;
  if (streaming()) {
    att_cache_ = at::zeros(m.att_cache_shape, at::kFloat);
    cnn_cache_ = at::zeros(m.cnn_cache_shape, at::kFloat);
  }
  encoder_out_.clear();
  greedy_.Reset();
  beam_.Reset();
  endpoint_.Reset();
}

void AsrDecoder::AcceptWaveform(const float* samples, size_t n) {
  std::vector<float> scaled(samples, samples + n);
  for (float& s : scaled) s *= kInt16Scale;
  fbank_.AcceptWaveform(scaled.data(), scaled.size());
  samples_ += static_cast<int64_t>(n);
}

void AsrDecoder::InputFinished() {
  fbank_.InputFinished();
  input_finished_ = true;
}

void AsrDecoder::Advance() {
  const ModelMeta& m = model_->meta();
  if (!streaming()) {
    if (input_finished_ && !full_done_) RunFull();
    return;
  }
  const int window = m.chunk_window;
  const int stride = m.subsampling_rate * options_.chunk_size;
  const int context = m.right_context + 1;
  while (true) {
    const int available = fbank_.NumFramesReady() - next_frame_;
    if (available >= window) {
      RunChunk(next_frame_, window);
      next_frame_ += stride;
    } else if (input_finished_ && available >= context) {
      RunChunk(next_frame_, available);  // the short last chunk, zero-padded
      next_frame_ = fbank_.NumFramesReady();
    } else {
      break;
    }
    if (options_.continuous_decoding && endpoint_.Detected(!Best().empty()))
      CloseSegment(next_frame_);
  }
}

void AsrDecoder::RunChunk(int start, int available) {
  const ModelMeta& m = model_->meta();
  const int window = m.chunk_window;
  const int frames = std::min(available, window);
  at::Tensor feats = at::zeros({1, window, m.num_mel_bins}, at::kFloat);
  std::vector<float> rows;
  fbank_.GetFrames(start, start + frames, &rows);
  std::memcpy(feats.data_ptr<float>(), rows.data(), rows.size() * sizeof(float));
  const int valid = frames == window ? options_.chunk_size : m.SubsampledFrames(frames);
  auto t0 = std::chrono::steady_clock::now();
  std::vector<at::Tensor> out = model_->EncoderChunk(
      {feats, at::full({1}, offset_, at::kLong), at::full({1}, valid, at::kLong), att_cache_,
       cnn_cache_});
  result_.encoder_seconds += Seconds(t0);
  att_cache_ = out[2];
  cnn_cache_ = out[3];
  offset_ += valid;
  Consume(out[0], out[1], valid);
}

void AsrDecoder::RunFull() {
  const ModelMeta& m = model_->meta();
  full_done_ = true;
  const int frames = fbank_.NumFramesReady();
  // the full-context graph needs two encoder frames; shorter input decodes to nothing
  if (m.SubsampledFrames(frames) < 2) return;
  if (frames > m.max_feature_frames)
    throw std::runtime_error("utterance of " + std::to_string(frames) +
                             " feature frames: longer than the full-context graph takes (" +
                             std::to_string(m.max_feature_frames) +
                             "); decode it with a streaming chunk size");
  std::vector<float> rows;
  fbank_.GetFrames(0, frames, &rows);
  at::Tensor feats = at::empty({1, frames, m.num_mel_bins}, at::kFloat);
  std::memcpy(feats.data_ptr<float>(), rows.data(), rows.size() * sizeof(float));
  auto t0 = std::chrono::steady_clock::now();
  std::vector<at::Tensor> out = model_->EncoderFull(feats);
  result_.encoder_seconds += Seconds(t0);
  Consume(out[0], out[1], static_cast<int>(out[0].size(1)));
}

void AsrDecoder::Consume(const at::Tensor& log_probs, const at::Tensor& encoder_out,
                         int frames) {
  if (frames <= 0) return;
  const int vocab = static_cast<int>(log_probs.size(2));
  at::Tensor logp = log_probs.contiguous();
  const float* data = logp.data_ptr<float>();
  auto t0 = std::chrono::steady_clock::now();
  if (options_.mode == DecodeMode::kCtcGreedySearch)
    greedy_.Advance(data, frames, vocab);
  else
    beam_.Advance(data, frames, vocab);
  endpoint_.Update(data, frames, vocab);
  result_.search_seconds += Seconds(t0);
  encoder_out_.push_back(encoder_out.narrow(1, 0, frames));
}

std::vector<int> AsrDecoder::Best() const {
  if (options_.mode == DecodeMode::kCtcGreedySearch) return greedy_.Best().tokens;
  std::vector<CtcHypothesis> nbest = beam_.NBest();
  return nbest.empty() ? std::vector<int>() : nbest[0].tokens;
}

std::string AsrDecoder::PartialText() const {
  std::string text = result_.text;
  std::string current = model_->symbols().Detokenize(Best(), model_->meta().token_join);
  if (!text.empty() && !current.empty()) text += ' ';
  return text + current;
}

void AsrDecoder::CloseSegment(int end_frame) {
  std::vector<int> best = Best();
  const ModelMeta& m = model_->meta();
  int64_t frames = 0;
  for (const auto& out : encoder_out_) frames += out.size(1);
  std::vector<CtcHypothesis> nbest;
  int64_t width = 1;
  if (options_.mode == DecodeMode::kAttentionRescoring) {
    nbest = beam_.NBest();
    for (const auto& h : nbest) width = std::max<int64_t>(width, h.tokens.size());
  }
  // within the decoder graph's bounds (meta.json), else the CTC best stands
  if (!nbest.empty() && frames >= m.decoder_min_frames && frames <= m.decoder_max_frames &&
      width <= m.decoder_max_len) {
    auto t0 = std::chrono::steady_clock::now();
    const int64_t n = static_cast<int64_t>(nbest.size());
    at::Tensor hyps = at::full({n, width}, m.eos, at::kLong);
    at::Tensor lens = at::empty({n}, at::kLong);
    int64_t* h_data = hyps.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      const auto& tokens = nbest[i].tokens;
      std::copy(tokens.begin(), tokens.end(), h_data + i * width);
      lens.data_ptr<int64_t>()[i] = static_cast<int64_t>(tokens.size());
    }
    at::Tensor memory = at::cat(encoder_out_, 1);
    std::vector<at::Tensor> scores = model_->Rescore(memory, hyps, lens);
    const float* l2r = scores[0].data_ptr<float>();
    const float* r2l = scores[1].data_ptr<float>();
    const bool use_right = m.has_right_decoder && options_.reverse_weight > 0;
    // in float32 as Python's attention_rescoring computes it; the fused LM and context
    // scores are added as they are
    const float l2r_weight = static_cast<float>(1 - options_.reverse_weight);
    const float r2l_weight = static_cast<float>(options_.reverse_weight);
    const float ctc_weight = static_cast<float>(options_.ctc_weight);
    float best_score = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) {
      const float att = use_right ? l2r_weight * l2r[i] + r2l_weight * r2l[i] : l2r[i];
      const float total = att + ctc_weight * static_cast<float>(nbest[i].ctc) +
                          static_cast<float>(nbest[i].lm + nbest[i].context);
      if (i == 0 || total > best_score) {  // first maximum wins, as torch.argmax
        best_score = total;
        best = nbest[i].tokens;
      }
    }
    result_.rescore_seconds += Seconds(t0);
  }
  std::string text = model_->symbols().Detokenize(best, m.token_join);
  if (!text.empty()) {
    if (!result_.text.empty()) result_.text += ' ';
    result_.text += text;
  }
  result_.tokens.insert(result_.tokens.end(), best.begin(), best.end());
  const double shift = m.frame_shift_ms / 1000.0;
  result_.segments.push_back({text, best, segment_start_ * shift, end_frame * shift});
  ResetSegment();
}

DecodeResult AsrDecoder::Finish() {
  if (!input_finished_) InputFinished();
  Advance();
  if (!encoder_out_.empty() || result_.segments.empty())
    CloseSegment(fbank_.NumFramesReady());
  // the last segment runs to the end of the audio (also when an endpoint closed it)
  result_.segments.back().end = static_cast<double>(samples_) / model_->meta().sample_rate;
  return result_;
}

DecodeResult AsrDecoder::Decode(const float* samples, size_t n) {
  Reset();
  AcceptWaveform(samples, n);
  InputFinished();
  return Finish();
}

}  // namespace wenet_eff

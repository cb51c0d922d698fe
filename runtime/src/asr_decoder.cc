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
  chunk_frames_ = 0;
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
  at::Tensor feats = at::empty({1, m.chunk_window, m.num_mel_bins}, at::kFloat);
  while (ChunksReady() > 0) {
    const auto [offset, valid] = NextChunk(feats.data_ptr<float>());
    auto t0 = std::chrono::steady_clock::now();
    std::vector<at::Tensor> out = model_->EncoderChunk(
        {feats, at::full({1}, offset, at::kLong), at::full({1}, valid, at::kLong), att_cache_,
         cnn_cache_});
    result_.encoder_seconds += Seconds(t0);
    AcceptChunk(out[0], out[1], out[2], out[3]);
  }
}

int AsrDecoder::ChunksReady() const {
  if (!streaming()) return 0;
  const ModelMeta& m = model_->meta();
  const int stride = m.subsampling_rate * options_.chunk_size;
  const int available = fbank_.NumFramesReady() - next_frame_;
  int n = available >= m.chunk_window ? 1 + (available - m.chunk_window) / stride : 0;
  // the short last chunk, zero-padded
  if (input_finished_ && available - n * stride >= m.right_context + 1) ++n;
  return n;
}

std::pair<int64_t, int64_t> AsrDecoder::NextChunk(float* feats) {
  if (ChunksReady() == 0) throw std::logic_error("NextChunk: no streaming step is ready");
  const ModelMeta& m = model_->meta();
  const int window = m.chunk_window;
  chunk_frames_ = std::min(fbank_.NumFramesReady() - next_frame_, window);
  chunk_valid_ = chunk_frames_ == window ? options_.chunk_size : m.SubsampledFrames(chunk_frames_);
  std::vector<float> rows;
  fbank_.GetFrames(next_frame_, next_frame_ + chunk_frames_, &rows);
  std::copy(rows.begin(), rows.end(), feats);
  std::fill(feats + rows.size(), feats + static_cast<size_t>(window) * m.num_mel_bins, 0.0f);
  return {offset_, chunk_valid_};
}

void AsrDecoder::AcceptChunk(const at::Tensor& log_probs, const at::Tensor& encoder_out,
                             at::Tensor att_cache, at::Tensor cnn_cache) {
  if (chunk_frames_ == 0) throw std::logic_error("AcceptChunk: no step given by NextChunk");
  const ModelMeta& m = model_->meta();
  att_cache_ = std::move(att_cache);
  cnn_cache_ = std::move(cnn_cache);
  offset_ += chunk_valid_;
  next_frame_ = chunk_frames_ == m.chunk_window
                    ? next_frame_ + m.subsampling_rate * options_.chunk_size
                    : fbank_.NumFramesReady();  // after the short last chunk: all consumed
  chunk_frames_ = 0;
  Consume(log_probs, encoder_out, static_cast<int>(chunk_valid_));
  if (options_.continuous_decoding && endpoint_.Detected(!Best().empty()))
    CloseSegment(next_frame_);
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

std::vector<std::string> AsrDecoder::SegmentNBest(int n) const {
  const ModelMeta& m = model_->meta();
  if (options_.mode == DecodeMode::kCtcGreedySearch)
    return {model_->symbols().Detokenize(greedy_.Best().tokens, m.token_join)};
  std::vector<std::string> texts;
  for (const CtcHypothesis& h : beam_.NBest()) {
    if (static_cast<int>(texts.size()) == n) break;
    texts.push_back(model_->symbols().Detokenize(h.tokens, m.token_join));
  }
  return texts;
}

std::string AsrDecoder::PartialText() const {
  std::string text = result_.text;
  std::string current = model_->symbols().Detokenize(Best(), model_->meta().token_join);
  if (!text.empty() && !current.empty()) text += ' ';
  return text + current;
}

void AsrDecoder::CloseSegment(int end_frame) {
  const ModelMeta& m = model_->meta();
  int64_t frames = 0;
  for (const auto& out : encoder_out_) frames += out.size(1);
  std::vector<std::vector<int>> ranked;  // best first
  if (options_.mode == DecodeMode::kCtcGreedySearch) {
    ranked.push_back(greedy_.Best().tokens);
  } else {
    const std::vector<CtcHypothesis> nbest = beam_.NBest();
    for (const auto& h : nbest) ranked.push_back(h.tokens);
    int64_t width = 1;
    for (const auto& h : nbest) width = std::max<int64_t>(width, h.tokens.size());
    // within the decoder graph's bounds (meta.json), else the CTC order stands
    if (options_.mode == DecodeMode::kAttentionRescoring && !nbest.empty() &&
        frames >= m.decoder_min_frames && frames <= m.decoder_max_frames &&
        width <= m.decoder_max_len) {
      auto t0 = std::chrono::steady_clock::now();
      const std::vector<float> totals = RescoreTotals(nbest, width);
      // best total first; ties keep the CTC order (the first maximum wins, as torch.argmax)
      std::vector<size_t> order(nbest.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return totals[a] > totals[b]; });
      for (size_t i = 0; i < order.size(); ++i) ranked[i] = nbest[order[i]].tokens;
      result_.rescore_seconds += Seconds(t0);
    }
  }
  const std::vector<int> best = ranked.empty() ? std::vector<int>() : ranked[0];
  Segment segment{model_->symbols().Detokenize(best, m.token_join), best, {}, 0, 0};
  for (const auto& tokens : ranked)
    segment.nbest.push_back(model_->symbols().Detokenize(tokens, m.token_join));
  if (!segment.text.empty()) {
    if (!result_.text.empty()) result_.text += ' ';
    result_.text += segment.text;
  }
  result_.tokens.insert(result_.tokens.end(), best.begin(), best.end());
  const double shift = m.frame_shift_ms / 1000.0;
  segment.start = segment_start_ * shift;
  segment.end = end_frame * shift;
  result_.segments.push_back(std::move(segment));
  ResetSegment();
}

std::vector<float> AsrDecoder::RescoreTotals(const std::vector<CtcHypothesis>& nbest,
                                             int64_t width) const {
  const ModelMeta& m = model_->meta();
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
  // in float32 as Python's attention_rescoring computes it; the fused LM and context scores
  // are added as they are
  const float l2r_weight = static_cast<float>(1 - options_.reverse_weight);
  const float r2l_weight = static_cast<float>(options_.reverse_weight);
  const float ctc_weight = static_cast<float>(options_.ctc_weight);
  std::vector<float> totals(n);
  for (int64_t i = 0; i < n; ++i) {
    const float att = use_right ? l2r_weight * l2r[i] + r2l_weight * r2l[i] : l2r[i];
    totals[i] = att + ctc_weight * static_cast<float>(nbest[i].ctc) +
                static_cast<float>(nbest[i].lm + nbest[i].context);
  }
  return totals;
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

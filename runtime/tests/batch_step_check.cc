// batch_step_check MODEL_DIR WAV...: decodes each wav alone (AsrDecoder, encoder_chunk.pt2),
// then all of them together through encoder_chunk_batch.pt2 as the server's scheduler batches
// them: stream k starts k steps late and receives its audio in pieces of varying size, so each
// batch holds streams at different positions, some at their short last chunk. Prints JSON:
// the largest absolute difference of any valid encoder output row (and CTC log posterior)
// between the batched and the lone step, the texts of both runs and the batch sizes seen.
// Run by tests/runtime/test_server.py (it needs an exported model).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "asr_decoder.h"
#include "asr_model.h"
#include "wav.h"

namespace {

using wenet_eff::AsrDecoder;

struct Lone {
  std::vector<at::Tensor> logp, out;  // valid rows of each step
  std::string text;
};

// `samples` decoded alone, step by step, keeping each step's outputs.
Lone DecodeAlone(const std::shared_ptr<const wenet_eff::AsrModel>& model,
                 const std::vector<float>& samples) {
  const auto& m = model->meta();
  AsrDecoder d(model, wenet_eff::DecodeOptions());
  d.AcceptWaveform(samples.data(), samples.size());
  d.InputFinished();
  Lone lone;
  at::Tensor feats = at::empty({1, m.chunk_window, m.num_mel_bins});
  while (d.ChunksReady() > 0) {
    const auto [offset, valid] = d.NextChunk(feats.data_ptr<float>());
    auto out = model->EncoderChunk({feats, at::full({1}, offset, at::kLong),
                                    at::full({1}, valid, at::kLong), d.att_cache(),
                                    d.cnn_cache()});
    lone.logp.push_back(out[0][0].narrow(0, 0, valid).clone());
    lone.out.push_back(out[1][0].narrow(0, 0, valid).clone());
    d.AcceptChunk(out[0], out[1], out[2], out[3]);
  }
  lone.text = d.Finish().text;
  return lone;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: batch_step_check MODEL_DIR WAV...\n";
    return 2;
  }
  at::set_num_threads(1);
  auto model = std::make_shared<const wenet_eff::AsrModel>(argv[1]);
  const auto& m = model->meta();
  std::vector<std::vector<float>> audio;
  std::vector<Lone> lone;
  for (int i = 2; i < argc; ++i) {
    audio.push_back(wenet_eff::ReadWav(argv[i]).samples);
    lone.push_back(DecodeAlone(model, audio.back()));
  }
  const size_t n = audio.size();
  std::vector<std::unique_ptr<AsrDecoder>> decoders;
  std::vector<size_t> sent(n, 0), step(n, 0);
  for (size_t k = 0; k < n; ++k)
    decoders.push_back(std::make_unique<AsrDecoder>(model, wenet_eff::DecodeOptions()));
  double max_out = 0, max_logp = 0;
  std::vector<int> batch_sizes;
  const int64_t row = static_cast<int64_t>(m.chunk_window) * m.num_mel_bins;
  for (size_t round = 0;; ++round) {
    std::vector<size_t> batch;
    bool more = false;
    for (size_t k = 0; k < n; ++k) {
      if (round < k) {  // stream k starts k rounds late
        more = true;
        continue;
      }
      // pieces of 0.1 to 0.7 s, varying by stream and round
      const size_t piece = m.sample_rate * (1 + (k * 3 + round) % 7) / 10;
      const size_t take = std::min(piece, audio[k].size() - sent[k]);
      if (take > 0) decoders[k]->AcceptWaveform(audio[k].data() + sent[k], take);
      sent[k] += take;
      if (sent[k] == audio[k].size() && take > 0) decoders[k]->InputFinished();
      if (decoders[k]->ChunksReady() > 0) batch.push_back(k);
      if (sent[k] < audio[k].size() || decoders[k]->ChunksReady() > 0) more = true;
    }
    if (!more) break;
    if (batch.empty()) continue;
    const int64_t b = static_cast<int64_t>(batch.size());
    at::Tensor feats = at::empty({b, m.chunk_window, m.num_mel_bins});
    at::Tensor offset = at::empty({b}, at::kLong), valid = at::empty({b}, at::kLong);
    std::vector<at::Tensor> att, cnn;
    for (int64_t i = 0; i < b; ++i) {
      AsrDecoder& d = *decoders[batch[i]];
      const auto [o, v] = d.NextChunk(feats.data_ptr<float>() + i * row);
      offset.data_ptr<int64_t>()[i] = o;
      valid.data_ptr<int64_t>()[i] = v;
      att.push_back(d.att_cache());
      cnn.push_back(d.cnn_cache().select(1, 0));
    }
    auto out = model->EncoderChunkBatch({feats, offset, valid, at::stack(att), at::stack(cnn)});
    batch_sizes.push_back(static_cast<int>(b));
    for (int64_t i = 0; i < b; ++i) {
      const size_t k = batch[i];
      const int64_t v = valid.data_ptr<int64_t>()[i];
      const Lone& ref = lone[k];
      max_out = std::max(max_out, (out[1][i].narrow(0, 0, v) - ref.out[step[k]])
                                      .abs().max().item<double>());
      max_logp = std::max(max_logp, (out[0][i].narrow(0, 0, v) - ref.logp[step[k]])
                                        .abs().max().item<double>());
      ++step[k];
      decoders[k]->AcceptChunk(out[0].narrow(0, i, 1), out[1].narrow(0, i, 1), out[2][i],
                               out[3][i].unsqueeze(1));
    }
  }
  nlohmann::ordered_json result = {{"max_abs_encoder_out", max_out},
                                   {"max_abs_ctc_log_probs", max_logp},
                                   {"batch_sizes", batch_sizes}};
  for (size_t k = 0; k < n; ++k) {
    result["alone"].push_back(lone[k].text);
    result["batched"].push_back(decoders[k]->Finish().text);
    result["steps"].push_back(step[k]);
    result["steps_alone"].push_back(lone[k].out.size());
  }
  std::cout << result.dump(1) << "\n";
  return 0;
}

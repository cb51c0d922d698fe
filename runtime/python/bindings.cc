// wenet_eff_runtime: the C++ runtime for Python (benchmarks and tests call the same code as
// decoder_main). Import torch first so libtorch is loaded from the same wheel.
//
//   fbank(samples, sample_rate, num_mel_bins=80, frame_length_ms=25, frame_shift_ms=10)
//   ctc_prefix_beam_search(log_probs (T, V) float32, beam_size, blank=0, token_beam=0)
//   ctc_greedy_search(log_probs (T, V) float32, blank=0)
//   Model(model_dir); Decoder(model, chunk_size=0, num_left_chunks=0, mode=..., ...)
//   set_num_threads(n)
#include <ATen/Parallel.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "asr_decoder.h"
#include "asr_model.h"
#include "ctc_search.h"
#include "endpoint.h"
#include "fbank.h"
#include "wav.h"

namespace py = pybind11;
using wenet_eff::AsrDecoder;
using wenet_eff::AsrModel;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

const float* Rows(const FloatArray& a, int* frames, int* vocab) {
  if (a.ndim() != 2) throw std::invalid_argument("expected a (T, V) array");
  *frames = static_cast<int>(a.shape(0));
  *vocab = static_cast<int>(a.shape(1));
  return a.data();
}

py::dict ResultDict(const wenet_eff::DecodeResult& r) {
  py::dict d;
  d["text"] = r.text;
  d["tokens"] = r.tokens;
  d["encoder_seconds"] = r.encoder_seconds;
  d["search_seconds"] = r.search_seconds;
  d["rescore_seconds"] = r.rescore_seconds;
  py::list segments;
  for (const auto& seg : r.segments) {
    py::dict sd;
    sd["text"] = seg.text;
    sd["tokens"] = seg.tokens;
    sd["start"] = seg.start;
    sd["end"] = seg.end;
    segments.append(sd);
  }
  d["segments"] = segments;
  return d;
}

}  // namespace

PYBIND11_MODULE(wenet_eff_runtime, m) {
  m.doc() = "wenet_eff C++ runtime (fbank, CTC search, streaming decoder over .pt2 packages)";

  m.def("set_num_threads", [](int n) { at::set_num_threads(n); }, py::arg("threads"));

  m.def(
      "fbank",
      [](const FloatArray& samples, int sample_rate, int num_mel_bins, float frame_length_ms,
         float frame_shift_ms) {
        wenet_eff::FbankOptions opts;
        opts.sample_rate = sample_rate;
        opts.num_mel_bins = num_mel_bins;
        opts.frame_length_ms = frame_length_ms;
        opts.frame_shift_ms = frame_shift_ms;
        std::vector<float> scaled(samples.data(), samples.data() + samples.size());
        for (float& s : scaled) s *= 32768.0f;
        int frames = 0;
        std::vector<float> feats =
            wenet_eff::ComputeFbank(opts, scaled.data(), scaled.size(), &frames);
        py::array_t<float> out({frames, num_mel_bins});
        std::copy(feats.begin(), feats.end(), out.mutable_data());
        return out;
      },
      py::arg("samples"), py::arg("sample_rate"), py::arg("num_mel_bins") = 80,
      py::arg("frame_length_ms") = 25.0f, py::arg("frame_shift_ms") = 10.0f,
      "Log-mel fbank of samples in [-1, 1] (WeNet's int16 scale applied inside): (T, D).");

  m.def(
      "read_wav",
      [](const std::string& path) {
        wenet_eff::WavData wav = wenet_eff::ReadWav(path);
        py::array_t<float> out(static_cast<py::ssize_t>(wav.samples.size()));
        std::copy(wav.samples.begin(), wav.samples.end(), out.mutable_data());
        return py::make_tuple(out, wav.sample_rate);
      },
      py::arg("path"), "(samples in [-1, 1] of channel 0, sample_rate)");

  m.def(
      "ctc_prefix_beam_search",
      [](const FloatArray& log_probs, int beam_size, int blank, int token_beam) {
        int frames, vocab;
        const float* rows = Rows(log_probs, &frames, &vocab);
        wenet_eff::CtcPrefixBeamSearch search(beam_size, blank, token_beam);
        search.Advance(rows, frames, vocab);
        py::list out;
        for (const auto& h : search.NBest()) out.append(py::make_tuple(h.tokens, h.score));
        return out;
      },
      py::arg("log_probs"), py::arg("beam_size"), py::arg("blank") = 0,
      py::arg("token_beam") = 0, "n-best [(tokens, log prob)], best first");

  m.def(
      "ctc_greedy_search",
      [](const FloatArray& log_probs, int blank) {
        int frames, vocab;
        const float* rows = Rows(log_probs, &frames, &vocab);
        wenet_eff::CtcGreedySearch search(blank);
        search.Advance(rows, frames, vocab);
        return py::make_tuple(search.Best().tokens, search.Best().score);
      },
      py::arg("log_probs"), py::arg("blank") = 0);

  m.def(
      "endpoint_frames",
      [](const FloatArray& log_probs, py::list decoded, float blank_threshold,
         int frame_shift_ms) {
        // For each frame: whether an endpoint is detected after it, `decoded[t]` telling
        // whether the hypothesis is non-empty by then.
        int frames, vocab;
        const float* rows = Rows(log_probs, &frames, &vocab);
        wenet_eff::EndpointConfig config;
        config.blank_threshold = blank_threshold;
        config.frame_shift_ms = frame_shift_ms;
        wenet_eff::Endpoint endpoint(config);
        std::vector<bool> out;
        for (int t = 0; t < frames; ++t) {
          endpoint.Update(rows + static_cast<size_t>(t) * vocab, 1, vocab);
          out.push_back(endpoint.Detected(decoded[t].cast<bool>()));
        }
        return out;
      },
      py::arg("log_probs"), py::arg("decoded"), py::arg("blank_threshold") = 0.8f,
      py::arg("frame_shift_ms") = 40);

  py::class_<AsrModel, std::shared_ptr<AsrModel>>(m, "Model")
      .def(py::init<const std::string&>(), py::arg("model_dir"))
      .def_property_readonly("chunk_size", [](const AsrModel& a) { return a.meta().chunk_size; })
      .def_property_readonly("num_left_chunks",
                             [](const AsrModel& a) { return a.meta().num_left_chunks; })
      .def_property_readonly("sample_rate", [](const AsrModel& a) { return a.meta().sample_rate; })
      .def_property_readonly("frame_shift_ms",
                             [](const AsrModel& a) { return a.meta().frame_shift_ms; })
      .def_property_readonly("subsampling_rate",
                             [](const AsrModel& a) { return a.meta().subsampling_rate; })
      .def_property_readonly("chunk_window",
                             [](const AsrModel& a) { return a.meta().chunk_window; });

  py::class_<AsrDecoder>(m, "Decoder")
      .def(py::init([](std::shared_ptr<AsrModel> model, int chunk_size, int num_left_chunks,
                       const std::string& mode, int beam_size, double ctc_weight,
                       double reverse_weight, bool continuous_decoding, float blank_threshold,
                       int rule1_min_trailing_silence_ms, int rule2_min_trailing_silence_ms,
                       int rule3_min_utterance_length_ms) {
             wenet_eff::DecodeOptions o;
             o.chunk_size = chunk_size;
             o.num_left_chunks = num_left_chunks;
             o.mode = wenet_eff::ParseDecodeMode(mode);
             o.beam_size = beam_size;
             o.ctc_weight = ctc_weight;
             o.reverse_weight = reverse_weight;
             o.continuous_decoding = continuous_decoding;
             o.endpoint.blank_threshold = blank_threshold;
             o.endpoint.rule1.min_trailing_silence_ms = rule1_min_trailing_silence_ms;
             o.endpoint.rule2.min_trailing_silence_ms = rule2_min_trailing_silence_ms;
             o.endpoint.rule3.min_utterance_length_ms = rule3_min_utterance_length_ms;
             return std::make_unique<AsrDecoder>(model, o);
           }),
           py::arg("model"), py::arg("chunk_size") = 0, py::arg("num_left_chunks") = 0,
           py::arg("mode") = "attention_rescoring", py::arg("beam_size") = 10,
           py::arg("ctc_weight") = 0.3, py::arg("reverse_weight") = 0.5,
           py::arg("continuous_decoding") = false, py::arg("blank_threshold") = 0.8f,
           py::arg("rule1_min_trailing_silence_ms") = 5000,
           py::arg("rule2_min_trailing_silence_ms") = 1000,
           py::arg("rule3_min_utterance_length_ms") = 20000)
      .def(
          "decode",
          [](AsrDecoder& d, const FloatArray& samples) {
            wenet_eff::DecodeResult r;
            {
              py::gil_scoped_release release;
              r = d.Decode(samples.data(), static_cast<size_t>(samples.size()));
            }
            return ResultDict(r);
          },
          py::arg("samples"), "Decode a whole utterance (samples in [-1, 1]).")
      .def("accept_waveform",
           [](AsrDecoder& d, const FloatArray& samples) {
             d.AcceptWaveform(samples.data(), static_cast<size_t>(samples.size()));
           })
      .def("input_finished", &AsrDecoder::InputFinished)
      .def("advance", &AsrDecoder::Advance, py::call_guard<py::gil_scoped_release>())
      .def("partial_text", &AsrDecoder::PartialText)
      .def("finish", [](AsrDecoder& d) { return ResultDict(d.Finish()); })
      .def("reset", &AsrDecoder::Reset);
}

// wenet_eff_runtime: the C++ runtime for Python (benchmarks and tests call the same code as
// decoder_main). Import torch first so libtorch is loaded from the same wheel.
//
//   fbank(samples, sample_rate, num_mel_bins=80, frame_length_ms=25, frame_shift_ms=10)
//   ctc_prefix_beam_search(log_probs (T, V) float32, beam_size, blank=0, token_beam=0,
//                          lm=None, min_token_logp=None, context=None)
//   NgramLm(arpa_path); WordLmFusion(lm, pieces, weight, word_bonus); ContextGraph(phrases,
//   score) (wenet_eff.decode.lm / wenet_eff.decode.context)
//   ctc_greedy_search(log_probs (T, V) float32, blank=0)
//   cpu_features(); choose_kernel_path(cpu, available, int8_share, requested="auto")
//   Model(model_dir, precision="auto") (.precision: the kernel path loaded, .precision_reason)
//   Decoder(model, chunk_size=0, num_left_chunks=0, mode=..., ...,
//           lm=None (ARPA path or NgramLm), lm_weight, word_bonus, min_token_logp,
//           context_path, context_score)
//   set_num_threads(n)
#include <ATen/Parallel.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "asr_decoder.h"
#include "asr_model.h"
#include "cpu_features.h"
#include "context_graph.h"
#include "ctc_search.h"
#include "endpoint.h"
#include "fbank.h"
#include "wav.h"

namespace py = pybind11;
using wenet_eff::AsrDecoder;
using wenet_eff::AsrModel;
using wenet_eff::ContextGraph;
using wenet_eff::NgramLm;
using wenet_eff::WordLmFusion;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

const float* Rows(const FloatArray& a, int* frames, int* vocab) {
  if (a.ndim() != 2) throw std::invalid_argument("expected a (T, V) array");
  *frames = static_cast<int>(a.shape(0));
  *vocab = static_cast<int>(a.shape(1));
  return a.data();
}

// A word of the LM by its text, as wenet_eff.decode.lm.NgramLM.logprob takes it: </s>, a
// vocabulary word, else <unk>; in the context also <s>.
int WordId(const NgramLm& lm, const std::string& word, bool context) {
  if (context && word == "<s>") return lm.bos();
  if (word == "</s>") return lm.eos();
  const int id = lm.FindWord(word);
  return id >= 0 ? id : lm.unk();
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
      py::arg("path"), "(samples in [-1, 1], the mean of the channels, sample_rate)");

  py::class_<NgramLm, std::shared_ptr<NgramLm>>(m, "NgramLm")
      .def(py::init<const std::string&>(), py::arg("arpa_path"),
           py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("order", &NgramLm::order)
      .def_property_readonly("num_words", &NgramLm::num_words)
      .def_property_readonly("counts", &NgramLm::counts)
      .def_property_readonly("memory_bytes", &NgramLm::MemoryBytes)
      .def(
          "log_prob",
          [](const NgramLm& lm, const std::vector<std::string>& context, const std::string& word) {
            std::vector<int32_t> ids;
            for (const auto& w : context) ids.push_back(WordId(lm, w, true));
            return lm.LogProb(ids.data(), static_cast<int>(ids.size()), WordId(lm, word, false));
          },
          py::arg("context"), py::arg("word"),
          "natural-log P(word | context); words outside the vocabulary are <unk>");

  py::class_<WordLmFusion, std::shared_ptr<WordLmFusion>>(m, "WordLmFusion")
      .def(py::init([](std::shared_ptr<NgramLm> lm, std::vector<wenet_eff::WordPiece> pieces,
                       double weight, double word_bonus) {
             return std::make_shared<WordLmFusion>(lm, std::move(pieces), weight, word_bonus);
           }),
           py::arg("lm"), py::arg("pieces"), py::arg("weight"), py::arg("word_bonus"));

  py::class_<ContextGraph, std::shared_ptr<ContextGraph>>(m, "ContextGraph")
      .def(py::init<const std::vector<std::vector<int>>&, double>(), py::arg("phrases"),
           py::arg("score"))
      .def_property_readonly("num_phrases", &ContextGraph::num_phrases);

  m.def(
      "ctc_prefix_beam_search",
      [](const FloatArray& log_probs, int beam_size, int blank, int token_beam,
         std::shared_ptr<WordLmFusion> lm, std::optional<double> min_token_logp,
         std::shared_ptr<ContextGraph> context) {
        int frames, vocab;
        const float* rows = Rows(log_probs, &frames, &vocab);
        wenet_eff::CtcPrefixBeamOptions o;
        o.beam_size = beam_size;
        o.blank = blank;
        o.token_beam = token_beam;
        o.lm = lm;
        if (min_token_logp) o.min_token_logp = *min_token_logp;
        o.context = context;
        wenet_eff::CtcPrefixBeamSearch search(o);
        search.Advance(rows, frames, vocab);
        py::list out;
        for (const auto& h : search.NBest()) out.append(py::make_tuple(h.tokens, h.score));
        return out;
      },
      py::arg("log_probs"), py::arg("beam_size"), py::arg("blank") = 0,
      py::arg("token_beam") = 0, py::arg("lm") = nullptr, py::arg("min_token_logp") = py::none(),
      py::arg("context") = nullptr,
      "n-best [(tokens, score)], best first (score: log prob + the fused scores)");

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

  m.def(
      "cpu_features", [] { return wenet_eff::DetectCpuFeatures().ToString(); },
      "this CPU's features that decide the kernel path (cpu_features.h)");
  m.def(
      "choose_kernel_path",
      [](const std::string& cpu, const std::vector<std::string>& available, double int8_share,
         const std::string& requested) {
        auto choice = wenet_eff::ChooseKernelPath(wenet_eff::ParseCpuFeatures(cpu), available,
                                                  int8_share, requested);
        return py::make_tuple(choice.precision, choice.reason);
      },
      py::arg("cpu"), py::arg("available"), py::arg("int8_share"), py::arg("requested") = "auto",
      "(precision, reason) for a CPU given by feature names (the runtime's choice at load)");

  py::class_<AsrModel, std::shared_ptr<AsrModel>>(m, "Model")
      .def(py::init<const std::string&, const std::string&>(), py::arg("model_dir"),
           py::arg("precision") = "auto")
      .def_property_readonly("precision", &AsrModel::precision)
      .def_property_readonly("precision_reason", &AsrModel::precision_reason)
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
                       int rule3_min_utterance_length_ms, py::object lm, double lm_weight,
                       double word_bonus, std::optional<double> min_token_logp,
                       const std::string& context_path, double context_score) {
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
             if (!lm.is_none()) {  // a path, or an NgramLm shared by decoders
               std::shared_ptr<const NgramLm> ngram =
                   py::isinstance<py::str>(lm)
                       ? std::make_shared<const NgramLm>(lm.cast<std::string>())
                       : lm.cast<std::shared_ptr<NgramLm>>();
               o.lm = std::make_shared<const WordLmFusion>(
                   ngram, wenet_eff::WordPieces(model->symbols(), model->meta().token_join),
                   lm_weight, word_bonus);
             }
             if (min_token_logp) o.min_token_logp = *min_token_logp;
             if (!context_path.empty())
               o.context = ContextGraph::FromFile(context_path, model->symbols(),
                                                  model->meta().token_join, context_score);
             return std::make_unique<AsrDecoder>(model, o);
           }),
           py::arg("model"), py::arg("chunk_size") = 0, py::arg("num_left_chunks") = 0,
           py::arg("mode") = "attention_rescoring", py::arg("beam_size") = 10,
           py::arg("ctc_weight") = 0.3, py::arg("reverse_weight") = 0.5,
           py::arg("continuous_decoding") = false, py::arg("blank_threshold") = 0.8f,
           py::arg("rule1_min_trailing_silence_ms") = 5000,
           py::arg("rule2_min_trailing_silence_ms") = 1000,
           py::arg("rule3_min_utterance_length_ms") = 20000, py::arg("lm") = py::none(),
           py::arg("lm_weight") = 0.5, py::arg("word_bonus") = 1.0,
           py::arg("min_token_logp") = py::none(), py::arg("context_path") = "",
           py::arg("context_score") = 3.0)
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

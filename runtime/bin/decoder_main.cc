// decoder_main: decode a wav.scp or data.list with an exported model directory and measure
// the real-time factor.
//
//   decoder_main --model_dir exp/mini/runtime --data_list data/test/data.list \
//       --chunk_size 16 --num_left_chunks 4 --mode attention_rescoring --threads 1 --warmup 2
//
// stdout: "key text" per utterance. stderr: progress, skipped utterances, and the summary
// "RTF: x" = total decode time / total audio time (threads stated). Unreadable audio or a
// sample rate other than the model's is reported with the key and skipped (counted).
// --continuous_decoding true closes a segment at each endpoint (trailing silence, rules as
// WeNet's) and decodes on; --segments writes each segment's times and text. --lm fuses a word
// n-gram LM (ARPA) into the prefix search and --context_path biases it toward phrases, as
// python -m wenet_eff.bin.recognize does with the same flags.
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "asr_decoder.h"
#include "asr_model.h"
#include "json.h"
#include "wav.h"

namespace {

struct Utterance {
  std::string key, wav;
  double start = -1, end = -1;  // seconds, from data.list segments
};

const char* kUsage =
    "usage: decoder_main --model_dir DIR (--wav_scp FILE | --data_list FILE)\n"
    "  [--chunk_size N (-1: full context; default: the exported chunk)]\n"
    "  [--num_left_chunks N] [--mode attention_rescoring|ctc_prefix_beam_search|"
    "ctc_greedy_search]\n"
    "  [--beam_size 10] [--ctc_weight 0.3] [--reverse_weight 0.5] [--threads 1]\n"
    "  [--lm FILE.arpa (word n-gram LM fused into the prefix search)] [--lm_weight 0.5]\n"
    "  [--word_bonus 1.0 (score per word with --lm)]\n"
    "  [--min_token_logp X (expand only tokens with a log posterior >= X per frame)]\n"
    "  [--context_path FILE (hotwords: one phrase per line)] [--context_score 3.0 (per token)]\n"
    "  [--warmup 1 (untimed decodes of the first utterance)]\n"
    "  [--continuous_decoding false (streaming: close a segment at each endpoint, go on)]\n"
    "  [--blank_threshold 0.8 (blank posterior of a silent frame)]\n"
    "  [--rule1_min_trailing_silence_ms 5000 (endpoint after this much silence;\n"
    "   rule times must be > 0, a very large one disables its rule)]\n"
    "  [--rule2_min_trailing_silence_ms 1000 (... this much silence after speech)]\n"
    "  [--rule3_min_utterance_length_ms 20000 (... a segment this long with speech)]\n"
    "  [--segments FILE (\"key start end text\" per segment with text; seconds in the\n"
    "   audio file)]\n"
    "  [--result FILE (default: stdout)] [--rtf_json FILE]\n";

std::map<std::string, std::string> ParseFlags(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (arg.rfind("--", 0) != 0) throw std::invalid_argument("unexpected argument '" + arg + "'");
    std::string name = arg.substr(2), value;
    size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else {
      if (i + 1 >= argc) throw std::invalid_argument("--" + name + " needs a value");
      value = argv[++i];
    }
    flags[name] = value;
  }
  static const char* kKnown[] = {"model_dir", "wav_scp", "data_list", "chunk_size",
                                 "num_left_chunks", "mode", "beam_size", "ctc_weight",
                                 "reverse_weight", "threads", "warmup", "continuous_decoding",
                                 "blank_threshold", "rule1_min_trailing_silence_ms",
                                 "rule2_min_trailing_silence_ms",
                                 "rule3_min_utterance_length_ms", "segments", "result",
                                 "rtf_json", "lm", "lm_weight", "word_bonus",
                                 "min_token_logp", "context_path", "context_score"};
  for (const auto& [name, value] : flags) {
    bool known = false;
    for (const char* k : kKnown) known = known || name == k;
    if (!known) throw std::invalid_argument("unknown flag --" + name + "\n" + kUsage);
  }
  return flags;
}

std::string Get(const std::map<std::string, std::string>& f, const std::string& k,
                const std::string& fallback) {
  auto it = f.find(k);
  return it == f.end() ? fallback : it->second;
}

std::vector<Utterance> ReadList(const std::map<std::string, std::string>& flags) {
  std::vector<Utterance> utts;
  std::string scp = Get(flags, "wav_scp", ""), list = Get(flags, "data_list", "");
  if (scp.empty() == list.empty())
    throw std::invalid_argument("give exactly one of --wav_scp and --data_list");
  const std::string& path = scp.empty() ? list : scp;
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Utterance u;
    if (!scp.empty()) {
      std::istringstream fields(line);
      fields >> u.key;
      std::getline(fields >> std::ws, u.wav);
      if (u.wav.empty())
        throw std::runtime_error(path + ":" + std::to_string(line_no) + ": expected 'key path'");
    } else {
      try {
        wenet_eff::Json j = wenet_eff::Json::Parse(line);
        u.key = j["key"].String();
        u.wav = j["wav"].String();
        u.start = j.NumberOr("start", -1);
        u.end = j.NumberOr("end", -1);
      } catch (const std::exception& e) {
        throw std::runtime_error(path + ":" + std::to_string(line_no) + ": " + e.what());
      }
    }
    utts.push_back(u);
  }
  return utts;
}

// The utterance's samples at the model's rate; throws naming the key on any problem.
std::vector<float> Load(const Utterance& u, int sample_rate) {
  wenet_eff::WavData wav = wenet_eff::ReadWav(u.wav);
  if (wav.sample_rate != sample_rate)
    throw std::runtime_error(u.wav + ": sample rate " + std::to_string(wav.sample_rate) +
                             " Hz, the model expects " + std::to_string(sample_rate) +
                             " Hz (resample it first)");
  std::vector<float>& s = wav.samples;
  if (u.start >= 0 || u.end >= 0) {  // a segment; a missing start is 0, a missing end the end
    size_t a = u.start >= 0 ? static_cast<size_t>(std::llround(u.start * sample_rate)) : 0;
    size_t b = u.end >= 0 ? static_cast<size_t>(std::llround(u.end * sample_rate)) : s.size();
    // the end may overshoot the audio by up to 10 ms (rounding in segment lists)
    if (b > s.size() + sample_rate / 100 || a >= std::min(b, s.size()))
      throw std::runtime_error(u.wav + ": segment [" + std::to_string(u.start) + ", " +
                               std::to_string(u.end) + "] s outside the audio (" +
                               std::to_string(static_cast<double>(s.size()) / sample_rate) +
                               " s)");
    s = std::vector<float>(s.begin() + a, s.begin() + std::min(b, s.size()));
  }
  if (s.empty()) throw std::runtime_error(u.wav + ": no samples");
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    auto flags = ParseFlags(argc, argv);
    std::string model_dir = Get(flags, "model_dir", "");
    if (model_dir.empty()) throw std::invalid_argument(std::string("--model_dir is required\n") + kUsage);
    const int threads = std::stoi(Get(flags, "threads", "1"));
    at::set_num_threads(threads);
    auto model = std::make_shared<wenet_eff::AsrModel>(model_dir);
    wenet_eff::DecodeOptions opts;
    opts.chunk_size = std::stoi(Get(flags, "chunk_size", "0"));
    opts.num_left_chunks = std::stoi(Get(flags, "num_left_chunks", "0"));
    opts.mode = wenet_eff::ParseDecodeMode(Get(flags, "mode", "attention_rescoring"));
    opts.beam_size = std::stoi(Get(flags, "beam_size", "10"));
    opts.ctc_weight = std::stod(Get(flags, "ctc_weight", "0.3"));
    opts.reverse_weight = std::stod(Get(flags, "reverse_weight", "0.5"));
    opts.continuous_decoding = Get(flags, "continuous_decoding", "false") == "true";
    opts.endpoint.blank_threshold = std::stof(Get(flags, "blank_threshold", "0.8"));
    opts.endpoint.rule1.min_trailing_silence_ms =
        std::stoi(Get(flags, "rule1_min_trailing_silence_ms", "5000"));
    opts.endpoint.rule2.min_trailing_silence_ms =
        std::stoi(Get(flags, "rule2_min_trailing_silence_ms", "1000"));
    opts.endpoint.rule3.min_utterance_length_ms =
        std::stoi(Get(flags, "rule3_min_utterance_length_ms", "20000"));
    if (flags.count("min_token_logp")) opts.min_token_logp = std::stod(flags["min_token_logp"]);
    if (const std::string path = Get(flags, "lm", ""); !path.empty()) {
      auto t0 = std::chrono::steady_clock::now();
      auto lm = std::make_shared<const wenet_eff::NgramLm>(path);
      opts.lm = std::make_shared<const wenet_eff::WordLmFusion>(
          lm, wenet_eff::WordPieces(model->symbols(), model->meta().token_join),
          std::stod(Get(flags, "lm_weight", "0.5")), std::stod(Get(flags, "word_bonus", "1.0")));
      std::cerr << "LM " << path << ": " << lm->order() << "-gram, " << lm->num_words()
                << " words, " << lm->MemoryBytes() / 1e6 << " MB, loaded in "
                << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
                << " s\n";
    }
    if (const std::string path = Get(flags, "context_path", ""); !path.empty()) {
      opts.context = wenet_eff::ContextGraph::FromFile(
          path, model->symbols(), model->meta().token_join,
          std::stod(Get(flags, "context_score", "3.0")));
      std::cerr << "context " << path << ": " << opts.context->num_phrases() << " phrases\n";
    }
    wenet_eff::AsrDecoder decoder(model, opts);
    std::vector<Utterance> utts = ReadList(flags);
    const int sample_rate = model->meta().sample_rate;

    std::ofstream result_file;
    std::string result_path = Get(flags, "result", "");
    if (!result_path.empty()) {
      result_file.open(result_path);
      if (!result_file) throw std::runtime_error(result_path + ": cannot write");
    }
    std::ostream& out = result_path.empty() ? std::cout : result_file;
    std::ofstream segments_file;
    const std::string segments_path = Get(flags, "segments", "");
    if (!segments_path.empty()) {
      segments_file.open(segments_path);
      if (!segments_file) throw std::runtime_error(segments_path + ": cannot write");
    }

    const int warmup = std::stoi(Get(flags, "warmup", "1"));
    for (const Utterance& u : utts) {  // warm up on the first readable utterance
      try {
        std::vector<float> s = Load(u, sample_rate);
        for (int i = 0; i < warmup; ++i) decoder.Decode(s.data(), s.size());
        break;
      } catch (const std::exception&) {
      }
    }

    double audio_seconds = 0, decode_seconds = 0, encoder_seconds = 0, search_seconds = 0,
           rescore_seconds = 0;
    int decoded = 0, skipped = 0;
    for (const Utterance& u : utts) {
      std::vector<float> samples;
      try {
        samples = Load(u, sample_rate);
      } catch (const std::exception& e) {
        std::cerr << "skipped " << u.key << ": " << e.what() << "\n";
        ++skipped;
        continue;
      }
      auto t0 = std::chrono::steady_clock::now();
      wenet_eff::DecodeResult r;
      try {
        r = decoder.Decode(samples.data(), samples.size());
      } catch (const std::exception& e) {  // one bad utterance does not end the run
        std::cerr << "skipped " << u.key << ": " << e.what() << "\n";
        ++skipped;
        continue;
      }
      decode_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      audio_seconds += static_cast<double>(samples.size()) / sample_rate;
      encoder_seconds += r.encoder_seconds;
      search_seconds += r.search_seconds;
      rescore_seconds += r.rescore_seconds;
      out << u.key << " " << r.text << "\n";
      if (segments_file.is_open()) {
        const double offset = u.start > 0 ? u.start : 0;  // data.list segments: in the file
        for (const auto& seg : r.segments) {
          if (seg.text.empty()) continue;  // silence
          char times[64];
          std::snprintf(times, sizeof(times), " %.2f %.2f ", offset + seg.start,
                        offset + seg.end);
          segments_file << u.key << times << seg.text << "\n";
        }
      }
      ++decoded;
    }
    out.flush();
    if (segments_file.is_open()) segments_file.flush();
    const double rtf = audio_seconds > 0 ? decode_seconds / audio_seconds : 0;
    char line[512];
    std::snprintf(line, sizeof(line),
                  "decoded %d utterances (%d skipped), %.1f s of audio in %.2f s, threads %d, "
                  "chunk_size %d, mode %s\nRTF: %.4f",
                  decoded, skipped, audio_seconds, decode_seconds, threads,
                  opts.chunk_size == 0 ? model->meta().chunk_size : opts.chunk_size,
                  wenet_eff::DecodeModeName(opts.mode), rtf);
    std::cerr << line << "\n";
    std::string rtf_json = Get(flags, "rtf_json", "");
    if (!rtf_json.empty() && decoded > 0) {  // none decoded: no figures to keep
      std::ofstream j(rtf_json);
      j << "{\"rtf\": " << rtf << ", \"audio_seconds\": " << audio_seconds
        << ", \"decode_seconds\": " << decode_seconds << ", \"encoder_seconds\": "
        << encoder_seconds << ", \"search_seconds\": " << search_seconds
        << ", \"rescore_seconds\": " << rescore_seconds << ", \"utterances\": " << decoded
        << ", \"skipped\": " << skipped << ", \"threads\": " << threads << "}\n";
    }
    return decoded == 0 && !utts.empty() ? 1 : 0;
  } catch (const std::exception& e) {
    std::cerr << "decoder_main: " << e.what() << "\n";
    return 2;
  }
}

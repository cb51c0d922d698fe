// decoder_main: decode a wav.scp or data.list with an exported model directory and measure
// the real-time factor.
//
//   decoder_main --model_dir exp/mini/runtime --data_list data/test/data.list \
//       --chunk_size 16 --num_left_chunks 4 --mode attention_rescoring --threads 1 --warmup 2
//
// Flags are gflags (src/flags.h holds the decoding ones, shared with the other runtime
// binaries): --flag=value or --flag value, --flagfile FILE, --help; every value is typed and
// range-checked, and an unknown flag is an error. stdout: "key text" per utterance. stderr:
// progress, skipped utterances, and the summary "RTF: x" = total decode time / total audio time
// (threads stated). The list is checked before the model loads: a key that is empty or holds
// whitespace (it would split in the "key text" output) stops the run naming the file and line,
// as does an empty list. Unreadable or truncated audio, or a sample rate other than the model's,
// is reported with the key and skipped (counted); multi-channel audio is averaged to mono and
// counted. --continuous_decoding=true closes a segment at each endpoint (trailing silence, rules
// as WeNet's) and decodes on; --segments writes each segment's times and text. --lm fuses a
// word n-gram LM (ARPA) into the prefix search and --context_path biases it toward phrases, as
// python -m wenet_eff.bin.recognize does with the same flags.
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "asr_decoder.h"
#include "asr_model.h"
#include "flags.h"
#include "json.h"
#include "wav.h"

DEFINE_string(wav_scp, "", "input: \"key path\" lines (give this or --data_list)");
DEFINE_string(data_list, "", "input: data.list JSON lines {\"key\", \"wav\"[, \"start\", "
              "\"end\" seconds]} (give this or --wav_scp)");
DEFINE_int32(warmup, 1, "untimed decodes of the first readable utterance (>= 0)");
DEFINE_string(result, "", "\"key text\" lines; empty: stdout");
DEFINE_string(segments, "", "with --continuous_decoding: \"key start end text\" per segment "
              "with text (seconds in the audio file)");
DEFINE_string(rtf_json, "", "the RTF and timing figures as JSON (written when something was "
              "decoded)");
DEFINE_string(precision, "auto", "kernel path of the graphs: auto (the fastest the model "
              "directory has for this CPU), fp32, int8 or bf16");

namespace {

bool NotNegative(const char* flag, int32_t v) {
  if (v >= 0) return true;
  std::cerr << "ERROR: --" << flag << "=" << v << ": must be >= 0\n";
  return false;
}
DEFINE_validator(warmup, NotNegative);

bool KernelPath(const char* flag, const std::string& v) {
  if (v == "auto" || v == "fp32" || v == "int8" || v == "bf16") return true;
  std::cerr << "ERROR: --" << flag << "=" << v << ": must be auto, fp32, int8 or bf16\n";
  return false;
}
DEFINE_validator(precision, KernelPath);

const char* kUsage =
    "decode a wav.scp or data.list with an exported model directory and measure the RTF\n"
    "  decoder_main --model_dir DIR (--wav_scp FILE | --data_list FILE) [--flag=value ...]\n"
    "  (--flagfile FILE reads flags from FILE, one per line)";

struct Utterance {
  std::string key, wav;
  double start = -1, end = -1;  // seconds, from data.list segments
};

// Whether code point `c` is whitespace as Python's str.isspace has it (so a key the Python
// tools refuse is refused here too).
bool IsSpace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

// `key` in double quotes, control characters escaped as in JSON.
std::string Quoted(const std::string& key) {
  std::string out = "\"";
  for (unsigned char c : key) {
    if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\u%04x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// Why `key` cannot name an utterance ("" when it can), as wenet_eff.data.sources.key_problem:
// a key is one token of the "key text" lines, so it is non-empty and holds no whitespace.
std::string KeyProblem(const std::string& key) {
  if (key.empty()) return "empty key; every utterance needs one";
  for (size_t i = 0; i < key.size();) {  // UTF-8
    const unsigned char lead = key[i];
    const int len = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
    uint32_t c = len == 1 ? lead : lead & (0x7F >> len);
    for (int k = 1; k < len && i + k < key.size(); ++k) c = (c << 6) | (key[i + k] & 0x3F);
    if (IsSpace(c)) {
      return "key " + Quoted(key) +
             " contains whitespace, which splits it in the \"key text\" output; rename the "
             "utterance";
    }
    i += len;
  }
  return "";
}

std::vector<Utterance> ReadList() {
  if (FLAGS_wav_scp.empty() == FLAGS_data_list.empty())
    throw std::invalid_argument("give exactly one of --wav_scp and --data_list");
  const bool scp = !FLAGS_wav_scp.empty();
  const std::string& path = scp ? FLAGS_wav_scp : FLAGS_data_list;
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::vector<Utterance> utts;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no) + ": ";
    Utterance u;
    if (scp) {
      std::istringstream fields(line);
      fields >> u.key;
      std::getline(fields >> std::ws, u.wav);
      if (u.wav.empty()) throw std::runtime_error(where + "expected 'key path'");
    } else {
      try {
        wenet_eff::Json j = wenet_eff::Json::Parse(line);
        u.key = j["key"].String();
        u.wav = j["wav"].String();
        u.start = j.NumberOr("start", -1);
        u.end = j.NumberOr("end", -1);
      } catch (const std::exception& e) {
        throw std::runtime_error(where + e.what());
      }
    }
    if (const std::string problem = KeyProblem(u.key); !problem.empty())
      throw std::runtime_error(where + problem);
    utts.push_back(u);
  }
  if (utts.empty())
    throw std::runtime_error(path + ": no utterances (an empty list decodes nothing: check how "
                                    "it was made)");
  return utts;
}

// The utterance's audio at the model's rate (the segment when it has one); throws naming the
// file on any problem.
wenet_eff::WavData Load(const Utterance& u, int sample_rate) {
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
  return wav;
}

}  // namespace

int main(int argc, char** argv) {
  wenet_eff::ParseFlags(kUsage, &argc, &argv);
  try {
    const std::vector<Utterance> utts = ReadList();
    at::set_num_threads(FLAGS_threads);
    auto model = std::make_shared<wenet_eff::AsrModel>(FLAGS_model_dir, FLAGS_precision);
    const wenet_eff::DecodeOptions opts = wenet_eff::DecodeOptionsFromFlags(*model);
    wenet_eff::AsrDecoder decoder(model, opts);
    const int sample_rate = model->meta().sample_rate;

    std::ofstream result_file;
    if (!FLAGS_result.empty()) {
      result_file.open(FLAGS_result);
      if (!result_file) throw std::runtime_error(FLAGS_result + ": cannot write");
    }
    std::ostream& out = FLAGS_result.empty() ? std::cout : result_file;
    std::ofstream segments_file;
    if (!FLAGS_segments.empty()) {
      segments_file.open(FLAGS_segments);
      if (!segments_file) throw std::runtime_error(FLAGS_segments + ": cannot write");
    }

    for (const Utterance& u : utts) {  // warm up on the first readable utterance
      try {
        std::vector<float> s = Load(u, sample_rate).samples;
        for (int i = 0; i < FLAGS_warmup; ++i) decoder.Decode(s.data(), s.size());
        break;
      } catch (const std::exception&) {
      }
    }

    double audio_seconds = 0, decode_seconds = 0, encoder_seconds = 0, search_seconds = 0,
           rescore_seconds = 0;
    int decoded = 0, skipped = 0, downmixed = 0;
    for (const Utterance& u : utts) {
      wenet_eff::WavData wav;
      try {
        wav = Load(u, sample_rate);
      } catch (const std::exception& e) {
        std::cerr << "skipped " << u.key << ": " << e.what() << "\n";
        ++skipped;
        continue;
      }
      const std::vector<float>& samples = wav.samples;
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
      downmixed += wav.num_channels > 1;
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
    if (downmixed > 0)
      std::cerr << "downmixed " << downmixed << " multi-channel files to mono (channels averaged)\n";
    const double rtf = audio_seconds > 0 ? decode_seconds / audio_seconds : 0;
    char line[512];
    std::snprintf(line, sizeof(line),
                  "decoded %d utterances (%d skipped), %.1f s of audio in %.2f s, threads %d, "
                  "chunk_size %d, mode %s\nRTF: %.4f",
                  decoded, skipped, audio_seconds, decode_seconds, FLAGS_threads,
                  opts.chunk_size == 0 ? model->meta().chunk_size : opts.chunk_size,
                  wenet_eff::DecodeModeName(opts.mode), rtf);
    std::cerr << line << "\n";
    if (!FLAGS_rtf_json.empty() && decoded > 0) {  // none decoded: no figures to keep
      std::ofstream j(FLAGS_rtf_json);
      j << "{\"rtf\": " << rtf << ", \"audio_seconds\": " << audio_seconds
        << ", \"decode_seconds\": " << decode_seconds << ", \"encoder_seconds\": "
        << encoder_seconds << ", \"search_seconds\": " << search_seconds
        << ", \"rescore_seconds\": " << rescore_seconds << ", \"utterances\": " << decoded
        << ", \"skipped\": " << skipped << ", \"downmixed\": " << downmixed
        << ", \"threads\": " << FLAGS_threads << ", \"kernel_path\": \"" << model->precision()
        << "\"}\n";
    }
    return decoded == 0 ? 1 : 0;
  } catch (const std::exception& e) {
    std::cerr << "decoder_main: " << e.what() << "\n";
    return 2;
  }
}

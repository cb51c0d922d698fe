// The runtime's shared flags and their validators; see flags.h.
#include "flags.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

#include "decode_mode.h"

DEFINE_string(model_dir, "", "exported model directory (python -m wenet_eff.bin.export): "
              "meta.json, units.txt and the .pt2 graphs; required");
DEFINE_int32(threads, 1, "intra-op threads of the graphs (>= 1)");
DEFINE_int32(chunk_size, 0, "encoder frames per streaming step: -1 full context, 0 the exported "
             "chunk, > 0 must equal the exported one");
DEFINE_int32(num_left_chunks, 0, "left chunks the streaming step attends to: 0 the exported "
             "number, -1 all (must equal the exported one)");
DEFINE_string(mode, "attention_rescoring",
              "attention_rescoring | ctc_prefix_beam_search | ctc_greedy_search");
DEFINE_int32(beam_size, 10, "prefix beam size (>= 1)");
DEFINE_double(ctc_weight, 0.3, "weight of the CTC score in attention rescoring, in [0, 1]");
DEFINE_double(reverse_weight, 0.5,
              "weight of the right-to-left decoder in attention rescoring, in [0, 1]");
DEFINE_string(lm, "", "word n-gram LM (ARPA) fused into the prefix search; empty: none");
DEFINE_double(lm_weight, 0.5, "weight of the LM score (>= 0)");
DEFINE_double(word_bonus, 1.0, "score added per word with --lm");
DEFINE_double(min_token_logp, -std::numeric_limits<double>::infinity(),
              "expand only tokens whose log posterior in a frame is >= this (<= 0; -inf: all)");
DEFINE_string(context_path, "", "hotwords to bias the prefix search toward, one phrase per "
              "line; empty: none");
DEFINE_double(context_score, 3.0, "bonus per token of a context phrase (>= 0)");
DEFINE_bool(continuous_decoding, false, "streaming: close a segment at each endpoint and decode "
            "on (--continuous_decoding=true)");
DEFINE_double(blank_threshold, 0.8, "blank posterior from which a frame is silent, in [0, 1]");
DEFINE_int32(rule1_min_trailing_silence_ms, 5000,
             "endpoint after this much trailing silence (> 0; very large: rule off)");
DEFINE_int32(rule2_min_trailing_silence_ms, 1000,
             "endpoint after this much trailing silence following speech (> 0)");
DEFINE_int32(rule3_min_utterance_length_ms, 20000,
             "endpoint when a segment with speech reaches this length (> 0)");

namespace {

// Says why --flag=value is refused (gflags then names the flag again and exits).
template <typename T>
bool Refuse(const char* flag, T value, const std::string& need) {
  std::ostringstream text;
  text << value;
  std::cerr << "ERROR: --" << flag << "=" << text.str() << ": " << need << "\n";
  return false;
}

bool AtLeastOne(const char* flag, int32_t v) { return v >= 1 || Refuse(flag, v, "must be >= 1"); }

bool ChunkSize(const char* flag, int32_t v) {
  return v >= -1 || Refuse(flag, v, "must be -1 (full context), 0 (the exported chunk) or > 0");
}

bool LeftChunks(const char* flag, int32_t v) {
  return v >= -1 || Refuse(flag, v, "must be -1 (all), 0 (the exported number) or > 0");
}

bool Probability(const char* flag, double v) {
  return (v >= 0 && v <= 1) || Refuse(flag, v, "must be in [0, 1]");
}

bool NonNegative(const char* flag, double v) {
  return (std::isfinite(v) && v >= 0) || Refuse(flag, v, "must be a finite number >= 0");
}

bool Finite(const char* flag, double v) {
  return std::isfinite(v) || Refuse(flag, v, "must be a finite number");
}

bool LogProbability(const char* flag, double v) {
  return v <= 0 || Refuse(flag, v, "must be a log probability <= 0 (-inf: no floor)");
}

bool ModeName(const char* flag, const std::string& v) {
  try {
    wenet_eff::ParseDecodeMode(v);
    return true;
  } catch (const std::invalid_argument& e) {
    return Refuse(flag, v, e.what());
  }
}

// The runtime's source directory, to list only its flags in --help (not gflags' own).
std::string RuntimeDir() {
  const std::string file = __FILE__;
  const size_t at = file.rfind("src/flags.cc");
  return at == std::string::npos ? "" : file.substr(0, at);
}

}  // namespace

DEFINE_validator(threads, AtLeastOne);
DEFINE_validator(chunk_size, ChunkSize);
DEFINE_validator(num_left_chunks, LeftChunks);
DEFINE_validator(mode, ModeName);
DEFINE_validator(beam_size, AtLeastOne);
DEFINE_validator(ctc_weight, Probability);
DEFINE_validator(reverse_weight, Probability);
DEFINE_validator(lm_weight, NonNegative);
DEFINE_validator(word_bonus, Finite);
DEFINE_validator(min_token_logp, LogProbability);
DEFINE_validator(context_score, NonNegative);
DEFINE_validator(blank_threshold, Probability);
DEFINE_validator(rule1_min_trailing_silence_ms, AtLeastOne);
DEFINE_validator(rule2_min_trailing_silence_ms, AtLeastOne);
DEFINE_validator(rule3_min_utterance_length_ms, AtLeastOne);

namespace wenet_eff {

void ParseFlags(const char* usage, int* argc, char*** argv) {
  gflags::SetUsageMessage(usage);
  gflags::ParseCommandLineNonHelpFlags(argc, argv, /*remove_flags=*/true);
  const char* program = gflags::ProgramInvocationShortName();
  std::string help;
  if (gflags::GetCommandLineOption("help", &help) && help == "true") {
    gflags::ShowUsageWithFlagsRestrict(program, RuntimeDir().c_str());
    std::exit(0);
  }
  gflags::HandleCommandLineHelpFlags();  // --helpfull, --helpmatch, --version, ...
  if (*argc > 1) {
    std::cerr << "ERROR: " << program << ": unexpected argument '" << (*argv)[1]
              << "': every argument is a --flag (a bool flag takes its value after '=', e.g. "
                 "--continuous_decoding=true); see --help\n";
    std::exit(1);
  }
  if (FLAGS_model_dir.empty()) {
    std::cerr << "ERROR: " << program << ": --model_dir is required (a directory written by "
                 "python -m wenet_eff.bin.export); see --help\n";
    std::exit(1);
  }
}

DecodeOptions DecodeOptionsFromFlags(const AsrModel& model) {
  DecodeOptions o;
  o.chunk_size = FLAGS_chunk_size;
  o.num_left_chunks = FLAGS_num_left_chunks;
  o.mode = ParseDecodeMode(FLAGS_mode);
  o.beam_size = FLAGS_beam_size;
  o.ctc_weight = FLAGS_ctc_weight;
  o.reverse_weight = FLAGS_reverse_weight;
  o.min_token_logp = FLAGS_min_token_logp;
  o.continuous_decoding = FLAGS_continuous_decoding;
  o.endpoint.blank_threshold = static_cast<float>(FLAGS_blank_threshold);
  o.endpoint.rule1.min_trailing_silence_ms = FLAGS_rule1_min_trailing_silence_ms;
  o.endpoint.rule2.min_trailing_silence_ms = FLAGS_rule2_min_trailing_silence_ms;
  o.endpoint.rule3.min_utterance_length_ms = FLAGS_rule3_min_utterance_length_ms;
  if (!FLAGS_lm.empty()) {
    auto t0 = std::chrono::steady_clock::now();
    auto lm = std::make_shared<const NgramLm>(FLAGS_lm);
    o.lm = std::make_shared<const WordLmFusion>(
        lm, WordPieces(model.symbols(), model.meta().token_join), FLAGS_lm_weight,
        FLAGS_word_bonus);
    std::cerr << "LM " << FLAGS_lm << ": " << lm->order() << "-gram, " << lm->num_words()
              << " words, " << lm->MemoryBytes() / 1e6 << " MB, loaded in "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
              << " s\n";
  }
  if (!FLAGS_context_path.empty()) {
    o.context = ContextGraph::FromFile(FLAGS_context_path, model.symbols(),
                                       model.meta().token_join, FLAGS_context_score);
    std::cerr << "context " << FLAGS_context_path << ": " << o.context->num_phrases()
              << " phrases\n";
  }
  return o;
}

}  // namespace wenet_eff

// The runtime binaries' shared command-line flags (gflags, as WeNet's runtime: --flag=value or
// --flag value, --flagfile, generated --help): the exported model directory, threads and every
// decoding option, each typed and range-checked by a validator, so a bad value stops the binary
// with a message naming the flag and the value before anything is loaded. A binary defines its
// own I/O flags beside these and calls ParseFlags, then DecodeOptionsFromFlags.
#pragma once

#include <gflags/gflags.h>

#include "asr_decoder.h"
#include "asr_model.h"

DECLARE_string(model_dir);
DECLARE_int32(threads);
DECLARE_int32(chunk_size);
DECLARE_int32(num_left_chunks);
DECLARE_string(mode);
DECLARE_int32(beam_size);
DECLARE_double(ctc_weight);
DECLARE_double(reverse_weight);
DECLARE_string(lm);
DECLARE_double(lm_weight);
DECLARE_double(word_bonus);
DECLARE_double(min_token_logp);
DECLARE_string(context_path);
DECLARE_double(context_score);
DECLARE_bool(continuous_decoding);
DECLARE_double(blank_threshold);
DECLARE_int32(rule1_min_trailing_silence_ms);
DECLARE_int32(rule2_min_trailing_silence_ms);
DECLARE_int32(rule3_min_utterance_length_ms);

namespace wenet_eff {

// Parses the command line into the FLAGS_ variables (`usage`: the first lines of --help). Exits
// with status 1 after a message naming the flag on an unknown flag, a value that is not of the
// flag's type or fails its validator, or any argument that is not a flag; --help prints the
// runtime's flags with their defaults and exits 0. Requires --model_dir.
void ParseFlags(const char* usage, int* argc, char*** argv);

// The decode options the flags give for `model`; loads --lm and --context_path (reporting what
// was loaded on stderr). Throws what AsrDecoder would for options that do not fit the model.
DecodeOptions DecodeOptionsFromFlags(const AsrModel& model);

}  // namespace wenet_eff

// The search a decoder runs, parsed once from its name (the flag / Python argument), so no
// step compares strings.
#pragma once

#include <string>

namespace wenet_eff {

enum class DecodeMode {
  kAttentionRescoring,  // CTC prefix beam search, then the attention decoders rescore the n-best
  kCtcPrefixBeamSearch,
  kCtcGreedySearch,
};

// "attention_rescoring" | "ctc_prefix_beam_search" | "ctc_greedy_search" (WeNet's names).
// Throws std::invalid_argument naming the mode and the known ones.
DecodeMode ParseDecodeMode(const std::string& name);

const char* DecodeModeName(DecodeMode mode);

}  // namespace wenet_eff

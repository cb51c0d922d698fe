#include "decode_mode.h"

#include <stdexcept>

namespace wenet_eff {

namespace {

constexpr DecodeMode kModes[] = {DecodeMode::kAttentionRescoring,
                                 DecodeMode::kCtcPrefixBeamSearch, DecodeMode::kCtcGreedySearch};

}  // namespace

const char* DecodeModeName(DecodeMode mode) {
  switch (mode) {
    case DecodeMode::kAttentionRescoring:
      return "attention_rescoring";
    case DecodeMode::kCtcPrefixBeamSearch:
      return "ctc_prefix_beam_search";
    case DecodeMode::kCtcGreedySearch:
      return "ctc_greedy_search";
  }
  throw std::logic_error("DecodeModeName: a DecodeMode without a name");
}

DecodeMode ParseDecodeMode(const std::string& name) {
  std::string known;
  for (DecodeMode mode : kModes) {
    if (name == DecodeModeName(mode)) return mode;
    known += (known.empty() ? "" : ", ") + std::string(DecodeModeName(mode));
  }
  throw std::invalid_argument("mode '" + name + "' unknown (" + known + ")");
}

}  // namespace wenet_eff

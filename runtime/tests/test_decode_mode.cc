// Decode modes: every name parses to its mode and back; an unknown name is an error that
// names it and the known ones.
#include <stdexcept>
#include <string>

#include "check.h"
#include "decode_mode.h"

using wenet_eff::DecodeMode;
using wenet_eff::DecodeModeName;
using wenet_eff::ParseDecodeMode;

int main() {
  CHECK(ParseDecodeMode("attention_rescoring") == DecodeMode::kAttentionRescoring);
  CHECK(ParseDecodeMode("ctc_prefix_beam_search") == DecodeMode::kCtcPrefixBeamSearch);
  CHECK(ParseDecodeMode("ctc_greedy_search") == DecodeMode::kCtcGreedySearch);
  for (DecodeMode mode : {DecodeMode::kAttentionRescoring, DecodeMode::kCtcPrefixBeamSearch,
                          DecodeMode::kCtcGreedySearch})
    CHECK(ParseDecodeMode(DecodeModeName(mode)) == mode);
  for (const char* bad : {"beam", "", "CTC_GREEDY_SEARCH", "attention"}) {
    std::string message;
    try {
      ParseDecodeMode(bad);
    } catch (const std::invalid_argument& e) {
      message = e.what();
    }
    CHECK(message == std::string("mode '") + bad +
                         "' unknown (attention_rescoring, ctc_prefix_beam_search, "
                         "ctc_greedy_search)");
  }
  return TEST_RESULT();
}

#include "endpoint.h"

#include <cmath>

namespace wenet_eff {

void Endpoint::Update(const float* log_probs, int frames, int vocab) {
  const float log_threshold = std::log(config_.blank_threshold);
  for (int t = 0; t < frames; ++t) {
    bool silent = log_probs[static_cast<size_t>(t) * vocab + config_.blank] >= log_threshold;
    trailing_silence_ = silent ? trailing_silence_ + 1 : 0;
    ++frames_;
  }
}

bool Endpoint::RuleHolds(const EndpointRule& rule, bool decoded) const {
  if (rule.must_contain_nonsilence && !decoded) return false;
  return trailing_silence_ * config_.frame_shift_ms >= rule.min_trailing_silence_ms &&
         frames_ * config_.frame_shift_ms >= rule.min_utterance_length_ms;
}

bool Endpoint::Detected(bool decoded) const {
  if (frames_ == 0) return false;
  return RuleHolds(config_.rule1, decoded) || RuleHolds(config_.rule2, decoded) ||
         RuleHolds(config_.rule3, decoded);
}

void Endpoint::Reset() {
  frames_ = 0;
  trailing_silence_ = 0;
}

}  // namespace wenet_eff

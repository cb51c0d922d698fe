// Endpoint detection on CTC posteriors, WeNet's three default rules as the Python streaming
// session has them (wenet_eff.decode.streaming.EndpointConfig): a frame is silence when its
// blank posterior is at least blank_threshold; an endpoint is reached when any rule holds:
//   rule 1: >= 5 s of trailing silence (whether or not anything was decoded);
//   rule 2: something decoded and >= 1 s of trailing silence;
//   rule 3: something decoded and the utterance reached 20 s.
#pragma once

namespace wenet_eff {

struct EndpointRule {
  bool must_contain_nonsilence;
  int min_trailing_silence_ms;
  int min_utterance_length_ms;
};

struct EndpointConfig {
  EndpointRule rule1{false, 5000, 0};
  EndpointRule rule2{true, 1000, 0};
  EndpointRule rule3{true, 0, 20000};
  float blank_threshold = 0.8f;  // a frame whose blank posterior is at least this is silent
  int blank = 0;
  int frame_shift_ms = 40;  // of the CTC frames (feature shift x subsampling)
};

class Endpoint {
 public:
  explicit Endpoint(const EndpointConfig& config = EndpointConfig()) : config_(config) {}

  // Consume `frames` rows of `vocab` CTC log posteriors.
  void Update(const float* log_probs, int frames, int vocab);
  // Whether an endpoint is reached; `decoded` says whether the hypothesis is non-empty.
  bool Detected(bool decoded) const;
  void Reset();

  int num_frames() const { return frames_; }
  int trailing_silence_frames() const { return trailing_silence_; }

 private:
  bool RuleHolds(const EndpointRule& rule, bool decoded) const;

  EndpointConfig config_;
  int frames_ = 0;
  int trailing_silence_ = 0;
};

}  // namespace wenet_eff

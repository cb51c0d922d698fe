// Endpoint rules: trailing silence after speech (rule 2), long silence without speech
// (rule 1), maximum utterance length (rule 3).
#include <cmath>
#include <vector>

#include "check.h"
#include "endpoint.h"

using wenet_eff::Endpoint;
using wenet_eff::EndpointConfig;

namespace {

// One frame of log posteriors over 2 tokens with the given blank probability.
std::vector<float> Frame(float blank_prob) {
  return {std::log(blank_prob), std::log(1.0f - blank_prob)};
}

}  // namespace

int main() {
  EndpointConfig config;  // 40 ms frames: 1 s = 25 frames, 5 s = 125, 20 s = 500
  {
    Endpoint ep(config);
    auto speech = Frame(0.1f), silence = Frame(0.95f);
    for (int t = 0; t < 10; ++t) ep.Update(speech.data(), 1, 2);
    for (int t = 0; t < 24; ++t) ep.Update(silence.data(), 1, 2);
    CHECK(!ep.Detected(true));  // 0.96 s of silence
    ep.Update(silence.data(), 1, 2);
    CHECK(ep.Detected(true));    // 1 s after speech: rule 2
    CHECK(!ep.Detected(false));  // nothing decoded: rule 2 does not apply, rule 1 needs 5 s
    ep.Update(speech.data(), 1, 2);
    CHECK(ep.trailing_silence_frames() == 0);
    CHECK(!ep.Detected(true));
  }
  {
    Endpoint ep(config);
    auto silence = Frame(0.9f);
    for (int t = 0; t < 124; ++t) ep.Update(silence.data(), 1, 2);
    CHECK(!ep.Detected(false));
    ep.Update(silence.data(), 1, 2);
    CHECK(ep.Detected(false));  // rule 1: 5 s of silence
  }
  {
    Endpoint ep(config);
    auto speech = Frame(0.5f);  // below the 0.8 threshold: never silent
    for (int t = 0; t < 499; ++t) ep.Update(speech.data(), 1, 2);
    CHECK(!ep.Detected(true));
    ep.Update(speech.data(), 1, 2);
    CHECK(ep.Detected(true));    // rule 3: 20 s
    CHECK(!ep.Detected(false));  // ... of something decoded
    ep.Reset();
    CHECK(ep.num_frames() == 0 && !ep.Detected(true));
  }
  return TEST_RESULT();
}

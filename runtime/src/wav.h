// Minimal RIFF/WAVE reader.
//
// Supported: PCM 8-bit (unsigned), 16-, 24- and 32-bit (signed), IEEE float 32- and 64-bit,
// and WAVE_FORMAT_EXTENSIBLE with a PCM or IEEE float subformat. Chunks may come in any order;
// unknown chunks (LIST, fact, cue, ...) are skipped. Multi-channel files are downmixed to mono by
// averaging their channels, as the Python loader (wenet_eff/data/audio.py) does. A data chunk
// that declares more bytes than the file holds is refused as truncated (truncated_audio), with
// both durations; a size of 0xFFFFFFFF (left by a writer to a pipe) runs to the end of the file.
#ifndef WENET_EFF_RUNTIME_SRC_WAV_H_
#define WENET_EFF_RUNTIME_SRC_WAV_H_

#include <string>
#include <vector>

namespace wenet_eff {

struct WavData {
  int sample_rate = 0;         // Hz.
  int num_channels = 0;        // Channels in the file (samples holds their mean).
  // The mean of the channels in [-1, 1]: integer PCM divided by 2^(bits-1) (8-bit:
  // (value - 128) / 128); float data clipped to [-1, 1] (NaN/inf rejected), as the Python
  // loader does.
  std::vector<float> samples;
};

// Reads the WAV file at `path`. Throws std::runtime_error naming the file and the problem when it
// is missing or unreadable, not RIFF/WAVE, in an unsupported format, truncated (the message says
// "truncated_audio" and both durations), or has no samples.
WavData ReadWav(const std::string& path);

}  // namespace wenet_eff

#endif  // WENET_EFF_RUNTIME_SRC_WAV_H_

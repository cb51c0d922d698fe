// Standalone tests of the fbank and the WAV reader (no test framework): prints each failed check
// and returns nonzero if any failed. Build from the repository root with runtime/src on the
// include path, e.g.
//   g++ -std=c++17 -O2 -Iruntime/src runtime/tests/test_fbank.cc runtime/src/fbank.cc
//       runtime/src/wav.cc -o test_fbank
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "fbank.h"
#include "wav.h"

namespace {

int g_failures = 0;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
      ++g_failures;                                                          \
    }                                                                        \
  } while (0)

constexpr double kPi = 3.14159265358979323846;

// Deterministic test signal in the int16 range: two tones plus uniform noise.
std::vector<float> TestSignal(size_t n, int sample_rate) {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> noise(-300.0f, 300.0f);
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / sample_rate;
    x[i] = static_cast<float>(6000 * std::sin(2 * kPi * 440 * t) +
                              2000 * std::sin(2 * kPi * 2500 * t)) + noise(rng);
  }
  return x;
}

// Feeds `signal` to an OnlineFbank in pieces whose sizes cycle through `pieces`; with snip_edges
// checks after every piece that exactly the frames whose samples have all arrived are ready.
std::vector<float> Stream(const wenet_eff::FbankOptions& opts, const std::vector<float>& signal,
                          const std::vector<size_t>& pieces, wenet_eff::OnlineFbank* fbank) {
  size_t pos = 0;
  for (size_t k = 0; pos < signal.size(); ++k) {
    const size_t n = std::min(pieces[k % pieces.size()], signal.size() - pos);
    fbank->AcceptWaveform(signal.data() + pos, n);
    pos += n;
    if (opts.snip_edges) {
      CHECK(fbank->NumFramesReady() == fbank->NumFramesFor(static_cast<int64_t>(pos)));
    }
  }
  fbank->InputFinished();
  std::vector<float> feats;
  fbank->GetFrames(0, fbank->NumFramesReady(), &feats);
  return feats;
}

// Streaming in odd-sized pieces gives bit-identical frames to the one-shot computation, also
// after Reset() and without snip_edges; Frame() agrees with GetFrames().
void TestStreamingMatchesOneShot() {
  for (bool snip : {true, false}) {
    wenet_eff::FbankOptions opts;
    opts.snip_edges = snip;
    const std::vector<float> signal = TestSignal(2 * 16000 + 123, opts.sample_rate);
    int num_frames = 0;
    const std::vector<float> whole =
        wenet_eff::ComputeFbank(opts, signal.data(), signal.size(), &num_frames);
    CHECK(num_frames > 0);
    CHECK(whole.size() == static_cast<size_t>(num_frames) * opts.num_mel_bins);

    wenet_eff::OnlineFbank fbank(opts);
    for (const auto& pieces : {std::vector<size_t>{1, 7, 160, 3, 401, 999, 13},
                               std::vector<size_t>{397}, std::vector<size_t>{5000, 1}}) {
      fbank.Reset();
      const std::vector<float> streamed = Stream(opts, signal, pieces, &fbank);
      CHECK(fbank.NumFramesReady() == num_frames);
      CHECK(streamed.size() == whole.size() &&
            std::memcmp(streamed.data(), whole.data(), whole.size() * sizeof(float)) == 0);
    }
    const int mid = num_frames / 2;
    CHECK(std::memcmp(fbank.Frame(mid), whole.data() + mid * fbank.Dim(),
                      fbank.Dim() * sizeof(float)) == 0);
    bool threw = false;
    try {
      fbank.Frame(num_frames);
    } catch (const std::out_of_range&) {
      threw = true;
    }
    CHECK(threw);
  }
}

// Frame counts follow Kaldi: snip_edges 1 + (n - window) / shift (0 if n < window), otherwise
// (n + shift / 2) / shift.
void TestNumFrames() {
  for (int sample_rate : {16000, 8000}) {
    wenet_eff::FbankOptions opts;
    opts.sample_rate = sample_rate;
    const int window = sample_rate / 40, shift = sample_rate / 100;  // 25 ms, 10 ms.
    for (size_t n : {0, 1, 199, 200, 201, 279, 280, 399, 400, 401, 559, 560, 561, 16000, 16001}) {
      const std::vector<float> signal = TestSignal(n, sample_rate);
      for (bool snip : {true, false}) {
        opts.snip_edges = snip;
        int num_frames = -1;
        const std::vector<float> feats =
            wenet_eff::ComputeFbank(opts, signal.data(), signal.size(), &num_frames);
        const int64_t sn = static_cast<int64_t>(n);
        const int64_t expected =
            snip ? (sn < window ? 0 : 1 + (sn - window) / shift) : (sn + shift / 2) / shift;
        if (num_frames != expected) {
          std::printf("  sample_rate %d n %zu snip_edges %d: %d frames, expected %lld\n",
                      sample_rate, n, snip, num_frames, static_cast<long long>(expected));
        }
        CHECK(num_frames == expected);
        CHECK(feats.size() == static_cast<size_t>(num_frames) * opts.num_mel_bins);
        for (float v : feats) CHECK(std::isfinite(v));
      }
    }
  }
}

double Mel(double hz) { return 1127.0 * std::log(1.0 + hz / 700.0); }
double InverseMel(double mel) { return 700.0 * (std::exp(mel / 1127.0) - 1.0); }

// A pure tone puts the largest mel energy of every frame in the bin whose centre frequency
// (Kaldi: num_bins + 2 points equally spaced in mel over [low_freq, nyquist]) is nearest to it.
void TestToneBin() {
  for (double tone : {300.0, 1000.0, 3000.0}) {
    wenet_eff::FbankOptions opts;
    std::vector<float> signal(opts.sample_rate);
    for (size_t i = 0; i < signal.size(); ++i) {
      signal[i] = static_cast<float>(10000 * std::sin(2 * kPi * tone * static_cast<double>(i) / opts.sample_rate));
    }
    const double mel_low = Mel(opts.low_freq), mel_high = Mel(opts.sample_rate / 2.0);
    const double delta = (mel_high - mel_low) / (opts.num_mel_bins + 1);
    int nearest = 0;
    for (int b = 1; b < opts.num_mel_bins; ++b) {
      if (std::fabs(InverseMel(mel_low + (b + 1) * delta) - tone) <
          std::fabs(InverseMel(mel_low + (nearest + 1) * delta) - tone)) {
        nearest = b;
      }
    }
    int num_frames = 0;
    const std::vector<float> feats =
        wenet_eff::ComputeFbank(opts, signal.data(), signal.size(), &num_frames);
    int wrong = 0;
    for (int f = 0; f < num_frames; ++f) {
      const float* row = feats.data() + f * opts.num_mel_bins;
      int best = 0;
      for (int b = 1; b < opts.num_mel_bins; ++b) {
        if (row[b] > row[best]) best = b;
      }
      if (best != nearest) ++wrong;
    }
    if (wrong > 0) {
      std::printf("  tone %.0f Hz: %d of %d frames peak away from bin %d\n", tone, wrong,
                  num_frames, nearest);
    }
    CHECK(num_frames > 0 && wrong == 0);
  }
}

// Little-endian WAV building blocks.
void PutLe(std::string* out, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

std::string Chunk(const char* id, const std::string& body) {
  std::string c(id, 4);
  PutLe(&c, static_cast<uint32_t>(body.size()), 4);
  c += body;
  if (body.size() % 2 == 1) c.push_back('\0');  // RIFF pads chunks to an even length.
  return c;
}

// A 16-byte "fmt " body (format code 1: PCM, 3: float).
std::string FmtBody(int code, int channels, int sample_rate, int bits) {
  std::string b;
  PutLe(&b, code, 2);
  PutLe(&b, channels, 2);
  PutLe(&b, sample_rate, 4);
  PutLe(&b, sample_rate * channels * bits / 8, 4);
  PutLe(&b, channels * bits / 8, 2);
  PutLe(&b, bits, 2);
  return b;
}

std::string Riff(const std::string& chunks) {
  std::string r = "RIFF";
  PutLe(&r, static_cast<uint32_t>(4 + chunks.size()), 4);
  return r + "WAVE" + chunks;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
}

// True if ReadWav(path) throws std::runtime_error whose message names the file.
bool ReadWavFails(const std::string& path) {
  try {
    wenet_eff::ReadWav(path);
  } catch (const std::runtime_error& e) {
    const bool names_file = std::string(e.what()).find(path) != std::string::npos;
    if (!names_file) std::printf("  message does not name the file: %s\n", e.what());
    return names_file;
  }
  std::printf("  no exception for %s\n", path.c_str());
  return false;
}

// WAV files written here read back exactly: 16-bit PCM (with a LIST chunk and an odd-sized
// unknown chunk first), stereo (channel 0 kept), float32 with data before fmt, 24-bit
// WAVE_FORMAT_EXTENSIBLE, 8-bit; bad files throw.
void TestWav(const std::filesystem::path& dir) {
  const std::vector<int16_t> pcm = {0, 1, -1, 32767, -32768, 1234, -4321, 77};

  std::string data16;
  for (int16_t v : pcm) PutLe(&data16, static_cast<uint16_t>(v), 2);
  const std::string p16 = (dir / "pcm16.wav").string();
  WriteFile(p16, Riff(Chunk("LIST", std::string("INFOISFT\4\0\0\0test", 16)) +
                      Chunk("junk", "odd") + Chunk("fmt ", FmtBody(1, 1, 16000, 16)) +
                      Chunk("data", data16)));
  const wenet_eff::WavData w16 = wenet_eff::ReadWav(p16);
  CHECK(w16.sample_rate == 16000 && w16.num_channels == 1 && w16.samples.size() == pcm.size());
  for (size_t i = 0; i < pcm.size() && i < w16.samples.size(); ++i) {
    CHECK(w16.samples[i] == pcm[i] / 32768.0f);
  }

  std::string stereo;
  for (int16_t v : pcm) {
    PutLe(&stereo, static_cast<uint16_t>(v), 2);
    PutLe(&stereo, static_cast<uint16_t>(-5000), 2);
  }
  const std::string ps = (dir / "stereo.wav").string();
  WriteFile(ps, Riff(Chunk("fmt ", FmtBody(1, 2, 8000, 16)) + Chunk("data", stereo)));
  const wenet_eff::WavData ws = wenet_eff::ReadWav(ps);
  CHECK(ws.sample_rate == 8000 && ws.num_channels == 2 && ws.samples.size() == pcm.size());
  // Channels are averaged (as the Python reader does): (pcm + -5000) / 2, in float32.
  for (size_t i = 0; i < pcm.size() && i < ws.samples.size(); ++i) {
    CHECK(ws.samples[i] == (pcm[i] / 32768.0f + -5000 / 32768.0f) / 2.0f);
  }

  const std::vector<float> fl = {0.0f, 0.5f, -0.25f, 1.0f, -1.0f, 1e-6f, 0.3333f};
  std::string dataf;
  for (float v : fl) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    PutLe(&dataf, bits, 4);
  }
  const std::string pf = (dir / "float32.wav").string();
  WriteFile(pf, Riff(Chunk("data", dataf) + Chunk("fmt ", FmtBody(3, 1, 22050, 32))));
  const wenet_eff::WavData wf = wenet_eff::ReadWav(pf);
  CHECK(wf.sample_rate == 22050 && wf.num_channels == 1 && wf.samples == fl);

  // 24-bit PCM in WAVE_FORMAT_EXTENSIBLE: cbSize 22, valid bits, channel mask, subformat GUID.
  std::string ext = FmtBody(0xFFFE, 1, 48000, 24);
  PutLe(&ext, 22, 2);
  PutLe(&ext, 24, 2);
  PutLe(&ext, 4, 4);
  PutLe(&ext, 1, 2);
  ext += std::string("\x00\x00\x00\x00\x10\x00\x80\x00\x00\xAA\x00\x38\x9B\x71", 14);
  const std::vector<int32_t> pcm24 = {0, 1, -1, 8388607, -8388608, 123456};
  std::string data24;
  for (int32_t v : pcm24) PutLe(&data24, static_cast<uint32_t>(v), 3);
  const std::string p24 = (dir / "pcm24_ext.wav").string();
  WriteFile(p24, Riff(Chunk("fmt ", ext) + Chunk("data", data24)));
  const wenet_eff::WavData w24 = wenet_eff::ReadWav(p24);
  CHECK(w24.sample_rate == 48000 && w24.samples.size() == pcm24.size());
  for (size_t i = 0; i < pcm24.size() && i < w24.samples.size(); ++i) {
    CHECK(w24.samples[i] == static_cast<float>(pcm24[i] / 8388608.0));
  }

  const std::string p8 = (dir / "pcm8.wav").string();
  WriteFile(p8, Riff(Chunk("fmt ", FmtBody(1, 1, 8000, 8)) + Chunk("data", std::string("\x80\xFF\x00", 3))));
  const wenet_eff::WavData w8 = wenet_eff::ReadWav(p8);
  CHECK(w8.samples == std::vector<float>({0.0f, 127 / 128.0f, -1.0f}));

  CHECK(ReadWavFails((dir / "does_not_exist.wav").string()));
  const std::string text = (dir / "not_riff.wav").string();
  WriteFile(text, "this is not a wav file, just some text\n");
  CHECK(ReadWavFails(text));
  const std::string truncated = (dir / "truncated.wav").string();
  std::string bytes = Riff(Chunk("fmt ", FmtBody(1, 1, 16000, 16)) + Chunk("data", data16));
  WriteFile(truncated, bytes.substr(0, bytes.size() - 3));
  CHECK(ReadWavFails(truncated));
  const std::string empty = (dir / "empty.wav").string();
  WriteFile(empty, Riff(Chunk("fmt ", FmtBody(1, 1, 16000, 16)) + Chunk("data", "")));
  CHECK(ReadWavFails(empty));
  const std::string alaw = (dir / "alaw.wav").string();
  WriteFile(alaw, Riff(Chunk("fmt ", FmtBody(6, 1, 8000, 8)) + Chunk("data", "\x55\x55")));
  CHECK(ReadWavFails(alaw));
}

// Out-of-range options are rejected.
void TestBadOptions() {
  wenet_eff::FbankOptions opts;
  opts.num_mel_bins = 2;
  bool threw = false;
  try {
    wenet_eff::OnlineFbank fbank(opts);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
  opts = wenet_eff::FbankOptions();
  opts.high_freq = 9000;  // Above the 8 kHz nyquist.
  threw = false;
  try {
    wenet_eff::OnlineFbank fbank(opts);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
}

}  // namespace

int main() {
  std::random_device rd;
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("wenet_eff_test_fbank_" + std::to_string(rd()));
  std::filesystem::create_directories(dir);
  TestStreamingMatchesOneShot();
  TestNumFrames();
  TestToneBin();
  TestWav(dir);
  TestBadOptions();
  std::filesystem::remove_all(dir);
  if (g_failures > 0) {
    std::printf("%d check(s) failed\n", g_failures);
    return 1;
  }
  std::printf("all fbank/wav tests passed\n");
  return 0;
}

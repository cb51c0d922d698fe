// RIFF/WAVE reader; see wav.h for what is supported.
#include "wav.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace wenet_eff {
namespace {

constexpr uint16_t kFormatPcm = 1;
constexpr uint16_t kFormatFloat = 3;
constexpr uint16_t kFormatExtensible = 0xFFFE;
// The data chunk size a writer to a pipe leaves (it cannot seek back): data runs to the end.
constexpr uint32_t kUnknownSize = 0xFFFFFFFF;
// Bytes 2..15 of the KSDATAFORMAT_SUBTYPE_* GUIDs; bytes 0..1 hold the format code.
constexpr unsigned char kSubformatTail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                              0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};

// Little-endian integer of `n` bytes (n <= 4) at p.
uint32_t ReadLe(const unsigned char* p, int n) {
  uint32_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

[[noreturn]] void Fail(const std::string& path, const std::string& problem) {
  throw std::runtime_error("ReadWav: " + path + ": " + problem);
}

// The "fmt " chunk fields that decoding needs.
struct Format {
  uint16_t code = 0;        // kFormatPcm or kFormatFloat (extensible resolved to its subformat).
  int num_channels = 0;
  int sample_rate = 0;
  int block_align = 0;      // Bytes per frame (all channels).
  int bytes_per_sample = 0; // Container size of one sample.
};

// Parses and validates a "fmt " chunk body of `size` bytes.
Format ParseFormat(const std::string& path, const unsigned char* p, uint32_t size) {
  if (size < 16) Fail(path, "fmt chunk too short (" + std::to_string(size) + " bytes)");
  Format f;
  f.code = static_cast<uint16_t>(ReadLe(p, 2));
  f.num_channels = static_cast<int>(ReadLe(p + 2, 2));
  f.sample_rate = static_cast<int>(ReadLe(p + 4, 4));
  f.block_align = static_cast<int>(ReadLe(p + 12, 2));
  const int bits = static_cast<int>(ReadLe(p + 14, 2));
  if (f.code == kFormatExtensible) {
    if (size < 40) Fail(path, "WAVE_FORMAT_EXTENSIBLE fmt chunk too short");
    if (std::memcmp(p + 26, kSubformatTail, sizeof(kSubformatTail)) != 0) {
      Fail(path, "unsupported WAVE_FORMAT_EXTENSIBLE subformat GUID");
    }
    f.code = static_cast<uint16_t>(ReadLe(p + 24, 2));
  }
  const bool pcm_ok = f.code == kFormatPcm && (bits == 8 || bits == 16 || bits == 24 || bits == 32);
  const bool float_ok = f.code == kFormatFloat && (bits == 32 || bits == 64);
  if (!pcm_ok && !float_ok) {
    Fail(path, "unsupported format (format code " + std::to_string(f.code) + ", " +
                   std::to_string(bits) + " bits); need PCM 8/16/24/32-bit or float 32/64-bit");
  }
  if (f.num_channels < 1) Fail(path, "fmt chunk declares 0 channels");
  if (f.sample_rate < 1) Fail(path, "fmt chunk declares sample rate 0");
  f.bytes_per_sample = bits / 8;
  if (f.block_align != f.num_channels * f.bytes_per_sample) {
    Fail(path, "inconsistent fmt chunk (block align " + std::to_string(f.block_align) + " for " +
                   std::to_string(f.num_channels) + " channels of " + std::to_string(bits) +
                   " bits)");
  }
  return f;
}

// The sample at p, scaled to [-1, 1] for integer PCM (float data as stored).
float DecodeSample(const Format& f, const unsigned char* p) {
  if (f.code == kFormatFloat) {
    if (f.bytes_per_sample == 4) {
      const uint32_t bits = ReadLe(p, 4);
      float v;
      std::memcpy(&v, &bits, sizeof(v));
      return v;
    }
    const uint64_t bits = (static_cast<uint64_t>(ReadLe(p + 4, 4)) << 32) | ReadLe(p, 4);
    double v;
    std::memcpy(&v, &bits, sizeof(v));
    return static_cast<float>(v);
  }
  switch (f.bytes_per_sample) {
    case 1:  // 8-bit WAV is unsigned with 128 as zero.
      return (static_cast<int>(p[0]) - 128) / 128.0f;
    case 2:
      return static_cast<int16_t>(ReadLe(p, 2)) / 32768.0f;
    case 3: {
      int32_t v = static_cast<int32_t>(ReadLe(p, 3) << 8) >> 8;  // Sign-extend 24 bits.
      return static_cast<float>(v / 8388608.0);
    }
    default:
      return static_cast<float>(static_cast<int32_t>(ReadLe(p, 4)) / 2147483648.0);
  }
}

}  // namespace

// Walks the chunk list (each chunk: 4-byte id, little-endian 32-bit size, body padded to an even
// length), parses "fmt " and locates "data" in whichever order they come, then decodes the data
// chunk in blocks, averaging the channels of each frame.
WavData ReadWav(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(path, "cannot open file (missing or unreadable)");
  in.seekg(0, std::ios::end);
  const int64_t file_size = static_cast<int64_t>(in.tellg());
  in.seekg(0, std::ios::beg);

  unsigned char header[12];
  if (file_size < 12 || !in.read(reinterpret_cast<char*>(header), 12) ||
      std::memcmp(header, "RIFF", 4) != 0 || std::memcmp(header + 8, "WAVE", 4) != 0) {
    Fail(path, "not a RIFF/WAVE file");
  }

  bool have_format = false, have_data = false;
  Format format;
  int64_t data_offset = 0;
  int64_t data_size = 0, data_held = 0;  // bytes the header declares, bytes the file holds
  int64_t pos = 12;
  while ((!have_format || !have_data) && pos + 8 <= file_size) {
    unsigned char chunk[8];
    in.seekg(pos);
    if (!in.read(reinterpret_cast<char*>(chunk), 8)) Fail(path, "read error in chunk header");
    const uint32_t size = ReadLe(chunk + 4, 4);
    const int64_t body = pos + 8;
    if (std::memcmp(chunk, "data", 4) == 0) {  // checked against the file below
      data_offset = body;
      data_held = file_size - body;
      data_size = size == kUnknownSize ? data_held : size;
      have_data = true;
    } else if (body + size > file_size) {
      Fail(path, "truncated: chunk '" + std::string(reinterpret_cast<char*>(chunk), 4) +
                     "' declares " + std::to_string(size) + " bytes but only " +
                     std::to_string(file_size - body) + " remain");
    }
    if (std::memcmp(chunk, "fmt ", 4) == 0) {
      std::vector<unsigned char> fmt(size);
      if (!in.read(reinterpret_cast<char*>(fmt.data()), size)) Fail(path, "read error in fmt");
      format = ParseFormat(path, fmt.data(), size);
      have_format = true;
    }
    pos = body + static_cast<int64_t>(size) + (size & 1);
  }
  if (!have_format) Fail(path, "no fmt chunk");
  if (!have_data) Fail(path, "no data chunk");
  if (data_size > data_held) {
    const double bytes_per_second = static_cast<double>(format.sample_rate) * format.block_align;
    char problem[256];
    std::snprintf(problem, sizeof(problem),
                  "truncated WAV (truncated_audio): its header says %.2f s, the file holds %.2f s "
                  "(a partial copy or an interrupted write; copy or write it again)",
                  data_size / bytes_per_second, data_held / bytes_per_second);
    Fail(path, problem);
  }
  // A trailing partial frame is dropped, as libsndfile (the Python loader) drops it.
  const size_t num_frames = static_cast<size_t>(data_size / format.block_align);
  if (num_frames == 0) Fail(path, "empty (no samples)");

  WavData wav;
  wav.sample_rate = format.sample_rate;
  wav.num_channels = format.num_channels;
  wav.samples.resize(num_frames);
  constexpr size_t kBlockFrames = 8192;
  std::vector<unsigned char> block(kBlockFrames * format.block_align);
  in.seekg(data_offset);
  for (size_t done = 0; done < num_frames;) {
    const size_t n = std::min(kBlockFrames, num_frames - done);
    if (!in.read(reinterpret_cast<char*>(block.data()), n * format.block_align)) {
      Fail(path, "read error in data");
    }
    for (size_t i = 0; i < n; ++i) {
      const unsigned char* frame = block.data() + i * format.block_align;
      float v = 0;  // summed in channel order, then divided: numpy's float32 mean
      for (int c = 0; c < format.num_channels; ++c) {
        v += DecodeSample(format, frame + c * format.bytes_per_sample);
      }
      if (format.num_channels > 1) v /= static_cast<float>(format.num_channels);
      if (format.code == kFormatFloat) {
        // Float files may hold any value: reject NaN/inf and clip to full scale, as the Python
        // loader (wenet_eff/data/audio.py) does, so features match training.
        if (!std::isfinite(v)) Fail(path, "data contains NaN or infinite samples");
        v = std::min(1.0f, std::max(-1.0f, v));
      }
      wav.samples[done + i] = v;
    }
    done += n;
  }
  return wav;
}

}  // namespace wenet_eff

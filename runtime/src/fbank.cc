// Kaldi-compatible log-mel filterbank; see fbank.h for the conventions followed.
#include "fbank.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <stdexcept>
#include <string>

namespace wenet_eff {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Kaldi's mel scale (HTK formula with the natural log).
double MelScale(double hz) { return 1127.0 * std::log(1.0 + hz / 700.0); }

// Smallest power of two >= n (n >= 1).
int NextPowerOfTwo(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

// Samples in `ms` milliseconds, truncated exactly as Kaldi does (float arithmetic, then int).
int MsToSamples(int sample_rate, float ms) {
  return static_cast<int>(static_cast<float>(sample_rate) * 0.001f * ms);
}

}  // namespace

FbankComputer::FbankComputer(const FbankOptions& opts)
    : opts_(opts),
      window_size_(MsToSamples(opts.sample_rate, opts.frame_length_ms)),
      window_shift_(MsToSamples(opts.sample_rate, opts.frame_shift_ms)),
      fft_size_(0),
      num_bins_(opts.num_mel_bins) {
  if (opts.sample_rate <= 0) {
    throw std::invalid_argument("fbank: sample_rate must be positive, got " +
                                std::to_string(opts.sample_rate));
  }
  if (window_size_ < 2 || window_shift_ < 1) {
    throw std::invalid_argument("fbank: frame length/shift too short (window " +
                                std::to_string(window_size_) + " samples, shift " +
                                std::to_string(window_shift_) + " samples)");
  }
  if (num_bins_ < 3) {
    throw std::invalid_argument("fbank: num_mel_bins must be >= 3, got " +
                                std::to_string(num_bins_));
  }
  fft_size_ = NextPowerOfTwo(window_size_);
  InitWindow();
  InitFft();
  InitMelBanks();
  frame_.resize(window_size_);
  fft_re_.resize(fft_size_ / 2);
  fft_im_.resize(fft_size_ / 2);
  power_.resize(fft_size_ / 2);
}

// Kaldi's "povey" window: (0.5 - 0.5 cos(2 pi i / (N - 1)))^0.85, a Hann window raised to 0.85
// that does not reach zero at the ends.
void FbankComputer::InitWindow() {
  window_.resize(window_size_);
  const double a = 2.0 * kPi / (window_size_ - 1);
  for (int i = 0; i < window_size_; ++i) {
    window_[i] = static_cast<float>(std::pow(0.5 - 0.5 * std::cos(a * i), 0.85));
  }
}

// Tables for the real FFT of length N = fft_size_, computed as a complex FFT of length
// M = N / 2 on z[n] = x[2n] + i x[2n+1] followed by a split step.
// The FFT runs in double: the lowest and highest mel bins of a frame can hold 1e-10 of its
// energy, where float FFT rounding noise alone moves their log energy by up to ~1e-2 (Kaldi's
// float FFT has that noise). The time-domain steps stay in float, as in Kaldi.
void FbankComputer::InitFft() {
  const int m = fft_size_ / 2;
  int bits = 0;
  while ((1 << bits) < m) ++bits;
  bit_reverse_.resize(m);
  for (int i = 0; i < m; ++i) {
    int r = 0;
    for (int b = 0; b < bits; ++b) {
      if (i & (1 << b)) r |= 1 << (bits - 1 - b);
    }
    bit_reverse_[i] = r;
  }
  twiddle_re_.resize(m / 2);
  twiddle_im_.resize(m / 2);
  for (int k = 0; k < m / 2; ++k) {
    twiddle_re_[k] = std::cos(2.0 * kPi * k / m);
    twiddle_im_[k] = -std::sin(2.0 * kPi * k / m);
  }
  split_re_.resize(m);
  split_im_.resize(m);
  for (int k = 0; k < m; ++k) {
    split_re_[k] = std::cos(2.0 * kPi * k / fft_size_);
    split_im_[k] = -std::sin(2.0 * kPi * k / fft_size_);
  }
}

// Kaldi's mel filterbank: num_bins + 2 points equally spaced in mel between mel(low_freq) and
// mel(high_freq); bin b is the triangle over points b, b+1, b+2, evaluated in the mel domain at
// the FFT bin frequencies k * sample_rate / N for k = 0 .. N/2 - 1 (the Nyquist bin is never
// used). A weight is nonzero only strictly inside the triangle; only that range is stored.
void FbankComputer::InitMelBanks() {
  const double nyquist = 0.5 * opts_.sample_rate;
  const double low = opts_.low_freq;
  const double high = opts_.high_freq > 0 ? opts_.high_freq : nyquist + opts_.high_freq;
  if (low < 0 || low >= nyquist || high <= 0 || high > nyquist || high <= low) {
    throw std::invalid_argument("fbank: need 0 <= low_freq < high_freq <= nyquist, got low " +
                                std::to_string(low) + " Hz, high " + std::to_string(high) +
                                " Hz, nyquist " + std::to_string(nyquist) + " Hz");
  }
  const int num_fft_bins = fft_size_ / 2;
  const double bin_width = static_cast<double>(opts_.sample_rate) / fft_size_;
  const double mel_low = MelScale(low);
  const double mel_delta = (MelScale(high) - mel_low) / (num_bins_ + 1);

  mel_first_.assign(num_bins_, 0);
  mel_offset_.assign(num_bins_ + 1, 0);
  mel_weights_.clear();
  for (int b = 0; b < num_bins_; ++b) {
    const double left = mel_low + b * mel_delta;
    const double center = left + mel_delta;
    const double right = center + mel_delta;
    int first = -1;
    mel_offset_[b] = static_cast<int>(mel_weights_.size());
    for (int k = 0; k < num_fft_bins; ++k) {
      const double mel = MelScale(bin_width * k);
      if (mel <= left || mel >= right) {
        if (first >= 0) break;  // Past the triangle; mel grows with k.
        continue;
      }
      if (first < 0) first = k;
      const double w = mel <= center ? (mel - left) / (center - left)
                                     : (right - mel) / (right - center);
      mel_weights_.push_back(static_cast<float>(w));
    }
    if (first < 0) {
      throw std::invalid_argument("fbank: mel bin " + std::to_string(b) +
                                  " covers no FFT bin; num_mel_bins " +
                                  std::to_string(num_bins_) + " is too large for FFT size " +
                                  std::to_string(fft_size_));
    }
    mel_first_[b] = first;
  }
  mel_offset_[num_bins_] = static_cast<int>(mel_weights_.size());
}

// Iterative decimation-in-time radix-2 FFT (forward, e^{-i...}) of length M on fft_re_/fft_im_,
// whose input was already stored in bit-reversed order.
void FbankComputer::ComplexFft() {
  const int m = fft_size_ / 2;
  double* re = fft_re_.data();
  double* im = fft_im_.data();
  for (int len = 2; len <= m; len <<= 1) {
    const int half = len / 2;
    const int step = m / len;  // Twiddle stride: exp(-2 pi i j / len) = twiddle[j * step].
    for (int start = 0; start < m; start += len) {
      for (int j = 0; j < half; ++j) {
        const double wr = twiddle_re_[j * step];
        const double wi = twiddle_im_[j * step];
        const int a = start + j;
        const int b = a + half;
        const double vr = re[b] * wr - im[b] * wi;
        const double vi = re[b] * wi + im[b] * wr;
        re[b] = re[a] - vr;
        im[b] = im[a] - vi;
        re[a] += vr;
        im[a] += vi;
      }
    }
  }
}

// Packs frame_ (zero-padded to N) as z[n] = x[2n] + i x[2n+1], runs the length-N/2 complex FFT
// and splits it into the real signal's spectrum X[k] = E[k] + e^{-2 pi i k / N} O[k], where
// E[k] = (Z[k] + conj Z[M-k]) / 2 and O[k] = (Z[k] - conj Z[M-k]) / 2i are the spectra of the
// even and odd samples. Kaldi's power spectrum is |X[k]|^2.
void FbankComputer::PowerSpectrum() {
  const int m = fft_size_ / 2;
  for (int n = 0; n < m; ++n) {
    const int i = 2 * n;
    const int pos = bit_reverse_[n];
    fft_re_[pos] = i < window_size_ ? frame_[i] : 0.0;
    fft_im_[pos] = i + 1 < window_size_ ? frame_[i + 1] : 0.0;
  }
  ComplexFft();
  for (int k = 0; k < m; ++k) {
    const int mk = k == 0 ? 0 : m - k;
    const double a = fft_re_[k], b = fft_im_[k];
    const double c = fft_re_[mk], d = fft_im_[mk];
    const double er = 0.5 * (a + c), ei = 0.5 * (b - d);
    const double orr = 0.5 * (b + d), oi = 0.5 * (c - a);
    const double wr = split_re_[k], wi = split_im_[k];
    const double xr = er + wr * orr - wi * oi;
    const double xi = ei + wr * oi + wi * orr;
    power_[k] = static_cast<float>(xr * xr + xi * xi);
  }
}

// Kaldi's per-frame processing: remove the DC offset, pre-emphasise (x[i] -= p x[i-1] from the
// end, x[0] -= p x[0]), apply the povey window, zero-pad to the FFT size, take the power
// spectrum, apply the mel triangles and the log of max(energy, FLT_EPSILON).
void FbankComputer::Compute(const float* frame, float* out) {
  float* x = frame_.data();
  std::copy(frame, frame + window_size_, x);
  if (opts_.remove_dc) {
    double sum = 0;
    for (int i = 0; i < window_size_; ++i) sum += x[i];
    const float mean = static_cast<float>(sum / window_size_);
    for (int i = 0; i < window_size_; ++i) x[i] -= mean;
  }
  if (opts_.preemph != 0.0f) {
    const float p = opts_.preemph;
    for (int i = window_size_ - 1; i > 0; --i) x[i] -= p * x[i - 1];
    x[0] -= p * x[0];
  }
  for (int i = 0; i < window_size_; ++i) x[i] *= window_[i];
  PowerSpectrum();
  for (int b = 0; b < num_bins_; ++b) {
    const float* w = mel_weights_.data() + mel_offset_[b];
    const float* p = power_.data() + mel_first_[b];
    const int len = mel_offset_[b + 1] - mel_offset_[b];
    float energy = 0;
    for (int j = 0; j < len; ++j) energy += w[j] * p[j];
    out[b] = std::log(std::max(energy, FLT_EPSILON));
  }
}

OnlineFbank::OnlineFbank(const FbankOptions& opts)
    : computer_(opts), gathered_(computer_.WindowSize()) {}

int64_t OnlineFbank::NumFramesFor(int64_t num_samples) const {
  const int64_t window = computer_.WindowSize();
  const int64_t shift = computer_.WindowShift();
  if (computer_.Options().snip_edges) {
    return num_samples < window ? 0 : 1 + (num_samples - window) / shift;
  }
  return (num_samples + shift / 2) / shift;
}

// With snip_edges frame f covers [f * shift, f * shift + window); without it, it is centred on
// f * shift + shift / 2 (Kaldi's convention).
int64_t OnlineFbank::FirstSample(int64_t f) const {
  const int64_t shift = computer_.WindowShift();
  if (computer_.Options().snip_edges) return f * shift;
  return f * shift + shift / 2 - computer_.WindowSize() / 2;
}

void OnlineFbank::AcceptWaveform(const float* samples, size_t n) {
  if (input_finished_) {
    throw std::logic_error("OnlineFbank::AcceptWaveform called after InputFinished");
  }
  buffer_.insert(buffer_.end(), samples, samples + n);
  num_samples_ += static_cast<int64_t>(n);
  ComputeReadyFrames();
}

void OnlineFbank::InputFinished() {
  input_finished_ = true;
  ComputeReadyFrames();
}

// Before InputFinished() a frame is computed once its last sample has arrived (samples before
// the signal start are mirrored: index -1 -> 0, -2 -> 1, ...). After it, all NumFramesFor()
// frames are computed, mirroring past the end as Kaldi does (index N -> N-1, N+1 -> N-2, ...).
void OnlineFbank::ComputeReadyFrames() {
  const int window = computer_.WindowSize();
  const int dim = computer_.Dim();
  const int64_t total = input_finished_ ? NumFramesFor(num_samples_) : 0;
  while (true) {
    const int64_t start = FirstSample(num_frames_);
    const bool ready =
        input_finished_ ? num_frames_ < total : start + window <= num_samples_;
    if (!ready) break;
    const float* frame;
    if (start >= buffer_start_ && start + window <= num_samples_) {
      frame = buffer_.data() + (start - buffer_start_);
    } else {
      for (int s = 0; s < window; ++s) {
        int64_t idx = start + s;
        while (idx < 0 || idx >= num_samples_) {
          idx = idx < 0 ? -idx - 1 : 2 * num_samples_ - 1 - idx;
        }
        gathered_[s] = buffer_[idx - buffer_start_];
      }
      frame = gathered_.data();
    }
    features_.resize(features_.size() + dim);
    computer_.Compute(frame, features_.data() + features_.size() - dim);
    ++num_frames_;
  }
  // Future frames start at FirstSample(num_frames_) or later and, when mirrored at the end,
  // only read samples after their own start; mirroring at the front needs the samples from 0.
  const int64_t keep_from =
      std::max<int64_t>(0, std::min(FirstSample(num_frames_), num_samples_));
  if (keep_from > buffer_start_) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + (keep_from - buffer_start_));
    buffer_start_ = keep_from;
  }
}

const float* OnlineFbank::Frame(int i) const {
  if (i < 0 || i >= num_frames_) {
    throw std::out_of_range("OnlineFbank::Frame: frame " + std::to_string(i) +
                            " not in [0, " + std::to_string(num_frames_) + ")");
  }
  return features_.data() + static_cast<size_t>(i) * Dim();
}

void OnlineFbank::GetFrames(int start, int end, std::vector<float>* out) const {
  if (start < 0 || end < start || end > num_frames_) {
    throw std::out_of_range("OnlineFbank::GetFrames: range [" + std::to_string(start) + ", " +
                            std::to_string(end) + ") not within [0, " +
                            std::to_string(num_frames_) + "]");
  }
  const size_t dim = Dim();
  out->assign(features_.begin() + start * dim, features_.begin() + end * dim);
}

void OnlineFbank::Reset() {
  buffer_.clear();
  buffer_start_ = 0;
  num_samples_ = 0;
  input_finished_ = false;
  num_frames_ = 0;
  features_.clear();
}

std::vector<float> ComputeFbank(const FbankOptions& opts, const float* samples, size_t n,
                                int* num_frames) {
  OnlineFbank fbank(opts);
  fbank.AcceptWaveform(samples, n);
  fbank.InputFinished();
  if (num_frames != nullptr) *num_frames = fbank.NumFramesReady();
  std::vector<float> feats;
  fbank.GetFrames(0, fbank.NumFramesReady(), &feats);
  return feats;
}

}  // namespace wenet_eff

// Kaldi-compatible log-mel filterbank features (pure C++17, no external dependencies).
//
// The features match Kaldi's `compute-fbank-feats` / kaldi-native-fbank with:
//   dither 0, povey window, pre-emphasis, DC removal, power spectrum, FFT size rounded up to a
//   power of two, HTK-style mel scale 1127 * ln(1 + f / 700), log of max(energy, FLT_EPSILON)
//   and no energy coefficient.
// Input samples are floats in the int16 range (multiply [-1, 1] audio by 32768 first), which is
// WeNet's convention.
#ifndef WENET_EFF_RUNTIME_SRC_FBANK_H_
#define WENET_EFF_RUNTIME_SRC_FBANK_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace wenet_eff {

// Options with Kaldi's names and defaults (WeNet's 80 bins and energy_floor 0).
struct FbankOptions {
  int sample_rate = 16000;       // Hz.
  int num_mel_bins = 80;         // Output dimension; at least 3 (Kaldi's limit).
  float frame_length_ms = 25;    // Window length.
  float frame_shift_ms = 10;     // Hop between frame starts.
  float preemph = 0.97f;         // Pre-emphasis coefficient (0: none).
  float low_freq = 20;           // Lower edge of the first mel triangle, Hz.
  float high_freq = 0;           // Upper edge of the last triangle; <= 0: nyquist + high_freq.
  // Kaldi applies energy_floor only to the energy coefficient (use_energy), which this fbank
  // never outputs; mel energies are always floored at FLT_EPSILON before the log. It is kept so
  // that option sets written for Kaldi carry over unchanged.
  float energy_floor = 0;
  bool remove_dc = true;         // Subtract each frame's mean before pre-emphasis.
  // true: frames lie wholly inside the signal, frame f starts at f * shift.
  // false: frame f is centred at f * shift + shift / 2 and the signal is mirrored at its ends.
  bool snip_edges = true;
};

// Computes the log-mel features of single frames. Holds the precomputed window, FFT tables and
// mel weights, plus scratch buffers (so one instance must not be used by two threads at once).
class FbankComputer {
 public:
  // Throws std::invalid_argument when the options are out of range.
  explicit FbankComputer(const FbankOptions& opts);

  // Samples per frame: int(sample_rate * 0.001 * frame_length_ms), as Kaldi rounds it.
  int WindowSize() const { return window_size_; }
  // Samples between frame starts: int(sample_rate * 0.001 * frame_shift_ms).
  int WindowShift() const { return window_shift_; }
  // FFT length: the smallest power of two >= WindowSize().
  int FftSize() const { return fft_size_; }
  // Features per frame (num_mel_bins).
  int Dim() const { return num_bins_; }
  const FbankOptions& Options() const { return opts_; }

  // Writes Dim() log-mel energies of the WindowSize() samples in `frame` to `out`.
  void Compute(const float* frame, float* out);

 private:
  void InitWindow();
  void InitFft();
  void InitMelBanks();
  // Power spectrum |X[k]|^2 of the real signal in fft_re_ (length fft_size_), for
  // k = 0 .. fft_size_ / 2 - 1, written to power_. Clobbers fft_re_/fft_im_.
  void PowerSpectrum();
  // In-place iterative radix-2 complex FFT of length fft_size_ / 2 on fft_re_/fft_im_.
  void ComplexFft();

  FbankOptions opts_;
  int window_size_;
  int window_shift_;
  int fft_size_;
  int num_bins_;

  std::vector<float> window_;         // Povey window, window_size_ values.
  std::vector<int> bit_reverse_;      // Permutation of the half-length complex FFT.
  std::vector<double> twiddle_re_;     // exp(-2 pi i k / (fft_size_ / 2)), k < fft_size_ / 4.
  std::vector<double> twiddle_im_;
  std::vector<double> split_re_;       // exp(-2 pi i k / fft_size_), k < fft_size_ / 2, used to
  std::vector<double> split_im_;       // split the packed half-length FFT into the real FFT.
  std::vector<int> mel_first_;        // First FFT bin with nonzero weight, per mel bin.
  std::vector<int> mel_offset_;       // Start of each mel bin's weights in mel_weights_
  std::vector<float> mel_weights_;    // (num_bins_ + 1 offsets; nonzero range only).

  std::vector<float> frame_;          // Scratch: the processed frame.
  std::vector<double> fft_re_;         // Scratch: FFT input/output.
  std::vector<double> fft_im_;
  std::vector<float> power_;          // Scratch: fft_size_ / 2 power values.
};

// Streaming fbank: accepts audio in pieces of any size and yields exactly the frames that
// computing on the whole waveform at once would. All computed frames are kept (Dim() floats
// each); samples no future frame needs are freed.
class OnlineFbank {
 public:
  // Throws std::invalid_argument when the options are out of range.
  explicit OnlineFbank(const FbankOptions& opts);

  // Appends `n` samples (int16 range) and computes every frame that has become ready.
  // With snip_edges a frame is ready once all its samples have arrived; without it, frames that
  // need the mirrored end of the signal wait for InputFinished().
  // Throws std::logic_error after InputFinished() (until Reset()).
  void AcceptWaveform(const float* samples, size_t n);
  // Marks the end of the signal and computes the remaining frames (only snip_edges=false has
  // any: the last frames mirror the signal's end).
  void InputFinished();
  // Frames computed so far.
  int NumFramesReady() const { return num_frames_; }
  // Frame i (0 <= i < NumFramesReady()): Dim() floats, valid until the next non-const call.
  // Throws std::out_of_range for other i.
  const float* Frame(int i) const;
  // Frames [start, end) row-major into *out (resized to (end - start) * Dim()).
  // Throws std::out_of_range unless 0 <= start <= end <= NumFramesReady().
  void GetFrames(int start, int end, std::vector<float>* out) const;
  int Dim() const { return computer_.Dim(); }
  // Forgets all samples and frames, ready for a new signal with the same options.
  void Reset();

  // Frames Kaldi yields for a whole signal of `num_samples` samples: with snip_edges
  // 1 + (num_samples - window) / shift (0 if num_samples < window); without it
  // (num_samples + shift / 2) / shift.
  int64_t NumFramesFor(int64_t num_samples) const;

 private:
  // Index of the first sample of frame f (negative for early frames without snip_edges).
  int64_t FirstSample(int64_t f) const;
  // Computes frames while their samples are available, then frees samples no longer needed.
  void ComputeReadyFrames();

  FbankComputer computer_;
  std::vector<float> buffer_;     // Samples [buffer_start_, num_samples_).
  int64_t buffer_start_ = 0;
  int64_t num_samples_ = 0;       // Samples accepted since construction / Reset().
  bool input_finished_ = false;
  int num_frames_ = 0;
  std::vector<float> features_;   // num_frames_ * Dim(), row-major.
  std::vector<float> gathered_;   // Scratch: one frame with mirrored samples.
};

// Log-mel features of a whole signal (int16-range samples): num_frames * num_mel_bins floats,
// row-major. Stores the frame count in *num_frames when num_frames is not null.
std::vector<float> ComputeFbank(const FbankOptions& opts, const float* samples, size_t n,
                                int* num_frames);

}  // namespace wenet_eff

#endif  // WENET_EFF_RUNTIME_SRC_FBANK_H_

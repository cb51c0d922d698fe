// Cross-stream batching for a server: the audio of every live stream goes to one scheduler
// thread, which runs the streaming steps that are ready across all streams as ONE batched
// forward (encoder_chunk_batch.pt2: each stream at its own offset, cache fill and valid
// frames) and hands each stream's rows to a small pool of worker threads for the stream's own
// work: its CTC search and partial result after a step, its attention rescoring and final
// results at the end (searches first: a partial result waits for at most the rescoring a
// worker is running). The next step's encoder runs while the workers search the last one's.
// MoE experts thereby see the frames of every stream in a step, and read their weights once
// per step instead of once per stream.
//
// A step takes the streams whose next chunk is ready, oldest first, up to batch_max; a stream
// whose last step a worker still searches waits for it. When fewer are ready, it waits for the
// streams whose next chunk is due (a chunk's audio after their last, in real time) within
// batch_wait_ms of the oldest ready chunk, and for no others; under load the chunks that became
// ready during a step make the next batch by themselves. A step of one stream runs
// encoder_chunk.pt2 (the static batch-1 graph). Each stream's output
// equals the stream decoded alone (AsrDecoder::Advance): one thread at a time works on a
// stream, in the order of its steps.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "asr_decoder.h"
#include "asr_model.h"

namespace wenet_eff {

struct SchedulerOptions {
  int max_streams = 64;    // live streams; Open refuses more
  int batch_max = 15;      // streams per batched step (1: one stream per step; <= chunk_batch_max)
  int batch_wait_ms = 100;  // longest wait for streams due before a step that is not full
  int workers = 1;         // threads for each stream's search and rescoring
};

struct StreamOptions {
  int nbest = 1;  // hypotheses per result
  bool continuous_decoding = false;
};

// What a stream reports, on a worker thread (one at a time per stream), in this order: partial results after the
// steps that decoded something, a final result per closed segment, then the end; or a failure.
struct StreamEvent {
  enum class Type { kPartial, kFinal, kEnd, kFailed };
  Type type;
  std::vector<std::string> nbest;  // partial and final results, best first
  std::string message;             // kFailed: why
};
using StreamCallback = std::function<void(const StreamEvent&)>;

// Figures of the steps run so far.
struct SchedulerStats {
  int64_t steps = 0, chunks = 0, streams_opened = 0, streams_finished = 0;
  // per batch size: steps and encoder seconds
  std::map<int, std::pair<int64_t, double>> encoder_by_batch;
  // seconds of the other work: the audio into the decoders (fbank), each stream's CTC search
  // and partial result after a step, the end of a stream (attention rescoring, final results)
  double feed_seconds = 0, search_seconds = 0, finish_seconds = 0;
  // per chunk, the milliseconds from the arrival of the audio that completed it (or of the
  // end signal, for the last) to its results: a histogram of 1 ms bins, the last one open
  static constexpr int kLatencyBins = 10000;
  std::vector<int64_t> latency_hist = std::vector<int64_t>(kLatencyBins, 0);
  // the p-th percentile (0 < p <= 100) of the latencies, in ms (0 when none)
  double LatencyPercentile(double p) const;
};

class Scheduler;

// A live stream. Audio and signals come from any thread; the decoder runs on the scheduler's
// thread while no worker has it (busy_).
class Stream {
 public:
  Stream(std::shared_ptr<const AsrModel> model, const DecodeOptions& options,
         const StreamOptions& stream_options, StreamCallback callback, Scheduler* scheduler);

  void AcceptPcm16(const int16_t* pcm, size_t n);  // mono samples at the model's rate
  void InputFinished();                            // the client's end signal
  // The client is gone: drop the stream without reporting; its place under max_streams is
  // free when this returns.
  void Cancel();

 private:
  friend class Scheduler;
  using Clock = std::chrono::steady_clock;

  // Scheduler thread: the audio received since the last call into the decoder, with the
  // arrival time of each chunk it completes. Returns false once cancelled.
  bool Feed();
  // The events of the segments closed since the last report.
  void ReportFinals();

  Scheduler* scheduler_;
  StreamOptions options_;
  StreamCallback callback_;
  AsrDecoder decoder_;
  std::mutex mu_;  // guards the three below
  std::vector<std::vector<float>> pending_;  // received packets not yet fed
  std::vector<Clock::time_point> pending_times_;
  bool finished_ = false, cancelled_ = false;
  Clock::time_point finished_time_;
  // a worker has the decoder: set by the scheduler thread, cleared by the worker when done
  std::atomic<bool> busy_{false};
  std::atomic<bool> removed_{false};  // from the live streams: ended, failed or cancelled
  // scheduler thread only
  std::deque<Clock::time_point> ready_times_;  // of the chunks ready and not yet run
  const Clock::duration chunk_audio_;  // the audio of a step
  Clock::time_point next_due_;  // when the next chunk is ready if the audio comes in real time
  size_t finals_reported_ = 0;
  bool input_finished_ = false;
};

class Scheduler {
 public:
  // Throws std::invalid_argument for options the model cannot serve (a batch_max above 1
  // without encoder_chunk_batch.pt2 or above its chunk_batch_max; no streaming step) and for
  // counts below 1.
  Scheduler(std::shared_ptr<const AsrModel> model, const DecodeOptions& options,
            const SchedulerOptions& scheduler_options);
  ~Scheduler();  // Stop()
  // Stops the scheduler and worker threads (idempotent): live streams report nothing more.
  void Stop();

  // A new stream reporting to `callback`; nullptr when max_streams streams are live.
  std::shared_ptr<Stream> Open(const StreamOptions& options, StreamCallback callback);
  int live_streams() const;
  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return options_; }

 private:
  friend class Stream;
  using Clock = std::chrono::steady_clock;

  void Notify();
  void Run();
  // Feeds every stream no worker has its audio; drops the cancelled ones, hands the ended
  // ones to a worker to finish; keeps those that may step.
  void Collect(std::vector<std::shared_ptr<Stream>>* streams);
  // One batched encoder step over `batch`, then each stream's search on a worker.
  void Step(const std::vector<std::shared_ptr<Stream>>& batch);
  // Worker: this stream's outputs of a step (its rows), searched and reported.
  void Accept(const std::shared_ptr<Stream>& stream, const std::vector<at::Tensor>& out,
              Clock::time_point ready_time);
  // Worker: the end of an ended stream.
  void Finish(const std::shared_ptr<Stream>& stream);
  void Fail(const std::shared_ptr<Stream>& stream, const std::string& message);
  void Remove(Stream* stream);  // from the live streams (no-op when not there)
  // Runs `job` on a worker with `stream` busy until it returns; the steps' searches before the
  // streams' ends (`end`), whose rescoring would hold up partial results.
  void Post(const std::shared_ptr<Stream>& stream, std::function<void()> job, bool end);
  void Work();  // a worker thread

  std::shared_ptr<const AsrModel> model_;
  DecodeOptions decode_options_;
  SchedulerOptions options_;
  mutable std::mutex mu_;  // guards the six below
  std::condition_variable wake_, job_ready_;
  std::vector<std::shared_ptr<Stream>> streams_;
  std::deque<std::function<void()>> searches_, ends_;  // workers' jobs
  bool work_ = false, stop_ = false;
  SchedulerStats stats_;
  std::vector<std::thread> workers_;  // last: they start when the rest is ready
  std::thread thread_;
};

}  // namespace wenet_eff

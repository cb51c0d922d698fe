// The cross-stream batching scheduler; see scheduler.h.
#include "scheduler.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include <ATen/ATen.h>

namespace wenet_eff {

namespace {

constexpr float kInt16Scale = 32768.0f;

DecodeOptions WithContinuous(DecodeOptions options, bool continuous_decoding) {
  options.continuous_decoding = continuous_decoding;
  return options;
}

std::chrono::steady_clock::duration Ms(double ms) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double, std::milli>(ms));
}

}  // namespace

double SchedulerStats::LatencyPercentile(double p) const {
  int64_t total = 0;
  for (int64_t n : latency_hist) total += n;
  if (total == 0) return 0;
  const double rank = p / 100.0 * static_cast<double>(total);
  int64_t seen = 0;
  for (size_t ms = 0; ms < latency_hist.size(); ++ms) {
    seen += latency_hist[ms];
    if (static_cast<double>(seen) >= rank) return static_cast<double>(ms);
  }
  return static_cast<double>(latency_hist.size() - 1);
}

Stream::Stream(std::shared_ptr<const AsrModel> model, const DecodeOptions& options,
               const StreamOptions& stream_options, StreamCallback callback,
               Scheduler* scheduler)
    : scheduler_(scheduler),
      options_(stream_options),
      callback_(std::move(callback)),
      decoder_(model, WithContinuous(options, stream_options.continuous_decoding)),
      chunk_audio_(Ms(model->meta().frame_shift_ms * model->meta().subsampling_rate *
                      model->meta().chunk_size)) {
  const ModelMeta& m = model->meta();  // the first step's window of features
  next_due_ = Clock::now() + Ms((m.chunk_window - 1) * m.frame_shift_ms + m.frame_length_ms);
}

void Stream::AcceptPcm16(const int16_t* pcm, size_t n) {
  std::vector<float> samples(n);
  for (size_t i = 0; i < n; ++i) samples[i] = static_cast<float>(pcm[i]) / kInt16Scale;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back(std::move(samples));
    pending_times_.push_back(Clock::now());
  }
  scheduler_->Notify();
}

void Stream::InputFinished() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = true;
    finished_time_ = Clock::now();
  }
  scheduler_->Notify();
}

void Stream::Cancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
  }
  scheduler_->Remove(this);  // its place under max_streams is free at once
  scheduler_->Notify();
}

bool Stream::Feed() {
  std::vector<std::vector<float>> packets;
  std::vector<Clock::time_point> times;
  bool finished;
  Clock::time_point finished_time;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return false;
    packets.swap(pending_);
    times.swap(pending_times_);
    finished = finished_;
    finished_time = finished_time_;
  }
  for (size_t i = 0; i < packets.size(); ++i) {
    decoder_.AcceptWaveform(packets[i].data(), packets[i].size());
    const size_t ready = static_cast<size_t>(decoder_.ChunksReady());
    if (ready_times_.size() < ready) next_due_ = times[i] + chunk_audio_;
    while (ready_times_.size() < ready) ready_times_.push_back(times[i]);
  }
  if (finished && !input_finished_) {
    decoder_.InputFinished();
    input_finished_ = true;
    const size_t ready = static_cast<size_t>(decoder_.ChunksReady());
    while (ready_times_.size() < ready) ready_times_.push_back(finished_time);
  }
  return true;
}

void Stream::ReportFinals() {
  const std::vector<Segment>& segments = decoder_.segments();
  for (; finals_reported_ < segments.size(); ++finals_reported_) {
    std::vector<std::string> nbest = segments[finals_reported_].nbest;
    if (static_cast<int>(nbest.size()) > options_.nbest) nbest.resize(options_.nbest);
    callback_({StreamEvent::Type::kFinal, std::move(nbest), ""});
  }
}

Scheduler::Scheduler(std::shared_ptr<const AsrModel> model, const DecodeOptions& options,
                     const SchedulerOptions& scheduler_options)
    : model_(std::move(model)), decode_options_(options), options_(scheduler_options) {
  const ModelMeta& m = model_->meta();
  if (!model_->has_chunk_encoder() || options.chunk_size < 0)
    throw std::invalid_argument(
        "serving streams needs the streaming step: chunk_size -1 is full context, or the model "
        "directory has no encoder_chunk.pt2 (export with --chunk_size > 0)");
  AsrDecoder probe(model_, options);  // throws for options that do not fit the model
  if (options_.max_streams < 1 || options_.batch_max < 1 || options_.batch_wait_ms < 0 ||
      options_.workers < 1)
    throw std::invalid_argument(
        "max_streams, batch_max and workers must be >= 1, batch_wait_ms >= 0");
  if (options_.batch_max > 1 && !model_->has_chunk_batch_encoder())
    throw std::invalid_argument(
        "batch_max " + std::to_string(options_.batch_max) +
        ": the model directory has no encoder_chunk_batch.pt2 (export the model again with "
        "python -m wenet_eff.bin.export, or serve with --batch_max 1)");
  if (options_.batch_max > 1 && options_.batch_max > m.chunk_batch_max)
    throw std::invalid_argument("batch_max " + std::to_string(options_.batch_max) +
                                ": encoder_chunk_batch.pt2 takes at most " +
                                std::to_string(m.chunk_batch_max) + " streams");
  for (int i = 0; i < options_.workers; ++i) workers_.emplace_back(&Scheduler::Work, this);
  thread_ = std::thread(&Scheduler::Run, this);
}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  job_ready_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (std::thread& w : workers_)
    if (w.joinable()) w.join();
  std::lock_guard<std::mutex> lock(mu_);
  searches_.clear();  // not run: the streams report nothing more
  ends_.clear();
}

std::shared_ptr<Stream> Scheduler::Open(const StreamOptions& options, StreamCallback callback) {
  if (options.nbest < 1)
    throw std::invalid_argument("nbest " + std::to_string(options.nbest) + ": must be >= 1");
  std::lock_guard<std::mutex> lock(mu_);
  if (static_cast<int>(streams_.size()) >= options_.max_streams) return nullptr;
  auto stream =
      std::make_shared<Stream>(model_, decode_options_, options, std::move(callback), this);
  streams_.push_back(stream);
  ++stats_.streams_opened;
  return stream;
}

int Scheduler::live_streams() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(streams_.size());
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Scheduler::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    work_ = true;
  }
  wake_.notify_one();
}

void Scheduler::Remove(Stream* stream) {
  stream->removed_ = true;
  std::lock_guard<std::mutex> lock(mu_);
  streams_.erase(std::remove_if(streams_.begin(), streams_.end(),
                                [stream](const auto& s) { return s.get() == stream; }),
                 streams_.end());
}

void Scheduler::Fail(const std::shared_ptr<Stream>& stream, const std::string& message) {
  Remove(stream.get());
  stream->callback_({StreamEvent::Type::kFailed, {}, message});
}

void Scheduler::Post(const std::shared_ptr<Stream>& stream, std::function<void()> job,
                     bool end) {
  stream->busy_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    (end ? ends_ : searches_).push_back([this, stream, job = std::move(job)] {
      job();
      stream->busy_ = false;
      Notify();  // it may step again
    });
  }
  job_ready_.notify_one();
}

void Scheduler::Work() {
  while (true) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      job_ready_.wait(lock, [&] { return stop_ || !searches_.empty() || !ends_.empty(); });
      if (stop_) return;
      auto& jobs = searches_.empty() ? ends_ : searches_;
      job = std::move(jobs.front());
      jobs.pop_front();
    }
    job();
  }
}

void Scheduler::Run() {
  const auto wait = std::chrono::milliseconds(options_.batch_wait_ms);
  std::vector<std::shared_ptr<Stream>> streams;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stop_ || work_; });
      if (stop_) return;
      work_ = false;
      streams = streams_;
    }
    const std::vector<std::shared_ptr<Stream>> all = streams;
    Collect(&streams);
    std::vector<std::shared_ptr<Stream>> ready;
    for (const auto& s : streams)
      if (!s->ready_times_.empty()) ready.push_back(s);
    if (ready.empty()) continue;
    std::stable_sort(ready.begin(), ready.end(), [](const auto& a, const auto& b) {
      return a->ready_times_.front() < b->ready_times_.front();
    });
    const size_t batch_max = static_cast<size_t>(options_.batch_max);
    const Clock::time_point deadline = ready[0]->ready_times_.front() + wait;
    // a stream that has no chunk ready, or a worker has, and is due to step before the deadline
    const bool due = std::any_of(all.begin(), all.end(), [&](const auto& s) {
      return (s->busy_ || s->ready_times_.empty()) && !s->removed_ && !s->input_finished_ &&
             s->next_due_ < deadline;
    });
    if (ready.size() < batch_max && due && Clock::now() < deadline) {
      // a step that is not full: wait for the streams due until the deadline
      std::unique_lock<std::mutex> lock(mu_);
      if (!wake_.wait_until(lock, deadline, [&] { return stop_ || work_; })) work_ = true;
      continue;
    }
    if (ready.size() > batch_max) ready.resize(batch_max);
    Step(ready);
    std::lock_guard<std::mutex> lock(mu_);
    work_ = true;  // streams that lag have more ready: look again
  }
}

void Scheduler::Collect(std::vector<std::shared_ptr<Stream>>* streams) {
  const auto t0 = Clock::now();
  std::vector<std::shared_ptr<Stream>> idle;
  for (const auto& s : *streams) {
    // a worker has it (its audio waits), or it is gone since `streams` was taken
    if (s->busy_ || s->removed_) continue;
    try {
      if (!s->Feed()) {
        Remove(s.get());  // cancelled
        continue;
      }
      if (s->input_finished_ && s->ready_times_.empty()) {
        s->removed_ = true;  // by Finish, on the worker: the scheduler is done with it
        Post(s, [this, s] { Finish(s); }, true);
        continue;
      }
    } catch (const std::exception& e) {
      Fail(s, std::string("decoding failed: ") + e.what());
      continue;
    }
    idle.push_back(s);
  }
  streams->swap(idle);
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  std::lock_guard<std::mutex> lock(mu_);
  stats_.feed_seconds += seconds;
}

void Scheduler::Finish(const std::shared_ptr<Stream>& stream) {
  const auto t0 = Clock::now();
  try {
    stream->decoder_.Finish();
  } catch (const std::exception& e) {
    return Fail(stream, std::string("decoding failed: ") + e.what());
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  Remove(stream.get());  // before the client hears of the end: it may open the next at once
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.streams_finished;
    stats_.finish_seconds += seconds;
  }
  stream->ReportFinals();
  stream->callback_({StreamEvent::Type::kEnd, {}, ""});
}

void Scheduler::Step(const std::vector<std::shared_ptr<Stream>>& batch) {
  const ModelMeta& m = model_->meta();
  const int64_t b = static_cast<int64_t>(batch.size());
  const int64_t row = static_cast<int64_t>(m.chunk_window) * m.num_mel_bins;
  at::Tensor feats = at::empty({b, m.chunk_window, m.num_mel_bins}, at::kFloat);
  at::Tensor offset = at::empty({b}, at::kLong);
  at::Tensor valid = at::empty({b}, at::kLong);
  for (int64_t i = 0; i < b; ++i) {
    const auto [o, v] = batch[i]->decoder_.NextChunk(feats.data_ptr<float>() + i * row);
    offset.data_ptr<int64_t>()[i] = o;
    valid.data_ptr<int64_t>()[i] = v;
  }
  const auto t0 = Clock::now();
  std::vector<at::Tensor> out;
  try {
    if (b == 1) {
      const AsrDecoder& d = batch[0]->decoder_;
      out = model_->EncoderChunk({feats, offset, valid, d.att_cache(), d.cnn_cache()});
    } else {
      std::vector<at::Tensor> att, cnn;
      for (const auto& s : batch) {
        att.push_back(s->decoder_.att_cache());
        cnn.push_back(s->decoder_.cnn_cache().select(1, 0));  // (L, D, k - 1)
      }
      out = model_->EncoderChunkBatch({feats, offset, valid, at::stack(att), at::stack(cnn)});
    }
  } catch (const std::exception& e) {
    for (const auto& s : batch) Fail(s, std::string("encoder failed: ") + e.what());
    return;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.steps;
    stats_.chunks += b;
    auto& [steps, encoder_seconds] = stats_.encoder_by_batch[static_cast<int>(b)];
    ++steps;
    encoder_seconds += seconds;
  }
  for (int64_t i = 0; i < b; ++i) {
    const std::shared_ptr<Stream>& s = batch[i];
    // this stream's rows, its caches in the single-stream layout
    std::vector<at::Tensor> rows =
        b == 1 ? out
               : std::vector<at::Tensor>{out[0].narrow(0, i, 1), out[1].narrow(0, i, 1),
                                         out[2][i], out[3][i].unsqueeze(1)};
    const Clock::time_point ready_time = s->ready_times_.front();
    s->ready_times_.pop_front();
    Post(s, [this, s, rows = std::move(rows), ready_time] { Accept(s, rows, ready_time); },
         false);
  }
}

void Scheduler::Accept(const std::shared_ptr<Stream>& s, const std::vector<at::Tensor>& out,
                       Clock::time_point ready_time) {
  const auto t0 = Clock::now();
  try {
    s->decoder_.AcceptChunk(out[0], out[1], out[2], out[3]);
    s->ReportFinals();
    std::vector<std::string> nbest = s->decoder_.SegmentNBest(s->options_.nbest);
    if (!nbest.empty() && !nbest[0].empty())  // as WeNet: once something is decoded
      s->callback_({StreamEvent::Type::kPartial, std::move(nbest), ""});
  } catch (const std::exception& e) {
    return Fail(s, std::string("decoding failed: ") + e.what());
  }
  const auto now = Clock::now();
  const int64_t ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now - ready_time).count();
  std::lock_guard<std::mutex> lock(mu_);
  stats_.search_seconds += std::chrono::duration<double>(now - t0).count();
  ++stats_.latency_hist[std::clamp<int64_t>(ms, 0, SchedulerStats::kLatencyBins - 1)];
}

}  // namespace wenet_eff

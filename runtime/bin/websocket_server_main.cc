// websocket_server_main: serve live streams over WebSocket with WeNet's protocol
// (src/websocket_server.h), batching the streaming steps of all live streams into one forward
// (src/scheduler.h).
//
//   websocket_server_main --model_dir exp/mini_moe/runtime_fp32 --port 10086 \
//       [--lm data/lm/3gram.arpa --context_path hotwords.txt] [--max_streams 64] \
//       [--batch_max 15] [--batch_wait_ms 100] [--workers 1] [--idle_timeout_s 30] [--threads 1]
//
// The decoding flags are decoder_main's (src/flags.h); the model directory needs
// encoder_chunk.pt2 and, for --batch_max > 1, encoder_chunk_batch.pt2. stderr: "listening on
// port N" once it accepts connections, and each refused message. SIGINT / SIGTERM stop it;
// --stats_json then receives the step and latency figures.
#include <ATen/Parallel.h>

#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "flags.h"
#include "scheduler.h"
#include "websocket_server.h"

DEFINE_int32(port, 10086, "TCP port to listen on (0: any free port, printed on stderr)");
DEFINE_int32(max_streams, 64, "live streams at most; a start signal beyond them is refused "
             "(>= 1)");
DEFINE_int32(batch_max, 15, "streams per batched encoder step (1: one stream per step; > 1 "
             "needs encoder_chunk_batch.pt2)");
DEFINE_int32(batch_wait_ms, 100, "longest wait, from the oldest ready chunk, for the streams "
             "whose next chunk is due before a step that is not full (>= 0)");
DEFINE_int32(workers, 1, "threads for each stream's own work (CTC search, partial results, "
             "attention rescoring at the end) beside the encoder steps (>= 1)");
DEFINE_int32(idle_timeout_s, 30, "close a connection that sends nothing for this long (>= 1)");
DEFINE_string(stats_json, "", "on exit (SIGINT / SIGTERM): write the steps, encoder time per "
              "batch size and chunk latency percentiles here as JSON");

namespace {

bool AtLeast(const char* flag, int32_t v, int32_t least) {
  if (v >= least) return true;
  std::cerr << "ERROR: --" << flag << "=" << v << ": must be >= " << least << "\n";
  return false;
}
bool Port(const char* flag, int32_t v) {
  if (v >= 0 && v <= 65535) return true;
  std::cerr << "ERROR: --" << flag << "=" << v << ": must be a port in [0, 65535]\n";
  return false;
}
bool AtLeastOne(const char* flag, int32_t v) { return AtLeast(flag, v, 1); }
bool NotNegative(const char* flag, int32_t v) { return AtLeast(flag, v, 0); }
DEFINE_validator(port, Port);
DEFINE_validator(max_streams, AtLeastOne);
DEFINE_validator(batch_max, AtLeastOne);
DEFINE_validator(batch_wait_ms, NotNegative);
DEFINE_validator(workers, AtLeastOne);
DEFINE_validator(idle_timeout_s, AtLeastOne);

const char* kUsage =
    "serve live streams over WebSocket with WeNet's protocol, batching them across streams\n"
    "  websocket_server_main --model_dir DIR [--port 10086] [--flag=value ...]\n"
    "  (--flagfile FILE reads flags from FILE, one per line)";

void WriteStats(const wenet_eff::SchedulerStats& stats, const std::string& path) {
  nlohmann::ordered_json by_batch = nlohmann::ordered_json::object();
  for (const auto& [batch, figures] : stats.encoder_by_batch)
    by_batch[std::to_string(batch)] = {{"steps", figures.first}, {"seconds", figures.second}};
  int64_t chunks_timed = 0;
  for (int64_t n : stats.latency_hist) chunks_timed += n;
  nlohmann::ordered_json j = {
      {"steps", stats.steps},
      {"chunks", stats.chunks},
      {"streams_opened", stats.streams_opened},
      {"streams_finished", stats.streams_finished},
      {"batch_max", FLAGS_batch_max},
      {"batch_wait_ms", FLAGS_batch_wait_ms},
      {"threads", FLAGS_threads},
      {"workers", FLAGS_workers},
      {"encoder_by_batch", by_batch},
      {"seconds",
       {{"feed", stats.feed_seconds},
        {"search", stats.search_seconds},
        {"finish", stats.finish_seconds}}},
      {"latency_ms",
       {{"chunks", chunks_timed},
        {"p50", stats.LatencyPercentile(50)},
        {"p95", stats.LatencyPercentile(95)},
        {"p99", stats.LatencyPercentile(99)}}}};
  std::ofstream out(path);
  if (!out) throw std::runtime_error(path + ": cannot write the stats");
  out << j.dump(2) << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  wenet_eff::ParseFlags(kUsage, &argc, &argv);
  try {
    at::set_num_threads(FLAGS_threads);
    auto model = std::make_shared<const wenet_eff::AsrModel>(FLAGS_model_dir);
    const wenet_eff::DecodeOptions options = wenet_eff::DecodeOptionsFromFlags(*model);
    wenet_eff::SchedulerOptions scheduling;
    scheduling.max_streams = FLAGS_max_streams;
    scheduling.batch_max = FLAGS_batch_max;
    scheduling.batch_wait_ms = FLAGS_batch_wait_ms;
    scheduling.workers = FLAGS_workers;
    wenet_eff::Scheduler scheduler(model, options, scheduling);
    wenet_eff::ServerOptions serving;
    serving.port = FLAGS_port;
    serving.idle_timeout_s = FLAGS_idle_timeout_s;
    serving.continuous_decoding = FLAGS_continuous_decoding;
    wenet_eff::WebSocketServer server(&scheduler, serving);
    std::cerr << "listening on port " << server.port() << " (" << model->meta().sample_rate
              << " Hz PCM16 mono; max_streams " << FLAGS_max_streams << ", batch_max "
              << FLAGS_batch_max << ", batch_wait_ms " << FLAGS_batch_wait_ms << ", threads "
              << FLAGS_threads << ", workers " << FLAGS_workers << ")" << std::endl;
    server.Run();
    scheduler.Stop();  // before the connections go: no event is posted to a stopped server
    if (!FLAGS_stats_json.empty()) WriteStats(scheduler.stats(), FLAGS_stats_json);
    std::cerr << "stopped\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "websocket_server_main: " << e.what() << "\n";
    return 2;
  }
}

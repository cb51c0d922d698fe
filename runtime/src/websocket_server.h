// A WebSocket server speaking WeNet's protocol (runtime/core/websocket in WeNet), so WeNet's
// clients work unchanged, over the cross-stream batching scheduler (scheduler.h). WebSocket
// through Boost.Beast, JSON through nlohmann/json.
//
// One utterance per connection:
//   client: text {"signal":"start","nbest":N,"continuous_decoding":bool} (both optional:
//           nbest 1, continuous_decoding the server's --continuous_decoding)
//   server: {"status":"ok","type":"server_ready"}
//   client: binary frames of PCM16 mono samples (little-endian) at the model's sample rate
//   server: {"status":"ok","type":"partial_result","nbest":"[{\"sentence\":\"...\"}]"} after
//           the steps that decoded something (the current segment's n-best)
//   server: {"status":"ok","type":"final_result","nbest":"..."} per segment (at each endpoint
//           with continuous decoding, then at the end)
//   client: text {"signal":"end"}
//   server: the last final_result, {"status":"ok","type":"speech_end"}, then a normal close
// "nbest" is a JSON string holding the array, as WeNet writes it. Any error is answered with
// {"status":"failed","message":"..."} and a close: malformed JSON, an unknown signal, audio
// before start, a frame of an odd byte count, nothing received for --idle_timeout_s, or
// --max_streams streams live.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "scheduler.h"

namespace wenet_eff {

struct ServerOptions {
  int port = 10086;  // 0: any free port (port() says which)
  int idle_timeout_s = 30;
  bool continuous_decoding = false;  // a stream's default when its start signal says nothing
};

class WebSocketServer {
 public:
  // Binds 0.0.0.0:port (throws std::runtime_error naming the port when it cannot).
  WebSocketServer(Scheduler* scheduler, const ServerOptions& options);
  ~WebSocketServer();

  int port() const;
  // Serves until Stop() (from any thread or a signal handler's thread).
  void Run();
  void Stop();
  int connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wenet_eff

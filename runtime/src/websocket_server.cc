// WeNet's WebSocket protocol over the batching scheduler; see websocket_server.h.
//
// One I/O thread runs every connection (Boost.Asio's io_context, all handlers on it, so a
// connection needs no lock); the scheduler's threads decode and post each stream's events back
// to it. A connection reads continuously (a peer that goes away is noticed at once, its stream
// cancelled) and writes through a queue, one message at a time.
#include "websocket_server.h"

#include <csignal>
#include <cstring>
#include <deque>
#include <iostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

namespace wenet_eff {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using ordered_json = nlohmann::ordered_json;  // keys in WeNet's order

std::string Dump(const ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string Status(const char* type) { return Dump({{"status", "ok"}, {"type", type}}); }

// WeNet's result message: "nbest" is the array [{"sentence": ...}, ...] serialized as a string.
std::string Result(const char* type, const std::vector<std::string>& nbest) {
  ordered_json paths = ordered_json::array();
  for (const std::string& sentence : nbest) paths.push_back({{"sentence", sentence}});
  return Dump({{"status", "ok"}, {"type", type}, {"nbest", Dump(paths)}});
}

std::string Failed(const std::string& message) {
  return Dump({{"status", "failed"}, {"message", message}});
}

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, Scheduler* scheduler, const ServerOptions& options,
             std::atomic<int>* count)
      : ws_(std::move(socket)),
        idle_(ws_.get_executor()),
        scheduler_(scheduler),
        options_(options),
        count_(count) {
    ++*count_;
  }

  ~Connection() {
    if (stream_) stream_->Cancel();
    --*count_;
  }

  void Start() {
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
      res.set(beast::http::field::server, "wenet_eff websocket_server_main");
    }));
    ArmIdle();
    ws_.async_accept(beast::bind_front_handler(&Connection::OnAccept, shared_from_this()));
  }

 private:
  void OnAccept(beast::error_code ec) {
    if (ec) return Drop();
    Read();
  }

  void Read() {
    ws_.async_read(buffer_, beast::bind_front_handler(&Connection::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t) {
    if (ec) return Drop();  // closed, reset or timed out: the stream goes with it
    if (!closing_) {  // after a failure or the end, what the peer sends is dropped
      if (ws_.got_text())
        OnText(beast::buffers_to_string(buffer_.data()));
      else
        OnBinary();
      if (!closing_ && !ended_) ArmIdle();
    }
    buffer_.consume(buffer_.size());
    Read();
  }

  void OnText(const std::string& text) {
    ordered_json j;
    try {
      j = ordered_json::parse(text);
    } catch (const ordered_json::parse_error& e) {
      return Fail(std::string("malformed JSON in a text frame: ") + e.what());
    }
    if (!j.is_object())
      return Fail("Wrong protocol: a text frame is a JSON object with a \"signal\"");
    const auto signal = j.find("signal");
    if (signal == j.end() || !signal->is_string())
      return Fail("Wrong message header: no \"signal\" string (\"start\" or \"end\")");
    const std::string name = signal->get<std::string>();
    if (name == "start") return OnStart(j);
    if (name == "end") return OnEnd();
    Fail("Unexpected signal type \"" + name + "\": \"start\" or \"end\"");
  }

  void OnStart(const ordered_json& j) {
    if (started_) return Fail("a second start signal: one utterance per connection");
    StreamOptions options;
    options.continuous_decoding = options_.continuous_decoding;
    if (const auto nbest = j.find("nbest"); nbest != j.end()) {
      if (!nbest->is_number_integer()) return Fail("integer is expected for nbest option");
      const int64_t n = nbest->get<int64_t>();
      if (n < 1 || n > 1000) return Fail("nbest " + std::to_string(n) + ": must be in [1, 1000]");
      options.nbest = static_cast<int>(n);
    }
    if (const auto cd = j.find("continuous_decoding"); cd != j.end()) {
      if (!cd->is_boolean())
        return Fail("boolean true or false is expected for continuous_decoding option");
      options.continuous_decoding = cd->get<bool>();
    }
    auto executor = ws_.get_executor();
    std::weak_ptr<Connection> weak = weak_from_this();
    stream_ = scheduler_->Open(options, [executor, weak](const StreamEvent& event) {
      asio::post(executor, [weak, event] {
        if (auto self = weak.lock()) self->OnEvent(event);
      });
    });
    if (!stream_)
      return Fail("server busy: " + std::to_string(scheduler_->options().max_streams) +
                  " streams are live (--max_streams); try again later");
    started_ = true;
    Send(Status("server_ready"));
  }

  void OnEnd() {
    if (!started_) return Fail("end signal before the start signal");
    if (ended_) return Fail("a second end signal");
    ended_ = true;
    idle_.cancel();  // the client now waits for the results
    stream_->InputFinished();
  }

  void OnBinary() {
    if (!started_) return Fail("Start signal is expected before binary data");
    if (ended_) return Fail("binary data after the end signal");
    const size_t bytes = buffer_.size();
    if (bytes % 2 != 0)
      return Fail("binary frame of " + std::to_string(bytes) +
                  " bytes: audio is PCM16 mono, 2 bytes a sample");
    std::vector<int16_t> pcm(bytes / 2);
    std::memcpy(pcm.data(), buffer_.data().data(), bytes);  // little-endian, as x86 and WeNet
    stream_->AcceptPcm16(pcm.data(), pcm.size());
  }

  void OnEvent(const StreamEvent& event) {
    if (closing_) return;
    switch (event.type) {
      case StreamEvent::Type::kPartial:
        return Send(Result("partial_result", event.nbest));
      case StreamEvent::Type::kFinal:
        return Send(Result("final_result", event.nbest));
      case StreamEvent::Type::kEnd:
        stream_.reset();  // finished: the scheduler let it go
        Send(Status("speech_end"));
        return CloseAfterWrites();
      case StreamEvent::Type::kFailed:
        return Fail(event.message);
    }
  }

  // Answers with the failure message and closes; the stream is dropped.
  void Fail(const std::string& message) {
    if (closing_) return;
    std::cerr << "websocket_server: failed: " << message << "\n";
    if (stream_) stream_->Cancel();
    stream_.reset();
    Send(Failed(message));
    CloseAfterWrites();
  }

  // The peer is gone (or the socket failed): nothing more to send.
  void Drop() {
    closing_ = close_sent_ = true;
    idle_.cancel();
    if (stream_) stream_->Cancel();
    stream_.reset();
  }

  void Send(std::string message) {
    if (close_sent_) return;
    out_.push_back(std::move(message));
    if (out_.size() == 1) Write();
  }

  void Write() {
    ws_.text(true);
    ws_.async_write(asio::buffer(out_.front()),
                    beast::bind_front_handler(&Connection::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, size_t) {
    if (ec) return Drop();
    out_.pop_front();
    if (!out_.empty()) return Write();
    if (closing_) Close();
  }

  void CloseAfterWrites() {
    closing_ = true;
    idle_.cancel();
    if (out_.empty()) Close();
  }

  void Close() {
    if (close_sent_) return;
    close_sent_ = true;
    ws_.async_close(websocket::close_code::normal,
                    [self = shared_from_this()](beast::error_code) {});
  }

  void ArmIdle() {
    if (options_.idle_timeout_s <= 0) return;
    idle_.expires_after(std::chrono::seconds(options_.idle_timeout_s));
    idle_.async_wait([weak = weak_from_this(), s = options_.idle_timeout_s](beast::error_code ec) {
      if (ec) return;  // re-armed or cancelled
      if (auto self = weak.lock())
        self->Fail("nothing received for " + std::to_string(s) +
                   " s (--idle_timeout_s): closing the connection");
    });
  }

  websocket::stream<beast::tcp_stream> ws_;
  asio::steady_timer idle_;
  beast::flat_buffer buffer_;
  Scheduler* scheduler_;
  ServerOptions options_;
  std::atomic<int>* count_;
  std::shared_ptr<Stream> stream_;
  std::deque<std::string> out_;
  bool started_ = false, ended_ = false, closing_ = false, close_sent_ = false;
};

}  // namespace

struct WebSocketServer::Impl {
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  asio::signal_set signals{ioc, SIGINT, SIGTERM};
  Scheduler* scheduler;
  ServerOptions options;
  std::atomic<int> connections{0};

  void Accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;  // stopped
      if (ec)
        std::cerr << "websocket_server: accept: " << ec.message() << "\n";
      else
        std::make_shared<Connection>(std::move(socket), scheduler, options, &connections)
            ->Start();
      Accept();
    });
  }
};

WebSocketServer::WebSocketServer(Scheduler* scheduler, const ServerOptions& options)
    : impl_(std::make_unique<Impl>()) {
  impl_->scheduler = scheduler;
  impl_->options = options;
  const tcp::endpoint endpoint(asio::ip::address_v4::any(), static_cast<uint16_t>(options.port));
  beast::error_code ec;
  impl_->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(endpoint, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("port " + std::to_string(options.port) +
                             ": cannot listen: " + ec.message() +
                             " (another server on it? choose another --port)");
  impl_->signals.async_wait([this](beast::error_code ec, int) {
    if (!ec) Stop();
  });
  impl_->Accept();
}

WebSocketServer::~WebSocketServer() = default;

int WebSocketServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void WebSocketServer::Run() { impl_->ioc.run(); }

void WebSocketServer::Stop() { impl_->ioc.stop(); }

int WebSocketServer::connections() const { return impl_->connections.load(); }

}  // namespace wenet_eff

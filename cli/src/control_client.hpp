// The client side of the control API for qvm-audio: one connection (a Unix
// socket, or the stdin/stdout of `qrexec-client-vm AUDIOVM qaudio.Control`),
// request/reply calls with a deadline, and the event stream.
//
//   auto c = ControlClient::connect_unix("/run/qaudio/control");
//   auto r = (*c)->call("set_volume", {{"qube", "work"}, {"delta", 5}});
//   if (!r) { error: r.error().message }  else if r->contains("error") ...
//
// The qrexec client program can be replaced with $QVM_AUDIO_QREXEC_CLIENT
// (tests use it to reach a local socket).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "qaudio/result.hpp"

namespace qaudio::cli {

using json = nlohmann::json;

class ControlClient {
 public:
  static Result<std::unique_ptr<ControlClient>> connect_unix(const std::string& path);
  static Result<std::unique_ptr<ControlClient>> connect_qrexec(const std::string& audiovm);
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Sends a request and waits for its reply object (with "result" or
  // "error"); transport failures and timeouts are errors.
  Result<json> call(const std::string& method,
                    const json& params = json::object(),
                    std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Next line from the daemon as JSON (events after subscribe). A negative
  // timeout waits forever.
  Result<json> read_message(std::chrono::milliseconds timeout);

  const std::string& peer() const { return peer_; }
  // For a caller's own poll loop: the fd replies and events arrive on, and
  // whether a whole line is already buffered (read it without polling).
  int read_fd() const { return rfd_; }
  bool line_buffered() const { return buf_.find('\n') != std::string::npos; }

 private:
  ControlClient(int rfd, int wfd, pid_t child, std::string peer);
  Result<void> write_all(const std::string& data, std::chrono::steady_clock::time_point deadline);
  Result<std::string> read_line(std::chrono::milliseconds timeout);

  int rfd_ = -1;
  int wfd_ = -1;
  pid_t child_ = -1;
  std::string peer_;
  std::string buf_;
  int64_t next_id_ = 1;
};

}  // namespace qaudio::cli

// Helpers for control tests: an EventLoop on its own thread serving a
// ControlServer, and a blocking line client with deadlines.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <future>
#include <string>
#include <thread>

#include "control_server.hpp"
#include "qaudio/event_loop.hpp"

namespace qaudio::control::test {

inline std::string make_temp_dir() {
  char tmpl[] = "/tmp/qaudio-control-XXXXXX";
  char* d = ::mkdtemp(tmpl);
  return d ? d : "";
}

// Owns a loop thread; the server is created and started before the thread
// runs, and touched afterwards only through on_loop().
class ServedApi {
 public:
  ServedApi(ControlTarget& target, ControlServerOptions opt)
      : api_(target), server_(loop_, api_, std::move(opt)) {}
  ~ServedApi() { stop(); }
  Result<void> start() {
    auto r = server_.start();
    if (r) {
      thread_ = std::thread([this] { loop_.run(); });
    }
    return r;
  }
  void stop() {
    if (thread_.joinable()) {
      loop_.quit();
      thread_.join();
    }
  }
  template <class F>
  auto on_loop(F f) -> decltype(f(std::declval<ControlServer&>())) {
    using R = decltype(f(server_));
    std::promise<R> p;
    loop_.post([&] {
      if constexpr (std::is_void_v<R>) {
        f(server_);
        p.set_value();
      } else {
        p.set_value(f(server_));
      }
    });
    return p.get_future().get();
  }
  // Polls `cond` on the loop until it holds or 10 s pass.
  template <class F>
  bool wait_for(F cond) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (on_loop([&](ControlServer& s) { return cond(s); })) {
        return true;
      }
      std::this_thread::yield();
    }
    return false;
  }

 private:
  EventLoop loop_;
  ControlApi api_;
  ControlServer server_;
  std::thread thread_;
};

class LineClient {
 public:
  explicit LineClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~LineClient() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  bool connected() const { return connected_; }
  int fd() const { return fd_; }
  bool send(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      off += static_cast<size_t>(n);
    }
    return true;
  }
  // One line without '\n'; "" with eof()/timed_out() set otherwise.
  std::string read_line(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return l;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
        timed_out_ = true;
        return "";
      }
      char b[65536];
      ssize_t n = ::recv(fd_, b, sizeof b, 0);
      if (n <= 0) {
        eof_ = true;
        return "";
      }
      buf_.append(b, static_cast<size_t>(n));
    }
  }
  // Reads until the server closes; true when it did within the timeout.
  bool wait_eof(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    while (!eof_ && !timed_out_) {
      read_line(timeout);
    }
    return eof_;
  }
  bool eof() const { return eof_; }
  bool timed_out() const { return timed_out_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  bool timed_out_ = false;
  std::string buf_;
};

}  // namespace qaudio::control::test

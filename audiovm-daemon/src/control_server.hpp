// The control API's Unix socket server, on the daemon's EventLoop.
//
// One request per line, one reply line per request, in order; `subscribe`
// then also streams events (publish()) as lines until the client leaves.
// Everything is non-blocking and bounded, so no client can stall the loop
// or the other clients:
//   - peer credentials (SO_PEERCRED) are checked on accept: root, the
//     daemon's own uid, or members of `allowed_group`; anyone else gets a
//     "refused" error line, is logged and disconnected (`authorize`
//     replaces the rule, for tests);
//   - at most `max_clients` connections; when full, the client that has
//     been idle longest (no request for `evict_idle_after`, not subscribed)
//     is closed to make room, so idle connections cannot lock out a user's
//     `qvm-audio`; with no such client the newcomer gets a "refused" line;
//   - a request line longer than `max_line` bytes gets an error line and
//     the client is disconnected;
//   - each client's unsent output is bounded by `max_queue`: replies pause
//     reading that client until it drains; events that do not fit
//     disconnect it (a subscriber that does not read).
//
//   ControlServer server(loop, api, {.path = default_control_path()});
//   if (auto r = server.start(); !r) { log_error("%s", r.error().message.c_str()); }
//   server.publish(event_volume_changed("work", 80));
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "control_api.hpp"
#include "qaudio/event_loop.hpp"
#include "qaudio/result.hpp"

namespace qaudio::control {

struct PeerCred {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

struct ControlServerOptions {
  std::string path;                    // socket path; its directory is created (0755)
  std::optional<gid_t> allowed_group;  // members may connect too; socket made group rw
  size_t max_clients = 64;
  size_t max_line = kMaxRequestBytes;
  size_t max_queue = 1 << 20;  // unsent bytes per client
  std::chrono::milliseconds evict_idle_after{500};
  // Replaces the default credential rule (root, own uid, allowed_group).
  std::function<bool(const PeerCred&)> authorize;
};

// $XDG_RUNTIME_DIR/qaudio/control, or /run/qaudio/control without it.
std::string default_control_path();

class ControlServer {
 public:
  ControlServer(EventLoop& loop, ControlApi& api, ControlServerOptions options);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Binds and listens (a stale socket file at the path is replaced).
  Result<void> start();
  void stop();  // closes every client and removes the socket file

  // Sends an event line to every subscribed client.
  void publish(const ControlEvent& ev);

  size_t client_count() const { return clients_.size(); }
  size_t subscriber_count() const;
  // Counters for logs and tests.
  struct Stats {
    uint64_t accepted = 0;
    uint64_t refused_credentials = 0;
    uint64_t refused_full = 0;
    uint64_t evicted_idle = 0;       // closed to make room for a newcomer
    uint64_t dropped_slow = 0;       // disconnected: output queue overflow
    uint64_t dropped_long_line = 0;  // disconnected: request line too long
  };
  const Stats& stats() const { return stats_; }
  const std::string& path() const { return opt_.path; }

 private:
  struct Client {
    uint64_t id = 0;
    int fd = -1;
    EventLoop::Id watch = 0;
    PeerCred cred;
    std::string in;
    std::string out;
    size_t out_off = 0;
    bool subscribed = false;
    bool closing = false;
    std::chrono::steady_clock::time_point last_active;  // accept or last request
  };
  using ClientPtr = std::shared_ptr<Client>;

  void on_accept();
  bool evict_idle_client();  // true: one was closed
  void on_client(uint64_t id, short revents);
  void process_lines(const ClientPtr& c);
  bool flush(const ClientPtr& c);  // false: the client is gone
  void update_events(const ClientPtr& c);
  void close_client(const ClientPtr& c, const char* why);
  bool allowed(const PeerCred& cred) const;
  size_t pending(const Client& c) const { return c.out.size() - c.out_off; }
  static bool has_line(const Client& c) { return c.in.find('\n') != std::string::npos; }

  EventLoop& loop_;
  ControlApi& api_;
  ControlServerOptions opt_;
  int listen_fd_ = -1;
  EventLoop::Id listen_watch_ = 0;
  uint64_t next_id_ = 1;
  std::map<uint64_t, ClientPtr> clients_;
  Stats stats_;
};

}  // namespace qaudio::control

// Test fixtures for Bluetooth: a private dbus-daemon with python-dbusmock's
// bluez5 template on it (TESTRIG.md), the audiovm-daemon started with
// --bluetooth against that bus, qvm-audio runs, and an event subscriber on
// the control socket. Every process is a direct child, stopped by pid.
//
//   BluezMock mock(dir);  ASSERT_TRUE(mock.start()) << mock.error;
//   mock.mock("AddAdapter", "ss", {"hci0", "host"});
//   BtDaemon d(dir);  ASSERT_TRUE(d.start(mock.address()));
//   auto r = d.cli({"bt", "devices", "--json"});
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <nlohmann/json.hpp>

#include "private_bus.hpp"
#include "sound_servers.hpp"

namespace qaudio::test {

using json = nlohmann::json;

class BluezMock {
 public:
  explicit BluezMock(std::string dir) : dir_(std::move(dir)) {}
  bool start() {
    if (!bus_.start()) {
      error = bus_.error;
      return false;
    }
    if (!bus_.start_mock({"--system", "--template", "bluez5"}, "org.bluez")) {
      error = bus_.error;
      return false;
    }
    return true;
  }
  const std::string& address() const { return bus_.address(); }

  CommandResult busctl(std::vector<std::string> args, std::chrono::milliseconds t = 10s) {
    return bus_.busctl(std::move(args), t);
  }
  // org.bluez.Mock.METHOD on "/".
  bool mock(const std::string& method,
            const std::string& sig,
            const std::vector<std::string>& args) {
    std::vector<std::string> a{"call", "org.bluez", "/", "org.bluez.Mock", method, sig};
    a.insert(a.end(), args.begin(), args.end());
    return busctl(a).status == 0;
  }
  // Names of the methods called on `path` (org.freedesktop.DBus.Mock.GetMethodCalls).
  std::vector<std::string> calls(const std::string& path) {
    auto r = busctl(
        {"--json=short", "call", "org.bluez", path, "org.freedesktop.DBus.Mock", "GetCalls"});
    std::vector<std::string> out;
    auto j = json::parse(r.out, nullptr, false);
    if (j.is_discarded()) {
      return out;
    }
    for (const auto& c : j["data"][0]) {
      out.push_back(c[1].get<std::string>());
    }
    return out;
  }
  // Argument text of the calls of `method` on `path`, busctl's JSON.
  std::string call_args(const std::string& path, const std::string& method) {
    auto r = busctl({"--json=short", "call", "org.bluez", path, "org.freedesktop.DBus.Mock",
                     "GetMethodCalls", "s", method});
    return r.out;
  }
  static std::string dev_path(const std::string& addr) {
    std::string p = "/org/bluez/hci0/dev_" + addr;
    for (auto& c : p) {
      c = c == ':' ? '_' : c;
    }
    return p;
  }

  std::string error;

 private:
  std::string dir_;
  PrivateBus bus_{dir_, "sysbus"};
};

// Reads the control socket's event stream after "subscribe".
class EventReader {
 public:
  bool connect(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      return false;
    }
    std::string req = "{\"id\":1,\"method\":\"subscribe\"}\n";
    return ::write(fd_, req.data(), req.size()) == static_cast<ssize_t>(req.size());
  }
  ~EventReader() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  // Waits for an event of `type` whose data satisfies `pred`, among the
  // events from index `from` on; events read on the way are kept in all().
  std::optional<json> wait(const std::string& type,
                           const std::function<bool(const json&)>& pred,
                           std::chrono::milliseconds timeout = 20s,
                           size_t from = 0) {
    auto deadline = Clock::now() + timeout;
    size_t next = from;
    for (;;) {
      for (; next < events_.size(); ++next) {
        const json& e = events_[next];
        if (e.value("event", "") == type && pred(e["data"])) {
          return e;
        }
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        return std::nullopt;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 200))) <= 0) {
        continue;
      }
      char buf[65536];
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) {
        return std::nullopt;
      }
      buf_.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = buf_.find('\n')) != std::string::npos) {
        auto j = json::parse(buf_.substr(0, nl), nullptr, false);
        buf_.erase(0, nl + 1);
        if (!j.is_discarded() && j.contains("event")) {
          events_.push_back(j);
        }
      }
    }
  }
  const std::vector<json>& all() const { return events_; }

 private:
  int fd_ = -1;
  std::string buf_;
  std::vector<json> events_;
};

class BtDaemon {
 public:
  explicit BtDaemon(std::string dir) : dir_(std::move(dir)) {}
  bool start(const std::string& bus, const std::vector<std::string>& extra = {}) {
    bus_ = bus;
    make_dir(dir_ + "/run");
    std::vector<std::string> argv{QAUDIO_DAEMON_BIN,      "--backend", "null",    "--channel",
                                  "unix:" + dir_ + "/ch", "--control", control(), "--bluetooth",
                                  "--bluetooth-bus",      bus_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    make_dir(dir_ + "/ch");
    auto c = Child::spawn(argv, env(), dir_ + "/daemon.log");
    if (!c) {
      return false;
    }
    daemon_ = std::move(*c);
    return wait_until([&] { return cli({"bt", "adapters"}).status == 0; }, 20s, 50ms);
  }
  std::string control() const { return dir_ + "/control"; }
  EnvVars env() const { return {{"XDG_RUNTIME_DIR", dir_ + "/run"}, {"HOME", dir_}}; }
  CommandResult cli(std::vector<std::string> args, std::chrono::milliseconds t = 30s) {
    std::vector<std::string> argv{QVM_AUDIO_BIN, "--control", control()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, env(), t, dir_ + "/cli.err");
  }
  json cli_json(std::vector<std::string> args) {
    args.push_back("--json");
    auto r = cli(args);
    auto j = json::parse(r.out, nullptr, false);
    return j.is_discarded() ? json() : j;
  }
  pid_t pid() const { return daemon_.pid(); }
  std::string log() const {
    std::ifstream f(dir_ + "/daemon.log");
    return std::string(std::istreambuf_iterator<char>(f), {});
  }

 private:
  std::string dir_;
  std::string bus_;
  Child daemon_;
};

}  // namespace qaudio::test

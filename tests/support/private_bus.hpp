// D-Bus pieces for tests (mixer UI, Bluetooth): a private dbus-daemon (TESTRIG.md)
// and python3-dbusmock services on it (a template such as
// notification_daemon, or a bare mock object the test fills with methods and
// properties), busctl against that bus, and the mock's recorded calls. Every
// process is a direct child, stopped by pid.
//
//   PrivateBus bus(dir);                 ASSERT_TRUE(bus.start()) << bus.error;
//   ASSERT_TRUE(bus.start_mock({"--template", "notification_daemon"},
//                              "org.freedesktop.Notifications"));
//   auto calls = bus.mock_calls("org.freedesktop.Notifications",
//                               "/org/freedesktop/Notifications", "Notify");
#pragma once

#include <fcntl.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "sound_servers.hpp"

namespace qaudio::test {

using namespace std::chrono_literals;

class PrivateBus {
 public:
  explicit PrivateBus(std::string dir, std::string name = "bus")
      : dir_(std::move(dir)), name_(std::move(name)) {}
  bool start() {
    if (!have_program("dbus-daemon") || !have_program("busctl")) {
      error = "dbus-daemon or busctl missing (Debian: dbus-daemon, systemd)";
      return false;
    }
    std::string addr_file = dir_ + "/" + name_ + ".addr";
    int fd = ::open(addr_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    auto bus = Child::spawn({"dbus-daemon", "--session", "--nofork", "--nopidfile",
                             "--address=unix:path=" + dir_ + "/" + name_, "--print-address=1"},
                            {}, dir_ + "/" + name_ + "-daemon.log", fd);
    ::close(fd);
    if (!bus) {
      error = "cannot start dbus-daemon";
      return false;
    }
    bus_ = std::move(*bus);
    if (!wait_until(
            [&] {
              std::ifstream f(addr_file);
              std::getline(f, address_);
              return !address_.empty();
            },
            10s)) {
      error = "dbus-daemon printed no address";
      return false;
    }
    return true;
  }
  const std::string& address() const { return address_; }

  // python3 -m dbusmock ARGS on this bus (as its session bus, and as its
  // system bus for --system templates); ready when `wait_name` is owned.
  bool start_mock(const std::vector<std::string>& args, const std::string& wait_name) {
    std::vector<std::string> argv{"/usr/bin/python3", "-m", "dbusmock"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto m = Child::spawn(
        argv, {{"DBUS_SESSION_BUS_ADDRESS", address_}, {"DBUS_SYSTEM_BUS_ADDRESS", address_}},
        dir_ + "/" + name_ + "-mock" + std::to_string(mocks_.size()) + ".log");
    if (!m) {
      error = "cannot start /usr/bin/python3 -m dbusmock";
      return false;
    }
    mocks_.push_back(std::move(*m));
    if (!wait_until([&] { return busctl({"status", wait_name}).status == 0; }, 20s, 50ms)) {
      error = "python3-dbusmock did not take " + wait_name + " (is python3-dbusmock installed?)";
      return false;
    }
    return true;
  }

  qaudio::test::CommandResult busctl(std::vector<std::string> args,
                                     std::chrono::milliseconds t = 10s) {
    std::vector<std::string> argv{"busctl", "--address=" + address_};
    argv.insert(argv.end(), args.begin(), args.end());
    return qaudio::test::run_command(argv, {}, t, dir_ + "/" + name_ + "-busctl.log");
  }
  // busctl --json=short ARGS, parsed (null on failure).
  nlohmann::json busctl_json(std::vector<std::string> args) {
    args.insert(args.begin(), "--json=short");
    auto r = busctl(args);
    if (r.status != 0) {
      return nullptr;
    }
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    return j.is_discarded() ? nlohmann::json() : j;
  }
  // The argument lists (busctl JSON: [{"type":..,"data":..}, ...]) of the
  // calls of `method` recorded by the mock object at `path`.
  std::vector<nlohmann::json> mock_calls(const std::string& service,
                                         const std::string& path,
                                         const std::string& method) {
    auto j = busctl_json(
        {"call", service, path, "org.freedesktop.DBus.Mock", "GetMethodCalls", "s", method});
    std::vector<nlohmann::json> out;
    if (!j.is_object()) {
      return out;
    }
    for (const auto& c : j["data"][0]) {
      out.push_back(c[1]);
    }
    return out;
  }

  std::string error;

 private:
  std::string dir_;
  std::string name_;
  std::string address_;
  qaudio::test::Child bus_;
  std::vector<qaudio::test::Child> mocks_;
};

}  // namespace qaudio::test

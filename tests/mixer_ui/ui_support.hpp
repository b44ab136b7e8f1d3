// Helpers for the mixer UI tests: one QApplication per test binary (offscreen
// unless the test set QT_QPA_PLATFORM/DISPLAY first), waiting on a condition
// while Qt's event loop runs (deadline, no sleeps), a real daemon with two
// fake qubes (work: blue, personal: yellow) on a private control socket, and
// a small blocking control client to check the daemon's state independently
// of the UI.
//
//   UiRig rig("null");                     // or "wav:" + rig.dir() + "/out.wav"
//   ASSERT_TRUE(rig.start());
//   ControlClient c(QString::fromStdString(rig.control()));
//   ASSERT_TRUE(qt_wait([&] { return c.isConnected(); }, 10s));
//   rig.query(R"({"id":1,"method":"list"})");  // reply line as JSON
#pragma once

#include <QApplication>
#include <QElapsedTimer>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "sound_servers.hpp"

namespace qaudio::mixer::test {

using namespace std::chrono_literals;
using json = nlohmann::json;
using qaudio::test::Child;
using qaudio::test::TempDir;

inline QApplication& qt_app() {
  static int argc = 1;
  static char name[] = "mixer-ui-test";
  static char* argv[] = {name, nullptr};
  if (qgetenv("QT_QPA_PLATFORM").isEmpty()) {
    qputenv("QT_QPA_PLATFORM", "offscreen");
  }
  static QApplication* app = new QApplication(argc, argv);
  return *app;
}

// Runs the Qt event loop until `cond` holds or `timeout` passes.
inline bool qt_wait(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  QElapsedTimer t;
  t.start();
  for (;;) {
    if (cond()) {
      return true;
    }
    if (t.elapsed() >= timeout.count()) {
      return false;
    }
    QCoreApplication::processEvents(QEventLoop::AllEvents | QEventLoop::WaitForMoreEvents, 20);
  }
}

// One blocking request on a fresh connection: returns the reply object
// (null on failure).
inline json control_query(const std::string& path, const json& request) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) {
      close(fd);
    }
    return nullptr;
  }
  std::string line = request.dump() + "\n";
  if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    close(fd);
    return nullptr;
  }
  std::string in;
  char buf[4096];
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (in.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 200) > 0) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) {
        break;
      }
      in.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  auto nl = in.find('\n');
  if (nl == std::string::npos) {
    return nullptr;
  }
  return json::parse(in.substr(0, nl), nullptr, false);
}

#ifdef QAUDIO_DAEMON_BIN
// A daemon (backend `backend`) serving work (domid 1, blue, 440 Hz) and
// personal (domid 2, yellow, 660 Hz) played by fake agents; policy lets
// both play, `ask`s for work's microphone and denies personal's.
class UiRig {
 public:
  explicit UiRig(std::string backend) : dir_("mixer-ui"), backend_(std::move(backend)) {
    if (backend_ == "wav") {
      backend_ = "wav:" + wav_path();
    }
  }
  const std::string& dir() const { return dir_.path(); }
  // Another --backend (before start()), e.g. "pulse:unix:/path/native".
  void set_backend(std::string b) { backend_ = std::move(b); }
  std::string control() const { return dir_.path() + "/control"; }
  std::string wav_path() const { return dir_.path() + "/out.wav"; }

  bool start_agents(bool work_mic = true) {
    std::string chan = "unix:" + dir_.path() + "/chan";
    qaudio::test::make_dir(dir_.path() + "/chan");
    std::vector<std::string> w = {QAUDIO_FAKE_AGENT_BIN,
                                  "--channel",
                                  chan,
                                  "--domid",
                                  "1",
                                  "--name",
                                  "work",
                                  "--protocol",
                                  "native",
                                  "--freq",
                                  "440",
                                  "--amplitude",
                                  "0.3",
                                  "--seconds",
                                  "0"};
    if (work_mic) {
      w.push_back("--mic");
    }
    auto a = Child::spawn(w, {}, dir_.path() + "/work.log");
    auto b = Child::spawn(
        {QAUDIO_FAKE_AGENT_BIN, "--channel", chan, "--domid", "2", "--name", "personal",
         "--protocol", "native", "--freq", "660", "--amplitude", "0.3", "--seconds", "0"},
        {}, dir_.path() + "/personal.log");
    if (!a || !b) {
      return false;
    }
    work_ = std::move(*a);
    personal_ = std::move(*b);
    return true;
  }

  bool start_daemon() {
    qaudio::test::make_dir(dir_.path() + "/policy");
    std::ofstream(dir_.path() + "/policy/30-qaudio.policy") << "qaudio.Play * @anyvm * allow\n"
                                                               "qaudio.Mic * work * ask\n"
                                                               "qaudio.Mic * personal * deny\n";
    std::vector<std::string> argv{
        QAUDIO_DAEMON_BIN, "--channel",    "unix:" + dir_.path() + "/chan",
        "--backend",       backend_,       "--qube",
        "work=1",          "--qube",       "personal=2",
        "--label",         "work=blue",    "--label",
        "personal=yellow", "--policy-dir", dir_.path() + "/policy",
        "--audio-qube",    "sys-audio",    "--control",
        control()};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    auto d = Child::spawn(argv, daemon_env, dir_.path() + "/daemon.log");
    if (!d) {
      return false;
    }
    daemon_ = std::move(*d);
    return qaudio::test::wait_until(
        [&] {
          return control_query(control(), {{"id", 1}, {"method", "info"}}).is_object();
        },
        20s);
  }

  bool start() { return start_agents() && start_daemon(); }
  void stop_daemon() { daemon_.stop(); }
  pid_t daemon_pid() const { return daemon_.pid(); }
  // work's agent leaves (its recording, and so its mic request, ends).
  void stop_work() { work_.stop(); }
  // Replaces the qaudio.Mic rule for work (the daemon watches the files).
  void set_work_mic_policy(const std::string& action) {
    std::ofstream(dir_.path() + "/policy/30-qaudio.policy")
        << "qaudio.Play * @anyvm * allow\n"
           "qaudio.Mic * work * "
        << action << "\nqaudio.Mic * personal * deny\n";
  }

  json query(const std::string& method, const json& params = json::object()) {
    json req = {{"id", 1}, {"method", method}};
    if (!params.empty()) {
      req["params"] = params;
    }
    return control_query(control(), req);
  }
  // The daemon's list entry for `qube` (null if unavailable).
  json qube(const std::string& name) {
    json r = query("list", {{"qube", name}});
    if (!r.is_object() || !r.contains("result")) {
      return nullptr;
    }
    return r["result"]["qubes"][0];
  }
  // Added to the daemon's command line / environment by start_daemon().
  std::vector<std::string> extra_args;
  qaudio::test::EnvVars daemon_env;

  std::string daemon_log() const {
    std::ifstream in(dir_.path() + "/daemon.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  TempDir dir_;
  std::string backend_;
  Child work_, personal_, daemon_;
};
#endif  // QAUDIO_DAEMON_BIN

}  // namespace qaudio::mixer::test

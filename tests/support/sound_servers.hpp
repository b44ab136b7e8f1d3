// Private sound servers for integration tests: a PulseAudio server, a
// D-Bus + PipeWire + WirePlumber stack, and an ALSA file-plugin config, each
// under its own temp dir (private HOME, XDG_RUNTIME_DIR, XDG_CONFIG_HOME),
// started as direct children of the test (posix_spawn), polled for readiness
// with a deadline and stopped by pid + waitpid. Set up as in
// /work/shared/TESTRIG.md.
//
//   qaudio::test::TempDir dir("pulse");
//   qaudio::test::PulseServer pa(dir.path());
//   if (!qaudio::test::have_program("pulseaudio")) GTEST_SKIP();
//   ASSERT_TRUE(pa.start()) << pa.last_error();
//   auto pcm = pa.record_monitor(48000);        // 1 s of float stereo at "out"
//   pa.kill_hard(); pa.start();                 // same socket, new server
//
//   qaudio::test::PipeWireStack pw(dir.path(), {"other"});  // + null sink "other"
//   pw.start(); pw.start_pipewire_pulse();      // optional PulseAudio socket
//   pw.kill_server(); pw.start_server();        // PipeWire crash and restart
//
// Helpers for one-off commands: run_command(argv, env, timeout) captures
// stdout; wait_until(cond, timeout) polls a condition with a deadline.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace qaudio::test {

using namespace std::chrono_literals;
using EnvVars = std::map<std::string, std::string>;
using Clock = std::chrono::steady_clock;

// Polls `cond` every `step` until it holds or `timeout` passes.
inline bool wait_until(const std::function<bool()>& cond,
                       std::chrono::milliseconds timeout,
                       std::chrono::milliseconds step = 20ms) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (cond()) {
      return true;
    }
    if (Clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(step);
  }
}

inline bool have_program(const std::string& name) {
  const char* path = getenv("PATH");
  std::string p = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) {
      end = p.size();
    }
    std::string candidate = p.substr(start, end - start) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) {
      return true;
    }
    start = end + 1;
  }
  return false;
}

// A mkdtemp directory, removed with its contents on destruction (set
// QAUDIO_KEEP_TEST_DIRS=1 to keep it for debugging).
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    std::string tmpl =
        std::filesystem::temp_directory_path().string() + "/qaudio-" + tag + "-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) != nullptr) {
      path_ = buf.data();
    }
  }
  ~TempDir() {
    if (!path_.empty() && getenv("QAUDIO_KEEP_TEST_DIRS") == nullptr) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Creates `dir` (and parents) with `mode`.
inline void make_dir(const std::string& dir, mode_t mode = 0700) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  chmod(dir.c_str(), mode);
}

// A child process started with posix_spawnp; stopped (SIGTERM, then SIGKILL
// after a grace period) and reaped on destruction.
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  Child(Child&& o) noexcept : pid_(std::exchange(o.pid_, -1)) {}
  Child& operator=(Child&& o) noexcept {
    if (this != &o) {
      stop();
      pid_ = std::exchange(o.pid_, -1);
    }
    return *this;
  }
  ~Child() { stop(); }

  // stdout goes to `stdout_fd` if >= 0, else to `log_path` (or /dev/null);
  // stderr to `log_path` (or /dev/null). The environment is the test's with
  // `env` overriding it.
  static std::optional<Child> spawn(const std::vector<std::string>& argv,
                                    const EnvVars& env,
                                    const std::string& log_path = {},
                                    int stdout_fd = -1) {
    std::vector<std::string> envs;
    for (char** e = environ; e && *e; ++e) {
      std::string kv = *e;
      auto eq = kv.find('=');
      if (eq != std::string::npos && env.count(kv.substr(0, eq)) != 0) {
        continue;
      }
      envs.push_back(std::move(kv));
    }
    for (const auto& [k, v] : env) {
      envs.push_back(k + "=" + v);
    }
    std::vector<char*> cargv;
    for (const auto& a : argv) {
      cargv.push_back(const_cast<char*>(a.c_str()));
    }
    cargv.push_back(nullptr);
    std::vector<char*> cenv;
    for (auto& e : envs) {
      cenv.push_back(e.data());
    }
    cenv.push_back(nullptr);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    const char* out = log_path.empty() ? "/dev/null" : log_path.c_str();
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, out, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (stdout_fd >= 0) {
      posix_spawn_file_actions_adddup2(&fa, stdout_fd, 1);
    } else {
      posix_spawn_file_actions_adddup2(&fa, 2, 1);
    }
    // Reset signal dispositions the test runner may have changed.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t def;
    sigemptyset(&def);
    sigaddset(&def, SIGTERM);
    sigaddset(&def, SIGINT);
    sigaddset(&def, SIGPIPE);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &def);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    pid_t pid = -1;
    int rc = posix_spawnp(&pid, cargv[0], &fa, &attr, cargv.data(), cenv.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      return std::nullopt;
    }
    Child c;
    c.pid_ = pid;
    return c;
  }

  pid_t pid() const { return pid_; }
  bool valid() const { return pid_ > 0; }

  // True while the process has not exited (reaps it once it has).
  bool running() {
    if (pid_ <= 0) {
      return false;
    }
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
      status_ = status;
      pid_ = -1;
      return false;
    }
    return true;
  }

  // Waits for the exit up to `timeout`; returns the wait status or nullopt.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    if (wait_until([&] { return !running(); }, timeout, 5ms)) {
      return status_;
    }
    return std::nullopt;
  }

  // Sends `sig`, waits `grace`, then SIGKILLs; always reaps.
  void stop(int sig = SIGTERM, std::chrono::milliseconds grace = 5000ms) {
    if (pid_ <= 0) {
      return;
    }
    kill(pid_, sig);
    if (!wait_exit(grace)) {
      kill(pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
      status_ = status;
      pid_ = -1;
    }
  }

  int last_status() const { return status_; }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
};

struct CommandResult {
  int status = -1;  // exit code, or -1 if it did not exit in time / failed to start
  std::string out;  // stdout
};

// Reads `fd` until EOF, `max_bytes`, or the deadline.
inline void read_fd_until(int fd, std::string& out, size_t max_bytes, Clock::time_point deadline) {
  char buf[65536];
  while (out.size() < max_bytes) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      break;
    }
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 200)));
    if (r <= 0) {
      continue;
    }
    size_t want = std::min(sizeof(buf), max_bytes - out.size());
    ssize_t n = read(fd, buf, want);
    if (n <= 0) {
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        continue;
      }
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

// Runs a command to completion (or kills it at the deadline), capturing stdout.
inline CommandResult run_command(const std::vector<std::string>& argv,
                                 const EnvVars& env,
                                 std::chrono::milliseconds timeout = 10000ms,
                                 const std::string& log_path = {}) {
  CommandResult res;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return res;
  }
  auto child = Child::spawn(argv, env, log_path, fds[1]);
  close(fds[1]);
  if (!child) {
    close(fds[0]);
    return res;
  }
  const auto deadline = Clock::now() + timeout;
  read_fd_until(fds[0], res.out, SIZE_MAX, deadline);
  close(fds[0]);
  auto st = child->wait_exit(std::chrono::duration_cast<std::chrono::milliseconds>(
      std::max(deadline - Clock::now(), Clock::duration(100ms))));
  if (st && WIFEXITED(*st)) {
    res.status = WEXITSTATUS(*st);
  }
  return res;  // a command still running is stopped by ~Child
}

// Runs a recorder command that writes raw float32 frames to stdout and
// returns the first `samples` floats it produced (fewer if the deadline
// passed), then stops the recorder with SIGTERM.
inline std::vector<float> record_floats(const std::vector<std::string>& argv,
                                        const EnvVars& env,
                                        size_t samples,
                                        std::chrono::milliseconds timeout,
                                        const std::string& log_path = {}) {
  std::vector<float> pcm;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return pcm;
  }
  auto child = Child::spawn(argv, env, log_path, fds[1]);
  close(fds[1]);
  if (!child) {
    close(fds[0]);
    return pcm;
  }
  std::string bytes;
  read_fd_until(fds[0], bytes, samples * sizeof(float), Clock::now() + timeout);
  close(fds[0]);
  child->stop(SIGTERM, 3000ms);
  pcm.resize(bytes.size() / sizeof(float));
  std::memcpy(pcm.data(), bytes.data(), pcm.size() * sizeof(float));
  return pcm;
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
}

// The environment every client of a private server gets.
inline EnvVars private_client_env(const std::string& dir) {
  return {{"HOME", dir + "/home"},
          {"XDG_RUNTIME_DIR", dir + "/run"},
          {"XDG_CONFIG_HOME", dir + "/config"},
          {"XDG_STATE_HOME", dir + "/state"},
          {"XDG_DATA_HOME", dir + "/data"}};
}

// Points this (test) process at a private dir so in-process clients
// (libpulse, libpipewire, alsa-lib) do not read or write the real HOME. Call
// before starting any threads.
inline void use_private_env_in_process(const EnvVars& env) {
  for (const auto& [k, v] : env) {
    setenv(k.c_str(), v.c_str(), 1);
  }
}

inline void prepare_private_dirs(const std::string& dir) {
  for (const char* sub : {"/home", "/run", "/config", "/state", "/data"}) {
    make_dir(dir + sub);
  }
}

// A private PulseAudio server with a 48 kHz stereo null sink "out".
class PulseServer {
 public:
  explicit PulseServer(std::string dir) : dir_(std::move(dir)) { prepare_private_dirs(dir_); }
  ~PulseServer() { stop(); }

  std::string server() const { return "unix:" + dir_ + "/run/native"; }
  EnvVars client_env() const {
    EnvVars e = private_client_env(dir_);
    e["PULSE_SERVER"] = server();
    e["PULSE_RUNTIME_PATH"] = dir_ + "/run";
    e["PULSE_STATE_PATH"] = dir_ + "/state";
    return e;
  }
  std::string log_path() const { return dir_ + "/pulseaudio.log"; }
  const std::string& last_error() const { return error_; }
  pid_t pid() const { return server_.pid(); }
  // Real-time scheduling for the server's I/O threads, as a desktop session
  // gets it through RTKit (taken only where the process may; the log says).
  void set_realtime(bool on) { realtime_ = on; }

  // Starts the server and waits until `pactl info` answers.
  bool start(std::chrono::milliseconds timeout = 20000ms) {
    EnvVars env = client_env();
    env.erase("PULSE_SERVER");
    std::vector<std::string> argv{
        "pulseaudio",
        "-n",
        "--daemonize=no",
        "--exit-idle-time=-1",
        "--system=false",
        "--use-pid-file=no",
        "--log-target=stderr",
        "--load=module-native-protocol-unix socket=" + dir_ + "/run/native auth-anonymous=1",
        "--load=module-null-sink sink_name=out rate=48000 channels=2"};
    if (realtime_) {
      argv.insert(argv.begin() + 1, {"--realtime=true", "--high-priority=true"});
    }
    auto c = Child::spawn(argv, env, log_path());
    if (!c) {
      error_ = "cannot spawn pulseaudio";
      return false;
    }
    server_ = std::move(*c);
    bool ok = wait_until([&] { return !server_.running() || pactl({"info"}).status == 0; }, timeout,
                         50ms);
    if (!ok || !server_.running()) {
      error_ = "pulseaudio did not become ready; see " + log_path();
      return false;
    }
    return true;
  }
  void stop() { server_.stop(SIGTERM); }
  // SIGKILL by pid, as a crash would.
  void kill_hard() { server_.stop(SIGKILL); }

  CommandResult pactl(std::vector<std::string> args,
                      std::chrono::milliseconds timeout = 5000ms) const {
    args.insert(args.begin(), "pactl");
    return run_command(args, client_env(), timeout);
  }

  // `frames` frames (interleaved stereo float, 48 kHz) recorded from a source
  // (by default the monitor of the null sink "out").
  std::vector<float> record_monitor(size_t frames,
                                    std::chrono::milliseconds timeout = 30000ms,
                                    const std::string& source = "out.monitor") const {
    return record_floats({"parec", "-d", source, "--latency-msec=20", "--raw", "--format=float32le",
                          "--rate=48000", "--channels=2"},
                         client_env(), frames * 2, timeout, dir_ + "/parec.log");
  }

 private:
  std::string dir_;
  Child server_;
  std::string error_;
  bool realtime_ = false;
};

// A private session bus, PipeWire and WirePlumber with a 48 kHz stereo null
// sink "out" (the default sink) and, if asked, more null sinks (lower
// priority, so "out" stays the default).
class PipeWireStack {
 public:
  explicit PipeWireStack(std::string dir, const std::vector<std::string>& extra_sinks = {})
      : dir_(std::move(dir)) {
    prepare_private_dirs(dir_);
    make_dir(dir_ + "/config/pipewire/pipewire.conf.d");
    auto sink = [](const std::string& name, int prio) {
      return "  { factory = adapter\n"
             "    args = { factory.name = support.null-audio-sink node.name = \"" +
             name + "\"\n             node.description = \"qaudio test sink " + name +
             "\"\n             media.class = \"Audio/Sink\" object.linger = true\n"
             "             priority.session = " +
             std::to_string(prio) + " priority.driver = " + std::to_string(prio) +
             "\n             audio.position = [ FL FR ] audio.rate = 48000 } }\n";
    };
    std::string conf = "context.objects = [\n" + sink("out", 2000);
    for (const auto& name : extra_sinks) {
      conf += sink(name, 1000);
    }
    conf += "]\n";
    write_file(dir_ + "/config/pipewire/pipewire.conf.d/10-null.conf", conf);
  }
  ~PipeWireStack() { stop(); }

  std::string bus_address() const { return "unix:path=" + dir_ + "/bus"; }
  EnvVars client_env() const {
    EnvVars e = private_client_env(dir_);
    e["DBUS_SESSION_BUS_ADDRESS"] = bus_address();
    e["PIPEWIRE_RUNTIME_DIR"] = dir_ + "/run";
    return e;
  }
  const std::string& last_error() const { return error_; }
  pid_t pipewire_pid() const { return pipewire_.pid(); }

  static bool available() {
    return have_program("pipewire") && have_program("wireplumber") && have_program("dbus-daemon") &&
           have_program("pw-record") && have_program("pw-dump") && have_program("pw-metadata") &&
           have_program("pw-cli");
  }

  // Starts the bus, then PipeWire and WirePlumber; ready when WirePlumber
  // made "out" the default sink.
  bool start(std::chrono::milliseconds timeout = 30000ms) {
    auto bus = Child::spawn(
        {"dbus-daemon", "--session", "--nofork", "--nopidfile", "--address=" + bus_address()},
        client_env(), dir_ + "/dbus.log");
    if (!bus) {
      error_ = "cannot spawn dbus-daemon";
      return false;
    }
    bus_ = std::move(*bus);
    if (!wait_until([&] { return access((dir_ + "/bus").c_str(), F_OK) == 0; }, timeout)) {
      error_ = "dbus-daemon did not create its socket";
      return false;
    }
    return start_server(timeout);
  }

  // PipeWire + WirePlumber only (the bus stays): after kill_server().
  bool start_server(std::chrono::milliseconds timeout = 30000ms) {
    EnvVars env = client_env();
    auto pw = Child::spawn({"pipewire"}, env, dir_ + "/pipewire.log");
    if (!pw) {
      error_ = "cannot spawn pipewire";
      return false;
    }
    pipewire_ = std::move(*pw);
    if (!wait_until(
            [&] {
              return run_command({"pw-cli", "info", "0"}, env, 5000ms).status == 0 ||
                     !pipewire_.running();
            },
            timeout, 50ms) ||
        !pipewire_.running()) {
      error_ = "pipewire did not start; see " + dir_ + "/pipewire.log";
      return false;
    }
    auto wp = Child::spawn({"wireplumber"}, env, dir_ + "/wireplumber.log");
    if (!wp) {
      error_ = "cannot spawn wireplumber";
      return false;
    }
    wireplumber_ = std::move(*wp);
    bool ok = wait_until(
        [&] {
          auto r = run_command({"pw-metadata", "0", "default.audio.sink"}, env, 5000ms);
          return r.out.find("\"out\"") != std::string::npos;
        },
        timeout, 100ms);
    if (!ok) {
      error_ = "wireplumber did not select the null sink; see " + dir_ + "/wireplumber.log";
      return false;
    }
    return true;
  }

  // Adds pipewire-pulse (a PulseAudio socket on top, for PulseAudio
  // clients such as an agent's pulse backend); ready when `pactl info`
  // answers on pulse_server().
  bool start_pipewire_pulse(std::chrono::milliseconds timeout = 30000ms) {
    auto pp = Child::spawn({"pipewire-pulse"}, client_env(), dir_ + "/pipewire-pulse.log");
    if (!pp) {
      error_ = "cannot spawn pipewire-pulse";
      return false;
    }
    pipewire_pulse_ = std::move(*pp);
    EnvVars env = client_env();
    env["PULSE_SERVER"] = pulse_server();
    if (!wait_until(
            [&] {
              return run_command({"pactl", "info"}, env, 5000ms).status == 0;
            },
            timeout, 50ms)) {
      error_ = "pipewire-pulse did not answer; see " + dir_ + "/pipewire-pulse.log";
      return false;
    }
    return true;
  }
  std::string pulse_server() const { return "unix:" + dir_ + "/run/pulse/native"; }

  // SIGKILLs PipeWire (as a crash would) and stops WirePlumber.
  void kill_server() {
    pipewire_pulse_.stop();
    pipewire_.stop(SIGKILL);
    wireplumber_.stop();
  }

  void stop() {
    pipewire_pulse_.stop();
    wireplumber_.stop();
    pipewire_.stop();
    bus_.stop();
  }

  CommandResult pw_dump(std::chrono::milliseconds timeout = 10000ms) const {
    return run_command({"pw-dump"}, client_env(), timeout);
  }

  // Frames recorded from a sink (interleaved stereo float, 48 kHz). A 40 ms
  // latency keeps the recorder from dropping periods on a loaded machine.
  std::vector<float> record_sink(size_t frames,
                                 std::chrono::milliseconds timeout = 30000ms,
                                 const std::string& sink = "out",
                                 const std::string& latency = "40ms") const {
    return record_floats(
        {"pw-record", "--target", sink, "-P", "{ stream.capture.sink=true }", "--latency", latency,
         "--format", "f32", "--rate", "48000", "--channels", "2", "-"},
        client_env(), frames * 2, timeout, dir_ + "/pw-record.log");
  }

 private:
  std::string dir_;
  Child bus_;
  Child pipewire_;
  Child wireplumber_;
  Child pipewire_pulse_;
  std::string error_;
};

// An ALSA configuration in a private HOME: PCM `qtest` writes raw float32
// stereo 48 kHz to `output_path()` (through plug for conversion), and PCM
// `qtest_in` reads raw float32 stereo from `input_path()` (it must exist).
// alsa-lib reads $HOME/.asoundrc through its default config, so point HOME
// at it (client_env(), use_private_env_in_process) before the first
// snd_pcm_open of the process.
class AlsaFileConfig {
 public:
  explicit AlsaFileConfig(std::string dir) : dir_(std::move(dir)) {
    prepare_private_dirs(dir_);
    write_file(dir_ + "/home/.asoundrc",
               "pcm.qtest {\n"
               "  type plug\n"
               "  slave {\n"
               "    pcm { type file slave.pcm \"null\" file \"" +
                   output_path() +
                   "\" format \"raw\" }\n"
                   "    format FLOAT_LE\n"
                   "    rate 48000\n"
                   "    channels 2\n"
                   "  }\n"
                   "}\n"
                   "pcm.qtest_in {\n"
                   "  type plug\n"
                   "  slave {\n"
                   "    pcm { type file slave.pcm \"null\" file \"/dev/null\" infile \"" +
                   input_path() +
                   "\" format \"raw\" }\n"
                   "    format FLOAT_LE\n"
                   "    rate 48000\n"
                   "    channels 2\n"
                   "  }\n"
                   "}\n");
  }
  std::string output_path() const { return dir_ + "/out.raw"; }
  std::string input_path() const { return dir_ + "/in.raw"; }
  EnvVars client_env() const { return private_client_env(dir_); }

 private:
  std::string dir_;
};

}  // namespace qaudio::test

// qaudio-latency-probe: the end-to-end latency qaudio adds, measured on one
// machine with real servers. It starts an "audio qube" sound server running
// qubes-audiovm-daemon and an "app qube" sound server running
// qubes-audio-agent, joined by the unix channel (each server PulseAudio, or
// PipeWire + WirePlumber + pipewire-pulse with --server pipewire), then plays
// the same impulse train, at the same instants, through two streams opened
// back to back with the same buffer settings (20 ms target):
//   left channel:  directly into the audio qube's sink "out" (the baseline);
//   right channel: into the qube's "Qubes audio" sink, through agent + daemon.
// One recording of out.monitor holds both; for each impulse pair
// right onset - left onset is the latency qaudio adds (the sound servers'
// own buffering cancels out). Runs native and forced-stock modes.
//
//   qaudio-latency-probe [--impulses N] [--agent PATH] [--daemon PATH] [--keep DIR] [-v]
//                        [--mode native|stock] (default both)
//                        [--server pulse|pipewire] (both qubes' sound servers; default pulse)
//                        [--daemon-arg=ARG]... [--agent-arg=ARG]...   (extra options, e.g.
//                        --daemon-arg=--native-target-ms=4 to try other settings)
#include <pulse/error.h>
#include <pulse/simple.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <thread>

#include "sound_servers.hpp"

namespace {

using namespace std::chrono_literals;
using qaudio::test::Child;
using qaudio::test::EnvVars;
using qaudio::test::PipeWireStack;
using qaudio::test::PulseServer;
using qaudio::test::wait_until;

constexpr uint32_t kRate = 48000;
constexpr uint32_t kChunk = kRate / 200;  // 5 ms
constexpr double kWarmup = 1.5;           // s of silence before the first impulse
constexpr double kSpacing = 0.5;          // s between impulses
constexpr float kThreshold = 0.3f;

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

struct Simple {
  pa_simple* s = nullptr;
  ~Simple() {
    if (s != nullptr) {
      pa_simple_free(s);
    }
  }
};

// One qube's sound server: PulseAudio, or PipeWire with WirePlumber and
// pipewire-pulse (the probe's own streams are PulseAudio clients either way).
class SoundServer {
 public:
  SoundServer(const std::string& dir, bool pipewire, bool realtime) {
    if (pipewire) {
      pw_ = std::make_unique<PipeWireStack>(dir);
    } else {
      pulse_ = std::make_unique<PulseServer>(dir);
      pulse_->set_realtime(realtime);
    }
  }
  bool start() { return pw_ ? pw_->start() && pw_->start_pipewire_pulse() : pulse_->start(); }
  std::string error() const { return pw_ ? pw_->last_error() : pulse_->last_error(); }
  std::string server() const { return pw_ ? pw_->pulse_server() : pulse_->server(); }
  EnvVars client_env() const { return pw_ ? pw_->client_env() : pulse_->client_env(); }
  // The --backend argument for qaudio's daemon or agent on this server.
  std::string backend() const { return pw_ ? "pipewire" : "pulse:" + pulse_->server(); }

 private:
  std::unique_ptr<PulseServer> pulse_;
  std::unique_ptr<PipeWireStack> pw_;
};

bool open_stream(Simple& out,
                 const std::string& server,
                 const char* device,
                 pa_stream_direction_t dir,
                 std::string& err) {
  pa_sample_spec ss{PA_SAMPLE_FLOAT32LE, kRate, 2};
  pa_buffer_attr a{};
  const uint32_t ms5 = kChunk * 8;
  a.maxlength = static_cast<uint32_t>(-1);
  a.tlength = dir == PA_STREAM_PLAYBACK ? ms5 * 4 : static_cast<uint32_t>(-1);
  a.prebuf = static_cast<uint32_t>(-1);
  a.minreq = dir == PA_STREAM_PLAYBACK ? ms5 : static_cast<uint32_t>(-1);
  a.fragsize = dir == PA_STREAM_RECORD ? ms5 : static_cast<uint32_t>(-1);
  int e = 0;
  out.s = pa_simple_new(server.c_str(), "qaudio-latency-probe", dir, device, "probe", &ss, nullptr,
                        &a, &e);
  if (out.s == nullptr) {
    err = std::string("cannot open ") + device + " on " + server + ": " + pa_strerror(e);
    return false;
  }
  return true;
}

// Frames at which channel `ch` first exceeds the threshold, 100 ms apart.
std::vector<size_t> onsets(const std::vector<float>& pcm, int ch) {
  std::vector<size_t> out;
  for (size_t f = 0; f < pcm.size() / 2; ++f) {
    if (std::fabs(pcm[f * 2 + ch]) > kThreshold) {
      out.push_back(f);
      f += kRate / 10;
    }
  }
  return out;
}

struct Result {
  std::vector<double> added_ms;
  size_t impulses = 0;
  std::string error;
};

// `before_close` runs while the streams are still open (the counters then do
// not include the end of the stream).
Result measure(const SoundServer& audio,
               const SoundServer& app,
               int impulses,
               const std::function<void()>& before_close) {
  Result res;
  res.impulses = static_cast<size_t>(impulses);
  const double total_s = kWarmup + kSpacing * impulses + 0.5;
  const size_t total = static_cast<size_t>(total_s * kRate) / kChunk * kChunk;
  Simple rec, direct, qube;
  if (!open_stream(rec, audio.server(), "out.monitor", PA_STREAM_RECORD, res.error) ||
      !open_stream(direct, audio.server(), "out", PA_STREAM_PLAYBACK, res.error) ||
      !open_stream(qube, app.server(), "qubes_audio", PA_STREAM_PLAYBACK, res.error)) {
    return res;
  }
  std::vector<float> recorded((total + kRate) * 2);
  std::thread reader([&] {
    int e = 0;
    for (size_t off = 0; off < recorded.size(); off += kChunk * 2) {
      if (pa_simple_read(rec.s, recorded.data() + off, kChunk * 2 * sizeof(float), &e) < 0) {
        break;
      }
    }
  });
  std::vector<float> a(kChunk * 2), b(kChunk * 2);
  int e = 0;
  for (size_t pos = 0; pos < total; pos += kChunk) {
    std::fill(a.begin(), a.end(), 0.0f);
    std::fill(b.begin(), b.end(), 0.0f);
    for (size_t i = 0; i < kChunk; ++i) {
      double t = static_cast<double>(pos + i) / kRate - kWarmup;
      if (t < 0) {
        continue;
      }
      double in = std::fmod(t, kSpacing);
      if (in < 0.001 && t < kSpacing * impulses) {
        a[i * 2] = 0.8f;      // left: the baseline
        b[i * 2 + 1] = 0.8f;  // right: through qaudio
      }
    }
    if (pa_simple_write(direct.s, a.data(), a.size() * sizeof(float), &e) < 0 ||
        pa_simple_write(qube.s, b.data(), b.size() * sizeof(float), &e) < 0) {
      res.error = std::string("write: ") + pa_strerror(e);
      break;
    }
  }
  reader.join();
  before_close();
  auto left = onsets(recorded, 0);
  auto right = onsets(recorded, 1);
  for (size_t l : left) {
    auto it = std::lower_bound(right.begin(), right.end(), l > kRate / 20 ? l - kRate / 20 : 0);
    if (it != right.end() && *it < l + kRate * 2 / 5) {
      res.added_ms.push_back((static_cast<double>(*it) - static_cast<double>(l)) * 1000.0 / kRate);
    }
  }
  return res;
}

double pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5)];
}

}  // namespace

int main(int argc, char** argv) {
  int impulses = 20;
  std::string agent = QAUDIO_AGENT_PATH;
  std::string daemon = QAUDIO_DAEMON_PATH;
  std::string keep;
  bool verbose = false;
  bool realtime = true;
  bool pipewire = false;
  std::vector<std::string> daemon_extra, agent_extra;
  std::string only_mode;  // native or stock; empty: both
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--impulses" && i + 1 < argc) {
      impulses = std::clamp(std::atoi(argv[++i]), 1, 1000);
    } else if (a == "--agent" && i + 1 < argc) {
      agent = argv[++i];
    } else if (a == "--daemon" && i + 1 < argc) {
      daemon = argv[++i];
    } else if (a.starts_with("--daemon-arg=")) {
      daemon_extra.push_back(a.substr(13));
    } else if (a.starts_with("--agent-arg=")) {
      agent_extra.push_back(a.substr(12));
    } else if (a == "--mode" && i + 1 < argc) {
      only_mode = argv[++i];
    } else if (a == "-v") {
      verbose = true;
    } else if (a == "--server" && i + 1 < argc &&
               (std::string(argv[i + 1]) == "pulse" || std::string(argv[i + 1]) == "pipewire")) {
      pipewire = std::string(argv[++i]) == "pipewire";
    } else if (a == "--no-realtime") {
      realtime = false;
    } else if (a == "--keep" && i + 1 < argc) {
      keep = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: qaudio-latency-probe [--impulses N] [--agent PATH] [--daemon PATH] "
                   "[--keep DIR] [-v] [--no-realtime] [--mode native|stock] "
                   "[--server pulse|pipewire] [--daemon-arg=ARG]... "
                   "[--agent-arg=ARG]...\n");
      return 2;
    }
  }
  for (const char* p : {pipewire ? "pipewire-pulse" : "pulseaudio", "pactl"}) {
    if (!qaudio::test::have_program(p)) {
      std::fprintf(stderr, "qaudio-latency-probe: %s is not installed\n", p);
      return 1;
    }
  }
  qaudio::test::TempDir dir("latency-probe");
  const std::string base = keep.empty() ? dir.path() : keep;
  qaudio::test::make_dir(base);
  SoundServer audio(base + "/audioqube", pipewire, realtime);
  SoundServer app(base + "/appqube", pipewire, realtime);
  if (!audio.start() || !app.start()) {
    std::fprintf(stderr, "qaudio-latency-probe: a sound server did not start: %s %s\n",
                 audio.error().c_str(), app.error().c_str());
    return 1;
  }
  qaudio::test::use_private_env_in_process(audio.client_env());
  const std::string vchan = base + "/vchan";
  qaudio::test::make_dir(vchan);
  std::vector<std::string> dargs{daemon,
                                 "--channel",
                                 "unix:" + vchan,
                                 "--qube",
                                 "work=5",
                                 "--audio-domid",
                                 "1",
                                 "--backend",
                                 audio.backend(),
                                 "--control",
                                 base + "/control.sock",
                                 "-v"};
  dargs.insert(dargs.end(), daemon_extra.begin(), daemon_extra.end());
  auto d = Child::spawn(dargs, audio.client_env(), base + "/daemon.log");
  if (!d) {
    std::fprintf(stderr, "qaudio-latency-probe: cannot start %s\n", daemon.c_str());
    return 1;
  }
  // The daemon's underrun counter for qube "work" (SIGUSR1 logs the counters).
  size_t usr1 = 0;
  auto daemon_underruns = [&]() -> long {
    ::kill(d->pid(), SIGUSR1);
    ++usr1;
    std::string text;
    auto count = [&] {
      size_t n = 0;
      for (size_t p = text.find("underruns="); p != std::string::npos;
           p = text.find("underruns=", p + 1)) {
        ++n;
      }
      return n;
    };
    if (!wait_until(
            [&] {
              text = read_text(base + "/daemon.log");
              return count() >= usr1;
            },
            5s, 20ms)) {
      return -1;
    }
    return std::atol(text.c_str() + text.rfind("underruns=") + 10);
  };
  // SIGUSR1 only once the daemon handles it (its session logs first).
  wait_until([&] { return read_text(base + "/daemon.log").find("work:") != std::string::npos; },
             10s, 20ms);
  long underruns_before = daemon_underruns();
  std::printf(
      "| mode | impulses matched | added latency median | p10 | p90 | min | max | daemon "
      "underruns |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  int rc = 0;
  for (const char* mode : {"native", "stock"}) {
    if (!only_mode.empty() && only_mode != mode) {
      continue;
    }
    std::string log = base + "/agent-" + mode + ".log";
    std::vector<std::string> aargs{
        agent,     "--backend", app.backend(),     "--channel", "unix:" + vchan,
        "--domid", "5",         "--audiovm-domid", "1",         "--protocol",
        mode,      "-v"};
    aargs.insert(aargs.end(), agent_extra.begin(), agent_extra.end());
    auto ag = Child::spawn(aargs, app.client_env(), log);
    std::string want = std::string(mode) + " protocol";
    if (!ag ||
        !wait_until([&] { return read_text(log).find(want) != std::string::npos; }, 20s, 50ms)) {
      std::fprintf(stderr, "qaudio-latency-probe: the agent did not connect (%s); see %s\n", mode,
                   log.c_str());
      rc = 1;
      continue;
    }
    long underruns = 0;
    underruns_before = daemon_underruns();
    Result r = measure(audio, app, impulses, [&] {
      long now = daemon_underruns();
      underruns = now - underruns_before;
      underruns_before = now;
    });
    ag->stop();
    if (!r.error.empty() || r.added_ms.empty()) {
      std::fprintf(stderr, "qaudio-latency-probe: %s: %s\n", mode,
                   r.error.empty() ? "no impulse pair detected" : r.error.c_str());
      rc = 1;
      continue;
    }
    if (verbose) {
      for (double v : r.added_ms) {
        std::fprintf(stderr, "%s %.1f\n", mode, v);
      }
    }
    std::printf("| %s | %zu/%zu | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %ld |\n", mode,
                r.added_ms.size(), r.impulses, pct(r.added_ms, 0.5), pct(r.added_ms, 0.1),
                pct(r.added_ms, 0.9), pct(r.added_ms, 0.0), pct(r.added_ms, 1.0), underruns);
    std::fflush(stdout);
  }
  d->stop();
  return rc;
}

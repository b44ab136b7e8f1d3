// End to end over the network channel with real sound servers on both ends:
// "app qube" PulseAudio + qubes-audio-agent (stock protocol) <- unix vchan ->
// qaudio-net-bridge --role qube -> UDP on loopback through the impairment
// shim (run by this test in a thread, real time) -> qaudio-net-bridge --role
// audiovm <- unix vchan -> qubes-audiovm-daemon --backend pulse on the
// "audio qube" PulseAudio. A tone played with paplay in the app qube is
// recorded from the audio qube's sink monitor and checked for frequency,
// level and continuity; a wrong key plays nothing and is logged.
//
//   ctest -R NetBridgeE2E
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "e2e_util.hpp"
#include "net_endpoint.hpp"
#include "net_shim.hpp"
#include "sound_servers.hpp"
#include "tone.hpp"

namespace qaudio::e2e {
namespace {

using namespace std::chrono_literals;
using qaudio::test::Child;
using qaudio::test::PulseServer;
using qaudio::test::read_text;
using qaudio::test::TempDir;
using qaudio::test::wait_until;

constexpr int kQubeDomid = 5;
constexpr int kAudioDomid = 1;
constexpr uint32_t kRate = 48000;

// The shim in real time: its own thread forwards datagrams at their release time.
class ShimThread {
 public:
  explicit ShimThread(uint16_t server_port) : shim_(server_port) {}
  ~ShimThread() { stop(); }
  qaudio::test::Shim& shim() { return shim_; }
  void start() {
    th_ = std::thread([this] { run(); });
  }
  void stop() {
    stop_ = true;
    if (th_.joinable()) {
      th_.join();
    }
  }

 private:
  void run() {
    while (!stop_) {
      int64_t now = net::mono_us();
      shim_.drain(now);
      while (!shim_.queue.empty() && shim_.queue.front().release_us <= now) {
        auto p = std::move(shim_.queue.front());
        shim_.queue.pop_front();
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (p.to_server) {
          to.sin_port = htons(shim_.server_port);
          sendto(shim_.b, p.bytes.data(), p.bytes.size(), 0, reinterpret_cast<sockaddr*>(&to),
                 sizeof to);
        } else if (shim_.client_len) {
          sendto(shim_.a, p.bytes.data(), p.bytes.size(), 0,
                 reinterpret_cast<sockaddr*>(&shim_.client_addr), shim_.client_len);
        }
      }
      int ms = 20;
      if (!shim_.queue.empty()) {
        ms = static_cast<int>(
            std::clamp<int64_t>((shim_.queue.front().release_us - net::mono_us()) / 1000, 0, 20));
      }
      pollfd fds[2] = {{shim_.a, POLLIN, 0}, {shim_.b, POLLIN, 0}};
      poll(fds, 2, ms);
    }
  }
  qaudio::test::Shim shim_;
  std::thread th_;
  std::atomic<bool> stop_{false};
};

uint16_t free_udp_port() {
  int fd = qaudio::test::udp_socket_on_loopback();
  uint16_t p = qaudio::test::port_of(fd);
  ::close(fd);
  return p;
}

class NetBridgeE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* p : {"pulseaudio", "pactl", "paplay", "parec", "sox"}) {
      if (!qaudio::test::have_program(p)) {
        GTEST_SKIP() << p << " missing";
      }
    }
    app_ = std::make_unique<PulseServer>(dir_.path() + "/appqube");
    audio_ = std::make_unique<PulseServer>(dir_.path() + "/audioqube");
    // As a desktop session runs them (RTKit): the continuity rule is checked
    // in real time.
    app_->set_realtime(true);
    audio_->set_realtime(true);
    ASSERT_TRUE(app_->start()) << app_->last_error();
    ASSERT_TRUE(audio_->start()) << audio_->last_error();
    qaudio::test::make_dir(dir_.path() + "/vchan-qube");
    qaudio::test::make_dir(dir_.path() + "/vchan-audiovm");
  }
  void TearDown() override {
    qube_bridge_.stop();
    audiovm_bridge_.stop();
    if (HasFailure()) {
      std::printf("%s\n", logs().c_str());
    }
    player_.stop();
    agent_.stop();
    qube_bridge_.stop();
    audiovm_bridge_.stop();
    daemon_.stop();
    if (shim_) {
      shim_->stop();
    }
  }

  std::string write_key(const std::string& name, const net::Key& k) {
    std::string path = dir_.path() + "/" + name + ".key";
    std::ofstream(path) << net::key_to_hex(k) << "\n";
    chmod(path.c_str(), 0600);
    return path;
  }

  // The network part of every rig: the daemon (with `daemon_extra`), the
  // audiovm bridge (with `audiovm_extra`), the shim and the qube bridge
  // (with qube_extra_). The argv of both bridges is kept for restarts.
  void start_network(const std::string& server_key,
                     const std::string& client_key,
                     const std::vector<std::string>& daemon_extra = {},
                     const std::vector<std::string>& audiovm_extra = {}) {
    uint16_t port = free_udp_port();
    std::vector<std::string> dargv{QAUDIO_DAEMON_PATH,
                                   "--channel",
                                   "unix:" + dir_.path() + "/vchan-audiovm",
                                   "--qube",
                                   "work=" + std::to_string(kQubeDomid),
                                   "--audio-domid",
                                   std::to_string(kAudioDomid),
                                   "--backend",
                                   "pulse:" + audio_->server(),
                                   "--control",
                                   control(),
                                   "-v"};
    dargv.insert(dargv.end(), daemon_extra.begin(), daemon_extra.end());
    auto d = Child::spawn(dargv, audio_->client_env(), dir_.path() + "/daemon.log");
    ASSERT_TRUE(d);
    daemon_ = std::move(*d);
    audiovm_argv_ = {QAUDIO_BRIDGE_PATH,
                     "--role",
                     "audiovm",
                     "--listen",
                     "127.0.0.1:" + std::to_string(port),
                     "--peer",
                     "work:" + std::to_string(kQubeDomid) + ":" + server_key,
                     "--channel",
                     "unix:" + dir_.path() + "/vchan-audiovm",
                     "--audio-domid",
                     std::to_string(kAudioDomid)};
    audiovm_argv_.insert(audiovm_argv_.end(), audiovm_extra.begin(), audiovm_extra.end());
    auto b = Child::spawn(audiovm_argv_, {}, audiovm_log());
    ASSERT_TRUE(b);
    audiovm_bridge_ = std::move(*b);
    shim_ = std::make_unique<ShimThread>(port);
    shim_->shim().loss = loss_;
    shim_->shim().jitter_us = jitter_us_;
    shim_->start();
    qube_argv_ = {QAUDIO_BRIDGE_PATH,
                  "--role",
                  "qube",
                  "--connect",
                  "127.0.0.1:" + std::to_string(shim_->shim().client_facing_port()),
                  "--key",
                  client_key,
                  "--channel",
                  "unix:" + dir_.path() + "/vchan-qube",
                  "--domid",
                  std::to_string(kQubeDomid),
                  "--audiovm-domid",
                  std::to_string(kAudioDomid),
                  "--name",
                  "work",
                  "-v"};
    qube_argv_.insert(qube_argv_.end(), qube_extra_.begin(), qube_extra_.end());
    auto q = Child::spawn(qube_argv_, {}, dir_.path() + "/qube-bridge.log");
    ASSERT_TRUE(q);
    qube_bridge_ = std::move(*q);
  }

  // Starts the network rig and the agent (`protocol`: the agent's
  // --protocol; auto = native with the qube bridge).
  void start_all(const std::string& server_key,
                 const std::string& client_key,
                 const std::string& protocol = "auto") {
    start_network(server_key, client_key);
    if (HasFatalFailure()) {
      return;
    }
    auto a =
        Child::spawn({QAUDIO_AGENT_PATH, "--backend", "pulse:" + app_->server(), "--channel",
                      "unix:" + dir_.path() + "/vchan-qube", "--domid", std::to_string(kQubeDomid),
                      "--audiovm-domid", std::to_string(kAudioDomid), "--protocol", protocol, "-v"},
                     app_->client_env(), dir_.path() + "/agent.log");
    ASSERT_TRUE(a);
    agent_ = std::move(*a);
    ASSERT_TRUE(wait_until(
        [&] {
          return app_->pactl({"list", "short", "sinks"}).out.find("qubes_audio") !=
                 std::string::npos;
        },
        15s))
        << read_text(dir_.path() + "/agent.log");
  }
  std::string audiovm_log() const { return dir_.path() + "/audiovm-bridge.log"; }
  std::string agent_log() const { return read_text(dir_.path() + "/agent.log"); }
  // The number after the last `key` in `text` (0 when absent).
  static double last_number(const std::string& text, const std::string& key) {
    size_t p = text.rfind(key);
    return p == std::string::npos ? 0 : std::atof(text.c_str() + p + key.size());
  }

  // The mic rig: the audio qube's PulseAudio has a 1 kHz tone at 0.5 on its
  // default source; the daemon (qaudio.Mic policy allowing work, control
  // socket) <- audiovm bridge (--control: net_report) <- shim <- qube bridge
  // <- qaudio-fake-agent --protocol stock --mic, which records every mic
  // byte it receives (S16LE 44.1 kHz stereo).
  void start_mic_rig(const std::string& key) {
    ASSERT_EQ(
        audio_->pactl({"load-module", "module-null-sink", "sink_name=mic", "rate=48000"}).status,
        0);
    ASSERT_EQ(audio_->pactl({"set-default-source", "mic.monitor"}).status, 0);
    // The daemon keeps playing on "out": the qube's playback must not reach the mic.
    ASSERT_EQ(audio_->pactl({"set-default-sink", "out"}).status, 0);
    std::string wav = dir_.path() + "/mic.wav";
    ASSERT_EQ(qaudio::test::run_command({"sox", "-n", "-r", "48000", "-c", "2", "-b", "16", wav,
                                         "synth", "120", "sine", "1000", "vol", "0.5"},
                                        {}, 30s)
                  .status,
              0);
    auto p = Child::spawn({"paplay", "-d", "mic", wav}, audio_->client_env(),
                          dir_.path() + "/mic-paplay.log");
    ASSERT_TRUE(p);
    player_ = std::move(*p);
    qaudio::test::make_dir(dir_.path() + "/policy");
    qaudio::test::write_file(dir_.path() + "/policy/50-audio.policy",
                             "qaudio.Mic * work sys-audio allow\n"
                             "qaudio.Play * @anyvm sys-audio allow\n");
    start_network(key, key,
                  {"--policy-dir", dir_.path() + "/policy", "--audio-qube", "sys-audio",
                   "--state-dir", dir_.path() + "/state"},
                  {"--control", control()});
    if (HasFatalFailure()) {
      return;
    }
    auto a = Child::spawn({QAUDIO_FAKE_AGENT_PATH,
                           "--channel",
                           "unix:" + dir_.path() + "/vchan-qube",
                           "--domid",
                           std::to_string(kQubeDomid),
                           "--audio-domid",
                           std::to_string(kAudioDomid),
                           "--name",
                           "work",
                           "--protocol",
                           "stock",
                           "--freq",
                           "440",
                           "--amplitude",
                           "0.1",
                           "--seconds",
                           "0",
                           "--mic",
                           "--record",
                           mic_rec()},
                          {}, dir_.path() + "/agent.log");
    ASSERT_TRUE(a);
    agent_ = std::move(*a);
  }
  std::string control() const { return dir_.path() + "/control.sock"; }
  std::string mic_rec() const { return dir_.path() + "/work-mic.raw"; }
  // What the qube's agent received as its mic: S16LE 44.1 kHz stereo -> float.
  std::vector<float> mic() {
    std::string raw = read_text(mic_rec());
    return qaudio::test::s16_to_float(std::as_bytes(std::span(raw.data(), raw.size() / 4 * 4)));
  }
  qaudio::test::CommandResult cli(std::vector<std::string> args) {
    args.insert(args.begin(), {QVM_AUDIO_BIN, "--control", control()});
    return qaudio::test::run_command(args, {}, 10s, dir_.path() + "/qvm-audio.log");
  }
  nlohmann::json work_entry() {
    auto j = nlohmann::json::parse(cli({"list", "--json"}).out, nullptr, false);
    if (j.is_object() && j.contains("qubes")) {
      for (const auto& q : j["qubes"]) {
        if (q.value("name", "") == "work") {
          return q;
        }
      }
    }
    return nlohmann::json::object();
  }
  void record_more(size_t samples) {
    size_t target = mic().size() + samples;
    ASSERT_TRUE(wait_until([&] { return mic().size() >= target; }, 20s, 20ms))
        << "the qube's mic stopped receiving samples\n"
        << logs();
  }

  void play_tone(double freq, double seconds) {
    std::string wav = dir_.path() + "/tone.wav";
    auto r = qaudio::test::run_command(
        {"sox", "-n", "-r", "48000", "-c", "2", "-b", "16", wav, "synth", std::to_string(seconds),
         "sine", std::to_string(freq), "vol", "0.5"},
        {}, 20s);
    ASSERT_EQ(r.status, 0);
    // The player's own buffer is not what is tested: a generous one, so a
    // stalled player does not leave a gap at the source.
    auto c = Child::spawn({"paplay", "-d", "qubes_audio", "--latency-msec=100", wav},
                          app_->client_env(), dir_.path() + "/paplay.log");
    ASSERT_TRUE(c);
    player_ = std::move(*c);
  }

  std::vector<float> record(double seconds) {
    return qaudio::test::record_floats({"parec", "-d", "out.monitor", "--latency-msec=20", "--raw",
                                        "--format=float32le", "--rate=48000", "--channels=2"},
                                       audio_->client_env(),
                                       static_cast<size_t>(seconds * kRate) * 2, 40s,
                                       dir_.path() + "/parec.log");
  }

  std::string logs() {
    return "--- audiovm bridge:\n" + read_text(audiovm_log()) + "--- qube bridge:\n" +
           read_text(dir_.path() + "/qube-bridge.log") + "--- daemon:\n" +
           read_text(dir_.path() + "/daemon.log") + "--- agent:\n" + agent_log();
  }

  // Content checks over everything recorded from 0.5 s after the onset (at
  // least 2 s): frequency and level as medians over 100 ms windows (robust to
  // a glitch), and continuity: no gap (a run of 2.5 ms blocks below half the
  // tone's RMS) longer than `max_gap` anywhere in it. The sound servers run
  // with real-time scheduling and the end-to-end tests run alone.
  void expect_tone(const std::vector<float>& pcm, double freq, double amp, size_t max_gap) {
    size_t start = std::string::npos;
    for (size_t i = 0; i < pcm.size(); i += 2) {
      if (std::fabs(pcm[i]) > 0.1f) {
        start = i / 2;
        break;
      }
    }
    ASSERT_NE(start, std::string::npos) << "no tone reached the audio qube\n" << logs();
    start += kRate / 2;  // past the jitter buffer's learning
    ASSERT_GE(pcm.size() / 2, start + 2 * kRate) << "the tone lasted less than 2 s\n" << logs();
    std::span<const float> win(pcm.data() + start * 2, pcm.size() - start * 2);
    const size_t windows = win.size() / 9600;
    std::vector<double> freqs, levels;
    for (size_t w = 0; w < windows; ++w) {
      freqs.push_back(qaudio::test::frequency(win.subspan(w * 9600, 9600), 2, 0, kRate));
      levels.push_back(
          qaudio::test::tone_amplitude(win.subspan(w * 9600, 9600), 2, 1, kRate, freq));
    }
    std::nth_element(freqs.begin(), freqs.begin() + windows / 2, freqs.end());
    std::nth_element(levels.begin(), levels.begin() + windows / 2, levels.end());
    EXPECT_NEAR(freqs[windows / 2], freq, freq * 0.005);
    std::printf("median level %.3f (want %.3f)\n", levels[windows / 2], amp);
    EXPECT_NEAR(levels[windows / 2], amp, 0.05);
    std::vector<bool> low;
    for (size_t i = 0; i + 120 <= win.size() / 2; i += 120) {
      double acc = 0;
      for (size_t k = 0; k < 120; ++k) {
        acc += win[2 * (i + k)] * win[2 * (i + k)];
      }
      low.push_back(std::sqrt(acc / 120) < 0.5 * amp / std::sqrt(2.0));
    }
    size_t run = 0, longest = 0;
    for (bool l : low) {
      run = l ? run + 120 : 0;
      longest = std::max(longest, run);
    }
    std::printf("longest gap: %zu samples over %.1f s\n", longest,
                static_cast<double>(low.size()) * 120 / kRate);
    EXPECT_LE(longest, max_gap) << "a gap longer than one frame\n" << logs();
  }

  // Until `level` (tone amplitude at `freq` in 100 ms of out.monitor) is
  // within `tol` of `want`; returns the seconds it took, or -1.
  double seconds_until_level(double freq, double want, double tol, std::chrono::seconds limit) {
    auto t0 = std::chrono::steady_clock::now();
    bool ok = wait_until(
        [&] {
          return std::fabs(qaudio::test::tone_amplitude(record(0.1), 2, 1, kRate, freq) - want) <=
                 tol;
        },
        limit, 10ms);
    return ok ? std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() : -1;
  }

  TempDir dir_{"net-bridge-e2e"};
  std::vector<std::string> audiovm_argv_, qube_argv_, qube_extra_;
  std::unique_ptr<PulseServer> app_, audio_;
  Child daemon_, audiovm_bridge_, qube_bridge_, agent_, player_;
  std::unique_ptr<ShimThread> shim_;
  double loss_ = 0;
  int64_t jitter_us_ = 0;
};

TEST_F(NetBridgeE2E, tone_crosses_the_network_with_frequency_and_level) {
  auto k = write_key("work", net::generate_key());
  start_all(k, k);
  ASSERT_TRUE(wait_until(
      [&] {
        return read_text(audiovm_log())
                   .find(
                       "native protocol with the "
                       "daemon") != std::string::npos;
      },
      15s))
      << logs();
  play_tone(1000, 12);
  expect_tone(record(6.0), 1000, 0.5, 480);
}

// 20 ms network frames (half the packet rate, for a slow link): the audio
// domain's side plays them out at their own length.
TEST_F(NetBridgeE2E, tone_crosses_with_20ms_frames) {
  qube_extra_ = {"--frame-ms", "20"};
  auto k = write_key("work", net::generate_key());
  start_all(k, k);
  play_tone(1000, 12);
  expect_tone(record(6.0), 1000, 0.5, 960);
}

// A stock agent (stock Qubes' module-vchan-sink speaks the same) is served
// by the qube side's Session just as the daemon would serve it: S16LE
// 44.1 kHz, rate-matched and resampled to the network's 48 kHz.
TEST_F(NetBridgeE2E, a_stock_agent_is_served_too) {
  auto k = write_key("work", net::generate_key());
  start_all(k, k, "stock");
  ASSERT_TRUE(
      wait_until([&] { return agent_log().find("stock protocol") != std::string::npos; }, 15s))
      << agent_log() << logs();
  play_tone(1000, 12);
  expect_tone(record(6.0), 1000, 0.5, 480);
}

// A native agent on the far side of the network hears what a local one
// hears from its daemon: the playback latency (the network leg measured by
// the audio domain's bridge + its daemon's buffer and device) in its
// Latency reports, the volume and mute the daemon applies (applied once, at
// the far end), and the mic gate.
TEST_F(NetBridgeE2E, native_agent_hears_the_far_latency_volume_and_mic_state) {
  auto k = write_key("work", net::generate_key());
  start_all(k, k);
  ASSERT_TRUE(
      wait_until([&] { return agent_log().find("native protocol v") != std::string::npos; }, 15s))
      << agent_log() << logs();
  play_tone(1000, 20);
  expect_tone(record(5.0), 1000, 0.5, 480);

  // Latency: the agent's "device" figure is the far side's whole leg.
  double device_ms = 0, net_ms = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        device_ms = last_number(agent_log(), "device ");
        ::kill(audiovm_bridge_.pid(), SIGUSR1);
        net_ms = last_number(read_text(audiovm_log()), "latency_ms=");
        return device_ms > 0 && net_ms > 0 && device_ms >= net_ms;
      },
      10s, 200ms))
      << "agent device latency " << device_ms << " ms, network leg " << net_ms << " ms\n"
      << agent_log();
  std::printf("agent hears %.1f ms for the far leg; network part %.1f ms\n", device_ms, net_ms);
  EXPECT_GE(net_ms, 16.5) << "at least one frame + Opus' delay";
  EXPECT_LE(device_ms, net_ms + 100) << "the far daemon's part is a few tens of ms";

  // Volume: reported to the agent, applied once (0.25, not 0.125).
  ASSERT_EQ(cli({"volume", "work", "50"}).status, 0);
  ASSERT_TRUE(
      wait_until([&] { return agent_log().find("volume 500/1000") != std::string::npos; }, 5s))
      << agent_log();
  ASSERT_TRUE(wait_until(
      [&] {
        auto pcm = record(0.5);
        return std::fabs(qaudio::test::tone_amplitude(pcm, 2, 1, kRate, 1000) - 0.25) < 0.03;
      },
      10s, 10ms))
      << "the far daemon's volume did not apply once";
  ASSERT_EQ(cli({"mute", "work"}).status, 0);
  ASSERT_TRUE(wait_until([&] { return agent_log().find("(muted)") != std::string::npos; }, 5s))
      << agent_log();
  ASSERT_TRUE(wait_until(
      [&] { return qaudio::test::tone_amplitude(record(0.3), 2, 1, kRate, 1000) < 0.001; }, 10s,
      10ms));

  // The mic gate: attach and detach reach the agent as MicState.
  ASSERT_EQ(cli({"mic", "attach", "work"}).status, 0);
  ASSERT_TRUE(
      wait_until([&] { return agent_log().find("microphone attached") != std::string::npos; }, 5s))
      << agent_log();
  ASSERT_EQ(cli({"mic", "detach", "work"}).status, 0);
  ASSERT_TRUE(
      wait_until([&] { return agent_log().find("microphone detached") != std::string::npos; }, 5s))
      << agent_log();
}

TEST_F(NetBridgeE2E, tone_survives_5_percent_loss_and_20ms_jitter) {
  loss_ = 0.05;
  jitter_us_ = 20'000;
  auto k = write_key("work", net::generate_key());
  start_all(k, k);
  ASSERT_TRUE(wait_until(
      [&] {
        return read_text(audiovm_log())
                   .find(
                       "native protocol with the "
                       "daemon") != std::string::npos;
      },
      15s))
      << logs();
  play_tone(1000, 12);
  expect_tone(record(6.0), 1000, 0.5, 480);
  EXPECT_GT(shim_->shim().dropped, 0u);
  // The added latency stays bounded: the network leg the audio domain's
  // bridge measured (frame + coder + RTT/2 + time in the jitter buffer).
  double net_ms = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        ::kill(audiovm_bridge_.pid(), SIGUSR1);
        net_ms = last_number(read_text(audiovm_log()), "latency_ms=");
        return net_ms > 0;
      },
      5s, 200ms));
  std::printf("network leg with 5 %% loss and 20 ms jitter: %.1f ms\n", net_ms);
  EXPECT_LT(net_ms, 100) << "the jitter buffer grew without bound";
}

// Mic over the network, gated by the daemon exactly as locally: the qube's
// mic carries exact silence before attach and after detach (beyond what was
// in flight), the audio qube's 1 kHz tone at 0.5 after attach; the agent's
// stock mic start/stop words cross the network; the network counters reach
// the daemon's control API and qvm-audio list.
// With 20 ms playback frames the qube side's period is 20 ms while the mic
// comes in 10 ms frames: two of them make each period.
TEST_F(NetBridgeE2E, mic_crosses_with_20ms_frames) {
  constexpr size_t kMicRate = 44100;
  qube_extra_ = {"--frame-ms", "20"};
  auto k = write_key("work", net::generate_key());
  start_mic_rig(k);
  ASSERT_TRUE(wait_until(
      [&] {
        return read_text(dir_.path() + "/daemon.log").find("work wants the microphone") !=
               std::string::npos;
      },
      20s))
      << logs();
  ASSERT_EQ(cli({"mic", "attach", "work"}).status, 0);
  ASSERT_TRUE(wait_until(
      [&] {
        auto f = mic();
        return f.size() > kMicRate * 2 &&
               qaudio::test::median_level(
                   std::vector<float>(f.end() - static_cast<ptrdiff_t>(kMicRate), f.end()), 1000.0,
                   2, kMicRate) > 0.4;
      },
      20s, 50ms))
      << logs();
  record_more(kMicRate * 2);
  auto f = mic();
  std::vector<float> tail(f.end() - static_cast<ptrdiff_t>(kMicRate * 2), f.end());
  EXPECT_NEAR(qaudio::test::frequency(tail, 2, 0, kMicRate), 1000, 5);
  EXPECT_NEAR(qaudio::test::median_level(tail, 1000.0, 2, kMicRate), 0.5, 0.05);
}

TEST_F(NetBridgeE2E, mic_crosses_the_network_gated_by_the_daemon_and_counters_are_listed) {
  constexpr size_t kMicRate = 44100;
  // In flight when the daemon acts: its own capture path (100 ms, as in
  // tests/mic_e2e) + a frame + the deepest jitter buffer the adapter allows
  // (32 frames) + the resampler.
  constexpr size_t kInFlight = (kMicRate / 10 + kMicRate * 35 / 100) * 2;
  auto k = write_key("work", net::generate_key());
  start_mic_rig(k);
  // The agent's stock mic-start word reached the daemon as a MicStart.
  ASSERT_TRUE(wait_until(
      [&] {
        return read_text(dir_.path() + "/daemon.log").find("work wants the microphone") !=
               std::string::npos;
      },
      20s))
      << logs();
  record_more(kMicRate * 2);  // 1 s of stereo
  auto before = mic();
  EXPECT_TRUE(qaudio::test::all_zero(before))
      << "mic audio reached the qube before attach: peak " << qaudio::test::peak(before);

  ASSERT_EQ(cli({"mic", "attach", "work"}).status, 0) << read_text(dir_.path() + "/qvm-audio.log");
  size_t at_attach = mic().size();
  auto level_from = [&](size_t from) {
    auto f = mic();
    if (from >= f.size()) {
      return 0.0;
    }
    return qaudio::test::median_level(
        std::vector<float>(f.begin() + static_cast<ptrdiff_t>(from), f.end()), 1000.0, 2, kMicRate);
  };
  ASSERT_TRUE(wait_until([&] { return level_from(at_attach + kInFlight) > 0.4; }, 20s, 50ms))
      << "the tone did not reach the attached remote qube (level "
      << level_from(at_attach + kInFlight) << ")\n"
      << logs();
  record_more(kMicRate * 2);
  {
    auto f = mic();
    std::vector<float> tail(f.end() - static_cast<ptrdiff_t>(kMicRate * 2), f.end());
    EXPECT_NEAR(qaudio::test::frequency(tail, 2, 0, kMicRate), 1000, 5);
    EXPECT_NEAR(qaudio::test::median_level(tail, 1000.0, 2, kMicRate), 0.5, 0.05);
  }

  // Counters: the daemon lists the remote qube's network session.
  nlohmann::json net;
  ASSERT_TRUE(wait_until(
      [&] {
        net = work_entry().value("network", nlohmann::json());
        return net.is_object() && net.value("connected", false) && net.value("rx_bytes", 0u) > 0 &&
               net.value("tx_kbps", 0.0) > 0;
      },
      15s, 100ms))
      << work_entry().dump() << "\n"
      << logs();
  EXPECT_GT(net.value("tx_bytes", 0u), 0u) << "the mic is sent to the qube";
  EXPECT_GT(net.value("rx_packets", 0u), 0u);
  EXPECT_GE(net.value("rtt_ms", -1.0), 0.0) << "keep-alive echoes measure the RTT";
  EXPECT_GT(net.value("latency_ms", 0.0), 0.0);
  EXPECT_NE(net.value("peer", ""), "");
  auto table = cli({"list"}).out;
  EXPECT_NE(table.find("NET"), std::string::npos) << table;
  EXPECT_NE(table.find("rx "), std::string::npos) << table;

  // Detach: exact silence again once what was in flight has passed.
  ASSERT_EQ(cli({"mic", "detach", "work"}).status, 0);
  size_t at_detach = mic().size();
  record_more(kMicRate * 4);
  {
    auto f = mic();
    size_t from = at_detach + kInFlight;
    size_t loud = std::string::npos;
    for (size_t i = from; i < f.size(); ++i) {
      if (f[i] != 0.0f) {
        loud = i;
        break;
      }
    }
    EXPECT_EQ(loud, std::string::npos) << "mic audio after detach at sample " << loud
                                       << " (checked from " << from << " of " << f.size() << ")";
  }

  // The agent leaving closes its mic: the stop reaches the daemon.
  agent_.stop();
  ASSERT_TRUE(wait_until(
      [&] {
        return read_text(dir_.path() + "/daemon.log").find("work: microphone stopped") !=
               std::string::npos;
      },
      15s))
      << logs();
  EXPECT_TRUE(wait_until(
      [&] {
        return read_text(audiovm_log()).find("the remote qube closed the microphone") !=
               std::string::npos;
      },
      10s));
}

// Either bridge vanishing (killed, as a crash would) and coming back: the
// audio qube goes silent, and the tone comes back by itself, the qube's
// agent and the daemon untouched (they reconnect to the new bridge).
TEST_F(NetBridgeE2E, a_bridge_vanishing_and_returning_resumes) {
  auto k = write_key("work", net::generate_key());
  start_all(k, k);
  play_tone(1000, 60);
  ASSERT_GE(seconds_until_level(1000, 0.5, 0.05, 20s), 0) << logs();

  qube_bridge_.stop(SIGKILL);
  ASSERT_GE(seconds_until_level(1000, 0, 0.001, 5s), 0) << "the tone went on without the qube side";
  auto q = Child::spawn(qube_argv_, {}, dir_.path() + "/qube-bridge.log");
  ASSERT_TRUE(q);
  qube_bridge_ = std::move(*q);
  double back = seconds_until_level(1000, 0.5, 0.05, 15s);
  std::printf("qube side back: tone again after %.2f s\n", back);
  ASSERT_GE(back, 0) << logs();

  audiovm_bridge_.stop(SIGKILL);
  ASSERT_GE(seconds_until_level(1000, 0, 0.001, 5s), 0) << "the tone went on without the bridge";
  auto b = Child::spawn(audiovm_argv_, {}, audiovm_log());
  ASSERT_TRUE(b);
  audiovm_bridge_ = std::move(*b);
  back = seconds_until_level(1000, 0.5, 0.05, 15s);
  std::printf("audio domain side back: tone again after %.2f s\n", back);
  ASSERT_GE(back, 0) << logs();
  expect_tone(record(3.0), 1000, 0.5, 480);
}

TEST_F(NetBridgeE2E, wrong_key_plays_nothing_and_is_logged) {
  auto k = write_key("work", net::generate_key());
  auto wrong = write_key("wrong", net::generate_key());
  start_all(k, wrong);
  play_tone(1000, 6);
  ASSERT_TRUE(wait_until(
      [&] { return read_text(audiovm_log()).find("key is not configured") != std::string::npos; },
      15s))
      << logs();
  auto pcm = record(1.0);
  EXPECT_LT(qaudio::test::peak(pcm), 0.01) << "audio arrived without the key";
}

}  // namespace
}  // namespace qaudio::e2e

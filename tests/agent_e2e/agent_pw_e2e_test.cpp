// End to end with an app qube running PipeWire: a private PipeWire +
// WirePlumber ("app qube") running qubes-audio-agent --backend pipewire, and
// a private PulseAudio ("audio qube") running qubes-audiovm-daemon --backend
// pulse, joined by the unix channel. A tone played with pw-play into "Qubes
// audio" is recorded from the audio qube's sink monitor and checked for
// frequency and level, in native and in forced-stock mode; in native mode
// the sink node reports the audio domain's latency (port Latency).
#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "e2e_util.hpp"
#include "sound_servers.hpp"
#include "tone.hpp"

namespace qaudio::e2e {
namespace {

using namespace std::chrono_literals;
using qaudio::test::Child;
using qaudio::test::first_loud;
using qaudio::test::PipeWireStack;
using qaudio::test::PulseServer;
using qaudio::test::read_text;
using qaudio::test::TempDir;
using qaudio::test::wait_until;

constexpr int kQubeDomid = 7;
constexpr int kAudioDomid = 1;
constexpr uint32_t kRate = 48000;

class AgentPipeWireE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!PipeWireStack::available()) {
      GTEST_SKIP() << "pipewire stack missing";
    }
    for (const char* p : {"pulseaudio", "pactl", "parec", "pw-play", "sox"}) {
      if (!qaudio::test::have_program(p)) {
        GTEST_SKIP() << p << " missing";
      }
    }
    app_ = std::make_unique<PipeWireStack>(dir_.path() + "/appqube");
    audio_ = std::make_unique<PulseServer>(dir_.path() + "/audioqube");
    ASSERT_TRUE(app_->start()) << app_->last_error();
    ASSERT_TRUE(audio_->start()) << audio_->last_error();
    qaudio::test::make_dir(vchan_dir());
  }
  void TearDown() override {
    player_.stop();
    agent_.stop();
    daemon_.stop();
  }

  std::string vchan_dir() const { return dir_.path() + "/vchan"; }
  std::string agent_log() const { return dir_.path() + "/agent.log"; }

  void start_daemon(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{QAUDIO_DAEMON_PATH,
                                  "--channel",
                                  "unix:" + vchan_dir(),
                                  "--qube",
                                  "work=" + std::to_string(kQubeDomid),
                                  "--audio-domid",
                                  std::to_string(kAudioDomid),
                                  "--backend",
                                  "pulse:" + audio_->server(),
                                  "--control",
                                  dir_.path() + "/control.sock",
                                  "-v"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto c = Child::spawn(args, audio_->client_env(), dir_.path() + "/daemon.log");
    ASSERT_TRUE(c);
    daemon_ = std::move(*c);
  }

  void start_agent(const std::string& protocol) {
    auto c =
        Child::spawn({QAUDIO_AGENT_PATH, "--backend", "pipewire", "--channel",
                      "unix:" + vchan_dir(), "--domid", std::to_string(kQubeDomid),
                      "--audiovm-domid", std::to_string(kAudioDomid), "--protocol", protocol, "-v"},
                     app_->client_env(), agent_log());
    ASSERT_TRUE(c);
    agent_ = std::move(*c);
    ASSERT_TRUE(
        wait_until([&] { return app_->pw_dump().out.find("\"qubes_audio\"") != std::string::npos; },
                   15s, 200ms))
        << read_text(agent_log());
  }

  bool wait_connected(const std::string& mode) {
    return wait_until([&] { return read_text(agent_log()).find(mode) != std::string::npos; }, 15s,
                      50ms);
  }

  void play_in_qube(double freq, double seconds) {
    std::string wav = dir_.path() + "/tone.wav";
    auto r = qaudio::test::run_command(
        {"sox", "-n", "-r", "48000", "-c", "2", "-b", "16", wav, "synth", std::to_string(seconds),
         "sine", std::to_string(freq), "vol", "0.5"},
        {}, 20s);
    ASSERT_EQ(r.status, 0);
    auto c = Child::spawn({"pw-play", "--target", "qubes_audio", wav}, app_->client_env(),
                          dir_.path() + "/pw-play.log");
    ASSERT_TRUE(c);
    player_ = std::move(*c);
  }

  std::vector<float> record_audio_qube(double seconds) {
    return qaudio::test::record_floats({"parec", "-d", "out.monitor", "--latency-msec=20", "--raw",
                                        "--format=float32le", "--rate=48000", "--channels=2"},
                                       audio_->client_env(),
                                       static_cast<size_t>(seconds * kRate) * 2, 30s,
                                       dir_.path() + "/parec.log");
  }

  // `freq` at `level` in the recording, robust to periods lost on a loaded
  // machine: frequency and level from the cleanest 100 ms window (highest
  // tone level) of the 2 s after the start, and the tone present (above
  // half its level) in at least 5 of those 20 windows.
  void expect_tone(const std::vector<float>& pcm, double freq, double level) {
    size_t start = first_loud(pcm, 2);
    ASSERT_NE(start, std::string::npos) << "no tone reached the audio qube\n"
                                        << read_text(agent_log());
    start += kRate / 10;
    ASSERT_GE(pcm.size() / 2, start + 2 * kRate) << "the tone lasted less than 2 s";
    std::span<const float> win(pcm.data() + start * 2, 2 * kRate * 2);
    double best = -1;
    double best_freq = 0;
    int present = 0;
    for (size_t w = 0; w < 20; ++w) {
      auto part = win.subspan(w * 9600, 9600);
      double a = qaudio::test::tone_amplitude(part, 2, 1, kRate, freq);
      present += a > level / 2 ? 1 : 0;
      if (a > best) {
        best = a;
        best_freq = qaudio::test::frequency(part, 2, 0, kRate);
      }
    }
    EXPECT_NEAR(best_freq, freq, freq * 0.005);
    EXPECT_NEAR(best, level, 0.02);
    EXPECT_GE(present, 5) << "the tone was mostly missing";
  }

  // The largest Input port Latency (ns) in pw-dump (only qubes_audio sets
  // one), or -1.
  int64_t reported_latency_ns() {
    std::string d = app_->pw_dump().out;
    std::regex re("\"direction\": \"Input\"[^}]*\"minNs\":\\s*([0-9]+)");
    int64_t best = -1;
    for (std::sregex_iterator it(d.begin(), d.end(), re), end; it != end; ++it) {
      best = std::max<int64_t>(best, std::stoll((*it)[1].str()));
    }
    return best;
  }

  TempDir dir_{"agent-pw-e2e"};
  std::unique_ptr<PipeWireStack> app_;
  std::unique_ptr<PulseServer> audio_;
  Child daemon_;
  Child agent_;
  Child player_;
};

TEST_F(AgentPipeWireE2E, native_pw_play_tone_arrives_with_frequency_and_level) {
  start_daemon();
  start_agent("auto");
  ASSERT_TRUE(wait_connected("native protocol")) << read_text(agent_log());
  play_in_qube(1000, 10);
  expect_tone(record_audio_qube(4.0), 1000, 0.5);
  EXPECT_NE(read_text(agent_log()).find("playback on the wire: f32le 48000 Hz 2 ch (as the app"),
            std::string::npos)
      << read_text(agent_log());
  // The audio domain's Latency report reached the sink node: more than the
  // agent's own queue alone (a daemon buffer and a device latency on top).
  int64_t ns = -1;
  EXPECT_TRUE(wait_until(
      [&] {
        ns = reported_latency_ns();
        return ns > 0;
      },
      10s, 200ms))
      << "no port Latency on qubes_audio";
  EXPECT_LT(ns, 1'000'000'000);
}

// "Qubes audio" is a driver node (node.driver = true in pw-dump) and drives
// the graph pw-play plays in; its clock follows the audio domain's
// ClockTicks. The daemon's ticks claim a device 0.3 % fast (a test hook):
// the driver's measured device ratio locks to 1.003, the tone still arrives
// right, and the queue in the audio domain stays bounded (the PI loop and
// the backlog trimmer hold it; the agent's debug log reports both).
TEST_F(AgentPipeWireE2E, native_sink_drives_the_graph_following_a_skewed_device_clock) {
  start_daemon({"--test-tick-skew-ppm", "3000"});
  start_agent("native");
  ASSERT_TRUE(wait_connected("native protocol")) << read_text(agent_log());
  // The node's props (pw-dump prints them as one object, in any key order).
  std::string dump = app_->pw_dump().out;
  size_t at = dump.find("\"node.name\": \"qubes_audio\"");
  ASSERT_NE(at, std::string::npos);
  size_t from = dump.rfind("\"props\": {", at);
  size_t to = dump.find('}', at);
  ASSERT_NE(from, std::string::npos);
  std::string props = dump.substr(from, to - from);
  EXPECT_NE(props.find("\"node.driver\": true"), std::string::npos)
      << "qubes_audio is not a driver node: " << props;
  play_in_qube(1000, 40);
  ASSERT_TRUE(wait_until(
      [&] { return read_text(agent_log()).find("drives its graph") != std::string::npos; }, 10s,
      100ms))
      << read_text(agent_log());
  expect_tone(record_audio_qube(3.0), 1000, 0.5);
  // Lock: 64 ticks at 10/s (~7 s); then the device ratio the driver follows
  // (logged every 5 s) converges to the skewed clock.
  std::regex ratio_re("driver ratio ([0-9.]+) \\(device ([0-9.]+)\\), queue ([0-9.]+) ms");
  double device = 0, queue = 1e9;
  ASSERT_TRUE(wait_until(
      [&] {
        std::string log = read_text(agent_log());
        for (std::sregex_iterator it(log.begin(), log.end(), ratio_re), end; it != end; ++it) {
          device = std::stod((*it)[2].str());
          queue = std::stod((*it)[3].str());
        }
        return std::fabs(device - 1.003) < 0.001 && queue < 150.0;
      },
      30s, 200ms))
      << "the driver did not lock to the skewed device clock\n"
      << read_text(agent_log());
  EXPECT_NEAR(device, 1.003, 0.001);
  EXPECT_LT(queue, 150.0) << "the queue in the audio domain grew\n" << read_text(agent_log());
  EXPECT_LT(reported_latency_ns(), 1'000'000'000);
}

TEST_F(AgentPipeWireE2E, forced_stock_pw_play_tone_arrives_with_frequency_and_level) {
  start_daemon();
  start_agent("stock");
  ASSERT_TRUE(wait_connected("stock protocol")) << read_text(agent_log());
  play_in_qube(440, 10);
  expect_tone(record_audio_qube(4.0), 440, 0.5);
  EXPECT_NE(read_text(agent_log()).find("s16le 44100 Hz 2 ch (converted)"), std::string::npos)
      << read_text(agent_log());
}

}  // namespace
}  // namespace qaudio::e2e

// End to end on one machine: an "app qube" PulseAudio running
// qubes-audio-agent (or an ALSA app with the qubes plugin), and an "audio
// qube" PulseAudio running qubes-audiovm-daemon --backend pulse, joined by the
// unix channel. Tones are made with sox, played with paplay/aplay, recorded
// with parec, and checked for frequency and level (tests/support/tone.hpp).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <fstream>

#include "e2e_util.hpp"
#include "sound_servers.hpp"
#include "tone.hpp"

namespace qaudio::e2e {
namespace {

using namespace std::chrono_literals;
using qaudio::test::Child;
using qaudio::test::EnvVars;
using qaudio::test::first_loud;
using qaudio::test::PulseServer;
using qaudio::test::read_text;
using qaudio::test::TempDir;
using qaudio::test::wait_until;

constexpr int kQubeDomid = 5;
constexpr int kAudioDomid = 1;
constexpr uint32_t kRate = 48000;

class AgentE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* p : {"pulseaudio", "pactl", "paplay", "parec", "sox"}) {
      if (!qaudio::test::have_program(p)) {
        GTEST_SKIP() << p << " missing";
      }
    }
    app_ = std::make_unique<PulseServer>(dir_.path() + "/appqube");
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
  std::string control_path() const { return dir_.path() + "/control.sock"; }

  void start_daemon(bool stock_only = false) {
    std::vector<std::string> argv{QAUDIO_DAEMON_PATH,
                                  "--channel",
                                  "unix:" + vchan_dir(),
                                  "--qube",
                                  "work=" + std::to_string(kQubeDomid),
                                  "--audio-domid",
                                  std::to_string(kAudioDomid),
                                  "--backend",
                                  "pulse:" + audio_->server(),
                                  "--control",
                                  control_path(),
                                  "-v"};
    if (stock_only) {
      argv.push_back("--stock-only");
    }
    auto c = Child::spawn(argv, audio_->client_env(), dir_.path() + "/daemon.log");
    ASSERT_TRUE(c);
    daemon_ = std::move(*c);
  }

  void start_agent(const std::string& protocol) {
    auto c =
        Child::spawn({QAUDIO_AGENT_PATH, "--backend", "pulse:" + app_->server(), "--channel",
                      "unix:" + vchan_dir(), "--domid", std::to_string(kQubeDomid),
                      "--audiovm-domid", std::to_string(kAudioDomid), "--protocol", protocol, "-v"},
                     app_->client_env(), agent_log());
    ASSERT_TRUE(c);
    agent_ = std::move(*c);
    ASSERT_TRUE(wait_until(
        [&] {
          return app_->pactl({"list", "short", "sinks"}).out.find("qubes_audio") !=
                 std::string::npos;
        },
        10s))
        << read_text(agent_log());
  }
  std::string agent_log() const { return dir_.path() + "/agent.log"; }

  // Waits until the agent's log shows the n-th negotiated connection.
  bool wait_connected(const std::string& mode, size_t n = 1) {
    return wait_until(
        [&] {
          std::string log = read_text(agent_log());
          size_t count = 0;
          for (size_t p = log.find(mode); p != std::string::npos; p = log.find(mode, p + 1)) {
            ++count;
          }
          return count >= n;
        },
        15s, 50ms);
  }

  std::string make_wav(double freq, double seconds, uint32_t rate = kRate) {
    std::string path = dir_.path() + "/tone-" + std::to_string(static_cast<int>(freq)) + ".wav";
    auto r = qaudio::test::run_command(
        {"sox", "-n", "-r", std::to_string(rate), "-c", "2", "-b", "16", path, "synth",
         std::to_string(seconds), "sine", std::to_string(freq), "vol", "0.5"},
        {}, 20s);
    EXPECT_EQ(r.status, 0);
    return path;
  }

  void play_in_qube(const std::string& wav) {
    auto c = Child::spawn({"paplay", "-d", "qubes_audio", "--latency-msec=20", wav},
                          app_->client_env(), dir_.path() + "/paplay.log");
    ASSERT_TRUE(c);
    player_ = std::move(*c);
  }

  // `seconds` of the audio qube's sink ("out") as float stereo 48 kHz.
  std::vector<float> record_audio_qube(double seconds) {
    return qaudio::test::record_floats({"parec", "-d", "out.monitor", "--latency-msec=20", "--raw",
                                        "--format=float32le", "--rate=48000", "--channels=2"},
                                       audio_->client_env(),
                                       static_cast<size_t>(seconds * kRate) * 2, 30s,
                                       dir_.path() + "/parec.log");
  }

  // Asserts that `pcm` holds `freq` at `level` for at least 1 s after it
  // starts (skipping 100 ms of ramp).
  void expect_tone(const std::vector<float>& pcm, double freq, double level) {
    size_t start = first_loud(pcm, 2);
    ASSERT_NE(start, std::string::npos) << "no tone reached the audio qube";
    start += kRate / 10;
    ASSERT_GE(pcm.size() / 2, start + kRate) << "the tone lasted less than 1 s";
    std::span<const float> win(pcm.data() + start * 2, kRate * 2);
    // Frequency in the cleanest 100 ms window: a period dropped by a busy
    // machine would cost a few zero crossings over the whole second.
    size_t best_at = 0;
    double best = -1;
    for (size_t w = 0; w < 10; ++w) {
      double l = qaudio::test::tone_amplitude(win.subspan(w * 9600, 9600), 2, 1, kRate, freq);
      if (l > best) {
        best = l;
        best_at = w;
      }
    }
    EXPECT_NEAR(qaudio::test::frequency(win.subspan(best_at * 9600, 9600), 2, 0, kRate), freq,
                freq * 0.01);
    // Level: the median of 100 ms windows (robust to one late period).
    std::vector<double> levels;
    for (size_t w = 0; w < 10; ++w) {
      levels.push_back(
          qaudio::test::tone_amplitude(win.subspan(w * 9600, 9600), 2, 1, kRate, freq));
    }
    std::nth_element(levels.begin(), levels.begin() + 5, levels.end());
    EXPECT_NEAR(levels[5], level, 0.02);
  }

  // One control API request; returns the reply line.
  std::string control(const std::string& json) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", control_path().c_str());
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return {};
    }
    std::string line = json + "\n";
    [[maybe_unused]] ssize_t w = ::write(fd, line.data(), line.size());
    std::string reply;
    qaudio::test::read_fd_until(fd, reply, 65536, qaudio::test::Clock::now() + 5s);
    ::close(fd);
    return reply;
  }

  TempDir dir_{"agent-e2e"};
  std::unique_ptr<PulseServer> app_;
  std::unique_ptr<PulseServer> audio_;
  Child daemon_;
  Child agent_;
  Child player_;
};

TEST_F(AgentE2E, native_tone_from_the_qube_arrives_with_frequency_and_level) {
  start_daemon();
  start_agent("auto");
  ASSERT_TRUE(wait_connected("native protocol")) << read_text(agent_log());
  play_in_qube(make_wav(1000, 10));
  expect_tone(record_audio_qube(3.0), 1000, 0.5);
  EXPECT_NE(read_text(agent_log()).find("playback on the wire: f32le 48000 Hz 2 ch (as the app"),
            std::string::npos)
      << read_text(agent_log());
}

TEST_F(AgentE2E, forced_stock_tone_arrives_with_frequency_and_level) {
  start_daemon();
  start_agent("stock");
  ASSERT_TRUE(wait_connected("stock protocol")) << read_text(agent_log());
  play_in_qube(make_wav(440, 10));
  expect_tone(record_audio_qube(3.0), 440, 0.5);
}

TEST_F(AgentE2E, auto_agent_falls_back_to_a_stock_only_daemon) {
  start_daemon(/*stock_only=*/true);
  start_agent("auto");
  ASSERT_TRUE(wait_connected("stock protocol")) << read_text(agent_log());
  play_in_qube(make_wav(660, 10));
  expect_tone(record_audio_qube(3.0), 660, 0.5);
}

#ifdef QAUDIO_ALSA_PLUGIN_PATH
TEST_F(AgentE2E, aplay_through_the_qubes_alsa_plugin_arrives) {
  if (!qaudio::test::have_program("aplay")) {
    GTEST_SKIP() << "aplay missing";
  }
  start_daemon();
  EnvVars env = qaudio::test::private_client_env(dir_.path() + "/alsaapp");
  qaudio::test::prepare_private_dirs(dir_.path() + "/alsaapp");
  qaudio::test::write_file(dir_.path() + "/alsaapp/home/.asoundrc",
                           "pcm_type.qubes { lib \"" QAUDIO_ALSA_PLUGIN_PATH
                           "\" }\n"
                           "pcm.qubes { type qubes channel \"unix:" +
                               vchan_dir() + "\" domid " + std::to_string(kQubeDomid) +
                               " audiovm_domid " + std::to_string(kAudioDomid) + " }\n");
  auto c = Child::spawn({"aplay", "-q", "-D", "qubes", make_wav(1000, 8, 44100)}, env,
                        dir_.path() + "/aplay.log");
  ASSERT_TRUE(c);
  player_ = std::move(*c);
  expect_tone(record_audio_qube(4.0), 1000, 0.5);
}
#endif

TEST_F(AgentE2E, mic_reaches_the_qube_only_after_attach) {
  start_daemon();
  start_agent("auto");
  ASSERT_TRUE(wait_connected("native protocol")) << read_text(agent_log());
  // The audio qube's microphone: its default source is out.monitor, so a
  // tone played into "out" is what its mic hears.
  auto c = Child::spawn({"paplay", "-d", "out", make_wav(440, 30)}, audio_->client_env(),
                        dir_.path() + "/mic-tone.log");
  ASSERT_TRUE(c);
  player_ = std::move(*c);
  auto parec = [&](double seconds) {
    return qaudio::test::record_floats(
        {"parec", "-d", "qubes_microphone", "--latency-msec=20", "--raw", "--format=float32le",
         "--rate=48000", "--channels=1"},
        app_->client_env(), static_cast<size_t>(seconds * kRate), 30s, dir_.path() + "/qparec.log");
  };
  auto before = parec(1.5);
  ASSERT_EQ(before.size(), static_cast<size_t>(1.5 * kRate));
  EXPECT_LT(qaudio::test::peak(before), 1e-4) << "mic audio reached the qube before attach";
  std::string reply = control(R"({"id":1,"method":"mic_attach","params":{"qube":"work"}})");
  if (reply.find("\"result\"") == std::string::npos) {
    GTEST_SKIP() << "the daemon's control API cannot attach the mic yet: " << reply;
  }
  auto after = parec(3.0);
  size_t start = first_loud(after, 1);
  ASSERT_NE(start, std::string::npos) << "no mic audio after attach";
  start += kRate / 10;
  ASSERT_GE(after.size(), start + kRate);
  std::vector<float> tail(after.begin() + static_cast<ptrdiff_t>(start), after.end());
  // Median of 100 ms windows: one period dropped on a busy machine does not
  // move it; the frequency is taken in the cleanest window.
  EXPECT_NEAR(qaudio::test::median_level(tail, 440.0, 1), 0.5, 0.05);
  double best = 0;
  size_t best_at = 0;
  for (size_t w = 0; w + kRate / 10 <= tail.size(); w += kRate / 10) {
    double l =
        qaudio::test::tone_amplitude(std::span(tail).subspan(w, kRate / 10), 1, 0, kRate, 440);
    if (l > best) {
      best = l;
      best_at = w;
    }
  }
  EXPECT_NEAR(qaudio::test::frequency(std::span(tail).subspan(best_at, kRate / 10), 1, 0, kRate),
              440, 5);
}

// Kill (as a crash would) and restart one side mid-stream: the tone resumes
// at the audio qube within 2 s of audio, with no action in the qube.
TEST_F(AgentE2E, daemon_restart_mid_stream_resumes_within_2s) {
  start_daemon();
  start_agent("auto");
  ASSERT_TRUE(wait_connected("native protocol", 1)) << read_text(agent_log());
  play_in_qube(make_wav(1000, 60));
  expect_tone(record_audio_qube(3.0), 1000, 0.5);
  daemon_.stop(SIGKILL);
  start_daemon();
  auto pcm = record_audio_qube(4.0);  // recording starts right after the restart
  size_t start = first_loud(pcm, 2);
  ASSERT_NE(start, std::string::npos) << read_text(agent_log());
  EXPECT_LT(start, 2 * kRate) << "tone resumed after " << start / double(kRate) << " s";
  EXPECT_TRUE(wait_connected("native protocol", 2));
}

TEST_F(AgentE2E, agent_restart_mid_stream_resumes_within_2s) {
  start_daemon();
  start_agent("auto");
  ASSERT_TRUE(wait_connected("native protocol", 1)) << read_text(agent_log());
  play_in_qube(make_wav(1000, 60));
  expect_tone(record_audio_qube(3.0), 1000, 0.5);
  agent_.stop(SIGKILL);  // its devices stay in PulseAudio; paplay keeps playing
  start_agent("auto");   // adopts them
  auto pcm = record_audio_qube(4.0);
  size_t start = first_loud(pcm, 2);
  ASSERT_NE(start, std::string::npos) << read_text(agent_log());
  EXPECT_LT(start, 2 * kRate) << "tone resumed after " << start / double(kRate) << " s";
  EXPECT_TRUE(player_.running()) << "the app was disturbed";
}

}  // namespace
}  // namespace qaudio::e2e

// PulseAgentBackend against a private PulseAudio server: the devices exist,
// a tone played into "Qubes audio" reaches the playback ring, activity is
// reported, mic PCM written by the core reaches a recording app, and stop()
// removes the devices.
#include "pulse_agent_backend.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "agent_tone.hpp"
#include "sound_servers.hpp"

namespace qaudio::agent {
namespace {

using namespace std::chrono_literals;
using qaudio::test::wait_until;

struct Recorder : AgentBackend::Listener {
  std::atomic<int> active{-1};
  std::atomic<int> mic{-1};
  void on_output_active(bool a) override { active = a; }
  void on_mic_in_use(bool m) override { mic = m; }
  void on_backend_error(const std::string&) override {}
};

class PulseAgentBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!qaudio::test::have_program("pulseaudio") || !qaudio::test::have_program("sox")) {
      GTEST_SKIP() << "pulseaudio or sox missing";
    }
    pa_ = std::make_unique<qaudio::test::PulseServer>(dir_.path());
    ASSERT_TRUE(pa_->start()) << pa_->last_error();
    PulseAgentOptions o;
    o.server = pa_->server();
    be_ = make_pulse_agent_backend(o);
    thread_ = std::thread([this] { loop_.run(); });
    std::atomic<bool> done{false};
    loop_.post([&] {
      auto r = be_->start(loop_, rec_);
      EXPECT_TRUE(r) << r.error().message;
      done = true;
    });
    ASSERT_TRUE(wait_until([&] { return done.load(); }, 20s));
  }
  void TearDown() override {
    if (be_) {
      loop_.post([this] {
        be_->stop();
        loop_.quit();
      });
      thread_.join();
    }
  }
  std::string tone_wav(double freq, double seconds) {
    std::string path = dir_.path() + "/tone.wav";
    auto r = qaudio::test::run_command(
        {"sox", "-n", "-r", "48000", "-c", "2", "-b", "16", path, "synth", std::to_string(seconds),
         "sine", std::to_string(freq), "vol", "0.5"},
        {}, 20s);
    EXPECT_EQ(r.status, 0);
    return path;
  }

  qaudio::test::TempDir dir_{"agent-pulse"};
  std::unique_ptr<qaudio::test::PulseServer> pa_;
  EventLoop loop_;
  Recorder rec_;
  std::unique_ptr<AgentBackend> be_;
  std::thread thread_;
};

TEST_F(PulseAgentBackendTest, creates_qubes_audio_sink_and_microphone_source) {
  auto sinks = pa_->pactl({"list", "sinks"});
  EXPECT_NE(sinks.out.find("Qubes audio"), std::string::npos);
  auto sources = pa_->pactl({"list", "short", "sources"});
  EXPECT_NE(sources.out.find("qubes_microphone"), std::string::npos);
  auto info = pa_->pactl({"info"});
  EXPECT_NE(info.out.find("Default Sink: qubes_audio"), std::string::npos) << info.out;
  EXPECT_EQ(be_->playback_format(), (StreamFormat{SampleFormat::F32LE, 48000, 2}));
}

TEST_F(PulseAgentBackendTest, tone_played_into_qubes_audio_reaches_the_ring_and_marks_active) {
  auto wav = tone_wav(1000, 3);
  EXPECT_TRUE(wait_until([&] { return rec_.active.load() == 0; }, 5s));
  auto player = qaudio::test::Child::spawn({"paplay", "-d", "qubes_audio", wav}, pa_->client_env());
  ASSERT_TRUE(player);
  ASSERT_TRUE(wait_until([&] { return rec_.active.load() == 1; }, 10s));
  // Collect 0.5 s of non-silent audio from the playback ring.
  std::vector<std::byte> got;
  auto& ring = be_->rings().playback();
  std::array<std::byte, 4096> buf;
  ASSERT_TRUE(wait_until(
      [&] {
        size_t n = ring.read(buf);
        auto f = test::to_float(std::vector<std::byte>(buf.begin(), buf.begin() + n),
                                be_->playback_format());
        bool loud = false;
        for (float v : f) {
          loud = loud || std::fabs(v) > 0.1f;
        }
        if (loud || !got.empty()) {
          got.insert(got.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n));
        }
        return got.size() >= 24000u * 8 + 4800 * 8;
      },
      10s, 2ms));
  auto f = test::to_float(got, be_->playback_format());
  EXPECT_NEAR(test::tone_peak(f, 2, 0, 48000, 1000.0, 4800, 24000), 0.5, 0.01);
  EXPECT_NEAR(test::zero_cross_freq(f, 2, 1, 48000, 4800), 1000.0, 2.0);
  player->stop(SIGTERM);
  EXPECT_TRUE(wait_until([&] { return rec_.active.load() == 0; }, 10s));
}

TEST_F(PulseAgentBackendTest, mic_pcm_reaches_a_recording_app_and_silence_without_it) {
  auto fmt = be_->capture_format();
  std::atomic<bool> feeding{true};
  // The core's side: keep the capture ring topped up with a 440 Hz tone.
  std::thread feeder([&] {
    size_t frame = 0;
    while (feeding) {
      if (be_->rings().capture().readable() < fmt.bytes_for_ms(30)) {
        auto t = test::make_tone(fmt, 440.0, 0.3, 240, frame);
        frame += 240;
        be_->rings().capture().write(t);
      }
      std::this_thread::sleep_for(1ms);  // paces the fake producer, not a sync
    }
  });
  auto env = pa_->client_env();
  auto pcm =
      qaudio::test::record_floats({"parec", "-d", "qubes_microphone", "--latency-msec=20", "--raw",
                                   "--format=float32le", "--rate=48000", "--channels=1"},
                                  env, 48000, 20s);
  EXPECT_TRUE(wait_until([&] { return rec_.mic.load() == 0; }, 10s));  // parec gone
  feeding = false;
  feeder.join();
  ASSERT_EQ(pcm.size(), 48000u);
  EXPECT_NEAR(test::best_tone_level(pcm, 1, 0, 48000, 440.0, 9600, 4800), 0.3, 0.01);
  EXPECT_GT(test::tone_level(pcm, 1, 0, 48000, 440.0, 9600, 4800), 0.15);  // mostly present
  // No mic PCM: a valid, silent source.
  auto quiet =
      qaudio::test::record_floats({"parec", "-d", "qubes_microphone", "--latency-msec=20", "--raw",
                                   "--format=float32le", "--rate=48000", "--channels=1"},
                                  env, 9600, 20s);
  ASSERT_EQ(quiet.size(), 9600u);
  EXPECT_LT(test::rms_of(quiet, 1, 0, 4800), 1e-4);
}

TEST_F(PulseAgentBackendTest, recording_app_marks_mic_in_use) {
  EXPECT_TRUE(wait_until([&] { return rec_.mic.load() == 0; }, 5s));
  auto rec = qaudio::test::Child::spawn(
      {"parec", "-d", "qubes_microphone", "--latency-msec=20", "/dev/null"}, pa_->client_env());
  ASSERT_TRUE(rec);
  EXPECT_TRUE(wait_until([&] { return rec_.mic.load() == 1; }, 10s));
  rec->stop(SIGTERM);
  EXPECT_TRUE(wait_until([&] { return rec_.mic.load() == 0; }, 10s));
}

TEST_F(PulseAgentBackendTest, stop_unloads_the_modules) {
  std::atomic<bool> done{false};
  loop_.post([&] {
    be_->stop();
    done = true;
  });
  ASSERT_TRUE(wait_until([&] { return done.load(); }, 10s));
  auto mods = pa_->pactl({"list", "short", "modules"});
  EXPECT_EQ(mods.out.find("qubes_audio"), std::string::npos) << mods.out;
  EXPECT_EQ(mods.out.find("qubes_microphone"), std::string::npos) << mods.out;
  EXPECT_EQ(mods.out.find("qubes_mic_feed"), std::string::npos) << mods.out;
}

}  // namespace
}  // namespace qaudio::agent

// Integration tests of the PulseAudio backend against a private PulseAudio
// server with a null sink "out" (tests/support/sound_servers.hpp): what each
// qube plays arrives at the sink with its frequency and level, streams carry
// the qube's name and label colour, devices are listed and switched, capture
// works, and a server killed mid-stream is reconnected.
#include <gtest/gtest.h>

#include "backend_probes.hpp"
#include "backends.hpp"
#include "sound_servers.hpp"

namespace qaudio::daemon {
namespace {

using namespace std::chrono_literals;
using test::CaptureRecorder;
using test::EventLog;
using test::ToneSource;
using Kind = BackendEvent::Kind;

constexpr uint32_t kRate = 48000;
constexpr uint32_t kCh = 2;
constexpr size_t kWindow = kRate / 20;  // 50 ms analysis windows
// An overloaded 2-core machine without real-time scheduling makes the server
// drop a period now and then; a dropped period only lowers a tone's level in
// its window, so levels are read from the clean windows (90th percentile)
// and absence from the 10th.
constexpr double kClean = 0.9;
constexpr double kQuiet = 0.1;
constexpr double kFullScale = 0.5;  // a qube at 100 % plays a 0.5 peak tone

class PulseBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::have_program("pulseaudio") || !test::have_program("parec") ||
        !test::have_program("pactl")) {
      GTEST_SKIP() << "pulseaudio / pulseaudio-utils not installed";
    }
    ASSERT_FALSE(dir_.path().empty());
    pa_ = std::make_unique<test::PulseServer>(dir_.path());
    // libpulse in this process: private HOME/XDG dirs, no autospawn.
    test::use_private_env_in_process(test::private_client_env(dir_.path()));
  }
  void TearDown() override {
    if (backend_) {
      backend_->stop();
    }
  }

  void make_backend() {
    BackendOptions opts;
    opts.format = {kRate, kCh};
    opts.reconnect_interval = 100ms;
    auto be = make_pulse_backend(pa_->server(), opts, events_.fn());
    ASSERT_TRUE(be) << be.error().message;
    backend_ = std::move(*be);
    ASSERT_TRUE(backend_->start());
  }

  size_t sink_inputs() {
    auto r = pa_->pactl({"list", "short", "sink-inputs"});
    return static_cast<size_t>(std::count(r.out.begin(), r.out.end(), '\n'));
  }
  bool wait_sink_inputs(size_t n) {
    return test::wait_until([&] { return sink_inputs() >= n; }, 20s, 50ms);
  }
  // Waits until the server consumes `src` (a fresh null sink may sleep for up
  // to its 2 s idle block before it applies a stream's small latency).
  static bool wait_flowing(const ToneSource& src) {
    const uint64_t start = src.frames_pulled();
    return test::wait_until([&] { return src.frames_pulled() >= start + kRate / 5; }, 30s);
  }

  test::TempDir dir_{"pulse-be"};
  std::unique_ptr<test::PulseServer> pa_;
  EventLog events_;
  // Sources and sinks outlive the backend (declared before it, destroyed after).
  ToneSource work{440.0, kFullScale * 1.0, kRate, kCh};
  ToneSource personal{660.0, kFullScale * 0.5, kRate, kCh};
  CaptureRecorder mic{kRate, kCh};  // 1 s
  std::unique_ptr<Backend> backend_;
};

TEST_F(PulseBackendTest, each_qube_arrives_at_the_sink_with_its_frequency_and_level) {
  ASSERT_TRUE(pa_->start()) << pa_->last_error();
  make_backend();
  ASSERT_TRUE(test::wait_until([&] { return backend_->connected(); }, 20s));
  ASSERT_TRUE(backend_->add_playback({"work", "red", ""}, &work));
  ASSERT_TRUE(backend_->add_playback({"personal", "blue", ""}, &personal));
  ASSERT_TRUE(wait_sink_inputs(2));
  ASSERT_TRUE(wait_flowing(work));

  auto pcm = pa_->record_monitor(kRate);  // 1 s
  ASSERT_EQ(pcm.size(), kRate * kCh) << "the sink monitor delivered too little";

  for (uint32_t c = 0; c < kCh; ++c) {
    const double a440 = test::tone_level(pcm, kCh, c, kRate, 440.0, kWindow, kWindow, kClean);
    const double a660 = test::tone_level(pcm, kCh, c, kRate, 660.0, kWindow, kWindow, kClean);
    EXPECT_NEAR(a440, 0.5, 0.05) << "work (440 Hz, 100 %) on channel " << c;
    EXPECT_NEAR(a660, 0.25, 0.025) << "personal (660 Hz, 50 %) on channel " << c;
    EXPECT_NEAR(a440 / a660, 2.0, 0.2);
    EXPECT_LT(test::tone_level(pcm, kCh, c, kRate, 550.0, kWindow, kWindow, kQuiet), 0.01);
  }
  EXPECT_GT(work.frames_pulled(), 0u);
  EXPECT_GT(personal.frames_pulled(), 0u);
}

TEST_F(PulseBackendTest, sink_inputs_carry_the_qube_name_and_label_colour) {
  ASSERT_TRUE(pa_->start()) << pa_->last_error();
  make_backend();
  ASSERT_TRUE(backend_->add_playback({"work", "red", ""}, &work));
  ASSERT_TRUE(backend_->add_playback({"personal", "#3465a4", ""}, &personal));
  ASSERT_TRUE(wait_sink_inputs(2));

  auto r = pa_->pactl({"list", "sink-inputs"});
  ASSERT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("application.name = \"work\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("application.name = \"personal\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("qaudio.label.color = \"red\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("qaudio.label.color = \"#3465a4\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("application.icon_name = \"appvm-red\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Sample Specification: float32le 2ch 48000Hz"), std::string::npos) << r.out;
}

TEST_F(PulseBackendTest, lists_the_null_sink_as_the_default_output) {
  ASSERT_TRUE(pa_->start()) << pa_->last_error();
  make_backend();
  ASSERT_TRUE(test::wait_until([&] { return backend_->connected(); }, 20s));
  auto devs = backend_->devices();
  auto it = std::find_if(devs.begin(), devs.end(),
                         [](const DeviceInfo& d) { return d.name == "out" && d.is_output; });
  ASSERT_NE(it, devs.end());
  EXPECT_TRUE(it->is_default);
  EXPECT_FALSE(it->description.empty());
  // The sink's monitor is not offered as a microphone.
  EXPECT_TRUE(std::none_of(devs.begin(), devs.end(),
                           [](const DeviceInfo& d) { return d.name == "out.monitor"; }));
}

TEST_F(PulseBackendTest, set_device_moves_a_qube_to_another_sink) {
  ASSERT_TRUE(pa_->start()) << pa_->last_error();
  ASSERT_EQ(
      pa_->pactl({"load-module", "module-null-sink", "sink_name=other", "rate=48000", "channels=2"})
          .status,
      0);
  make_backend();
  auto h = backend_->add_playback({"work", "red", ""}, &work);
  ASSERT_TRUE(h);
  ASSERT_TRUE(wait_sink_inputs(1));

  auto moved = backend_->set_device(*h, "other");
  ASSERT_TRUE(moved) << moved.error().message;
  ASSERT_TRUE(wait_flowing(work));
  auto r = pa_->pactl({"list", "short", "sink-inputs"});
  EXPECT_EQ(r.out.find("\t1\t"), r.out.find('\t')) << "not on sink #1 (other): " << r.out;
  auto pcm = pa_->record_monitor(kRate, 30s, "other.monitor");
  ASSERT_EQ(pcm.size(), kRate * kCh);
  EXPECT_NEAR(test::tone_level(pcm, kCh, 0, kRate, 440.0, kWindow, kWindow, kClean), 0.5, 0.05);

  auto bad = backend_->set_device(*h, "no-such-sink");
  EXPECT_FALSE(bad);
}

TEST_F(PulseBackendTest, capture_stream_delivers_what_the_source_records) {
  ASSERT_TRUE(pa_->start()) << pa_->last_error();
  make_backend();
  ASSERT_TRUE(backend_->add_playback({"work", "red", ""}, &work));
  ASSERT_TRUE(wait_flowing(work));
  auto c = backend_->add_capture({"work", "red", "out.monitor"}, &mic);
  ASSERT_TRUE(c);
  ASSERT_TRUE(test::wait_until([&] { return mic.full(); }, 30s)) << mic.frames();
  backend_->remove_capture(*c);
  auto pcm = mic.samples();
  EXPECT_NEAR(test::tone_level(pcm, kCh, 1, kRate, 440.0, 2 * kWindow, kWindow, kClean), 0.5, 0.05);
  EXPECT_NEAR(test::tone_frequency(pcm, kCh, 0, kRate, 2 * kWindow, kWindow), 440.0, 10.0);
}

TEST_F(PulseBackendTest, killed_server_is_reported_and_playback_resumes_when_it_returns) {
  ASSERT_TRUE(pa_->start()) << pa_->last_error();
  make_backend();
  ASSERT_TRUE(backend_->add_playback({"work", "red", ""}, &work));
  ASSERT_TRUE(wait_sink_inputs(1));
  ASSERT_TRUE(wait_flowing(work));
  auto before = pa_->record_monitor(kRate);
  ASSERT_EQ(before.size(), kRate * kCh);
  EXPECT_NEAR(test::tone_level(before, kCh, 0, kRate, 440.0, kWindow, kWindow, kClean), 0.5, 0.05);

  pa_->kill_hard();
  ASSERT_TRUE(events_.wait_for(Kind::ServerLost, 20s));
  EXPECT_FALSE(backend_->connected());

  ASSERT_TRUE(pa_->start()) << pa_->last_error();  // same socket
  ASSERT_TRUE(events_.wait_for(Kind::ServerBack, 30s));
  EXPECT_TRUE(backend_->connected());
  ASSERT_TRUE(wait_sink_inputs(1));
  ASSERT_TRUE(wait_flowing(work));
  auto after = pa_->record_monitor(kRate);
  ASSERT_EQ(after.size(), kRate * kCh);
  EXPECT_NEAR(test::tone_level(after, kCh, 0, kRate, 440.0, kWindow, kWindow, kClean), 0.5, 0.05);
  EXPECT_NEAR(test::tone_frequency(after, kCh, 1, kRate, 2 * kWindow, kWindow), 440.0, 10.0);
  EXPECT_EQ(events_.count(Kind::ServerLost), 1u);
}

TEST_F(PulseBackendTest, starts_before_the_server_and_connects_when_it_appears) {
  make_backend();  // no server yet: not an error
  ASSERT_TRUE(backend_->add_playback({"work", "red", ""}, &work));
  EXPECT_FALSE(backend_->connected());

  ASSERT_TRUE(pa_->start()) << pa_->last_error();
  ASSERT_TRUE(events_.wait_for(Kind::ServerBack, 30s));
  ASSERT_TRUE(wait_sink_inputs(1));
  ASSERT_TRUE(wait_flowing(work));
  auto pcm = pa_->record_monitor(kRate);
  ASSERT_EQ(pcm.size(), kRate * kCh);
  EXPECT_NEAR(test::tone_level(pcm, kCh, 0, kRate, 440.0, kWindow, kWindow, kClean), 0.5, 0.05);
}

TEST_F(PulseBackendTest, removed_stream_leaves_the_server) {
  ASSERT_TRUE(pa_->start()) << pa_->last_error();
  make_backend();
  auto h = backend_->add_playback({"work", "red", ""}, &work);
  ASSERT_TRUE(h);
  ASSERT_TRUE(wait_sink_inputs(1));
  backend_->remove_playback(*h);
  const uint64_t pulled = work.frames_pulled();
  EXPECT_TRUE(test::wait_until([&] { return sink_inputs() == 0; }, 20s));
  EXPECT_EQ(work.frames_pulled(), pulled) << "source pulled after remove_playback returned";
}

// Audio qubes often run PipeWire with its PulseAudio socket: the pulse
// backend must work there too.
TEST(PulseOnPipeWireTest, plays_each_qube_through_pipewire_pulse) {
  if (!test::PipeWireStack::available() || !test::have_program("pipewire-pulse") ||
      !test::have_program("pactl")) {
    GTEST_SKIP() << "pipewire / wireplumber / pipewire-pulse not installed";
  }
  test::TempDir dir("pulse-on-pw");
  test::PipeWireStack pw(dir.path());
  test::use_private_env_in_process(pw.client_env());
  ASSERT_TRUE(pw.start()) << pw.last_error();
  ASSERT_TRUE(pw.start_pipewire_pulse()) << pw.last_error();
  ToneSource work(440.0, kFullScale, kRate, kCh);
  EventLog events;
  BackendOptions opts;
  opts.format = {kRate, kCh};
  opts.buffer = 40ms;  // see kClean: no real-time scheduling here
  auto be = make_pulse_backend(pw.pulse_server(), opts, events.fn());
  ASSERT_TRUE(be);
  ASSERT_TRUE((*be)->start());
  ASSERT_TRUE((*be)->add_playback({"work", "red", ""}, &work));
  const uint64_t start = work.frames_pulled();
  ASSERT_TRUE(test::wait_until([&] { return work.frames_pulled() >= start + kRate / 5; }, 30s));

  auto pcm = pw.record_sink(kRate);
  ASSERT_EQ(pcm.size(), kRate * kCh);
  EXPECT_NEAR(test::tone_level(pcm, kCh, 0, kRate, 440.0, kWindow, kWindow, kClean), 0.5, 0.05);
  auto dump = pw.pw_dump();
  EXPECT_NE(dump.out.find("\"application.name\": \"work\""), std::string::npos);
  EXPECT_NE(dump.out.find("\"qaudio.label.color\": \"red\""), std::string::npos);
  (*be)->stop();
}

}  // namespace
}  // namespace qaudio::daemon

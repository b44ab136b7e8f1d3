// Integration tests of the ALSA backend through alsa-lib's file plugin
// (no sound card here): an .asoundrc in a private HOME defines `qtest`
// (plug -> file -> null, raw float32 stereo 48 kHz) and `qtest_in` (reads a
// raw file as the microphone). The daemon mixes; the file holds the mix.
#include <gtest/gtest.h>

#include <fstream>

#include "alsa_backend.hpp"
#include "backend_probes.hpp"
#include "backends.hpp"
#include "sound_servers.hpp"

namespace qaudio::daemon {
namespace {

using namespace std::chrono_literals;
using test::CaptureRecorder;
using test::EventLog;
using test::ToneSource;

constexpr uint32_t kRate = 48000;
constexpr uint32_t kCh = 2;
constexpr size_t kWindow = kRate / 10;
constexpr double kFullScale = 0.5;

std::vector<float> read_floats(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

size_t file_size(const std::string& path) {
  std::error_code ec;
  auto n = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<size_t>(n);
}

class AlsaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    alsa_ = std::make_unique<test::AlsaFileConfig>(dir_.path());
    // alsa-lib reads $HOME/.asoundrc; each test is its own process.
    test::use_private_env_in_process(alsa_->client_env());
  }
  void TearDown() override {
    if (backend_) {
      backend_->stop();
    }
  }
  Result<void> make_backend(const std::string& spec) {
    BackendOptions opts;
    opts.format = {kRate, kCh};
    opts.period = 10ms;
    auto be = make_alsa_backend(spec, opts, events_.fn());
    if (!be) {
      return fail(be.error());
    }
    backend_ = std::move(*be);
    return backend_->start();
  }
  AlsaBackend& alsa() { return dynamic_cast<AlsaBackend&>(*backend_); }

  test::TempDir dir_{"alsa-be"};
  std::unique_ptr<test::AlsaFileConfig> alsa_;
  EventLog events_;
  // Sources and sinks outlive the backend (declared before it, destroyed after).
  ToneSource work{440.0, kFullScale * 1.0, kRate, kCh};
  ToneSource personal{660.0, kFullScale * 0.5, kRate, kCh};
  CaptureRecorder mic{kRate, kCh};  // 1 s
  std::unique_ptr<Backend> backend_;
};

TEST(AlsaSpecTest, splits_device_and_capture_device_even_with_commas) {
  auto s = parse_alsa_spec("plughw:0,0,in=plughw:1,0");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->device, "plughw:0,0");
  EXPECT_EQ(s->capture, "plughw:1,0");
  auto d = parse_alsa_spec("");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->device, "default");
  EXPECT_TRUE(d->capture.empty());
  EXPECT_FALSE(parse_alsa_spec("hw:0,in="));
}

TEST_F(AlsaBackendTest, file_holds_the_mix_of_both_qubes_with_their_levels) {
  auto started = make_backend("qtest");
  ASSERT_TRUE(started) << started.error().message;
  EXPECT_TRUE(alsa().timer_paced()) << "the file plugin does not block; the timer must pace";
  EXPECT_EQ(backend_->format().rate, kRate);
  auto hw = backend_->add_playback({"work", "red", ""}, &work);
  auto hp = backend_->add_playback({"personal", "blue", ""}, &personal);
  ASSERT_TRUE(hw && hp);
  // 1.5 s of sound after the streams were added.
  const size_t start_bytes = file_size(alsa_->output_path());
  const size_t want = start_bytes + kRate * 3 / 2 * kCh * sizeof(float);
  ASSERT_TRUE(test::wait_until([&] { return file_size(alsa_->output_path()) >= want; }, 60s));
  backend_->remove_playback(*hw);
  backend_->remove_playback(*hp);
  backend_->stop();

  auto pcm = read_floats(alsa_->output_path());
  const size_t first = start_bytes / (kCh * sizeof(float)) + kWindow;
  for (uint32_t c = 0; c < kCh; ++c) {
    EXPECT_NEAR(test::tone_level(pcm, kCh, c, kRate, 440.0, first, kWindow), 0.5, 0.02);
    EXPECT_NEAR(test::tone_level(pcm, kCh, c, kRate, 660.0, first, kWindow), 0.25, 0.01);
    EXPECT_LT(test::tone_level(pcm, kCh, c, kRate, 550.0, first, kWindow), 0.005);
  }
  EXPECT_EQ(alsa().xruns(), 0u);
}

TEST_F(AlsaBackendTest, capture_device_feeds_the_capture_sink) {
  {
    auto tone = test::sine(660.0, kRate, kRate * 2, kCh, 0.3);
    std::ofstream f(alsa_->input_path(), std::ios::binary);
    f.write(reinterpret_cast<const char*>(tone.data()),
            static_cast<std::streamsize>(tone.size() * sizeof(float)));
  }
  auto started = make_backend("qtest,in=qtest_in");
  ASSERT_TRUE(started) << started.error().message;
  auto h = backend_->add_capture({"work", "red", ""}, &mic);
  ASSERT_TRUE(h);
  ASSERT_TRUE(test::wait_until([&] { return mic.full(); }, 60s)) << mic.frames();
  backend_->remove_capture(*h);
  auto pcm = mic.samples();
  EXPECT_NEAR(test::tone_level(pcm, kCh, 0, kRate, 660.0, 0, kWindow), 0.3, 0.02);
  EXPECT_NEAR(test::tone_frequency(pcm, kCh, 1, kRate, 2 * kWindow, kWindow), 660.0, 10.0);
}

TEST_F(AlsaBackendTest, unknown_device_fails_to_start_naming_the_device) {
  auto started = make_backend("qtest_no_such_pcm");
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().message.find("qtest_no_such_pcm"), std::string::npos)
      << started.error().message;
  EXPECT_FALSE(backend_->connected());
}

TEST_F(AlsaBackendTest, lists_the_pcms_of_the_configuration) {
  auto be = make_alsa_backend("qtest", BackendOptions{}, events_.fn());
  ASSERT_TRUE(be);
  auto devs = (*be)->devices();
  EXPECT_FALSE(devs.empty());
  EXPECT_TRUE(std::any_of(devs.begin(), devs.end(), [](auto& d) { return d.name == "null"; }));
}

}  // namespace
}  // namespace qaudio::daemon

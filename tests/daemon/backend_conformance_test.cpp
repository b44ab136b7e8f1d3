// One suite run against every backend compiled into this build
// (available_backends()). wav and null run everywhere; the others need a
// device or server named by the environment, else they are skipped:
//   QAUDIO_TEST_PULSE_SERVER=unix:/path/native   pulse
//   QAUDIO_TEST_PIPEWIRE=1 (with XDG_RUNTIME_DIR of a running PipeWire)
//   QAUDIO_TEST_ALSA_DEVICE=cap                  alsa (e.g. a file plugin pcm)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "backend.hpp"
#include "fake_sources.hpp"
#include "tone.hpp"

namespace qaudio::daemon {
namespace {

using namespace std::chrono_literals;
using test::ToneSource;
using test::wait_for;

constexpr DeviceFormat kDev{48000, 2};

class BackendConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/qaudio-conf-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string& name = GetParam();
    if (name == "wav") {
      spec_ = "wav:" + dir_ + "/out.wav";
    } else if (name == "null") {
      spec_ = "null";
    } else if (name == "pulse") {
      const char* s = std::getenv("QAUDIO_TEST_PULSE_SERVER");
      if (!s) {
        GTEST_SKIP() << "set QAUDIO_TEST_PULSE_SERVER to run the pulse backend";
      }
      spec_ = std::string("pulse:") + s;
    } else if (name == "pipewire") {
      if (!std::getenv("QAUDIO_TEST_PIPEWIRE")) {
        GTEST_SKIP() << "set QAUDIO_TEST_PIPEWIRE to run the pipewire backend";
      }
      spec_ = "pipewire";
    } else if (name == "alsa") {
      const char* d = std::getenv("QAUDIO_TEST_ALSA_DEVICE");
      if (!d) {
        GTEST_SKIP() << "set QAUDIO_TEST_ALSA_DEVICE to run the alsa backend";
      }
      spec_ = std::string("alsa:") + d;
    } else {
      GTEST_SKIP() << "no conformance setup for backend " << name;
    }
    auto be = make_backend(spec_, BackendOptions{.format = kDev}, [](const BackendEvent&) {});
    ASSERT_TRUE(be) << be.error().message;
    be_ = std::move(*be);
  }
  void TearDown() override {
    be_.reset();
    std::filesystem::remove_all(dir_);
  }
  bool server_backend() const { return GetParam() == "pulse" || GetParam() == "pipewire"; }

  std::string dir_;
  std::string spec_;
  std::unique_ptr<Backend> be_;
};

TEST_P(BackendConformance, StartsAndStops) {
  ASSERT_TRUE(be_->start());
  EXPECT_EQ(be_->name(), GetParam());
  EXPECT_GE(be_->format().channels, 1u);
  if (!server_backend()) {
    EXPECT_TRUE(be_->connected());
  }
  be_->stop();
  be_->stop();  // idempotent
}

TEST_P(BackendConformance, PlaybackAddedWhileRunningIsPulledAtAboutTheDeviceRate) {
  ASSERT_TRUE(be_->start());
  ToneSource src(440.0, be_->format(), 0.5);
  auto t0 = std::chrono::steady_clock::now();
  auto h = be_->add_playback({"work", "red", ""}, &src);
  ASSERT_TRUE(h) << h.error().message;
  ASSERT_TRUE(wait_for([&] { return src.frames() >= be_->format().rate / 2; }, 20s));
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  be_->remove_playback(*h);
  be_->stop();
  // Loose bound only: a paced device must not be pulled far faster than
  // real time (an unpaced one would reach 0.5 s of frames in microseconds).
  double rate = src.frames() / elapsed;
  EXPECT_LT(rate, be_->format().rate * 3.0);
}

TEST_P(BackendConformance, RemovedStreamIsNotPulledAgainAndCanBeDestroyed) {
  ASSERT_TRUE(be_->start());
  for (int i = 0; i < 10; ++i) {
    auto src = std::make_unique<ToneSource>(440.0 + i, be_->format(), 0.2);
    auto h = be_->add_playback({"q" + std::to_string(i), "", ""}, src.get());
    ASSERT_TRUE(h);
    if (!server_backend()) {
      ASSERT_TRUE(wait_for([&] { return src->pulls() > 0; }, 5s));
    }
    be_->remove_playback(*h);
    src.reset();  // a pull after this aborts (ToneSource checks its magic)
  }
  be_->stop();
}

TEST_P(BackendConformance, CaptureSinkIsPushedWhileAttached) {
  ASSERT_TRUE(be_->start());
  test::RecordingSink sink(48000 * 8);
  auto h = be_->add_capture({"work", "", ""}, &sink);
  ASSERT_TRUE(h) << h.error().message;
  if (!server_backend()) {
    ASSERT_TRUE(wait_for([&] { return sink.pushes() >= 2; }, 5s));
  }
  be_->remove_capture(*h);
  be_->stop();
}

TEST_P(BackendConformance, ToneReachesTheOutput) {
  if (GetParam() != "wav") {
    GTEST_SKIP() << "content is checked for wav here; server backends in tests/daemon_servers";
  }
  ASSERT_TRUE(be_->start());
  ToneSource src(440.0, kDev, 0.5);
  auto h = be_->add_playback({"work", "red", ""}, &src);
  ASSERT_TRUE(h);
  ASSERT_TRUE(wait_for([&] { return src.frames() >= 24000; }, 20s));
  be_->remove_playback(*h);
  be_->stop();
  std::ifstream f(dir_ + "/out.wav", std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 44u + 24000 * 4);
  uint32_t riff, data;
  std::memcpy(&riff, bytes.data() + 4, 4);
  std::memcpy(&data, bytes.data() + 40, 4);
  EXPECT_EQ(riff, bytes.size() - 8);
  EXPECT_EQ(data, bytes.size() - 44);
  auto pcm = qaudio::test::s16_to_float(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()) + 44, data));
  // the part where the tone played
  size_t first = 0;
  while (first < pcm.size() && pcm[first] == 0.0f) {
    ++first;
  }
  ASSERT_LT(first + 20000 * 2, pcm.size());
  std::span<const float> st(pcm.data() + first, 20000 * 2);
  EXPECT_NEAR(qaudio::test::frequency(st, 2, 0, 48000), 440.0, 0.5);
  EXPECT_NEAR(qaudio::test::tone_amplitude(st, 2, 1, 48000, 440), 0.5, 0.01);
}

INSTANTIATE_TEST_SUITE_P(AllBuilt,
                         BackendConformance,
                         ::testing::ValuesIn(available_backends()),
                         [](const auto& info) { return info.param; });

TEST(BackendRegistry, ListsWavAndNullAndRejectsUnknownNames) {
  auto names = available_backends();
  EXPECT_NE(std::find(names.begin(), names.end(), "wav"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "null"), names.end());
  auto be = make_backend("nonesuch:x", {}, nullptr);
  ASSERT_FALSE(be);
  EXPECT_NE(be.error().message.find("wav"), std::string::npos);
  EXPECT_FALSE(make_backend("wav", {}, nullptr));  // needs a path
  EXPECT_FALSE(make_backend("wav:/x,bogus=1", {}, nullptr));
  EXPECT_FALSE(make_backend("null:x", {}, nullptr));
}

TEST(WavBackend, UnwritableOutputFailsToStartWithAClearError) {
  auto be = make_backend("wav:/nonexistent-dir/out.wav", {}, nullptr);
  ASSERT_TRUE(be);
  auto r = (*be)->start();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("/nonexistent-dir/out.wav"), std::string::npos);
}

}  // namespace
}  // namespace qaudio::daemon

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "fake_sources.hpp"
#include "mixing_backend.hpp"
#include "playback_stream.hpp"
#include "rt_check.hpp"
#include "tone.hpp"

namespace qaudio::daemon {
namespace {

using test::ToneSource;
using test::wait_for;
using namespace std::chrono_literals;

constexpr DeviceFormat kDev{48000, 2};

// A timer-paced device that records the mix (unclipped) into a
// preallocated buffer, and captures a fixed value.
class RecordingDevice final : public MixingBackend {
 public:
  explicit RecordingDevice(size_t max_frames, std::chrono::milliseconds period = 5ms)
      : MixingBackend(BackendOptions{.format = kDev, .period = period}, nullptr),
        buf_(max_frames * kDev.channels) {}
  ~RecordingDevice() override { stop(); }
  std::string name() const override { return "recording"; }
  std::vector<float> recorded() const {
    size_t n = len_.load(std::memory_order_acquire);
    return std::vector<float>(buf_.begin(), buf_.begin() + static_cast<ptrdiff_t>(n));
  }
  size_t recorded_frames() const { return len_.load() / kDev.channels; }
  float capture_value = 0.25f;

 protected:
  Result<void> open_device(DeviceFormat&) override { return {}; }
  void close_device() override {}
  bool write_period(std::span<const float> mix, size_t frames) override {
    size_t have = len_.load(std::memory_order_relaxed);
    size_t n = std::min(frames * kDev.channels, buf_.size() - have);
    std::copy(mix.begin(), mix.begin() + static_cast<ptrdiff_t>(n),
              buf_.begin() + static_cast<ptrdiff_t>(have));
    len_.store(have + n, std::memory_order_release);
    return true;
  }
  bool read_period(std::span<float> in, size_t) override {
    std::fill(in.begin(), in.end(), capture_value);
    return true;
  }

 private:
  std::vector<float> buf_;
  std::atomic<size_t> len_{0};
};

TEST(Mixer, MixSourcesSumsEverySource) {
  ToneSource a(440.0, kDev, 0.25), b(660.0, kDev, 0.5);
  PlaybackSource* srcs[] = {&a, &b};
  std::vector<float> mix(480 * 2), scratch(480 * 2);
  PeriodTiming t;
  EXPECT_EQ(mix_sources(srcs, mix.data(), scratch.data(), 480, 2, t), 2u);
  ToneSource a2(440.0, kDev, 0.25), b2(660.0, kDev, 0.5);
  std::vector<float> ra(480 * 2), rb(480 * 2);
  a2.pull(ra, 480, t);
  b2.pull(rb, 480, t);
  for (size_t i = 0; i < mix.size(); ++i) {
    ASSERT_FLOAT_EQ(mix[i], ra[i] + rb[i]);
  }
}

TEST(Mixer, NoSourcesGivesSilence) {
  std::vector<float> mix(64, 1.0f), scratch(64);
  PeriodTiming t;
  EXPECT_EQ(mix_sources({}, mix.data(), scratch.data(), 32, 2, t), 0u);
  EXPECT_TRUE(qaudio::test::all_zero(mix));
}

TEST(Mixer, TwoQubesAreMixedWithTheirLevelRatio) {
  RecordingDevice dev(48000);
  auto work = PlaybackStream::create({.format = kStockFormat, .device = kDev});
  auto personal =
      PlaybackStream::create({.format = kStockFormat, .device = kDev, .volume_percent = 50});
  ASSERT_TRUE(work && personal);
  (*work)->write(qaudio::test::sine_s16(440.0, 44100, 44100, 2, 0.4));
  (*personal)->write(qaudio::test::sine_s16(660.0, 44100, 44100, 2, 0.4));
  ASSERT_TRUE(dev.start());
  auto h1 = dev.add_playback({"work", "red", ""}, work->get());
  auto h2 = dev.add_playback({"personal", "green", ""}, personal->get());
  ASSERT_TRUE(h1 && h2);
  ASSERT_TRUE(wait_for([&] { return dev.recorded_frames() >= 24000; }, 10s));
  dev.remove_playback(*h1);
  dev.remove_playback(*h2);
  dev.stop();
  auto mix = dev.recorded();
  // skip the first 100 ms (streams were added one period apart)
  std::span<const float> st(mix.data() + 9600, 14000 * 2);
  double a440 = qaudio::test::tone_amplitude(st, 2, 0, 48000, 440);
  double a660 = qaudio::test::tone_amplitude(st, 2, 0, 48000, 660);
  EXPECT_NEAR(a440, 0.4, 0.02);
  EXPECT_NEAR(qaudio::test::amplitude_to_db(a660 / a440), -6.02, 0.2);
}

TEST(Mixer, QubeWritingWhileTheDevicePullsIsHeardIntact) {
  RecordingDevice dev(48000);
  auto s = PlaybackStream::create({.format = kStockFormat, .device = kDev});
  ASSERT_TRUE(s);
  auto tone = qaudio::test::sine_s16(440.0, 44100, 44100, 2, 0.5);
  ASSERT_TRUE(dev.start());
  auto h = dev.add_playback({"work", "", ""}, s->get());
  ASSERT_TRUE(h);
  // The main thread feeds 20 ms chunks, keeping ~100 ms queued, while the
  // RT thread pulls; volume changes race with the pulls too.
  size_t pos = 0;
  const size_t chunk = 882 * 4;
  while (dev.recorded_frames() < 36000) {
    if ((*s)->counters().fill_bytes < 4410 * 4 && pos + chunk <= tone.size()) {
      (*s)->write(std::span<const std::byte>(tone.data() + pos, chunk));
      pos += chunk;
      (*s)->set_volume_percent(100);
    } else {
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_LT(pos + chunk, tone.size() + chunk) << "ran out of input";
  }
  dev.remove_playback(*h);
  dev.stop();
  auto mix = dev.recorded();
  std::span<const float> st(mix.data() + 9600, 20000 * 2);
  EXPECT_NEAR(qaudio::test::frequency(st, 2, 0, 48000), 440.0, 1.0);
  EXPECT_GT((*s)->counters().frames_consumed, 20000u);
}

TEST(Mixer, SumIsNotClippedBeforeTheDeviceWrite) {
  RecordingDevice dev(4800);
  ToneSource a(100.0, kDev, 0.9), b(100.0, kDev, 0.9);
  ASSERT_TRUE(dev.start());
  auto h1 = dev.add_playback({"a", "", ""}, &a);
  auto h2 = dev.add_playback({"b", "", ""}, &b);
  ASSERT_TRUE(wait_for([&] { return dev.recorded_frames() >= 4800; }, 10s));
  dev.remove_playback(*h1);
  dev.remove_playback(*h2);
  dev.stop();
  EXPECT_GT(qaudio::test::peak(dev.recorded()), 1.5);
}

TEST(Mixer, RemovedSourceIsNeverPulledAgain) {
  RecordingDevice dev(480000);
  ASSERT_TRUE(dev.start());
  for (int round = 0; round < 20; ++round) {
    auto src = std::make_unique<ToneSource>(440.0, kDev, 0.1);
    auto h = dev.add_playback({"q", "", ""}, src.get());
    ASSERT_TRUE(h);
    ASSERT_TRUE(wait_for([&] { return src->pulls() > 0; }, 5s));
    dev.remove_playback(*h);
    uint64_t pulls = src->pulls();
    src.reset();  // destroyed right after remove: a late pull would abort
    ASSERT_TRUE(wait_for([&] { return dev.periods() > 0; }, 1s));
    (void)pulls;
  }
  dev.stop();
}

TEST(Mixer, RefusesMoreThanTheStreamTable) {
  RecordingDevice dev(4800);
  std::vector<std::unique_ptr<ToneSource>> srcs;
  std::vector<StreamHandle> hs;
  for (size_t i = 0; i < MixingBackend::kMaxPlayback; ++i) {
    srcs.push_back(std::make_unique<ToneSource>(440.0, kDev, 0.0));
    auto h = dev.add_playback({"q", "", ""}, srcs.back().get());
    ASSERT_TRUE(h);
    hs.push_back(*h);
  }
  ToneSource extra(440.0, kDev, 0.0);
  auto h = dev.add_playback({"extra", "", ""}, &extra);
  ASSERT_FALSE(h);
  EXPECT_NE(h.error().message.find("64"), std::string::npos);
  ASSERT_TRUE(dev.start());
  ASSERT_TRUE(wait_for([&] { return srcs.back()->pulls() > 2; }, 5s));
  dev.remove_playback(hs[0]);
  EXPECT_TRUE(dev.add_playback({"extra", "", ""}, &extra));
  dev.stop();
}

TEST(Mixer, CaptureSinksReceiveTheDeviceInput) {
  RecordingDevice dev(4800);
  test::RecordingSink sink(4800);
  ASSERT_TRUE(dev.start());
  auto h = dev.add_capture({"q", "", ""}, &sink);
  ASSERT_TRUE(h);
  ASSERT_TRUE(wait_for([&] { return sink.pushes() >= 3; }, 5s));
  dev.remove_capture(*h);
  uint64_t pushes = sink.pushes();
  auto got = sink.samples();
  ASSERT_FALSE(got.empty());
  for (float v : got) {
    ASSERT_EQ(v, 0.25f);
  }
  ASSERT_TRUE(wait_for([&] { return dev.periods() > 5; }, 5s));
  EXPECT_EQ(sink.pushes(), pushes);
  dev.stop();
}

TEST(Mixer, StreamsAddedBeforeStartPlayAfterStart) {
  RecordingDevice dev(4800);
  ToneSource a(440.0, kDev, 0.3);
  auto h = dev.add_playback({"a", "", ""}, &a);
  ASSERT_TRUE(h);
  ASSERT_TRUE(dev.start());
  ASSERT_TRUE(wait_for([&] { return a.pulls() >= 2; }, 5s));
  dev.stop();
  uint64_t pulls = a.pulls();
  dev.remove_playback(*h);  // while stopped: applied directly
  ASSERT_TRUE(dev.start());
  ASSERT_TRUE(wait_for([&] { return dev.periods() > 3; }, 5s));
  dev.stop();
  EXPECT_EQ(a.pulls(), pulls);
}

TEST(RtCheck, AllocationInsideAnRtScopeAborts) {
  if (!rt_alloc_check_enabled()) {
    GTEST_SKIP() << "release or sanitizer build: the operator new hook is compiled out";
  }
  EXPECT_DEATH(
      {
        RtScope rt;
        auto* p = new std::vector<int>(1000);
        delete p;
      },
      "real-time rule violated");
}

TEST(RtCheck, ScopeNestsAndRestores) {
  EXPECT_FALSE(in_rt_thread());
  {
    RtScope a;
    {
      RtScope b;
      EXPECT_TRUE(in_rt_thread());
    }
    EXPECT_TRUE(in_rt_thread());
  }
  EXPECT_FALSE(in_rt_thread());
}

}  // namespace
}  // namespace qaudio::daemon

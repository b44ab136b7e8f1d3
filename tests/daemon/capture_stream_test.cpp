#include "capture_stream.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "tone.hpp"

namespace qaudio::daemon {
namespace {

using qaudio::test::sine;

constexpr DeviceFormat kDev{48000, 2};
constexpr size_t kPeriod = 480;

std::unique_ptr<CaptureStream> make(CaptureConfig c) {
  auto s = CaptureStream::create(c);
  EXPECT_TRUE(s) << (s ? "" : s.error().message);
  return s ? std::move(*s) : nullptr;
}

std::vector<std::byte> read_all(CaptureStream& s) {
  std::vector<std::byte> out(s.readable());
  out.resize(s.read(out));
  return out;
}

// Pushes device frames period by period; with `drain`, reads what the qube
// would get after every push (as the main thread does) and returns it.
std::vector<std::byte> push_all(CaptureStream& s,
                                const std::vector<float>& dev,
                                bool drain = true) {
  PeriodTiming t;
  std::vector<std::byte> got;
  for (size_t f = 0; f < dev.size() / 2; f += kPeriod) {
    size_t n = std::min(kPeriod, dev.size() / 2 - f);
    s.push(std::span<const float>(dev.data() + f * 2, n * 2), n, t);
    if (drain) {
      auto b = read_all(s);
      got.insert(got.end(), b.begin(), b.end());
    }
  }
  return got;
}

TEST(CaptureStream, ClosedGateGivesExactZerosAtTheQubesRate) {
  auto s = make({.format = kStockFormat, .device = kDev});
  EXPECT_FALSE(s->is_open());
  auto bytes = push_all(*s, sine(440.0, 48000, 48000, 2, 0.8));
  EXPECT_EQ(bytes.size(), 44100u * 4);  // exactly one second of S16 stereo 44.1 kHz
  EXPECT_TRUE(qaudio::test::all_zero_bytes(bytes));
}

TEST(CaptureStream, OpenGateDeliversTheToneInTheQubesFormat) {
  auto s = make({.format = kStockFormat, .device = kDev});
  s->set_open(true);
  auto f = qaudio::test::s16_to_float(push_all(*s, sine(440.0, 48000, 48000, 2, 0.5)));
  ASSERT_GT(f.size(), 40000u * 2);
  std::span<const float> st(f.data() + 4410 * 2, 30000 * 2);
  EXPECT_NEAR(qaudio::test::frequency(st, 2, 0, 44100), 440.0, 0.5);
  EXPECT_NEAR(qaudio::test::tone_amplitude(st, 2, 1, 44100, 440), 0.5, 0.02);
}

TEST(CaptureStream, ClosingTakesEffectAtTheNextPush) {
  auto s = make({.format = kStockFormat, .device = kDev});
  s->set_open(true);
  auto first = push_all(*s, sine(440.0, 48000, 4800, 2, 0.5));
  EXPECT_FALSE(qaudio::test::all_zero_bytes(first));
  s->set_open(false);
  PeriodTiming t;
  auto tone = sine(440.0, 48000, kPeriod, 2, 0.5);
  s->push(tone, kPeriod, t);
  auto second = read_all(*s);
  EXPECT_FALSE(second.empty());
  EXPECT_TRUE(qaudio::test::all_zero_bytes(second));
  // and reopening does not replay old audio from the resampler history
  s->set_open(true);
  auto silence = std::vector<float>(kPeriod * 2, 0.0f);
  s->push(silence, kPeriod, t);
  EXPECT_TRUE(qaudio::test::all_zero_bytes(read_all(*s)));
}

TEST(CaptureStream, SameFormatFloatCaptureIsBitExact) {
  auto s = make({.format = {SampleFormat::F32LE, 48000, 2}, .device = kDev});
  s->set_open(true);
  auto tone = sine(1000.0, 48000, 960, 2, 0.3);
  auto bytes = push_all(*s, tone);
  ASSERT_EQ(bytes.size(), tone.size() * 4);
  EXPECT_EQ(std::memcmp(bytes.data(), tone.data(), bytes.size()), 0);
}

TEST(CaptureStream, StereoDeviceToMonoQubeAveragesChannels) {
  auto s = make({.format = {SampleFormat::F32LE, 48000, 1}, .device = kDev});
  s->set_open(true);
  std::vector<float> dev{0.5f, 0.1f, -0.4f, 0.0f};
  PeriodTiming t;
  s->push(dev, 2, t);
  auto bytes = read_all(*s);
  ASSERT_EQ(bytes.size(), 8u);
  float v[2];
  std::memcpy(v, bytes.data(), 8);
  EXPECT_FLOAT_EQ(v[0], 0.3f);
  EXPECT_FLOAT_EQ(v[1], -0.2f);
}

TEST(CaptureStream, UnreadRingDropsAndCountsOverruns) {
  auto s = make({.format = kStockFormat, .device = kDev, .ring = std::chrono::milliseconds(50)});
  push_all(*s, sine(440.0, 48000, 48000, 2, 0.5), /*drain=*/false);
  auto c = s->counters();
  EXPECT_GT(c.overruns, 0u);
  EXPECT_GT(c.dropped_bytes, 0u);
  EXPECT_EQ(c.bytes, 44100u * 4);
  std::vector<std::byte> buf(7);  // not a whole number of frames
  EXPECT_EQ(s->read(buf), 4u);
}

TEST(CaptureStream, ClippingAtTheQubesFormat) {
  auto s = make({.format = {SampleFormat::S16LE, 48000, 2}, .device = kDev});
  s->set_open(true);
  std::vector<float> loud{2.0f, -2.0f};
  PeriodTiming t;
  s->push(loud, 1, t);
  auto bytes = read_all(*s);
  int16_t v[2];
  std::memcpy(v, bytes.data(), 4);
  EXPECT_EQ(v[0], 32767);
  EXPECT_EQ(v[1], -32768);
}

}  // namespace
}  // namespace qaudio::daemon

#include "playback_stream.hpp"

#include <gtest/gtest.h>
#include <malloc.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "rt_check.hpp"
#include "tone.hpp"

namespace qaudio::daemon {
namespace {

using qaudio::test::amplitude_to_db;
using qaudio::test::frequency;
using qaudio::test::sine;
using qaudio::test::sine_s16;
using qaudio::test::tone_amplitude;

constexpr DeviceFormat kDev{48000, 2};
constexpr size_t kPeriod = 480;

std::unique_ptr<PlaybackStream> make(PlaybackConfig c) {
  auto s = PlaybackStream::create(c);
  EXPECT_TRUE(s) << (s ? "" : s.error().message);
  return s ? std::move(*s) : nullptr;
}

// Pulls `frames` device frames in periods.
std::vector<float> pull_frames(PlaybackStream& s, size_t frames, size_t* real = nullptr) {
  std::vector<float> out(frames * kDev.channels);
  PeriodTiming t;
  size_t got = 0;
  for (size_t done = 0; done < frames; done += kPeriod) {
    size_t n = std::min(kPeriod, frames - done);
    got += s.pull(std::span<float>(out.data() + done * kDev.channels, n * kDev.channels), n, t);
  }
  if (real) {
    *real = got;
  }
  return out;
}

std::vector<std::byte> to_bytes(const std::vector<float>& f) {
  std::vector<std::byte> b(f.size() * 4);
  std::memcpy(b.data(), f.data(), b.size());
  return b;
}

TEST(PlaybackStream, StockS16At44kComesOutAt48kWithSameFrequencyAndLevel) {
  auto s = make({.format = kStockFormat, .device = kDev, .ring = std::chrono::milliseconds(2000)});
  auto in = sine_s16(440.0, 44100, 44100, 2, 0.5);  // 1 s
  ASSERT_EQ(s->write(in), in.size());
  auto out = pull_frames(*s, 40000);
  std::span<const float> steady(out.data() + 4800 * 2, 30000 * 2);  // skip start-up
  EXPECT_NEAR(frequency(steady, 2, 0, 48000), 440.0, 0.5);
  EXPECT_NEAR(frequency(steady, 2, 1, 48000), 440.0, 0.5);
  EXPECT_NEAR(amplitude_to_db(tone_amplitude(steady, 2, 0, 48000, 440)), amplitude_to_db(0.5), 0.2);
  EXPECT_EQ(s->counters().underruns, 0u);
}

TEST(PlaybackStream, HalfVolumeLowersTheToneBySixDb) {
  const auto ring = std::chrono::milliseconds(2000);
  auto full = make({.format = kStockFormat, .device = kDev, .ring = ring});
  auto half = make({.format = kStockFormat, .device = kDev, .ring = ring, .volume_percent = 50});
  auto in = sine_s16(440.0, 44100, 44100, 2, 0.5);
  full->write(in);
  half->write(in);
  auto a = pull_frames(*full, 30000);
  auto b = pull_frames(*half, 30000);
  std::span<const float> sa(a.data() + 9600, 40000), sb(b.data() + 9600, 40000);
  double diff = amplitude_to_db(tone_amplitude(sb, 2, 0, 48000, 440)) -
                amplitude_to_db(tone_amplitude(sa, 2, 0, 48000, 440));
  EXPECT_NEAR(diff, -6.02, 0.1);
}

TEST(PlaybackStream, VolumeChangeWhilePlayingReachesPlusThreePointFiveDb) {
  auto s = make({.format = {SampleFormat::F32LE, 48000, 2}, .device = kDev});
  s->write(to_bytes(sine(440.0, 48000, 48000, 2, 0.25)));
  auto before = pull_frames(*s, 9600);
  s->set_volume_percent(150);
  pull_frames(*s, 480);  // the 5 ms ramp
  auto after = pull_frames(*s, 9600);
  double diff = amplitude_to_db(tone_amplitude(after, 2, 0, 48000, 440)) -
                amplitude_to_db(tone_amplitude(before, 2, 0, 48000, 440));
  EXPECT_NEAR(diff, 3.52, 0.1);
}

TEST(PlaybackStream, LevelIsThePeakAfterVolumeAndDecaysInSilence) {
  auto s = make({.format = {SampleFormat::F32LE, 48000, 2},
                 .device = kDev,
                 .ring = std::chrono::milliseconds(2000)});
  EXPECT_EQ(s->counters().level, 0.0f);
  s->write(to_bytes(sine(440.0, 48000, 48000, 2, 0.5)));  // 1 s
  pull_frames(*s, 9600);
  EXPECT_NEAR(s->counters().level, 0.5, 0.01);
  s->set_volume_percent(50);
  pull_frames(*s, 14400);  // 300 ms: the held 0.5 decayed below the new 0.25 peak
  EXPECT_NEAR(s->counters().level, 0.25, 0.01);
  pull_frames(*s, 24000 + 48000);  // the tone runs out, then 1 s of silence
  EXPECT_LT(s->counters().level, 0.25f * std::exp(-2.5f));
  EXPECT_GT(s->counters().level, 0.0f);  // decaying, not cut
}

TEST(PlaybackStream, MuteGivesExactZerosAfterTheRamp) {
  auto s = make({.format = kStockFormat, .device = kDev});
  s->write(sine_s16(440.0, 44100, 44100, 2, 0.8));
  pull_frames(*s, 4800);
  s->set_muted(true);
  pull_frames(*s, 480);
  auto out = pull_frames(*s, 9600);
  EXPECT_TRUE(qaudio::test::all_zero(out));
  EXPECT_GT(s->counters().frames_consumed, 4800u);  // still consuming while muted
  s->set_muted(false);
  pull_frames(*s, 480);
  auto back = pull_frames(*s, 4800);
  EXPECT_NEAR(tone_amplitude(back, 2, 0, 48000, 440), 0.8, 0.02);
}

TEST(PlaybackStream, SameRateFloatStreamIsBitExactAtUnityGain) {
  auto s = make({.format = {SampleFormat::F32LE, 48000, 2}, .device = kDev});
  auto in = sine(1000.0, 48000, 4800, 2, 0.3);
  s->write(to_bytes(in));
  auto out = pull_frames(*s, 2400);
  ASSERT_EQ(std::memcmp(out.data(), in.data(), out.size() * 4), 0);
}

TEST(PlaybackStream, MonoS32At96kIsPlayedOnBothChannels) {
  auto s = make({.format = {SampleFormat::S32LE, 96000, 1}, .device = kDev});
  auto f = sine(440.0, 96000, 96000, 1, 0.5);
  std::vector<std::byte> bytes(f.size() * 4);
  for (size_t i = 0; i < f.size(); ++i) {
    int32_t v = static_cast<int32_t>(std::lround(f[i] * 2147483647.0));
    std::memcpy(bytes.data() + 4 * i, &v, 4);
  }
  s->write(bytes);
  auto out = pull_frames(*s, 24000);
  std::span<const float> st(out.data() + 4800, 38000);
  EXPECT_NEAR(frequency(st, 2, 0, 48000), 440.0, 0.5);
  EXPECT_NEAR(tone_amplitude(st, 2, 0, 48000, 440), 0.5, 0.02);
  EXPECT_NEAR(tone_amplitude(st, 2, 1, 48000, 440), 0.5, 0.02);
}

TEST(PlaybackStream, FiveOneDownmixKeepsLeftOnTheLeft) {
  auto s = make({.format = {SampleFormat::F32LE, 48000, 6}, .device = kDev});
  auto tone = sine(440.0, 48000, 9600, 1, 0.5);
  std::vector<float> six(9600 * 6, 0.0f);
  for (size_t i = 0; i < 9600; ++i) {
    six[i * 6 + 0] = tone[i];  // FL only
  }
  s->write(to_bytes(six));
  auto out = pull_frames(*s, 4800);
  EXPECT_GT(tone_amplitude(out, 2, 0, 48000, 440), 0.1);
  EXPECT_EQ(tone_amplitude(out, 2, 1, 48000, 440), 0.0);
}

TEST(PlaybackStream, NanAndInfinityFromAQubeAreSanitised) {
  auto s = make({.format = {SampleFormat::F32LE, 48000, 2}, .device = kDev});
  std::vector<float> bad(4800 * 2, std::nanf(""));
  for (size_t i = 0; i < bad.size(); i += 3) {
    bad[i] = INFINITY;
  }
  s->write(to_bytes(bad));
  auto out = pull_frames(*s, 2400);
  for (float v : out) {
    ASSERT_TRUE(std::isfinite(v));
    ASSERT_LE(std::fabs(v), 1.0f);
  }
}

TEST(PlaybackStream, PrebuffersUntilTheTargetFillWithoutCountingUnderruns) {
  auto s =
      make({.format = kStockFormat, .device = kDev, .target_fill = std::chrono::milliseconds(40)});
  s->write(sine_s16(440.0, 44100, 441 * 3, 2, 0.5));  // 30 ms < 40 ms
  size_t real = 99;
  auto out = pull_frames(*s, 960, &real);
  EXPECT_EQ(real, 0u);
  EXPECT_TRUE(qaudio::test::all_zero(out));
  EXPECT_FALSE(s->counters().running);
  s->write(sine_s16(440.0, 44100, 441 * 2, 2, 0.5));  // now 50 ms
  pull_frames(*s, 480, &real);
  EXPECT_EQ(real, 480u);
  EXPECT_TRUE(s->counters().running);
  EXPECT_EQ(s->counters().underruns, 0u);
}

TEST(PlaybackStream, RunningDryCountsOneUnderrunAndPrebuffersAgain) {
  auto s = make({.format = {SampleFormat::F32LE, 48000, 2}, .device = kDev});
  s->write(to_bytes(sine(440.0, 48000, 2400, 2, 0.5)));  // 50 ms
  size_t real = 0;
  pull_frames(*s, 2400 + 480 * 5, &real);
  EXPECT_EQ(real, 2400u);
  EXPECT_EQ(s->counters().underruns, 1u);
  EXPECT_FALSE(s->counters().running);
}

TEST(PlaybackStream, CorkedStreamPlaysSilenceKeepsItsDataAndCountsNoUnderrun) {
  auto s = make({.format = {SampleFormat::F32LE, 48000, 2}, .device = kDev});
  s->write(to_bytes(sine(440.0, 48000, 4800, 2, 0.5)));
  s->set_corked(true);
  auto out = pull_frames(*s, 9600);
  EXPECT_TRUE(qaudio::test::all_zero(out));
  EXPECT_EQ(s->counters().underruns, 0u);
  EXPECT_EQ(s->counters().fill_bytes, 4800u * 8);
  s->set_corked(false);
  size_t real = 0;
  pull_frames(*s, 960, &real);
  EXPECT_EQ(real, 960u);
}

TEST(PlaybackStream, WritingPastTheRingCountsAnOverrunAndDropsWholeFrames) {
  auto s = make({.format = kStockFormat, .device = kDev, .ring = std::chrono::milliseconds(100)});
  auto in = sine_s16(440.0, 44100, 44100, 2, 0.5);  // 1 s > ring
  size_t accepted = s->write(in);
  auto c = s->counters();
  EXPECT_LT(accepted, in.size());
  EXPECT_EQ(c.overruns, 1u);
  EXPECT_EQ(c.dropped_bytes, in.size() - accepted);
  EXPECT_EQ(c.fill_bytes % 4, 0u);
  EXPECT_EQ(s->writable(), 0u);
}

TEST(PlaybackStream, ByteByByteWritesGiveTheSameAudio) {
  auto a = make({.format = kStockFormat, .device = kDev});
  auto b = make({.format = kStockFormat, .device = kDev});
  auto in = sine_s16(440.0, 44100, 4410, 2, 0.5);
  a->write(in);
  for (size_t i = 0; i < in.size(); ++i) {
    b->write(std::span<const std::byte>(&in[i], 1));
  }
  EXPECT_EQ(pull_frames(*a, 2400), pull_frames(*b, 2400));
}

TEST(PlaybackStream, FlushDropsQueuedAudio) {
  auto s = make({.format = {SampleFormat::F32LE, 48000, 2}, .device = kDev});
  s->write(to_bytes(sine(440.0, 48000, 4800, 2, 0.5)));
  s->flush();
  size_t real = 1;
  auto out = pull_frames(*s, 480, &real);
  EXPECT_EQ(real, 0u);
  EXPECT_EQ(s->counters().fill_bytes, 0u);
}

TEST(PlaybackStream, CountersReportBytesAndLatency) {
  auto s = make({.format = kStockFormat, .device = kDev});
  auto in = sine_s16(440.0, 44100, 4410, 2, 0.5);  // 100 ms
  s->write(in);
  PeriodTiming t;
  t.device_latency_us = 10000;
  std::vector<float> out(kPeriod * 2);
  s->pull(out, kPeriod, t);
  auto c = s->counters();
  EXPECT_EQ(c.bytes, in.size());
  EXPECT_EQ(c.device_frames, kPeriod);
  // about 90 ms queued + 10 ms device
  EXPECT_GT(c.latency_us, 85000u);
  EXPECT_LT(c.latency_us, 110000u);
}

// Feeds a stock stream whose producer clock is `ppm` off and pulls it for
// `seconds` of device time, faster than real time.
struct DriftResult {
  PlaybackCounters c;
  double min_fill_ms = 1e9;
  double max_fill_ms = 0;
};
DriftResult run_drift(double ppm, double seconds) {
  auto s = make({.format = kStockFormat, .device = kDev, .adaptive_rate = true});
  auto chunk = sine_s16(440.0, 44100, 44100, 2, 0.5);  // one second, looped (440 Hz fits)
  size_t chunk_pos = 0;
  double produce_acc = 0;
  const double in_per_pull = kPeriod * 44100.0 / 48000.0 * (1.0 + ppm * 1e-6);
  std::vector<float> out(kPeriod * 2);
  PeriodTiming t;
  DriftResult r;
  const size_t pulls = static_cast<size_t>(seconds * 48000 / kPeriod);
  // Prime with the target fill.
  s->write(std::span<const std::byte>(chunk.data(), 1764 * 4));
  chunk_pos = 1764 * 4;
  for (size_t i = 0; i < pulls; ++i) {
    produce_acc += in_per_pull;
    size_t frames = static_cast<size_t>(produce_acc);
    produce_acc -= static_cast<double>(frames);
    size_t bytes = frames * 4;
    while (bytes > 0) {
      size_t n = std::min(bytes, chunk.size() - chunk_pos);
      s->write(std::span<const std::byte>(chunk.data() + chunk_pos, n));
      chunk_pos = (chunk_pos + n) % chunk.size();
      bytes -= n;
    }
    s->pull(out, kPeriod, t);
    if (i > 100) {
      double fill_ms = s->counters().fill_bytes / 4 * 1000.0 / 44100.0;
      r.min_fill_ms = std::min(r.min_fill_ms, fill_ms);
      r.max_fill_ms = std::max(r.max_fill_ms, fill_ms);
    }
  }
  r.c = s->counters();
  return r;
}

double drift_seconds() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return 900.0;  // sanitizers are ~10x slower: a quarter of an hour
#else
  return 3600.0;
#endif
}

TEST(PlaybackStream, AdaptiveRateHoldsTheFillOverAnHourWithAFastProducer) {
  auto r = run_drift(+1000.0, drift_seconds());
  EXPECT_EQ(r.c.overruns, 0u);
  EXPECT_EQ(r.c.underruns, 0u);
  EXPECT_GT(r.min_fill_ms, 10.0);
  EXPECT_LT(r.max_fill_ms, 100.0);
  EXPECT_NEAR(r.c.rate_adjust_ppm, 1000, 200);
}

TEST(PlaybackStream, AdaptiveRateHoldsTheFillOverAnHourWithASlowProducer) {
  auto r = run_drift(-1000.0, drift_seconds());
  EXPECT_EQ(r.c.overruns, 0u);
  EXPECT_EQ(r.c.underruns, 0u);
  EXPECT_GT(r.min_fill_ms, 10.0);
  EXPECT_LT(r.max_fill_ms, 100.0);
  EXPECT_NEAR(r.c.rate_adjust_ppm, -1000, 200);
}

TEST(PlaybackStream, PullWithRateSteeringDoesNotAllocate) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "mallinfo2 does not see the sanitizer's allocator";
#else
  auto s = make({.format = kStockFormat, .device = kDev, .adaptive_rate = true});
  auto in = sine_s16(440.0, 44100, 44100, 2, 0.5);
  std::vector<float> out(kPeriod * 2);
  PeriodTiming t;
  s->write(in);
  size_t before = mallinfo2().uordblks;
  uint64_t pulls = 0;
  {
    RtScope rt;  // debug builds abort on operator new here
    // Large fill error: the loop swings the ratio across its whole range.
    for (int i = 0; i < 90; ++i) {
      s->pull(out, kPeriod, t);
      ++pulls;
    }
  }
  size_t after = mallinfo2().uordblks;
  EXPECT_EQ(before, after);
  EXPECT_EQ(pulls, 90u);
  EXPECT_NE(s->counters().rate_adjust_ppm, 0);
#endif
}

TEST(PlaybackStream, RejectsInvalidFormats) {
  EXPECT_FALSE(PlaybackStream::create({.format = {SampleFormat::S16LE, 22050, 2}, .device = kDev}));
  EXPECT_FALSE(PlaybackStream::create({.format = {SampleFormat::S16LE, 48000, 9}, .device = kDev}));
  EXPECT_FALSE(PlaybackStream::create({.format = {SampleFormat(7), 48000, 2}, .device = kDev}));
}

}  // namespace
}  // namespace qaudio::daemon

namespace qaudio::daemon {
namespace {

// A sound server's first request after a (re)start may be its whole buffer,
// larger than the small native prebuffer: the silence goes first and the
// audio follows intact, with no underrun (before, the audio came first, the
// stream ran dry at once, counted an underrun and restarted: a gap).
TEST(PlaybackStream, AFirstRequestLargerThanThePrebufferIsLeadBySilence) {
  const StreamFormat f32{SampleFormat::F32LE, 48000, 2};
  auto s = make({.format = f32, .device = kDev, .target_fill = std::chrono::milliseconds(8)});
  std::vector<float> in(384 * 2);  // 8 ms of a ramp: every sample distinct and non-zero
  for (size_t i = 0; i < in.size(); ++i) {
    in[i] = 0.001f * static_cast<float>(i + 1);
  }
  ASSERT_EQ(s->write(to_bytes(in)), in.size() * 4);
  std::vector<float> out(480 * 2, 1.0f);  // a 10 ms request
  PeriodTiming t;
  EXPECT_EQ(s->pull(out, 480, t), 384u);
  for (size_t i = 0; i < 96 * 2; ++i) {
    ASSERT_EQ(out[i], 0.0f) << i;
  }
  for (size_t i = 0; i < in.size(); ++i) {
    ASSERT_EQ(out[96 * 2 + i], in[i]) << i;
  }
  EXPECT_EQ(s->counters().underruns, 0u);
  // Mid-stream, running dry is still an underrun.
  std::vector<float> more(240 * 2, 0.5f);
  s->write(to_bytes(more));
  s->pull(out, 480, t);
  EXPECT_EQ(s->counters().underruns, 1u);
}

}  // namespace
}  // namespace qaudio::daemon

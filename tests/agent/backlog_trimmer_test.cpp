// Tests of BacklogTrimmer (native backlog after a stall) and splice_drop,
// on simulated time: a queue model of the daemon's buffer (a sawtooth at its
// natural level, a stall that adds a burst, trims taken away as decided).
//
//   ctest -R backlog_trimmer_test
#include "backlog_trimmer.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

namespace qaudio::agent {
namespace {

constexpr int64_t kMs = 1'000'000;

// The queue between the app and the device: `level` plus a 5 ms sawtooth
// (pushes of 5 ms, pulls of 10 ms), plus a backlog added by stalls and
// reduced by the trims the trimmer decides. Runs on 10 ms ticks.
struct QueueModel {
  int64_t level = 8 * kMs;
  int64_t backlog = 0;
  int64_t now = 0;
  int64_t queue() const { return level + (now / (10 * kMs)) % 2 * 5 * kMs + backlog; }
};

struct SimRun {
  std::vector<int64_t> drops;
  int64_t end_queue_min = 0;  // the lowest queue over the last second
};

// Steps `seconds` of 10 ms ticks; `stall_at` (s) adds `stall_ms` of backlog.
SimRun simulate(BacklogTrimmer& t,
                QueueModel& q,
                double seconds,
                double stall_at = -1,
                int64_t stall_ms = 0) {
  SimRun r;
  r.end_queue_min = INT64_MAX;
  const int64_t end = q.now + static_cast<int64_t>(seconds * 1e9);
  const int64_t stall = static_cast<int64_t>(stall_at * 1e9);
  bool stalled = false;
  for (; q.now < end; q.now += 10 * kMs) {
    if (!stalled && stall_at >= 0 && q.now >= stall) {
      q.backlog += stall_ms * kMs;
      stalled = true;
    }
    t.observe(q.queue(), q.now);
    if (int64_t d = t.due(q.now); d > 0) {
      r.drops.push_back(d);
      // The trim reaches the daemon: from the backlog first; what is beyond
      // it eats into the natural level (an underrun to come).
      const int64_t from_backlog = std::min(d, q.backlog);
      q.backlog -= from_backlog;
      q.level -= d - from_backlog;
    }
    if (q.now >= end - 1'000 * kMs) {
      r.end_queue_min = std::min(r.end_queue_min, q.queue());
    }
  }
  return r;
}

TEST(BacklogTrimmer, a_stream_that_never_stalled_is_never_trimmed) {
  BacklogTrimmer t({.target_ns = 10 * kMs});
  QueueModel q;
  SimRun r = simulate(t, q, 30);
  EXPECT_TRUE(r.drops.empty());
  EXPECT_EQ(t.trims(), 0u);
}

TEST(BacklogTrimmer, a_stall_backlog_returns_to_the_level_within_a_bound) {
  BacklogTrimmer t({.target_ns = 10 * kMs});
  QueueModel q;
  // 250 ms of backlog after 5 s: trimmed in steps of at most 100 ms, one per
  // window: back to the level (10 ms: max(natural 8, target 10)) + the
  // tolerance within 1 s (the window that sees it) + 3 steps.
  SimRun r = simulate(t, q, 5.0 + 1.0 + 3 * 1.0 + 1.0, 5.0, 250);
  ASSERT_GE(r.drops.size(), 3u);
  for (int64_t d : r.drops) {
    EXPECT_LE(d, 100 * kMs);
  }
  EXPECT_LE(r.end_queue_min, (10 + 5) * kMs);
  // Never below the level: trims stop at 10 ms (natural minimum 8 ms).
  EXPECT_GE(r.end_queue_min, 8 * kMs);
  // The level is max(natural 8 ms, target 10 ms): 2 ms of backlog may stay.
  EXPECT_LE(q.backlog, 2 * kMs) << "left " << q.backlog / kMs << " ms";
  EXPECT_EQ(q.level, 8 * kMs) << "a trim went below the natural level";
  // And it stays there: no more trims.
  size_t before = t.trims();
  simulate(t, q, 10);
  EXPECT_EQ(t.trims(), before);
}

TEST(BacklogTrimmer, a_daemon_with_a_larger_prebuffer_is_not_trimmed_below_it) {
  BacklogTrimmer t({.target_ns = 10 * kMs});
  QueueModel q;
  q.level = 40 * kMs;  // e.g. --native-target-ms 40
  SimRun r = simulate(t, q, 10, 4.0, 120);
  ASSERT_FALSE(r.drops.empty());
  EXPECT_EQ(q.backlog, 0);
  EXPECT_EQ(q.level, 40 * kMs);
  EXPECT_GE(r.end_queue_min, 40 * kMs);
  EXPECT_LE(r.end_queue_min, 45 * kMs);
  EXPECT_EQ(t.level_ns(), 40 * kMs);
}

TEST(BacklogTrimmer, a_backlog_present_from_the_start_is_trimmed_to_the_max_level) {
  BacklogTrimmer t({.target_ns = 10 * kMs});
  QueueModel q;
  q.backlog = 600 * kMs;  // the device started late: 600 ms queued before any level
  SimRun r = simulate(t, q, 10);
  EXPECT_EQ(t.level_ns(), 60 * kMs);
  EXPECT_LE(r.end_queue_min, (60 + 5) * kMs);
  EXPECT_EQ(q.level, 8 * kMs);
}

TEST(BacklogTrimmer, the_prebuffering_window_after_reset_sets_no_level) {
  BacklogTrimmer t({.target_ns = 10 * kMs});
  // First window: the queue ramps from 0 (prebuffering); then steady at 30.
  int64_t now = 0;
  for (; now < 1'000 * kMs; now += 10 * kMs) {
    t.observe(now * 30 / 1000, now);
    EXPECT_EQ(t.due(now), 0);
  }
  for (; now < 5'000 * kMs; now += 10 * kMs) {
    t.observe(30 * kMs, now);
    EXPECT_EQ(t.due(now), 0) << "trimmed at " << now / kMs << " ms";
  }
  EXPECT_EQ(t.level_ns(), 30 * kMs);
}

// A queue that is still ramping up in the second window (a network bridge's
// lead, a device's first large requests) sets no level: with only the first
// window skipped, 10 ms became the level, the settled 20 ms looked like a
// 10 ms backlog, and the trim ran the stream dry (NetBridgeE2E, about one
// run in ten).
TEST(BacklogTrimmer, a_queue_still_settling_in_the_second_window_sets_no_level) {
  BacklogTrimmer t({.target_ns = 10 * kMs});
  int64_t now = 0;
  for (; now < 2'000 * kMs; now += 10 * kMs) {
    t.observe(now * 20 / 2000, now);  // 0 -> 20 ms over two windows
    EXPECT_EQ(t.due(now), 0);
  }
  for (; now < 8'000 * kMs; now += 10 * kMs) {
    t.observe(20 * kMs + (now / (10 * kMs)) % 2 * 5 * kMs, now);
    EXPECT_EQ(t.due(now), 0) << "trimmed at " << now / kMs << " ms";
  }
  EXPECT_EQ(t.level_ns(), 20 * kMs);
  EXPECT_EQ(t.trims(), 0u);
}

// A 1 kHz sine at 48 kHz: 48 frames per period.
std::vector<float> sine(size_t frames, size_t channels) {
  std::vector<float> v(frames * channels);
  for (size_t i = 0; i < frames; ++i) {
    for (size_t c = 0; c < channels; ++c) {
      v[i * channels + c] = 0.5f * static_cast<float>(std::sin(2 * M_PI * 1000.0 * i / 48000.0));
    }
  }
  return v;
}

TEST(SpliceDrop, dropping_whole_periods_of_a_tone_leaves_the_tone_unchanged) {
  const StreamFormat f{SampleFormat::F32LE, 48000, 2};
  auto v = sine(480 + 96 + 10, 2);
  auto want = sine(480 + 96 + 10, 2);
  auto bytes = std::as_writable_bytes(std::span(v));
  size_t n = splice_drop(bytes, f, 480, 96);
  ASSERT_EQ(n, 96 * f.frame_bytes());
  for (size_t i = 0; i < 96 * 2; ++i) {
    EXPECT_NEAR(v[i], want[i + 480 * 2], 1e-6) << i;
  }
}

TEST(SpliceDrop, an_odd_drop_makes_no_click) {
  const StreamFormat f{SampleFormat::F32LE, 48000, 1};
  const size_t drop = 500, fade = 96;  // 500 frames: not whole periods
  auto orig = sine(drop + fade + 200, 1);
  auto v = orig;
  splice_drop(std::as_writable_bytes(std::span(v)), f, drop, fade);
  // The stream as sent: what was sent before (orig[-1] ~ the frame before
  // the splice, here orig[0] as its neighbour), the fade, then orig[drop+fade..].
  std::vector<float> out;
  out.push_back(orig[0] - (orig[1] - orig[0]));  // the frame before, continued
  out.insert(out.end(), v.begin(), v.begin() + fade);
  out.insert(out.end(), orig.begin() + drop + fade, orig.end());
  // A 1 kHz sine of 0.5 moves at most 2*pi*1000/48000*0.5 = 0.065 per frame;
  // a hard cut at 500 frames would jump by up to 1.0 (0.87 here).
  float max_step = 0;
  for (size_t i = 1; i < out.size(); ++i) {
    max_step = std::max(max_step, std::fabs(out[i] - out[i - 1]));
  }
  EXPECT_LT(max_step, 0.08f);
}

TEST(SpliceDrop, s16_crossfade_stays_in_range_and_continuous) {
  const StreamFormat f{SampleFormat::S16LE, 48000, 2};
  std::vector<int16_t> v(2 * (300 + 48));
  for (size_t i = 0; i < v.size() / 2; ++i) {
    v[2 * i] = i < 300 ? 32767 : -32768;  // a full-scale step at the splice
    v[2 * i + 1] = 1000;
  }
  size_t n = splice_drop(std::as_writable_bytes(std::span(v)), f, 300, 48);
  ASSERT_EQ(n, 48 * f.frame_bytes());
  for (size_t i = 0; i < 48; ++i) {
    EXPECT_EQ(v[2 * i + 1], 1000);
    if (i > 0) {
      EXPECT_LE(v[2 * i], v[2 * (i - 1)]);  // a monotonic ramp, no wrap-around
    }
  }
  EXPECT_GT(v[0], 30000);
  EXPECT_LT(v[2 * 47], -30000);
}

TEST(SpliceDrop, too_few_frames_is_refused) {
  const StreamFormat f{SampleFormat::F32LE, 48000, 2};
  std::vector<float> v(2 * 100);
  EXPECT_EQ(splice_drop(std::as_writable_bytes(std::span(v)), f, 90, 20), 0u);
}

}  // namespace
}  // namespace qaudio::agent

// ClockFollower in simulated time: a driver sink producing at
// nominal * ratio() against a device consuming at nominal * (1 + drift), with
// ClockTicks received with jitter. The queue between them must stay bounded
// over hours (no drift build-up) in native mode (ticks) and in stock mode
// (queue-fill PI only).
#include "clock_follower.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace qaudio::agent {
namespace {

constexpr uint32_t kRate = 48000;

struct SimResult {
  double max_err_after_settle = 0;  // s
  double final_err = 0;             // s
  double device_ratio = 0;
};

// Runs `seconds` of simulated time in 10 ms steps. `ticks`: ClockTicks every
// 100 ms, received 0-3 ms late (deterministic pseudo-random jitter).
// `follow` false: a fixed-rate driver (ratio 1), the behaviour without the
// follower.
SimResult simulate(double drift, double seconds, bool ticks, bool follow = true) {
  ClockFollower f;
  const double target = 0.020;
  double queue = target;  // s of audio between the driver and the device
  uint32_t lcg = 12345;
  SimResult r;
  const int64_t step_ns = 10'000'000;
  const auto steps = static_cast<int64_t>(seconds * 100);
  for (int64_t i = 0; i <= steps; ++i) {
    const int64_t now = i * step_ns;
    if (ticks && i % 10 == 0) {
      lcg = lcg * 1103515245u + 12345u;
      int64_t jitter = static_cast<int64_t>((lcg >> 8) % 3'000'000);
      auto frames = static_cast<uint64_t>(static_cast<double>(now) * 1e-9 * kRate * (1 + drift));
      f.on_tick(frames, kRate, now + jitter);
    }
    double ratio = follow ? f.update(queue, target, now) : 1.0;
    queue += (ratio - (1 + drift)) * 0.010;
    double err = std::fabs(queue - target);
    if (now >= 60'000'000'000) {
      r.max_err_after_settle = std::max(r.max_err_after_settle, err);
    }
    r.final_err = queue - target;
  }
  r.device_ratio = f.device_ratio();
  return r;
}

TEST(ClockFollower, native_ticks_lock_to_a_device_0_3_percent_fast_and_the_queue_stays_bounded) {
  auto r = simulate(+0.003, 4 * 3600, /*ticks=*/true);
  EXPECT_NEAR(r.device_ratio, 1.003, 2e-5);
  EXPECT_LT(r.max_err_after_settle, 0.002) << "queue wandered from its target";
  EXPECT_LT(std::fabs(r.final_err), 0.0005) << "drift built up over 4 h";
}

TEST(ClockFollower, native_ticks_lock_to_a_slow_device_too) {
  auto r = simulate(-0.003, 3600, /*ticks=*/true);
  EXPECT_NEAR(r.device_ratio, 0.997, 2e-5);
  EXPECT_LT(r.max_err_after_settle, 0.002);
  EXPECT_LT(std::fabs(r.final_err), 0.0005);
}

TEST(ClockFollower, stock_queue_pi_alone_keeps_the_queue_bounded) {
  auto r = simulate(+0.003, 4 * 3600, /*ticks=*/false);
  EXPECT_DOUBLE_EQ(r.device_ratio, 1.0);  // no ticks: no feed-forward
  EXPECT_LT(r.max_err_after_settle, 0.005);
  EXPECT_LT(std::fabs(r.final_err), 0.0005);
}

TEST(ClockFollower, without_following_the_same_drift_empties_the_queue) {
  // The reference: a driver at its nominal rate loses 0.3 % x 1 h = 10.8 s.
  auto r = simulate(+0.003, 3600, /*ticks=*/true, /*follow=*/false);
  EXPECT_NEAR(r.final_err, -10.8, 0.01);
}

TEST(ClockFollower, a_restarted_frame_counter_starts_a_new_estimate) {
  ClockFollower f;
  for (int i = 0; i < 20; ++i) {
    f.on_tick(static_cast<uint64_t>(i) * 4812, kRate, i * 100'000'000LL);  // +0.25 %
  }
  ASSERT_TRUE(f.locked());
  EXPECT_NEAR(f.device_ratio(), 1.0025, 1e-6);
  f.on_tick(0, kRate, 20 * 100'000'000LL);  // a new connection's counter
  EXPECT_FALSE(f.locked());
  EXPECT_DOUBLE_EQ(f.device_ratio(), 1.0);
}

TEST(ClockFollower, an_absurd_tick_rate_is_ignored) {
  ClockFollower f;
  for (int i = 0; i < 20; ++i) {
    f.on_tick(static_cast<uint64_t>(i) * 9600, kRate, i * 100'000'000LL);  // 2x: bogus
  }
  EXPECT_DOUBLE_EQ(f.device_ratio(), 1.0);
  // The PI part stays within its clamp whatever the queue says.
  EXPECT_GE(f.update(100.0, 0.02, 0), 0.99 - 1e-12);
  EXPECT_LE(f.update(-100.0, 0.02, 1'000'000'000), 1.01 + 1e-12);
}

}  // namespace
}  // namespace qaudio::agent

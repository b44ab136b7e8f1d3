#include "gain.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace qaudio::daemon {
namespace {

TEST(Gain, HalfVolumeIsMinusSixDb) {
  EXPECT_NEAR(gain_to_db(gain_for_percent(50)), -6.02, 0.01);
}

TEST(Gain, MaximumVolumeIsPlusThreePointFiveDb) {
  EXPECT_NEAR(gain_to_db(gain_for_percent(150)), 3.52, 0.01);
}

TEST(Gain, VolumeAboveMaximumIsClamped) {
  EXPECT_FLOAT_EQ(gain_for_percent(1000), 1.5f);
  EXPECT_FLOAT_EQ(gain_for_percent(100), 1.0f);
  EXPECT_FLOAT_EQ(gain_for(100, true), 0.0f);
}

TEST(GainRamp, UnityGainLeavesSamplesBitExact) {
  GainRamp g(240, 1.0f);
  std::vector<float> buf{0.1f, -0.2f, 0.3f, 0.123456789f};
  auto copy = buf;
  g.apply(buf.data(), 2, 2);
  EXPECT_EQ(buf, copy);
}

TEST(GainRamp, MuteEndsInExactZerosAfterTheRamp) {
  GainRamp g(100, 1.0f);
  g.set_target(0.0f);
  std::vector<float> buf(2 * 300, 0.5f);
  g.apply(buf.data(), 300, 2);
  for (size_t i = 2 * 100; i < buf.size(); ++i) {
    ASSERT_EQ(buf[i], 0.0f) << i;
  }
  // and the ramp itself is smooth: steps of at most 1/100 of the signal
  for (size_t f = 1; f < 100; ++f) {
    EXPECT_LE(std::fabs(buf[2 * f] - buf[2 * (f - 1)]), 0.5f / 100 + 1e-6f);
  }
}

TEST(GainRamp, RampsLinearlyToTheNewGainWithoutAJump) {
  GainRamp g(48, 1.0f);
  g.set_target(0.5f);
  std::vector<float> buf(96, 1.0f);
  g.apply(buf.data(), 96, 1);
  EXPECT_NEAR(buf[0], 1.0f - 0.5f / 48, 1e-6);
  EXPECT_NEAR(buf[47], 0.5f, 1e-6);
  EXPECT_FLOAT_EQ(buf[95], 0.5f);
  EXPECT_FALSE(g.ramping());
  EXPECT_FLOAT_EQ(g.current(), 0.5f);
}

TEST(GainRamp, RampSpansSeveralBuffers) {
  GainRamp g(100, 0.0f);
  g.set_target(1.0f);
  std::vector<float> a(60, 1.0f), b(60, 1.0f);
  g.apply(a.data(), 60, 1);
  g.apply(b.data(), 60, 1);
  EXPECT_NEAR(a[59], 0.6f, 1e-5);
  EXPECT_NEAR(b[0], 0.61f, 1e-5);
  EXPECT_FLOAT_EQ(b[59], 1.0f);
}

TEST(MixAdd, SumsElementwise) {
  std::vector<float> acc{1, 2, 3}, src{0.5f, -2, 1};
  mix_add(acc.data(), src.data(), 3);
  EXPECT_EQ(acc, (std::vector<float>{1.5f, 0, 4}));
}

}  // namespace
}  // namespace qaudio::daemon

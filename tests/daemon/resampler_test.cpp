#include "resampler.hpp"

#include <gtest/gtest.h>
#include <malloc.h>

#include <vector>

#include "rt_check.hpp"
#include "tone.hpp"

namespace qaudio::daemon {
namespace {

std::vector<float> run(Resampler& r, const std::vector<float>& in, uint32_t ch) {
  std::vector<float> out(in.size() * 3 + 1024);
  size_t in_n = in.size() / ch, out_n = out.size() / ch;
  r.process(in.data(), &in_n, out.data(), &out_n);
  EXPECT_EQ(in_n, in.size() / ch);
  out.resize(out_n * ch);
  return out;
}

TEST(Resampler, ConvertsRateKeepingFrequencyAndLevel) {
  auto r = Resampler::create(2, 44100, 48000, 4, false);
  ASSERT_TRUE(r);
  auto out = run(**r, qaudio::test::sine(1000.0, 44100, 44100, 2, 0.5), 2);
  EXPECT_NEAR(out.size() / 2.0, 48000.0, 64);
  std::span<const float> st(out.data() + 2000, 80000);
  EXPECT_NEAR(qaudio::test::frequency(st, 2, 0, 48000), 1000.0, 0.5);
  EXPECT_NEAR(qaudio::test::tone_amplitude(st, 2, 0, 48000, 1000), 0.5, 0.01);
}

TEST(Resampler, AdjustmentIsClampedAndQuantised) {
  auto r = Resampler::create(2, 44100, 48000, 4, true);
  ASSERT_TRUE(r);
  const int32_t step = (*r)->step_ppm();
  EXPECT_GT(step, 5);
  EXPECT_LT(step, 30);
  (*r)->set_adjust_ppm(99999);
  EXPECT_LE((*r)->adjust_ppm(), Resampler::kMaxAdjustPpm);
  EXPECT_GT((*r)->adjust_ppm(), Resampler::kMaxAdjustPpm - step);
  (*r)->set_adjust_ppm(-99999);
  EXPECT_GE((*r)->adjust_ppm(), -Resampler::kMaxAdjustPpm);
  (*r)->set_adjust_ppm(1000);
  EXPECT_NEAR((*r)->adjust_ppm(), 1000, step / 2 + 1);
}

TEST(Resampler, PositiveAdjustmentConsumesInputFaster) {
  auto r = Resampler::create(1, 48000, 48000, 4, true);
  ASSERT_TRUE(r);
  (*r)->set_adjust_ppm(5000);
  auto in = qaudio::test::sine(440.0, 48000, 48000, 1, 0.5);
  auto out = run(**r, in, 1);
  // 0.5 % more input per output: ~0.5 % fewer output frames.
  EXPECT_NEAR(static_cast<double>(out.size()), 48000.0 / 1.005, 40);
}

// Same-rate and down-sampling ratios cross the points where speexdsp would
// grow its tables; after create() no ratio in range may allocate.
class ResamplerNoAlloc : public ::testing::TestWithParam<std::pair<uint32_t, uint32_t>> {};

TEST_P(ResamplerNoAlloc, SteeringAcrossTheWholeRangeDoesNotAllocate) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "mallinfo2 does not see the sanitizer's allocator";
#else
  auto [in_rate, out_rate] = GetParam();
  auto r = Resampler::create(2, in_rate, out_rate, 4, true);
  ASSERT_TRUE(r);
  std::vector<float> in(2 * 512, 0.25f), out(2 * 2048);
  size_t before = mallinfo2().uordblks;
  {
    RtScope rt;
    for (int32_t ppm = -Resampler::kMaxAdjustPpm; ppm <= Resampler::kMaxAdjustPpm; ppm += 7) {
      (*r)->set_adjust_ppm(ppm);
      size_t in_n = 512, out_n = 2048;
      (*r)->process(in.data(), &in_n, out.data(), &out_n);
    }
    for (int32_t ppm = Resampler::kMaxAdjustPpm; ppm >= -Resampler::kMaxAdjustPpm; ppm -= 775) {
      (*r)->set_adjust_ppm(ppm);
      size_t in_n = 512, out_n = 2048;
      (*r)->process(in.data(), &in_n, out.data(), &out_n);
    }
    (*r)->reset();
  }
  EXPECT_EQ(mallinfo2().uordblks, before);
#endif
}

INSTANTIATE_TEST_SUITE_P(Rates,
                         ResamplerNoAlloc,
                         ::testing::Values(std::make_pair(44100u, 48000u),
                                           std::make_pair(48000u, 48000u),
                                           std::make_pair(44100u, 44100u),
                                           std::make_pair(96000u, 48000u),
                                           std::make_pair(48000u, 44100u)));

}  // namespace
}  // namespace qaudio::daemon

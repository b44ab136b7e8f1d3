// PcmConverter: the conversions the agent does for the stock protocol.
#include "pcm_convert.hpp"

#include <gtest/gtest.h>

#include "agent_tone.hpp"

namespace qaudio::agent {
namespace {

using test::make_tone;
using test::to_float;

std::vector<std::byte> convert_all(PcmConverter& c, const std::vector<std::byte>& in) {
  std::vector<std::byte> out;
  std::vector<std::byte> buf(c.max_out_bytes(in.size()) + 64);
  std::span<const std::byte> rest(in);
  while (rest.size() >= c.in_format().frame_bytes()) {
    auto d = c.process(rest, buf);
    if (d.in_bytes == 0) {
      ADD_FAILURE() << "converter took no input";
      break;
    }
    rest = rest.subspan(d.in_bytes);
    out.insert(out.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(d.out_bytes));
  }
  return out;
}

TEST(PcmConvert, f32_48k_tone_becomes_s16_44k1_with_same_level_and_frequency) {
  const StreamFormat in{SampleFormat::F32LE, 48000, 2};
  auto c = PcmConverter::create(in, kStockFormat, 1024);
  ASSERT_TRUE(c) << c.error().message;
  auto out = convert_all(**c, make_tone(in, 1000.0, 0.5, 48000));
  // One second in, one second out (minus the filter's delay).
  size_t frames = out.size() / kStockFormat.frame_bytes();
  EXPECT_NEAR(static_cast<double>(frames), 44100.0, 100.0);
  auto f = to_float(out, kStockFormat);
  for (size_t ch = 0; ch < 2; ++ch) {
    EXPECT_NEAR(test::tone_peak(f, 2, ch, 44100, 1000.0, 2205, 44100 / 2), 0.5, 0.005);
    EXPECT_NEAR(test::zero_cross_freq(f, 2, ch, 44100, 2205), 1000.0, 1.0);
  }
}

TEST(PcmConvert, s16_44k1_mic_becomes_f32_48k_mono_average) {
  const StreamFormat out{SampleFormat::F32LE, 48000, 1};
  auto c = PcmConverter::create(kStockFormat, out, 512);
  ASSERT_TRUE(c);
  auto res = convert_all(**c, make_tone(kStockFormat, 440.0, 0.25, 44100));
  auto f = to_float(res, out);
  EXPECT_NEAR(test::tone_peak(f, 1, 0, 48000, 440.0, 4800, 24000), 0.25, 0.003);
  EXPECT_NEAR(test::zero_cross_freq(f, 1, 0, 48000, 4800), 440.0, 0.5);
}

TEST(PcmConvert, same_rate_s16_to_f32_is_exact_and_mono_is_duplicated) {
  const StreamFormat in{SampleFormat::S16LE, 48000, 1};
  const StreamFormat out{SampleFormat::F32LE, 48000, 2};
  auto c = PcmConverter::create(in, out, 64);
  ASSERT_TRUE(c);
  EXPECT_FALSE((*c)->resamples());
  std::vector<int16_t> s{0, 16384, -32768, 32767};
  std::vector<std::byte> bytes(s.size() * 2);
  std::memcpy(bytes.data(), s.data(), bytes.size());
  auto res = to_float(convert_all(**c, bytes), out);
  ASSERT_EQ(res.size(), 8u);
  EXPECT_EQ(res[0], 0.0f);
  EXPECT_EQ(res[2], 0.5f);
  EXPECT_EQ(res[3], 0.5f);
  EXPECT_EQ(res[4], -1.0f);
  EXPECT_FLOAT_EQ(res[7], 32767.0f / 32768.0f);
}

TEST(PcmConvert, nan_and_out_of_range_floats_are_clamped) {
  const StreamFormat in{SampleFormat::F32LE, 44100, 2};
  auto c = PcmConverter::create(in, kStockFormat, 64);
  ASSERT_TRUE(c);
  std::vector<float> s{NAN, 2.0f, -3.0f, INFINITY};
  std::vector<std::byte> bytes(s.size() * 4);
  std::memcpy(bytes.data(), s.data(), bytes.size());
  auto out = convert_all(**c, bytes);
  std::vector<int16_t> v(4);
  std::memcpy(v.data(), out.data(), 8);
  EXPECT_EQ(v, (std::vector<int16_t>{0, 32767, -32767, 0}));
}

TEST(PcmConvert, output_room_limits_input_taken) {
  const StreamFormat in{SampleFormat::S16LE, 44100, 2};
  auto c = PcmConverter::create(in, in, 1024);
  ASSERT_TRUE(c);
  std::vector<std::byte> src(400), dst(40);
  auto d = (*c)->process(src, dst);
  EXPECT_EQ(d.in_bytes, 40u);
  EXPECT_EQ(d.out_bytes, 40u);
}

TEST(PcmConvert, rejects_invalid_formats) {
  EXPECT_FALSE(PcmConverter::create({SampleFormat::S16LE, 22050, 2}, kStockFormat));
  EXPECT_FALSE(PcmConverter::create(kStockFormat, {SampleFormat::S16LE, 44100, 0}));
}

}  // namespace
}  // namespace qaudio::agent

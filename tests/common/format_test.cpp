#include "qaudio/format.hpp"

#include <gtest/gtest.h>

namespace qaudio {

TEST(Format, StockFormatIsFourBytesPerFrame) {
  EXPECT_TRUE(kStockFormat.valid());
  EXPECT_EQ(kStockFormat.frame_bytes(), 4u);
  EXPECT_EQ(kStockFormat.bytes_for_ms(10), 441u * 4u);
}

TEST(Format, RejectsRatesAndChannelCountsOutsideTheClosedList) {
  EXPECT_FALSE((StreamFormat{SampleFormat::S16LE, 22050, 2}.valid()));
  EXPECT_FALSE((StreamFormat{SampleFormat::S16LE, 48000, 0}.valid()));
  EXPECT_FALSE((StreamFormat{SampleFormat::S16LE, 48000, 9}.valid()));
  EXPECT_FALSE((StreamFormat{static_cast<SampleFormat>(7), 48000, 2}.valid()));
  EXPECT_TRUE((StreamFormat{SampleFormat::F32LE, 96000, 8}.valid()));
}

TEST(Format, NamesRoundTrip) {
  for (auto f : {SampleFormat::S16LE, SampleFormat::S32LE, SampleFormat::F32LE}) {
    EXPECT_EQ(sample_format_from_string(to_string(f)), f);
  }
  EXPECT_FALSE(sample_format_from_string("u8").has_value());
}

}  // namespace qaudio

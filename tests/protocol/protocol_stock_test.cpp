// Stock Qubes control words on port 4714: classification, reassembly from
// any split, unknown words, and the hello words stock daemons ignore.
#include <gtest/gtest.h>

#include "qaudio/protocol.hpp"

namespace qaudio::protocol {
namespace {

std::vector<std::byte> words(std::initializer_list<uint32_t> ws) {
  std::vector<std::byte> out;
  for (uint32_t w : ws) {
    auto b = word_bytes(w);
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

std::vector<uint32_t> decode(std::span<const std::byte> in, std::vector<size_t> splits) {
  StockControlDecoder d;
  std::vector<uint32_t> out;
  size_t pos = 0;
  size_t i = 0;
  while (pos < in.size()) {
    size_t n = std::min(splits[i++ % splits.size()], in.size() - pos);
    std::span<const std::byte> chunk = in.subspan(pos, n);
    while (auto w = d.next(chunk)) {
      out.push_back(*w);
    }
    EXPECT_TRUE(chunk.empty());
    EXPECT_LT(d.pending(), 4u);
    pos += n;
  }
  return out;
}

TEST(ProtocolStock, ClassifiesTheFourWordsTheIgnoredWordAndUnknowns) {
  EXPECT_EQ(classify(0x00010001), ControlKind::MicStart);
  EXPECT_EQ(classify(0x00010000), ControlKind::MicStop);
  EXPECT_EQ(classify(0x00020000), ControlKind::Cork);
  EXPECT_EQ(classify(0x00020001), ControlKind::Uncork);
  EXPECT_EQ(classify(0x00010004), ControlKind::Ignored);
  EXPECT_EQ(classify(0x00010002), ControlKind::Unknown);
  EXPECT_EQ(classify(0xffffffff), ControlKind::Unknown);
  EXPECT_EQ(classify(0), ControlKind::Unknown);
  EXPECT_EQ(classify(kHelloMagic), ControlKind::NativeHello);
  EXPECT_EQ(to_string(ControlKind::Cork), "cork");
}

TEST(ProtocolStock, WordsAreLittleEndianOnTheWire) {
  auto b = word_bytes(StockWord::MicStart);
  EXPECT_EQ(b, (std::array<std::byte, 4>{std::byte{1}, std::byte{0}, std::byte{1}, std::byte{0}}));
}

TEST(ProtocolStock, ReassemblesWordsFromAnySplit) {
  // The 12-byte initial message of three words some stock agents send, then more.
  auto in = words({0x00010004, 0x00020001, 0x00010000, 0x00010001, 0xdeadbeef, 0x00020000});
  std::vector<uint32_t> expect{0x00010004, 0x00020001, 0x00010000,
                               0x00010001, 0xdeadbeef, 0x00020000};
  for (auto splits : std::vector<std::vector<size_t>>{
           {1}, {2}, {3}, {5}, {7}, {12}, {24}, {1, 2, 3}, {3, 1}, {11, 13}}) {
    EXPECT_EQ(decode(in, splits), expect);
  }
}

TEST(ProtocolStock, KeepsAtMostThreeBytesOfAPartialWord) {
  StockControlDecoder d;
  auto in = words({0x00020000});
  std::span<const std::byte> part = std::span(in).first(3);
  EXPECT_FALSE(d.next(part));
  EXPECT_EQ(d.pending(), 3u);
  std::span<const std::byte> rest = std::span(in).subspan(3);
  EXPECT_EQ(d.next(rest), 0x00020000u);
  EXPECT_EQ(d.pending(), 0u);
  std::span<const std::byte> empty;
  EXPECT_FALSE(d.next(empty));
}

TEST(ProtocolStock, HelloWordsAreMagicThenVersions) {
  auto h = encode_hello({1, 3});
  EXPECT_EQ(
      h, (std::array<std::byte, 8>{std::byte{'Q'}, std::byte{'A'}, std::byte{'U'}, std::byte{'D'},
                                   std::byte{3}, std::byte{1}, std::byte{0}, std::byte{0}}));
  // A stock daemon sees two words it does not know: both ignored.
  StockControlDecoder d;
  std::span<const std::byte> in(h);
  auto w0 = d.next(in);
  auto w1 = d.next(in);
  ASSERT_TRUE(w0 && w1);
  EXPECT_EQ(classify(*w0), ControlKind::NativeHello);
  EXPECT_EQ(classify(*w1), ControlKind::Unknown);
}

TEST(ProtocolStock, VersionWordIsValidatedStrictly) {
  EXPECT_EQ(parse_version_word(0x0101), (HelloWords{1, 1}));
  EXPECT_EQ(parse_version_word(0x0105), (HelloWords{1, 5}));
  EXPECT_FALSE(parse_version_word(0x0201));      // min > max
  EXPECT_FALSE(parse_version_word(0x0001));      // min 0
  EXPECT_FALSE(parse_version_word(0x00010101));  // upper bits set
  EXPECT_FALSE(parse_version_word(0x00010001));  // a stock word is never a version word
}

}  // namespace
}  // namespace qaudio::protocol

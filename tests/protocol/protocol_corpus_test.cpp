// The committed fuzz seed corpora (common/protocol/fuzz/*_corpus) are generated
// here from the encoder, so they follow the protocol. This test fails when a
// seed is missing or stale; regenerate with
//   QAUDIO_WRITE_CORPUS=1 build/tests/protocol/protocol_corpus_test
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "qaudio/negotiation.hpp"
#include "sample_messages.hpp"

namespace qaudio::protocol {
namespace {

using testing::frame_of;
using testing::raw_frame;
using testing::sample_messages;
using Seeds = std::map<std::string, std::vector<std::byte>>;

std::vector<std::byte> cat(std::initializer_list<std::vector<std::byte>> parts) {
  std::vector<std::byte> out;
  for (const auto& p : parts) {
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

std::vector<std::byte> seed_byte(uint8_t b) {
  return {std::byte(b)};
}

// Decoder corpus: first byte = chunking seed, then frames.
Seeds decoder_seeds() {
  Seeds s;
  std::vector<std::byte> all;
  for (const Message& m : sample_messages()) {
    auto f = frame_of(m);
    s["one_" + std::string(to_string(type_of(m)))] = cat({seed_byte(3), f});
    all.insert(all.end(), f.begin(), f.end());
  }
  s["all_chunked_0"] = cat({seed_byte(0), all});
  s["all_chunked_7"] = cat({seed_byte(7), all});
  s["all_chunked_255"] = cat({seed_byte(255), all});
  s["unknown_then_valid"] =
      cat({seed_byte(1), raw_frame(1, 0, 0x7777, 3, {1, 2, 3}), frame_of(Heartbeat{9})});
  s["unknown_max_length"] =
      cat({seed_byte(2), raw_frame(1, 0, 0x0fff, kMaxPayload, std::vector<uint8_t>(kMaxPayload, 7)),
           frame_of(Cork{})});
  std::vector<std::byte> pcm(kMaxMicData, std::byte{0x11});
  s["mic_data_max"] = cat({seed_byte(4), frame_of(MicData{pcm}), frame_of(MicStop{})});
  s["length_over_max"] = cat({seed_byte(5), raw_frame(1, 0, 0x0060, kMaxPayload + 1)});
  auto latency = frame_of(Latency{5, 6});
  latency.resize(latency.size() - 3);
  s["truncated_frame"] = cat({seed_byte(6), latency});
  s["bad_version"] = cat({seed_byte(8), raw_frame(2, 0, 0x0070, 4, {0, 0, 0, 0})});
  s["stock_word_in_native"] = cat({seed_byte(9), raw_frame(1, 0, 0x0001, 0)});
  s["bad_volume"] = cat({seed_byte(10), raw_frame(1, 0, 0x0050, 4, {0xdd, 0x05, 0, 0})});
  return s;
}

// Stock-control corpus: what a daemon reads on 4714.
Seeds stock_seeds() {
  auto words = [](std::initializer_list<uint32_t> ws) {
    std::vector<std::byte> out;
    for (uint32_t w : ws) {
      auto b = word_bytes(w);
      out.insert(out.end(), b.begin(), b.end());
    }
    return out;
  };
  auto hello = encode_hello({});
  std::vector<std::byte> hello_v(hello.begin(), hello.end());
  Seeds s;
  s["stock_initial_three_words"] = words({0x00010004, 0x00020001, 0x00010000});
  s["stock_all_words"] =
      words({0x00010001, 0x00010000, 0x00020000, 0x00020001, 0x00010004, 0xdeadbeef, 0});
  s["native_session"] =
      cat({hello_v, frame_of(Hello{}), frame_of(PlaybackFormat{{SampleFormat::S16LE, 48000, 2}}),
           frame_of(MicStart{}), frame_of(Heartbeat{1}), frame_of(Cork{})});
  s["native_then_stock_fallback"] = cat({hello_v, words({0x00010001, 0x00020000})});
  s["hello_bad_version_word"] = cat({words({kHelloMagic, 0x0201}), words({0x00010001})});
  s["native_first_frame_not_hello"] = cat({hello_v, frame_of(Uncork{})});
  return s;
}

void sync(const std::string& corpus, const Seeds& seeds) {
  std::filesystem::path dir = std::filesystem::path(QAUDIO_PROTOCOL_FUZZ_DIR) / corpus;
  bool write = std::getenv("QAUDIO_WRITE_CORPUS") != nullptr;
  for (const auto& [name, bytes] : seeds) {
    auto path = dir / name;
    if (write) {
      std::filesystem::create_directories(dir);
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(bytes.data()),
                static_cast<std::streamsize>(bytes.size()));
      continue;
    }
    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(in) << "missing seed " << path << " (regenerate: QAUDIO_WRITE_CORPUS=1)";
    std::vector<char> got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_EQ(got.size(), bytes.size()) << "stale seed " << path;
    EXPECT_EQ(std::memcmp(got.data(), bytes.data(), bytes.size()), 0) << "stale seed " << path;
  }
}

TEST(ProtocolCorpus, DecoderSeedsAreCommittedAndCurrent) {
  sync("decoder_corpus", decoder_seeds());
}

TEST(ProtocolCorpus, StockControlSeedsAreCommittedAndCurrent) {
  sync("stock_control_corpus", stock_seeds());
}

}  // namespace
}  // namespace qaudio::protocol

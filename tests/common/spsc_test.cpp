#include "qaudio/spsc.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace qaudio {

TEST(SpscQueue, FifoOrderAndFullRefusal) {
  SpscQueue<int> q(4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(q.push(i));
  }
  EXPECT_FALSE(q.push(99));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(q.pop(), i);
  }
  EXPECT_FALSE(q.pop().has_value());
}

TEST(SpscByteRing, WrapsAroundPreservingBytes) {
  SpscByteRing r(8);
  std::vector<std::byte> out(8);
  for (int round = 0; round < 10; ++round) {
    std::byte in[5];
    for (int i = 0; i < 5; ++i) {
      in[i] = std::byte(round * 5 + i);
    }
    ASSERT_EQ(r.write(in), 5u);
    ASSERT_EQ(r.read(std::span(out).first(5)), 5u);
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(out[i], std::byte(round * 5 + i));
    }
  }
  std::byte big[20]{};
  EXPECT_EQ(r.write(big), 8u);
  EXPECT_EQ(r.writable(), 0u);
  EXPECT_EQ(r.skip(3), 3u);
  EXPECT_EQ(r.readable(), 5u);
}

TEST(SpscByteRing, ConcurrentProducerConsumerSeeEveryByteInOrder) {
  SpscByteRing r(256);
  constexpr size_t kTotal = 1 << 20;
  std::thread producer([&] {
    size_t sent = 0;
    std::byte chunk[61];
    while (sent < kTotal) {
      size_t n = std::min(sizeof chunk, kTotal - sent);
      for (size_t i = 0; i < n; ++i) {
        chunk[i] = std::byte((sent + i) & 0xff);
      }
      size_t w = 0;
      while (w < n) {
        w += r.write(std::span<const std::byte>(chunk + w, n - w));
      }
      sent += n;
    }
  });
  size_t got = 0;
  bool ok = true;
  std::byte buf[97];
  while (got < kTotal) {
    size_t n = r.read(buf);
    for (size_t i = 0; i < n; ++i) {
      ok &= buf[i] == std::byte((got + i) & 0xff);
    }
    got += n;
  }
  producer.join();
  EXPECT_TRUE(ok);
}

}  // namespace qaudio

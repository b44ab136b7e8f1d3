// The shm layout, the grant's Hello validation, and the ShmRing index logic
// without sockets: exact bytes across wrap-around, full/empty, hostile
// indices, wake-up requests, and a two-thread stream (for TSan).
#include "shm_ring.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <thread>
#include <vector>

namespace qaudio::shm {
namespace {

std::span<const std::byte> bytes_of(const Hello& h) {
  return {reinterpret_cast<const std::byte*>(&h), sizeof(h)};
}

TEST(ShmLayout, RoundsSizesUpToPowersOfTwoWithAMinimum) {
  auto l = make_layout({3000, 10});
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ(l->ring_size[kServerToClient], 4096u);
  EXPECT_EQ(l->ring_size[kClientToServer], 1024u);
  EXPECT_EQ(l->ring_offset[kServerToClient], kHeaderSize);
  EXPECT_EQ(l->ring_offset[kClientToServer], kHeaderSize + 4096);
  EXPECT_EQ(l->total_size, kHeaderSize + 4096u + 1024u);
}

TEST(ShmLayout, RefusesRingsAboveTheMaximum) {
  auto l = make_layout({kMaxRing + 1, 1024});
  ASSERT_FALSE(l);
  EXPECT_NE(l.error().message.find("maximum"), std::string::npos);
}

TEST(ShmHello, ValidHelloRoundTrips) {
  auto l = make_layout({8192, 2048});
  ASSERT_TRUE(l);
  auto v = validate_hello(bytes_of(make_hello(*l)), l->total_size);
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(v->ring_size[0], 8192u);
  EXPECT_EQ(v->ring_size[1], 2048u);
  EXPECT_EQ(v->ring_offset[1], l->ring_offset[1]);
}

struct BadHello {
  const char* what;
  void (*mutate)(Hello&, uint64_t& file_size);
  const char* expect;
};

TEST(ShmHello, EveryMalformedFieldIsRefusedWithAReason) {
  const BadHello cases[] = {
      {"magic", [](Hello& h, uint64_t&) { h.magic = 0; }, "magic"},
      {"version", [](Hello& h, uint64_t&) { h.version = 2; }, "version"},
      {"hello size", [](Hello& h, uint64_t&) { h.hello_size = 12; }, "version"},
      {"header too small", [](Hello& h, uint64_t&) { h.header_size = 64; }, "header size"},
      {"header huge", [](Hello& h, uint64_t&) { h.header_size = 1u << 30; }, "header size"},
      {"size not pow2", [](Hello& h, uint64_t&) { h.ring_size[0] = 3000; }, "power of two"},
      {"size too small", [](Hello& h, uint64_t&) { h.ring_size[1] = 512; }, "power of two"},
      {"size too big", [](Hello& h, uint64_t&) { h.ring_size[0] = 1u << 31; }, "power of two"},
      {"ring in header", [](Hello& h, uint64_t&) { h.ring_offset[0] = 64; }, "outside"},
      {"ring unaligned", [](Hello& h, uint64_t&) { h.ring_offset[0] += 1; }, "outside"},
      {"ring past end", [](Hello& h, uint64_t&) { h.ring_offset[1] = 0xFFFFFC00u; }, "outside"},
      {"overlap", [](Hello& h, uint64_t&) { h.ring_offset[1] = h.ring_offset[0]; }, "overlap"},
      {"truncated memfd", [](Hello&, uint64_t& fs) { fs -= 1; }, "memfd has"},
      {"total lies",
       [](Hello& h, uint64_t& fs) {
         h.total_size = 1ull << 40;
         fs = 4096;
       },
       "memfd has"},
  };
  auto l = make_layout({4096, 4096});
  ASSERT_TRUE(l);
  for (const auto& c : cases) {
    Hello h = make_hello(*l);
    uint64_t file_size = l->total_size;
    c.mutate(h, file_size);
    auto v = validate_hello(bytes_of(h), file_size);
    ASSERT_FALSE(v) << c.what << " accepted";
    EXPECT_NE(v.error().message.find(c.expect), std::string::npos)
        << c.what << ": " << v.error().message;
  }
  Hello h = make_hello(*l);
  EXPECT_FALSE(validate_hello(bytes_of(h).first(sizeof(Hello) - 1), l->total_size));
}

// A header plus one ring's data, allocated apart (as in the memfd, and so
// that ASan would see any access outside the data).
struct Fixture {
  explicit Fixture(uint32_t size, uint32_t start = 0) : data(size) {
    hdr = std::make_unique<Header>();
    hdr->ring[0].prod.store(start);
    hdr->ring[0].cons.store(start);
    reader = ShmRing(&hdr->ring[0], data.data(), size, ShmRing::Role::Reader);
    writer = ShmRing(&hdr->ring[0], data.data(), size, ShmRing::Role::Writer);
  }
  std::unique_ptr<Header> hdr;
  std::vector<std::byte> data;
  ShmRing reader, writer;
};

std::vector<std::byte> seq(size_t n, int base) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) {
    v[i] = std::byte(base + i * 7);
  }
  return v;
}

TEST(ShmRing, WrapsAroundPreservingBytesAcrossTheUint32Boundary) {
  Fixture f(1024, 0xFFFFFE00u);
  for (int round = 0; round < 20; ++round) {
    auto in = seq(700, round);
    ASSERT_EQ(f.writer.write(in), 700u);
    EXPECT_EQ(f.reader.readable(), 700u);
    std::vector<std::byte> out(700);
    ASSERT_EQ(f.reader.read(out), 700u);
    EXPECT_EQ(out, in) << "round " << round;
  }
  EXPECT_FALSE(f.reader.corrupt());
  EXPECT_FALSE(f.writer.corrupt());
}

TEST(ShmRing, FullRingRefusesMoreAndEmptyRingGivesNothing) {
  Fixture f(1024);
  auto in = seq(1500, 1);
  EXPECT_EQ(f.writer.write(in), 1024u);
  EXPECT_EQ(f.writer.writable(), 0u);
  EXPECT_EQ(f.writer.write(in), 0u);
  std::vector<std::byte> out(2000);
  EXPECT_EQ(f.reader.read(out), 1024u);
  EXPECT_EQ(f.reader.read(out), 0u);
  EXPECT_EQ(f.writer.writable(), 1024u);
}

TEST(ShmRing, ProducerIndexBeyondTheRingMakesTheReaderFailClosed) {
  Fixture f(1024);
  f.hdr->ring[0].prod.store(1025);  // a hostile writer claims more than fits
  std::vector<std::byte> out(4096);
  EXPECT_EQ(f.reader.read(out), 0u);
  EXPECT_TRUE(f.reader.corrupt());
  f.hdr->ring[0].prod.store(10);  // even once it looks sane again
  EXPECT_EQ(f.reader.readable(), 0u);
  EXPECT_EQ(f.reader.read(out), 0u);
}

TEST(ShmRing, ConsumerIndexAheadOfTheWriterMakesTheWriterFailClosed) {
  Fixture f(1024);
  ASSERT_EQ(f.writer.write(seq(10, 0)), 10u);
  f.hdr->ring[0].cons.store(11);  // a hostile reader consumed what was never written
  EXPECT_EQ(f.writer.writable(), 0u);
  EXPECT_TRUE(f.writer.corrupt());
  EXPECT_EQ(f.writer.write(seq(10, 0)), 0u);
}

TEST(ShmRing, HostileIndicesWithinRangeOnlyYieldGarbageInBounds) {
  Fixture f(1024);
  f.hdr->ring[0].prod.store(1000);  // a writer that "wrote" 1000 bytes it never wrote
  std::vector<std::byte> out(1000);
  EXPECT_EQ(f.reader.read(out), 1000u);
  EXPECT_FALSE(f.reader.corrupt());
}

TEST(ShmRing, WakeUpRequestsAreConsumedOnce) {
  Fixture f(1024);
  EXPECT_FALSE(f.writer.take_data_signal_request());
  EXPECT_EQ(f.reader.want_data_signal(), 0u);  // empty: safe to sleep
  ASSERT_EQ(f.writer.write(seq(4, 0)), 4u);
  EXPECT_TRUE(f.writer.take_data_signal_request());
  EXPECT_FALSE(f.writer.take_data_signal_request());

  ASSERT_EQ(f.writer.write(seq(1020, 0)), 1020u);
  EXPECT_EQ(f.writer.want_space_signal(), 0u);  // full: safe to sleep
  std::vector<std::byte> out(1024);
  // A waiting writer is woken once the ring is down to half, not per read.
  ASSERT_EQ(f.reader.read(std::span(out).first(500)), 500u);
  EXPECT_FALSE(f.reader.take_space_signal_request());
  ASSERT_EQ(f.reader.read(std::span(out).first(12)), 12u);
  EXPECT_TRUE(f.reader.take_space_signal_request());
  EXPECT_FALSE(f.reader.take_space_signal_request());
}

TEST(ShmRing, DefaultConstructedRingRefusesEverything) {
  ShmRing r;
  std::vector<std::byte> buf(8);
  EXPECT_EQ(r.read(buf), 0u);
  EXPECT_EQ(r.write(buf), 0u);
  EXPECT_TRUE(r.corrupt());
}

TEST(ShmRing, TwoThreadsStreamExactBytes) {
  Fixture f(1024);
  const size_t total = 1 << 20;
  std::thread writer([&] {
    size_t sent = 0;
    std::vector<std::byte> chunk(300);
    while (sent < total) {
      size_t n = std::min(chunk.size(), total - sent);
      for (size_t i = 0; i < n; ++i) {
        chunk[i] = std::byte((sent + i) * 31);
      }
      size_t done = 0;
      while (done < n) {
        done += f.writer.write(std::span(chunk).subspan(done, n - done));
        if (done < n) {
          std::this_thread::yield();
        }
      }
      sent += n;
    }
  });
  size_t got = 0;
  bool same = true;
  std::vector<std::byte> out(333);
  while (got < total) {
    size_t n = f.reader.read(out);
    for (size_t i = 0; i < n; ++i) {
      same = same && out[i] == std::byte((got + i) * 31);
    }
    got += n;
    if (n == 0) {
      std::this_thread::yield();
    }
  }
  writer.join();
  EXPECT_TRUE(same);
  EXPECT_FALSE(f.reader.corrupt());
}

}  // namespace
}  // namespace qaudio::shm

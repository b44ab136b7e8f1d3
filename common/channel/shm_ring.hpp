// The shared-memory layout of the `shm` channel and the ring logic over it,
// kept free of sockets so that tests and the fuzzer can drive it directly.
//
// One memfd per channel, created and sealed (no shrink/grow) by the server:
//   [0, header_size)               Header: per-ring indices and wake-up flags,
//                                  each on its own cache line
//   [ring_offset[0], +ring_size[0]) data, server -> client
//   [ring_offset[1], +ring_size[1]) data, client -> server
// The server grants it with a Hello (magic, version, sizes, offsets) and three
// fds over a Unix socket: memfd, the server's wake eventfd, the client's.
//
// Hostile-peer rules: each side keeps its OWN index (the writer's prod, the
// reader's cons) and its own copy of the ring size from the validated layout;
// nothing is re-read from shared memory except the peer's index, which is
// checked on every read (0 <= prod - cons <= size) — out of range makes the
// ring corrupt() for good, so the channel closes; it never leads to an access
// outside [data, data + size).
//
//   ShmRing tx(&hdr->ring[0], data0, 4096, ShmRing::Role::Writer);
//   size_t n = tx.write(bytes);
//   if (tx.take_data_signal_request()) { /* write the reader's eventfd */ }
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "qaudio/channel.hpp"
#include "qaudio/result.hpp"

namespace qaudio::shm {

inline constexpr uint32_t kMagic = 0x314d5351;  // "QSM1" little-endian
inline constexpr uint16_t kVersion = 1;
inline constexpr uint32_t kMinRing = 1024;
inline constexpr uint32_t kMaxRing = 16u << 20;
inline constexpr uint32_t kHeaderSize = 4096;  // bytes reserved for Header (one page)
inline constexpr uint32_t kMaxHeaderSize = 64u << 10;
inline constexpr int kServerToClient = 0;
inline constexpr int kClientToServer = 1;

// Indices are free-running uint32 byte counters; the ring position is
// index & (size - 1).
struct RingControl {
  alignas(64) std::atomic<uint32_t> prod;            // written by the ring's writer only
  alignas(64) std::atomic<uint32_t> cons;            // written by the ring's reader only
  alignas(64) std::atomic<uint32_t> reader_waiting;  // reader: "signal me on new data"
  alignas(64) std::atomic<uint32_t> writer_waiting;  // writer: "signal me when space frees"
};

struct Header {
  uint32_t magic;    // informational (the Hello is authoritative)
  uint32_t version;  // informational
  alignas(64) RingControl ring[2];
};

static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<uint32_t>) == 4 && alignof(std::atomic<uint32_t>) == 4);
static_assert(std::is_standard_layout_v<RingControl> && std::is_standard_layout_v<Header>);
static_assert(offsetof(RingControl, prod) == 0 && offsetof(RingControl, cons) == 64);
static_assert(offsetof(RingControl, reader_waiting) == 128);
static_assert(offsetof(RingControl, writer_waiting) == 192);
static_assert(sizeof(RingControl) == 256 && alignof(RingControl) == 64);
static_assert(offsetof(Header, ring) == 64 && sizeof(Header) == 576 && alignof(Header) == 64);
static_assert(sizeof(Header) <= kHeaderSize);

// The grant message, little-endian, sent once with SCM_RIGHTS.
struct Hello {
  uint32_t magic;
  uint16_t version;
  uint16_t hello_size;  // sizeof(Hello)
  uint32_t header_size;
  uint32_t ring_offset[2];
  uint32_t ring_size[2];
  uint32_t reserved;    // 0
  uint64_t total_size;  // bytes of the memfd the layout covers
};
static_assert(std::is_standard_layout_v<Hello> && sizeof(Hello) == 40);
static_assert(offsetof(Hello, total_size) == 32);

// A validated layout: the only sizes and offsets either side ever uses.
struct Layout {
  uint32_t header_size = kHeaderSize;
  uint32_t ring_offset[2] = {};
  uint32_t ring_size[2] = {};
  uint64_t total_size = 0;
};

// The server's layout for the requested sizes (each rounded up to a power of
// two, at least kMinRing); an error above kMaxRing.
Result<Layout> make_layout(const RingSizes& sizes);
Hello make_hello(const Layout& layout);
// Checks a received hello against the memfd's real size (fstat): magic,
// version, sizes (powers of two in [kMinRing, kMaxRing]), offsets (aligned,
// after the header, inside total_size, not overlapping), total_size <=
// file_size. Every failure says what was wrong.
Result<Layout> validate_hello(std::span<const std::byte> msg, uint64_t file_size);

class ShmRing {
 public:
  enum class Role { Reader, Writer };

  ShmRing() = default;
  // `data` must hold exactly `size` bytes; `size` is a power of two taken
  // from a validated Layout (never from shared memory). The local index
  // starts from the one in shared memory.
  ShmRing(RingControl* ctl, std::byte* data, uint32_t size, Role role);

  // Reader side.
  size_t readable();
  size_t read(std::span<std::byte> out);
  // Asks the writer to signal on its next write; returns readable() checked
  // after asking (0 means sleeping is safe: the next write will signal).
  size_t want_data_signal();
  // After read(): true when the writer asked for a signal and the ring is at
  // most half full (flag consumed).
  bool take_space_signal_request();

  // Writer side.
  size_t writable();
  size_t write(std::span<const std::byte> in);
  size_t want_space_signal();
  bool take_data_signal_request();

  // The peer's index was out of range once: every call returns 0 from then on.
  bool corrupt() const { return corrupt_; }
  uint32_t size() const { return size_; }

 private:
  // prod - cons when it is within [0, size]; otherwise marks the ring corrupt.
  size_t filled(uint32_t prod, uint32_t cons);

  RingControl* ctl_ = nullptr;
  std::byte* data_ = nullptr;
  uint32_t size_ = 0;
  uint32_t mask_ = 0;
  uint32_t local_ = 0;  // our own index: prod for a writer, cons for a reader
  Role role_ = Role::Reader;
  bool corrupt_ = true;  // a default-constructed ring refuses everything
};

}  // namespace qaudio::shm

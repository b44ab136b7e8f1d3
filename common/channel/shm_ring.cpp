// Implementation of shm_ring.hpp: layout, hello validation, ring indices.
#include "shm_ring.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <string>

namespace qaudio::shm {

Result<Layout> make_layout(const RingSizes& sizes) {
  const size_t want[2] = {sizes.server_to_client, sizes.client_to_server};
  Layout l;
  l.header_size = kHeaderSize;
  uint64_t off = kHeaderSize;
  for (int i = 0; i < 2; ++i) {
    if (want[i] > kMaxRing) {
      return fail("shm ring of " + std::to_string(want[i]) + " bytes requested; the maximum is " +
                      std::to_string(kMaxRing),
                  EINVAL);
    }
    l.ring_size[i] = std::bit_ceil(std::max<uint32_t>(static_cast<uint32_t>(want[i]), kMinRing));
    l.ring_offset[i] = static_cast<uint32_t>(off);
    off += l.ring_size[i];
  }
  l.total_size = off;
  return l;
}

Hello make_hello(const Layout& l) {
  Hello h{};
  h.magic = kMagic;
  h.version = kVersion;
  h.hello_size = sizeof(Hello);
  h.header_size = l.header_size;
  for (int i = 0; i < 2; ++i) {
    h.ring_offset[i] = l.ring_offset[i];
    h.ring_size[i] = l.ring_size[i];
  }
  h.total_size = l.total_size;
  return h;
}

Result<Layout> validate_hello(std::span<const std::byte> msg, uint64_t file_size) {
  auto bad = [](const std::string& why) { return fail("shm grant refused: " + why, EPROTO); };
  if (msg.size() != sizeof(Hello)) {
    return bad("hello is " + std::to_string(msg.size()) + " bytes, expected " +
               std::to_string(sizeof(Hello)));
  }
  Hello h;
  std::memcpy(&h, msg.data(), sizeof(h));
  if (h.magic != kMagic) {
    return bad("bad magic (not a qaudio shm server?)");
  }
  if (h.version != kVersion || h.hello_size != sizeof(Hello)) {
    return bad("unsupported version " + std::to_string(h.version) + " (this side speaks " +
               std::to_string(kVersion) + ")");
  }
  if (h.header_size < sizeof(Header) || h.header_size > kMaxHeaderSize || h.header_size % 64) {
    return bad("header size " + std::to_string(h.header_size) + " out of range");
  }
  Layout l;
  l.header_size = h.header_size;
  l.total_size = h.total_size;
  for (int i = 0; i < 2; ++i) {
    uint32_t size = h.ring_size[i];
    uint32_t off = h.ring_offset[i];
    if (size < kMinRing || size > kMaxRing || !std::has_single_bit(size)) {
      return bad("ring " + std::to_string(i) + " size " + std::to_string(size) +
                 " is not a power of two in [1024, 16 MiB]");
    }
    if (off < h.header_size || off % 64 || uint64_t{off} + size > h.total_size) {
      return bad("ring " + std::to_string(i) + " at offset " + std::to_string(off) +
                 " lies outside the shared memory");
    }
    l.ring_size[i] = size;
    l.ring_offset[i] = off;
  }
  uint64_t a0 = l.ring_offset[0], a1 = a0 + l.ring_size[0];
  uint64_t b0 = l.ring_offset[1], b1 = b0 + l.ring_size[1];
  if (a0 < b1 && b0 < a1) {
    return bad("the two rings overlap");
  }
  if (h.total_size > file_size) {
    return bad("layout needs " + std::to_string(h.total_size) + " bytes but the memfd has " +
               std::to_string(file_size));
  }
  return l;
}

ShmRing::ShmRing(RingControl* ctl, std::byte* data, uint32_t size, Role role)
    : ctl_(ctl), data_(data), size_(size), mask_(size - 1), role_(role), corrupt_(false) {
  if (ctl_ == nullptr || data_ == nullptr || !std::has_single_bit(size)) {
    corrupt_ = true;
    return;
  }
  local_ = role == Role::Writer ? ctl_->prod.load(std::memory_order_relaxed)
                                : ctl_->cons.load(std::memory_order_relaxed);
}

size_t ShmRing::filled(uint32_t prod, uint32_t cons) {
  uint32_t used = prod - cons;
  if (used > size_) {
    corrupt_ = true;
    return 0;
  }
  return used;
}

// Peer indices are loaded seq_cst: paired with the seq_cst stores of our own
// index and of the waiting flags, no wake-up can be lost (either the peer sees
// our flag, or we see its new index).
size_t ShmRing::readable() {
  if (corrupt_ || role_ != Role::Reader) {
    return 0;
  }
  return filled(ctl_->prod.load(std::memory_order_seq_cst), local_);
}

size_t ShmRing::read(std::span<std::byte> out) {
  size_t n = std::min(readable(), out.size());
  if (n == 0) {
    return 0;
  }
  size_t pos = local_ & mask_;
  size_t first = std::min<size_t>(n, size_ - pos);
  std::memcpy(out.data(), data_ + pos, first);
  std::memcpy(out.data() + first, data_, n - first);
  local_ += static_cast<uint32_t>(n);
  ctl_->cons.store(local_, std::memory_order_seq_cst);
  return n;
}

size_t ShmRing::want_data_signal() {
  if (corrupt_ || role_ != Role::Reader) {
    return 0;
  }
  ctl_->reader_waiting.store(1, std::memory_order_seq_cst);
  return readable();
}

// Hysteresis: a waiting writer is woken once the ring is at most half full,
// not after every read, so a writer on a full ring refills it in large
// batches instead of one wake-up per chunk. A reader that drains the ring (as
// the Channel contract asks) always gets there, so the writer always wakes.
bool ShmRing::take_space_signal_request() {
  if (corrupt_ || role_ != Role::Reader) {
    return false;
  }
  if (ctl_->writer_waiting.load(std::memory_order_seq_cst) == 0) {
    return false;
  }
  size_t fill = filled(ctl_->prod.load(std::memory_order_seq_cst), local_);
  if (corrupt_ || fill > size_ / 2) {
    return false;
  }
  return ctl_->writer_waiting.exchange(0, std::memory_order_seq_cst) != 0;
}

size_t ShmRing::writable() {
  if (corrupt_ || role_ != Role::Writer) {
    return 0;
  }
  size_t used = filled(local_, ctl_->cons.load(std::memory_order_seq_cst));
  return corrupt_ ? 0 : size_ - used;
}

size_t ShmRing::write(std::span<const std::byte> in) {
  size_t n = std::min(writable(), in.size());
  if (n == 0) {
    return 0;
  }
  size_t pos = local_ & mask_;
  size_t first = std::min<size_t>(n, size_ - pos);
  std::memcpy(data_ + pos, in.data(), first);
  std::memcpy(data_, in.data() + first, n - first);
  local_ += static_cast<uint32_t>(n);
  ctl_->prod.store(local_, std::memory_order_seq_cst);
  return n;
}

size_t ShmRing::want_space_signal() {
  if (corrupt_ || role_ != Role::Writer) {
    return 0;
  }
  ctl_->writer_waiting.store(1, std::memory_order_seq_cst);
  return writable();
}

bool ShmRing::take_data_signal_request() {
  if (corrupt_ || role_ != Role::Writer) {
    return false;
  }
  return ctl_->reader_waiting.load(std::memory_order_seq_cst) != 0 &&
         ctl_->reader_waiting.exchange(0, std::memory_order_seq_cst) != 0;
}

}  // namespace qaudio::shm

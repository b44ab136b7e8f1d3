// Lock-free single-producer/single-consumer queues between the main thread
// and a real-time thread. Storage is allocated once in the constructor;
// push/pop never allocate, lock or block, so they are safe on the audio thread.
//
//   SpscQueue<Command> q(64);         // capacity rounded up to a power of two
//   q.push(cmd);                      // producer thread; false when full
//   while (auto c = q.pop()) {...}    // consumer thread
//
//   SpscByteRing ring(1 << 16);       // PCM bytes; partial writes/reads
//   ring.write(bytes); ring.read(out);
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>

namespace qaudio {

inline constexpr size_t kCacheLine = 64;

template <class T>
class SpscQueue {
  static_assert(std::is_nothrow_move_constructible_v<T>);

 public:
  explicit SpscQueue(size_t capacity)
      : size_(std::bit_ceil(std::max<size_t>(capacity, 2))),
        mask_(size_ - 1),
        slots_(std::make_unique<std::optional<T>[]>(size_)) {}

  bool push(T value) {
    size_t head = head_.load(std::memory_order_relaxed);
    if (head - tail_.load(std::memory_order_acquire) >= size_) {
      return false;
    }
    slots_[head & mask_].emplace(std::move(value));
    head_.store(head + 1, std::memory_order_release);
    return true;
  }

  std::optional<T> pop() {
    size_t tail = tail_.load(std::memory_order_relaxed);
    if (tail == head_.load(std::memory_order_acquire)) {
      return std::nullopt;
    }
    std::optional<T> out(std::move(*slots_[tail & mask_]));
    slots_[tail & mask_].reset();
    tail_.store(tail + 1, std::memory_order_release);
    return out;
  }

  size_t size() const {
    return head_.load(std::memory_order_acquire) - tail_.load(std::memory_order_acquire);
  }
  size_t capacity() const { return size_; }

 private:
  const size_t size_;
  const size_t mask_;
  std::unique_ptr<std::optional<T>[]> slots_;
  alignas(kCacheLine) std::atomic<size_t> head_{0};
  alignas(kCacheLine) std::atomic<size_t> tail_{0};
};

class SpscByteRing {
 public:
  explicit SpscByteRing(size_t capacity)
      : size_(std::bit_ceil(std::max<size_t>(capacity, 2))),
        mask_(size_ - 1),
        data_(std::make_unique<std::byte[]>(size_)) {}

  size_t capacity() const { return size_; }
  size_t readable() const {
    return head_.load(std::memory_order_acquire) - tail_.load(std::memory_order_acquire);
  }
  size_t writable() const { return size_ - readable(); }

  // Producer: copies as much of `in` as fits; returns bytes written.
  size_t write(std::span<const std::byte> in) {
    size_t head = head_.load(std::memory_order_relaxed);
    size_t free = size_ - (head - tail_.load(std::memory_order_acquire));
    size_t n = std::min(free, in.size());
    copy_in(head, in.first(n));
    head_.store(head + n, std::memory_order_release);
    return n;
  }

  // Consumer: copies up to out.size() bytes; returns bytes read.
  size_t read(std::span<std::byte> out) {
    size_t tail = tail_.load(std::memory_order_relaxed);
    size_t avail = head_.load(std::memory_order_acquire) - tail;
    size_t n = std::min(avail, out.size());
    copy_out(tail, out.first(n));
    tail_.store(tail + n, std::memory_order_release);
    return n;
  }

  // Consumer: drops up to n bytes; returns bytes dropped.
  size_t skip(size_t n) {
    size_t tail = tail_.load(std::memory_order_relaxed);
    size_t avail = head_.load(std::memory_order_acquire) - tail;
    n = std::min(avail, n);
    tail_.store(tail + n, std::memory_order_release);
    return n;
  }

 private:
  void copy_in(size_t pos, std::span<const std::byte> in) {
    size_t off = pos & mask_;
    size_t first = std::min(in.size(), size_ - off);
    std::memcpy(data_.get() + off, in.data(), first);
    std::memcpy(data_.get(), in.data() + first, in.size() - first);
  }
  void copy_out(size_t pos, std::span<std::byte> out) {
    size_t off = pos & mask_;
    size_t first = std::min(out.size(), size_ - off);
    std::memcpy(out.data(), data_.get() + off, first);
    std::memcpy(out.data() + first, data_.get(), out.size() - first);
  }

  const size_t size_;
  const size_t mask_;
  std::unique_ptr<std::byte[]> data_;
  alignas(kCacheLine) std::atomic<size_t> head_{0};
  alignas(kCacheLine) std::atomic<size_t> tail_{0};
};

}  // namespace qaudio

// Test doubles for the daemon engine: a PlaybackSource that generates a
// sine at the device rate and counts its pulls, and a CaptureSink that
// records what it was pushed (preallocated, RT-safe).
//
//   ToneSource src(440.0, fmt, 0.5);  be->add_playback(info, &src);
//   wait_until([&] { return src.pulls() > 10; }, 2s);
#pragma once

#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <thread>
#include <vector>

#include "backend.hpp"

namespace qaudio::daemon::test {

class ToneSource final : public PlaybackSource {
 public:
  ToneSource(double freq, DeviceFormat fmt, double amp) : freq_(freq), fmt_(fmt), amp_(amp) {}
  ~ToneSource() override { magic_ = 0; }
  size_t pull(std::span<float> out, size_t frames, const PeriodTiming&) override {
    if (magic_ != kMagic) {
      std::abort();  // pulled after destruction
    }
    for (size_t f = 0; f < frames; ++f) {
      float v = static_cast<float>(amp_ * std::sin(phase_));
      phase_ += 2.0 * 3.14159265358979323846 * freq_ / fmt_.rate;
      if (phase_ > 2.0 * 3.14159265358979323846) {
        phase_ -= 2.0 * 3.14159265358979323846;
      }
      for (uint32_t c = 0; c < fmt_.channels; ++c) {
        out[f * fmt_.channels + c] = v;
      }
    }
    pulls_.fetch_add(1, std::memory_order_relaxed);
    frames_.fetch_add(frames, std::memory_order_relaxed);
    return frames;
  }
  uint64_t pulls() const { return pulls_.load(); }
  uint64_t frames() const { return frames_.load(); }

 private:
  static constexpr uint32_t kMagic = 0x70e50123;
  volatile uint32_t magic_ = kMagic;
  double freq_;
  DeviceFormat fmt_;
  double amp_;
  double phase_ = 0;
  std::atomic<uint64_t> pulls_{0};
  std::atomic<uint64_t> frames_{0};
};

class RecordingSink final : public CaptureSink {
 public:
  explicit RecordingSink(size_t max_samples) : buf_(max_samples) {}
  void push(std::span<const float> in, size_t frames, const PeriodTiming&) override {
    size_t n = std::min(in.size(), frames * 8);
    size_t have = len_.load(std::memory_order_relaxed);
    n = std::min(n, buf_.size() - have);
    std::copy(in.begin(), in.begin() + static_cast<ptrdiff_t>(n),
              buf_.begin() + static_cast<ptrdiff_t>(have));
    len_.store(have + n, std::memory_order_release);
    pushes_.fetch_add(1, std::memory_order_relaxed);
  }
  uint64_t pushes() const { return pushes_.load(); }
  std::vector<float> samples() const {
    size_t n = len_.load(std::memory_order_acquire);
    return std::vector<float>(buf_.begin(), buf_.begin() + static_cast<ptrdiff_t>(n));
  }

 private:
  std::vector<float> buf_;
  std::atomic<size_t> len_{0};
  std::atomic<uint64_t> pushes_{0};
};

inline bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace qaudio::daemon::test

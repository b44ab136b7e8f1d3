// The `null` backend: a timer-paced device that discards the mix and
// captures silence. For tests, and for running the daemon with no output.
//
//   --backend null
#pragma once

#include <atomic>

#include "mixing_backend.hpp"

namespace qaudio::daemon {

class NullBackend final : public MixingBackend {
 public:
  NullBackend(const BackendOptions& options, BackendEventFn events);
  ~NullBackend() override;
  std::string name() const override { return "null"; }
  uint64_t frames_discarded() const { return frames_.load(std::memory_order_relaxed); }

 protected:
  Result<void> open_device(DeviceFormat& format) override;
  void close_device() override {}
  bool write_period(std::span<const float> mix, size_t frames) override;

 private:
  std::atomic<uint64_t> frames_{0};
};

}  // namespace qaudio::daemon

// A qube's microphone stream on the device side: the CaptureSink that
// backends push device frames into. The RT thread converts device float to
// the qube's capture format (channel map, speexdsp resampling, sample
// format) and writes a lock-free byte ring that the main thread reads and
// sends to the qube.
//
// The mic gate: set_open(true/false) from the main thread, default CLOSED.
// While closed every sample written is an exact zero (the qube sees a valid,
// silent source) and the resampler history is dropped, so opening never
// replays old audio. The gate takes effect at the very next push.
//
//   auto c = CaptureStream::create({.format = kStockFormat, .device = be->format()});
//   be->add_capture(info, c->get());
//   (*c)->set_open(policy_allows && user_attached);    // main thread
//   size_t n = (*c)->read(buf);                         // main thread -> channel
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "backend.hpp"
#include "qaudio/format.hpp"
#include "qaudio/result.hpp"
#include "qaudio/spsc.hpp"
#include "resampler.hpp"
#include "sample_convert.hpp"

namespace qaudio::daemon {

struct CaptureConfig {
  StreamFormat format = kStockFormat;   // what the qube receives
  DeviceFormat device;                  // Backend::format()
  std::chrono::milliseconds ring{500};  // bytes kept for the main thread
  int quality = 4;                      // speexdsp quality 0..10
};

struct CaptureCounters {
  uint64_t bytes = 0;          // bytes produced for the qube
  uint64_t dropped_bytes = 0;  // dropped because the main thread did not read
  uint64_t overruns = 0;       // pushes that had to drop
  uint32_t fill_bytes = 0;     // bytes waiting in the ring
  bool open = false;
};

class CaptureStream final : public CaptureSink {
 public:
  static Result<std::unique_ptr<CaptureStream>> create(const CaptureConfig& config);
  ~CaptureStream() override;

  // ---- main thread ----
  void set_open(bool open);
  bool is_open() const;
  // Reads whole frames only; returns bytes read.
  size_t read(std::span<std::byte> out);
  size_t readable() const;
  CaptureCounters counters() const;
  const CaptureConfig& config() const { return config_; }

  // ---- real-time thread ----
  void push(std::span<const float> in, size_t frames, const PeriodTiming& timing) override;

 private:
  CaptureStream(const CaptureConfig& config, std::unique_ptr<Resampler> resampler);
  void emit(const float* qube_frames, size_t frames);

  CaptureConfig config_;
  size_t frame_bytes_;
  SpscByteRing ring_;
  std::unique_ptr<Resampler> resampler_;  // null when rates match
  ChannelMap map_;
  std::vector<float> mapped_;
  std::vector<float> resampled_;
  std::vector<std::byte> bytes_out_;
  bool was_open_ = false;
  uint64_t zero_acc_ = 0;  // fractional output frames while closed

  std::atomic<bool> open_{false};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> dropped_bytes_{0};
  std::atomic<uint64_t> overruns_{0};
};

}  // namespace qaudio::daemon

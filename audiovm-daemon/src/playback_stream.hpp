// A qube's playback stream on the device side: the PlaybackSource that
// backends pull. The main thread writes the qube's raw PCM (any valid
// StreamFormat) into a lock-free byte ring; the backend's real-time thread
// pulls device frames: bytes -> float (sanitised) -> channel map -> resample
// to the device rate (speexdsp) -> gain/mute ramp.
//
// Options (PlaybackConfig): the qube's format, the device format, the target
// fill (prebuffer before starting, and the set point of the adaptive rate),
// the ring size (bounds memory per qube), adaptive_rate (stock-protocol
// qubes whose clock is not the device's: a slow PI loop on the ring fill
// steers the resampler ratio by at most +-0.5 %), the resampler quality.
//
// State machine on the RT side: Prebuffering (silence, until the ring holds
// the target fill) -> Running (real audio; a pull that finds less than it
// needs counts ONE underrun and goes back to Prebuffering). Corked: silence,
// no underruns counted, back to Prebuffering on uncork. Overruns: the main
// thread's write found the ring full and dropped bytes.
//
//   auto s = PlaybackStream::create({.format = kStockFormat, .device = be->format(),
//                                    .adaptive_rate = true});
//   auto h = be->add_playback(info, s->get());
//   (*s)->write(bytes_from_qube);           // main thread
//   (*s)->set_volume_percent(50);           // main thread, any time
//   auto c = (*s)->counters();              // main thread
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "backend.hpp"
#include "gain.hpp"
#include "qaudio/format.hpp"
#include "qaudio/result.hpp"
#include "qaudio/spsc.hpp"
#include "resampler.hpp"
#include "sample_convert.hpp"

namespace qaudio::daemon {

struct PlaybackConfig {
  StreamFormat format = kStockFormat;         // what the qube sends
  DeviceFormat device;                        // Backend::format()
  std::chrono::milliseconds target_fill{40};  // prebuffer / adaptive set point
  std::chrono::milliseconds ring{500};        // ring capacity (>= 2 * target_fill)
  bool adaptive_rate = false;                 // steer from ring fill (stock qubes)
  int quality = 4;                            // speexdsp quality 0..10
  uint32_t volume_percent = kDefaultVolumePercent;
  bool muted = false;
  std::chrono::milliseconds gain_ramp{5};  // volume/mute change ramp
};

struct PlaybackCounters {
  uint64_t bytes = 0;            // bytes accepted from the qube
  uint64_t dropped_bytes = 0;    // bytes dropped because the ring was full
  uint64_t overruns = 0;         // writes that had to drop
  uint64_t underruns = 0;        // running pulls that found too little
  uint64_t frames_consumed = 0;  // qube-rate frames taken from the ring
  uint64_t device_frames = 0;    // device frames delivered (audio or silence)
  uint32_t fill_bytes = 0;       // bytes in the ring now
  uint32_t latency_us = 0;       // ring + resampler + device latency
  int32_t rate_adjust_ppm = 0;   // current adaptive-rate correction
  bool running = false;          // past prebuffering, producing audio
  bool corked = false;
  float level = 0;  // peak of what this stream gives the mix (after volume), 0..1,
                    // held and decaying with a ~300 ms time constant (a meter)
};

class PlaybackStream final : public PlaybackSource {
 public:
  static Result<std::unique_ptr<PlaybackStream>> create(const PlaybackConfig& config);
  ~PlaybackStream() override;

  // ---- main thread ----
  // Queues the qube's bytes (any split; partial frames are kept until
  // complete). What does not fit is dropped and counted as an overrun.
  // Returns the bytes accepted.
  size_t write(std::span<const std::byte> bytes);
  // Bytes that fit right now (for back-pressure: read only that much from
  // the channel).
  size_t writable() const;
  void set_volume_percent(uint32_t percent);  // clamped to 0..150
  uint32_t volume_percent() const;
  void set_muted(bool muted);
  bool muted() const;
  // Corked: the RT side plays silence and counts no underruns.
  void set_corked(bool corked);
  bool corked() const;
  // Drops everything queued (taken by the RT side at its next pull).
  void flush();
  PlaybackCounters counters() const;
  const PlaybackConfig& config() const { return config_; }

  // ---- real-time thread ----
  size_t pull(std::span<float> out, size_t frames, const PeriodTiming& timing) override;

 private:
  PlaybackStream(const PlaybackConfig& config, std::unique_ptr<Resampler> resampler);
  size_t fill_input(size_t want_frames);
  size_t produce(float* out, size_t frames);
  void steer_rate(size_t fill_frames, size_t frames);

  PlaybackConfig config_;
  size_t frame_bytes_;
  size_t target_fill_bytes_;
  SpscByteRing ring_;
  std::unique_ptr<Resampler> resampler_;  // null: same rate, no steering
  ChannelMap map_;

  // main-thread side
  std::array<std::byte, 32> partial_{};
  size_t partial_len_ = 0;

  // RT-side scratch, allocated once.
  std::vector<std::byte> raw_;
  std::vector<float> qube_float_;
  std::vector<float> dev_in_;  // device channels, qube rate
  size_t dev_in_pos_ = 0;
  size_t dev_in_len_ = 0;
  GainRamp gain_;
  bool running_ = false;
  double integral_ = 0.0;
  double fill_avg_ = -1.0;

  // main -> RT controls
  std::atomic<uint32_t> volume_percent_;
  std::atomic<bool> muted_;
  std::atomic<bool> corked_{false};
  std::atomic<uint32_t> flush_seq_{0};
  uint32_t flush_seen_ = 0;

  // RT -> main counters
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> dropped_bytes_{0};
  std::atomic<uint64_t> overruns_{0};
  std::atomic<uint64_t> underruns_{0};
  std::atomic<uint64_t> frames_consumed_{0};
  std::atomic<uint64_t> device_frames_{0};
  std::atomic<uint32_t> device_latency_us_{0};
  std::atomic<uint32_t> pending_frames_{0};  // converted but not yet resampled
  std::atomic<uint32_t> filter_frames_{0};   // resampler delay (qube frames)
  std::atomic<int32_t> rate_adjust_ppm_{0};
  std::atomic<bool> running_pub_{false};
  std::atomic<float> level_pub_{0.0f};
  float level_hold_ = 0;  // RT side
};

}  // namespace qaudio::daemon

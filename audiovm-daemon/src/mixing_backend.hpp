// Shared base of the backends where the daemon mixes itself (wav, alsa,
// null): one real-time thread per device that, each period, pulls every
// playback source, sums them (float; clipping happens only in the device
// write), hands the mix to write_period() and pushes what read_period()
// captured to every capture sink.
//
// Threads: add/remove/start/stop are main-thread calls. Stream changes reach
// the RT thread through a lock-free SPSC command queue and a fixed stream
// table (kMaxPlayback + kMaxCapture slots, allocated once); the RT thread
// never locks or allocates. remove_*() returns only after the RT thread has
// acknowledged the removal (an atomic sequence number), so the caller may
// destroy the source right after. The RT thread asks for SCHED_FIFO (ignored
// when not permitted; QAUDIO_NO_RT=1 disables the attempt). Errors on the RT
// thread are queued (static strings only) and reported as BackendEvents by a
// small control thread, which also runs the backend's service() hook (the
// WAV writer flushes the file there).
//
// A subclass implements open_device/close_device and the RT hooks
// write_period/read_period; timer-paced devices (wav, null) keep
// paced_by_timer() = true and the base sleeps to absolute CLOCK_MONOTONIC
// deadlines; a device that blocks in its own write (ALSA) returns false.
//
//   class NullBackend : public MixingBackend { ... };
//   be.start(); auto h = be.add_playback(info, &src); ... be.remove_playback(*h);
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "backend.hpp"
#include "qaudio/spsc.hpp"

namespace qaudio::daemon {

// Sums the sources' pulls into `mix` (frames * channels floats, zeroed
// first); `scratch` is as large as `mix`. Returns the number of sources that
// gave real audio. The mixer's core, also used by the benchmark.
size_t mix_sources(std::span<PlaybackSource* const> sources,
                   float* mix,
                   float* scratch,
                   size_t frames,
                   uint32_t channels,
                   const PeriodTiming& timing);

class MixingBackend : public Backend {
 public:
  static constexpr size_t kMaxPlayback = 64;
  static constexpr size_t kMaxCapture = 64;

  MixingBackend(const BackendOptions& options, BackendEventFn events);
  // Subclasses must call stop() in their own destructor (the RT thread calls
  // their hooks).
  ~MixingBackend() override;

  Result<void> start() final;
  void stop() final;
  DeviceFormat format() const override { return format_; }
  Result<StreamHandle> add_playback(const StreamInfo& info, PlaybackSource* source) final;
  void remove_playback(StreamHandle h) final;
  Result<StreamHandle> add_capture(const StreamInfo& info, CaptureSink* sink) final;
  void remove_capture(StreamHandle h) final;
  bool connected() const override { return running_.load(std::memory_order_acquire); }

  // Statistics (any thread).
  uint64_t periods() const { return periods_.load(std::memory_order_relaxed); }
  uint64_t late_periods() const { return late_periods_.load(std::memory_order_relaxed); }
  bool realtime_scheduling() const { return rt_sched_.load(std::memory_order_relaxed); }
  size_t period_frames() const { return period_frames_; }

 protected:
  // Main thread, before the RT thread starts: open the device. May change
  // `format` to what the device accepted.
  virtual Result<void> open_device(DeviceFormat& format) = 0;
  // Main thread, after the RT thread stopped.
  virtual void close_device() = 0;
  // RT thread: write one period of mixed frames (not clipped yet). Return
  // false on an error (post_rt_error() says what).
  virtual bool write_period(std::span<const float> mix, size_t frames) = 0;
  // RT thread: fill one period of capture frames; only called while capture
  // sinks exist. Default: silence.
  virtual bool read_period(std::span<float> in, size_t frames);
  // True: the base paces periods with a timer. False: write_period blocks
  // until the device wants more (ALSA).
  virtual bool paced_by_timer() const { return true; }
  // RT thread: time from now until the frames written now are heard.
  virtual uint32_t device_latency_us() const;
  // Control thread, about every period: non-real-time work (file writes).
  virtual void service() {}

  // RT-safe: queue an error for the control thread (static strings only).
  void post_rt_error(const char* static_message);
  const BackendOptions& options() const { return options_; }
  void emit_event(const BackendEvent& ev) {
    if (events_) {
      events_(ev);
    }
  }

 private:
  enum class CmdKind : uint8_t { AddPlayback, RemovePlayback, AddCapture, RemoveCapture };
  struct Command {
    CmdKind kind;
    StreamHandle handle;
    void* ptr;
    uint64_t seq;
  };
  struct PlaySlot {
    StreamHandle handle = 0;
    PlaybackSource* source = nullptr;
  };
  struct CapSlot {
    StreamHandle handle = 0;
    CaptureSink* sink = nullptr;
  };

  void rt_main();
  void control_main();
  void apply_commands();
  void apply(const Command& c);
  void run_period(const PeriodTiming& timing);
  uint64_t send(CmdKind kind, StreamHandle h, void* ptr);
  void wait_ack(uint64_t seq);

  BackendOptions options_;
  BackendEventFn events_;
  DeviceFormat format_;
  size_t period_frames_ = 0;

  SpscQueue<Command> commands_{256};
  SpscQueue<const char*> rt_errors_{64};
  std::atomic<uint64_t> acked_seq_{0};
  uint64_t next_seq_ = 0;
  StreamHandle next_handle_ = 1;
  size_t n_playback_main_ = 0;  // main-thread view of table occupancy
  size_t n_capture_main_ = 0;

  // RT-owned (or main-owned while stopped).
  std::array<PlaySlot, kMaxPlayback> play_{};
  std::array<CapSlot, kMaxCapture> cap_{};
  std::array<PlaybackSource*, kMaxPlayback> active_play_{};
  size_t n_active_play_ = 0;
  std::vector<float> mix_;
  std::vector<float> scratch_;
  std::vector<float> capture_;

  std::thread rt_thread_;
  std::thread control_thread_;
  std::atomic<bool> running_{false};
  std::atomic<bool> quit_{false};
  std::atomic<bool> rt_alive_{false};
  std::atomic<uint64_t> periods_{0};
  std::atomic<uint64_t> late_periods_{0};
  std::atomic<bool> rt_sched_{false};
  int wake_fd_ = -1;  // eventfd: RT -> control thread
};

}  // namespace qaudio::daemon

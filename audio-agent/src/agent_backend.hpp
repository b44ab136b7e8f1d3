// AgentBackend: the qube's local sound system as the agent core sees it.
// A backend presents "Qubes audio" (an output apps play into) and "Qubes
// microphone" (a source apps record from) in the qube's sound system, and
// moves their PCM through two lock-free byte rings (BackendRings):
//   playback: the backend's audio side writes what apps played, in
//             playback_format(); the core reads it and sends it to the daemon;
//   capture:  the core writes microphone PCM in capture_format(); the backend
//             reads it (and plays silence when it is empty).
// State changes (output active/idle, an app opened/closed the microphone)
// go to the Listener on the core's event-loop thread (backends post them).
//
//   class MyBackend : public AgentBackend { ... rings_.notify_playback(); ... };
//   AgentSession s(loop, backend, opts); s.start();
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "qaudio/event_loop.hpp"
#include "qaudio/format.hpp"
#include "qaudio/result.hpp"
#include "qaudio/spsc.hpp"

namespace qaudio::agent {

// The two PCM rings and the eventfd that wakes the core when playback data
// arrived. write/notify are real-time safe (no allocation, no lock; the
// eventfd write is one non-blocking syscall).
class BackendRings {
 public:
  explicit BackendRings(size_t playback_bytes = 1 << 16, size_t capture_bytes = 1 << 16)
      : playback_(playback_bytes),
        capture_(capture_bytes),
        wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~BackendRings() {
    if (wake_fd_ >= 0) {
      ::close(wake_fd_);
    }
  }
  BackendRings(const BackendRings&) = delete;
  BackendRings& operator=(const BackendRings&) = delete;

  SpscByteRing& playback() { return playback_; }
  SpscByteRing& capture() { return capture_; }
  int wake_fd() const { return wake_fd_; }
  void notify_playback() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
  }
  void ack() {
    uint64_t v = 0;
    [[maybe_unused]] ssize_t n = ::read(wake_fd_, &v, sizeof v);
  }

 private:
  SpscByteRing playback_;
  SpscByteRing capture_;
  int wake_fd_;
};

class AgentBackend {
 public:
  struct Listener {
    virtual ~Listener() = default;
    // An app is playing into "Qubes audio" (true) or no app is (false).
    virtual void on_output_active(bool active) = 0;
    // An app is recording from "Qubes microphone" (true) or none is (false).
    virtual void on_mic_in_use(bool in_use) = 0;
    // The local sound system failed; the agent stops with this message.
    virtual void on_backend_error(const std::string& message) = 0;
  };

  virtual ~AgentBackend() = default;

  // Creates the devices. Listener calls happen on `loop`'s thread.
  virtual Result<void> start(EventLoop& loop, Listener& listener) = 0;
  // Removes the devices (unloads modules, destroys nodes). Idempotent.
  virtual void stop() = 0;

  virtual StreamFormat playback_format() const = 0;
  virtual StreamFormat capture_format() const = 0;
  virtual BackendRings& rings() = 0;

  // Buffering on the backend's side between an app and the playback ring
  // (e.g. the monitor fragment), counted in the latency it reports.
  virtual std::chrono::nanoseconds own_latency() const { return std::chrono::nanoseconds(0); }
  // The end-to-end latency the app should see beyond the backend's own
  // buffering: the core's queue plus the audio domain's (native Latency).
  virtual void set_remote_latency(std::chrono::nanoseconds /*latency*/) {}
  // Native ClockTick: the audio domain's device clock (frames played at a time).
  virtual void on_clock_tick(uint64_t /*frames_played*/,
                             uint64_t /*device_time_ns*/,
                             uint32_t /*device_rate*/) {}
  // Every agent tick (10 ms) while playback runs: the queue between the qube
  // and the device (native: the agent ring + the daemon's buffer; stock:
  // the agent ring + the channel) and the level it should stay at. A
  // backend that drives its sound system's clock steers on it.
  virtual void on_queue(std::chrono::nanoseconds /*queue*/,
                        std::chrono::nanoseconds /*target*/,
                        bool /*native*/) {}
  // For logs: "pulse (unix:/run/pulse/native)".
  virtual std::string describe() const = 0;
};

}  // namespace qaudio::agent

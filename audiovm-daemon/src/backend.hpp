// Device backends of the audiovm-daemon: one small interface, one file pair
// per backend (wav, null, pulse, pipewire, alsa), one registry table.
//
// The daemon owns per-qube gain, mute, format conversion and resampling (in
// its PlaybackSource / CaptureSink objects); a backend only moves float
// frames at the device rate:
//   - mixing backends (wav, alsa, null) run their own real-time thread that
//     pulls every playback source, sums them and writes the device;
//   - server backends (pulse, pipewire) create one stream per qube in the
//     sound server (application.name = qube name, qaudio.label.color = label)
//     and pull each source from the server's real-time callback; the server
//     mixes.
//
//   auto be = make_backend("wav:/tmp/out.wav", options, events);
//   (*be)->start();
//   auto h = (*be)->add_playback({"work", "red", ...}, &session_source);
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qaudio/result.hpp"

namespace qaudio::daemon {

// The device side format: interleaved float32 at `rate`, `channels` wide.
struct DeviceFormat {
  uint32_t rate = 48000;
  uint32_t channels = 2;
};

// Timing the backend passes to sources on each period, for latency reports
// and the clock ticks sent to native agents.
struct PeriodTiming {
  uint64_t device_frames = 0;      // frames played by the device so far
  int64_t device_time_ns = 0;      // CLOCK_MONOTONIC when this period starts playing
  uint32_t device_latency_us = 0;  // time from now until these frames are heard
};

// Implemented by the daemon's sessions. Called on the backend's real-time
// thread: must not allocate, lock or block.
class PlaybackSource {
 public:
  virtual ~PlaybackSource() = default;
  // Writes `frames` interleaved frames (device channels) into `out`, already
  // scaled by the qube's gain; fills silence for what it does not have.
  // Returns the number of frames that were real audio (for counters).
  virtual size_t pull(std::span<float> out, size_t frames, const PeriodTiming& timing) = 0;
};

class CaptureSink {
 public:
  virtual ~CaptureSink() = default;
  // Microphone frames from the device (interleaved, device channels), on the
  // backend's real-time thread. The sink applies the mic gate.
  virtual void push(std::span<const float> in, size_t frames, const PeriodTiming& timing) = 0;
};

// What a backend knows about a qube's stream.
struct StreamInfo {
  std::string qube;         // qube name (application.name in sound servers)
  std::string label_color;  // e.g. "red" or "#cc0000"; may be empty
  std::string device;       // output/input device to use; empty = backend default
  // Sound-server buffer for this stream (pulse tlength, pipewire quantum);
  // 0 = the backend's default (BackendOptions::buffer). Native sessions ask
  // for a small one: their agent follows the device clock.
  std::chrono::milliseconds buffer{0};
};

struct DeviceInfo {
  std::string name;         // the id to select it by
  std::string description;  // human readable
  bool is_output = true;
  bool is_default = false;
};

// Events a backend reports to the main loop. Backends call this from their
// control threads (never the real-time callback); the daemon posts it onto
// its event loop.
struct BackendEvent {
  enum class Kind { ServerLost, ServerBack, DeviceAdded, DeviceRemoved, Error } kind;
  std::string detail;
};
using BackendEventFn = std::function<void(const BackendEvent&)>;

struct BackendOptions {
  DeviceFormat format;                                // requested device format
  std::chrono::milliseconds period{10};               // real-time period (mixing backends)
  std::chrono::milliseconds buffer{20};               // server-side buffer target
  std::chrono::milliseconds reconnect_interval{500};  // sound server retry
};

using StreamHandle = uint64_t;

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "wav", "pulse", ...
  // Opens the device / connects to the server and starts the real-time side.
  // A server that is not there yet is not an error for server backends: they
  // retry in the background and report ServerBack.
  virtual Result<void> start() = 0;
  virtual void stop() = 0;
  virtual DeviceFormat format() const = 0;
  // Sources and sinks must outlive their stream (remove before destroying).
  virtual Result<StreamHandle> add_playback(const StreamInfo& info, PlaybackSource* source) = 0;
  virtual void remove_playback(StreamHandle h) = 0;
  virtual Result<StreamHandle> add_capture(const StreamInfo& info, CaptureSink* sink) = 0;
  virtual void remove_capture(StreamHandle h) = 0;
  // Device selection (server backends list the server's sinks and sources).
  virtual std::vector<DeviceInfo> devices() { return {}; }
  virtual Result<void> set_device(StreamHandle h, const std::string& device) {
    (void)h;
    (void)device;
    return fail("this backend has a single device");
  }
  // Whether the device / server is usable right now.
  virtual bool connected() const = 0;
};

// "wav:PATH", "null", "pulse[:SERVER]", "pipewire", "alsa:DEVICE".
// Unknown or not-built backends give an error listing what this build has.
Result<std::unique_ptr<Backend>> make_backend(std::string_view spec,
                                              const BackendOptions& options,
                                              BackendEventFn events);
// Names of the backends compiled into this build, for --help.
std::vector<std::string> available_backends();

}  // namespace qaudio::daemon

// A session: the daemon's side of one configured qube. The daemon is the
// vchan CLIENT (the qube serves ports 4713 and 4714, as in stock Qubes).
//
//   - Connects both ports with Transport::connect(addr, 0 ms) from an event
//     loop timer; a qube that is not there yet is retried with exponential
//     backoff (initial 100 ms, doubling to 5 s). The backoff restarts from
//     the initial value only after a session stayed up `stable_after` (3 s),
//     so a qube that reconnects in a loop is rate-limited.
//   - Either channel Closed, a malformed native message, a heartbeat
//     timeout: the streams leave the backend first, then are destroyed, the
//     channels closed, and the reconnect timer armed. Never fatal.
//   - Protocol: stock until the qube's agent says the native hello on 4714
//     (DaemonNegotiator). Stock: playback runs at S16LE 44.1 kHz stereo as
//     soon as connected, the mic starts stopped, control words are decoded
//     with StockControlDecoder. Native: Welcome/Hello, PlaybackFormat ->
//     FormatAccepted, CaptureFormat, cork/uncork, mic start/stop, Latency and
//     ClockTick every `report_interval`, VolumeState and MicState on change,
//     heartbeats both ways, MicData frames for the mic.
//   - Back-pressure: from 4713 only as many bytes are read as the playback
//     ring can take, so a qube that writes faster than real time fills its
//     own vchan, never our memory. Cork = drain what is queued, then stop.
//   - Mic: while the qube started it, a CaptureStream is attached to the
//     backend; its gate opens only when the daemon says so
//     (set_mic_attached); detached, it produces exact zeros at the real rate.
//     A qube that does not read loses the OLDEST audio (bounded queue,
//     counted as overruns); nothing blocks, nothing grows.
//
//   Session s(loop, transport, backend, {.name = "work", .domid = 5}, QubeState{});
//   s.start();                     // connects now, then by itself forever
//   s.set_volume(80);  auto info = s.info();
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend.hpp"
#include "capture_stream.hpp"
#include "playback_stream.hpp"
#include "qaudio/channel.hpp"
#include "qaudio/event_loop.hpp"
#include "qaudio/format.hpp"
#include "qaudio/negotiation.hpp"
#include "qaudio/protocol.hpp"
#include "state_store.hpp"

namespace qaudio::daemon {

enum class SessionState : uint8_t {
  Waiting,     // qube not reachable; reconnect timer armed
  Connecting,  // channels connected, handshake not finished (shm grant)
  Running,     // both channels open, streams attached
  Stopped,     // stop() was called
};
enum class SessionProtocol : uint8_t { None, Stock, Negotiating, Native };

std::string_view to_string(SessionState s);
std::string_view to_string(SessionProtocol p);

inline constexpr std::chrono::milliseconds kDefaultNativeTargetFill{8};
inline constexpr std::chrono::milliseconds kDefaultNativeBuffer{10};

struct SessionConfig {
  std::string name;          // the qube's name (identity comes from the config)
  uint32_t domid = 0;        // vchan server domain (the qube)
  uint32_t audio_domid = 0;  // vchan client domain (this audio domain)
  std::string label;         // label colour for sound servers, may be empty
  bool native_enabled = true;
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{5000};
  std::chrono::milliseconds stable_after{3000};       // resets the backoff
  std::chrono::milliseconds handshake_timeout{2000};  // shm grant, native hello
  std::chrono::milliseconds tick{10};                 // pump / housekeeping
  std::chrono::milliseconds report_interval{100};     // Latency + ClockTick
  std::chrono::milliseconds heartbeat_interval{1000};
  unsigned heartbeat_misses = 3;
  std::chrono::milliseconds target_fill{40};  // playback prebuffer (stock qubes)
  // Native qubes: the agent follows the device clock (ClockTicks) and trims
  // its own backlog, so the daemon keeps only a small prebuffer and asks the
  // sound server for a small buffer (0 = the backend's default).
  std::chrono::milliseconds native_target_fill{kDefaultNativeTargetFill};
  std::chrono::milliseconds native_buffer{kDefaultNativeBuffer};
  // Test hook (--test-tick-skew-ppm): ClockTicks claim a device this many
  // ppm faster (> 0) or slower than it is, as a drifting clock would.
  int32_t test_tick_skew_ppm = 0;
  // False for a relay (the network bridge's qube side): volume and mute are
  // reported to the agent (VolumeState) but applied by the far audio domain.
  bool apply_gain = true;
  std::chrono::milliseconds playback_ring{500};  // playback memory bound
  std::chrono::milliseconds mic_queue{200};      // mic kept for a slow reader
};

struct SessionCounters {
  uint64_t bytes_in = 0;          // playback PCM read from the qube (4713)
  uint64_t bytes_out = 0;         // mic PCM sent to the qube (4714)
  uint64_t control_bytes_in = 0;  // read from 4714
  uint64_t underruns = 0;         // playback ran dry while playing
  uint64_t overruns = 0;          // playback bytes dropped (ring full) events
  uint64_t mic_overruns = 0;      // mic audio dropped because the qube did not read
  uint64_t mic_dropped_bytes = 0;
  uint64_t frames_played = 0;    // qube frames taken by the device side
  uint64_t unknown_words = 0;    // stock control words without meaning
  uint64_t dropped_reports = 0;  // Latency/ClockTick/Heartbeat not sent (4714 full)
  uint64_t connects = 0;         // sessions established
  uint64_t disconnects = 0;
  uint64_t protocol_errors = 0;           // sessions closed for malformed input
  uint64_t playback_discarded_bytes = 0;  // qaudio.Play deny: read, replaced by silence
  uint32_t latency_us = 0;                // current playback latency (ring + device)
  uint32_t playback_fill_bytes = 0;
  uint32_t playback_ring_bytes = 0;  // bound of the fill
  uint32_t mic_queue_bytes = 0;      // mic bytes waiting for the qube
  float level = 0;                   // playback peak after volume, 0..1, decaying (a meter)
};

struct SessionInfo {
  std::string name;
  uint32_t domid = 0;
  std::string label;
  SessionState state = SessionState::Waiting;
  SessionProtocol protocol = SessionProtocol::None;
  StreamFormat playback_format = kStockFormat;
  StreamFormat capture_format = kStockFormat;
  uint32_t volume_percent = kDefaultVolumePercent;
  bool muted = false;
  bool corked = false;
  bool mic_started = false;   // the qube wants to record
  bool mic_attached = false;  // the gate is open (daemon-level decision)
  std::string last_error;     // why the last connection ended, if it failed
  std::string output_device;  // where its playback goes; empty = backend default
  SessionCounters counters;
};

class Session {
 public:
  Session(EventLoop& loop,
          Transport& transport,
          Backend& backend,
          SessionConfig config,
          const QubeState& state);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Attempts to connect now; from then on reconnects by itself.
  void start();
  // Tears everything down; no reconnect until start() again.
  void stop();

  void set_volume(uint32_t percent);  // clamped to 0..150
  void set_muted(bool muted);
  void set_mic_attached(bool attached);
  // Both halves of the gate at once (a relay mirrors a remote daemon's
  // MicState); the daemon itself folds policy into set_mic_attached.
  void set_mic_state(bool attached, bool allowed);
  // qaudio.Play deny (the mic gate): the qube's playback is still read at the
  // device's pace, but replaced by silence and counted; the qube sees no error.
  void set_playback_allowed(bool allowed);
  // The device the qube plays to (empty = the backend's default); moves a
  // live stream at once. Fails (and keeps the old device) when the backend
  // refuses, e.g. a mixing backend with its single device.
  Result<void> set_output_device(const std::string& device);
  // Called (on the loop thread) when the qube starts or stops its mic, so the
  // daemon can surface a request to record while the mic is not attached.
  void set_mic_observer(std::function<void(const std::string& qube, bool started)> fn) {
    mic_observer_ = std::move(fn);
  }

  SessionInfo info() const;
  const std::string& name() const { return cfg_.name; }
  SessionState state() const { return state_; }
  SessionProtocol protocol() const;

 private:
  class TimedSource;  // records the backend's PeriodTiming around the stream

  // connection life cycle
  void try_connect();
  void on_channel_event(int which);
  void check_handshake();
  void on_connected();
  void close_session(const std::string& why, bool protocol_error);
  void schedule_reconnect();
  void on_tick();
  void on_report();
  void send_latency(bool force);
  void send_clock_tick();

  // playback
  Result<void> open_playback(const StreamFormat& fmt, bool adaptive);
  // The playback prebuffer of the open stream (native or stock).
  std::chrono::milliseconds play_target() const {
    return play_native_ ? cfg_.native_target_fill : cfg_.target_fill;
  }
  void close_playback();
  void pump_playback();
  void cork(bool corked);

  // control channel + protocol
  void read_control();
  void process_control(std::span<const std::byte> bytes);
  void process_stock(std::span<const std::byte> bytes);
  void process_native(std::span<const std::byte> bytes);
  void handle_stock_word(uint32_t word);
  void handle_native(const protocol::Message& m);
  void enter_native();
  enum class Priority { Required, Droppable };
  bool send(const protocol::Message& m, Priority prio);
  bool flush_out();

  // microphone
  void mic_start();
  void mic_stop();
  Result<void> open_capture();
  void close_capture();
  void pump_mic();
  void discard_mic();

  void fold_counters();
  size_t playback_ring_bound() const;

  EventLoop& loop_;
  Transport& transport_;
  Backend& backend_;
  SessionConfig cfg_;

  SessionState state_ = SessionState::Waiting;
  std::unique_ptr<Channel> play_ch_;
  std::unique_ptr<Channel> ctl_ch_;
  EventLoop::Id play_watch_ = 0;
  EventLoop::Id ctl_watch_ = 0;
  EventLoop::Id reconnect_timer_ = 0;
  EventLoop::Id tick_timer_ = 0;
  EventLoop::Id report_timer_ = 0;
  std::chrono::milliseconds backoff_;
  EventLoop::Clock::time_point connect_started_{};
  EventLoop::Clock::time_point connected_at_{};
  bool logged_waiting_ = false;
  std::string last_error_;
  std::string output_device_;  // empty = backend default

  // protocol
  std::unique_ptr<protocol::DaemonNegotiator> neg_;
  protocol::StockControlDecoder stock_;
  std::unique_ptr<protocol::FrameDecoder> frames_;
  uint8_t version_ = 0;
  uint32_t caps_ = 0;  // agreed capabilities (native)
  protocol::HeartbeatMonitor heartbeat_;
  std::vector<std::byte> out_;  // control bytes not yet written (whole frames)
  protocol::Latency last_latency_;
  bool play_native_ = false;  // the playback stream is a native one (no adaptive rate)

  // playback
  std::unique_ptr<PlaybackStream> playback_;
  std::unique_ptr<TimedSource> timed_;
  StreamHandle play_handle_ = 0;
  bool play_added_ = false;
  StreamFormat play_format_ = kStockFormat;
  bool draining_ = false;  // cork requested: play out the ring, then cork
  bool drain_padded_ = false;
  bool corked_ = false;
  uint64_t drain_underruns_ = 0;  // stream underruns when the drain began

  // capture
  std::unique_ptr<CaptureStream> capture_;
  StreamHandle cap_handle_ = 0;
  bool cap_added_ = false;
  StreamFormat cap_format_ = kStockFormat;
  bool mic_started_ = false;
  bool mic_attached_ = false;
  bool mic_allowed_ = true;  // the daemon's MicGate folds policy into set_mic_attached
  bool playback_allowed_ = true;
  EventLoop::Clock::time_point mic_discard_until_{};  // detach: drop what was in flight
  std::function<void(const std::string&, bool)> mic_observer_;

  // settings
  uint32_t volume_percent_;
  bool muted_;

  // counters: totals of ended connections + the live streams
  SessionCounters totals_;
  uint64_t ignored_underruns_ = 0;
  uint64_t logged_underruns_ =
      0;  // debug log of underruns (per stream)  // the end of a drain is not an underrun

  std::vector<std::byte> buf_;      // playback I/O scratch, allocated once
  std::vector<std::byte> ctl_buf_;  // control reads (words/frames being processed)
  std::vector<std::byte> mic_buf_;
};

}  // namespace qaudio::daemon

// AgentSession: the core of qubes-audio-agent. It serves the vchan ports
// 4713 (playback) and 4714 (control + microphone) to the audio domain, runs
// the negotiation when the daemon connects (native or stock protocol), and
// moves PCM between an AgentBackend's rings and the channels.
//
// Behaviour:
//  - protocol auto: send the hello, fall back to stock after the timeout;
//    stock: never send the hello; native: require a Welcome (else reconnect).
//  - native: PlaybackFormat/CaptureFormat in the backend's own formats (a
//    rejected format falls back to S16LE 44.1 kHz stereo, converted here);
//    stock: converts to/from S16LE 44.1 kHz stereo (speexdsp).
//  - Cork/Uncork as the output goes idle/active, MicStart/MicStop as an app
//    opens/closes the microphone; heartbeats (native); Latency and ClockTick
//    are passed to the backend.
//  - Reconnects by itself: a channel that closes, a peer that stops
//    answering heartbeats, or a new audio domain id all tear the connection
//    down and serve again with a fresh negotiation. The backend (and the
//    qube's sound server and apps) never notice beyond a gap.
//  - Runs entirely on the EventLoop's thread; only the backend's rings are
//    touched from other threads.
//
//   EventLoop loop;
//   auto transport = make_transport("unix:/run/qaudio");
//   AgentSession s(loop, backend, std::move(*transport), {.domid = 5, .audiovm_domid = 0});
//   if (auto r = s.start(); !r) die(r.error().message);
//   loop.run();
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent_backend.hpp"
#include "backlog_trimmer.hpp"
#include "pcm_convert.hpp"
#include "qaudio/channel.hpp"
#include "qaudio/event_loop.hpp"
#include "qaudio/negotiation.hpp"
#include "qaudio/protocol.hpp"

namespace qaudio::agent {

enum class ProtocolMode { Auto, Stock, Native };
std::optional<ProtocolMode> protocol_mode_from_string(std::string_view s);

struct AgentOptions {
  uint32_t domid = 0;          // this qube (the vchan server)
  uint32_t audiovm_domid = 0;  // the audio domain (the vchan client)
  ProtocolMode protocol = ProtocolMode::Auto;
  std::chrono::milliseconds negotiation_timeout = protocol::kDefaultNegotiationTimeout;
  std::chrono::milliseconds heartbeat_interval{1000};
  unsigned heartbeat_misses = 3;
  // Target for the agent's own queue; older playback data is dropped beyond
  // max(4 x this, 40 ms) (a stalled daemon never makes the qube lag behind).
  uint32_t latency_ms = 10;
  // When non-zero, overrides that bound (the ALSA plugin: an app may write
  // a whole ALSA buffer at once).
  uint32_t max_queue_ms = 0;
  // Native: drop a backlog that a stall left queued (BacklogTrimmer; the
  // level trimmed to is at least latency_ms).
  bool trim_backlog = true;
  RingSizes playback_ring{16384, 1024};  // 4713: qube -> audio domain
  RingSizes control_ring{4096, 32768};   // 4714: control out, mic PCM in
};

enum class SessionPhase { Waiting, Negotiating, Native, Stock };
std::string_view to_string(SessionPhase p);

// Counters readable from any thread (tests, status logs).
struct SessionStats {
  std::atomic<uint64_t> connections{0};  // negotiations completed
  std::atomic<uint64_t> disconnects{0};
  std::atomic<uint64_t> playback_bytes{0};  // bytes written to 4713
  std::atomic<uint64_t> mic_bytes{0};       // converted mic bytes into the capture ring
  std::atomic<uint64_t> dropped_bytes{0};   // playback dropped (stale or while corked)
  std::atomic<uint64_t> corks{0};
  std::atomic<uint64_t> uncorks{0};
  std::atomic<uint64_t> mic_starts{0};
  std::atomic<uint64_t> mic_stops{0};
  std::atomic<uint64_t> latency_reports{0};
  std::atomic<uint64_t> clock_ticks{0};
  std::atomic<uint64_t> trims{0};           // backlog trims (native)
  std::atomic<uint64_t> trimmed_frames{0};  // frames they dropped
  std::atomic<int> phase{0};                // SessionPhase
};

class AgentSession : private AgentBackend::Listener {
 public:
  using Clock = std::chrono::steady_clock;
  AgentSession(EventLoop& loop,
               AgentBackend& backend,
               std::unique_ptr<Transport> transport,
               AgentOptions opts);
  ~AgentSession() override;
  AgentSession(const AgentSession&) = delete;
  AgentSession& operator=(const AgentSession&) = delete;

  // Starts the backend and serves the ports. Loop thread.
  Result<void> start();
  // Closes the channels and stops the backend. Loop thread.
  void stop();
  // A new audio domain: drop the connection, serve for the new id. Loop thread.
  void set_audiovm_domid(uint32_t domid);

  SessionPhase phase() const { return static_cast<SessionPhase>(stats_.phase.load()); }
  const SessionStats& stats() const { return stats_; }
  // The format on 4713 (loop thread; meaningful once Native/Stock).
  StreamFormat wire_format() const { return wire_format_; }
  // Set when the backend failed (the program exits with it).
  const std::string& fatal_error() const { return fatal_; }

 private:
  // AgentBackend::Listener
  void on_output_active(bool active) override;
  void on_mic_in_use(bool in_use) override;
  void on_backend_error(const std::string& message) override;

  void serve();
  void disconnect(const std::string& why);
  void on_channel_event(bool control);
  void maybe_begin_negotiation();
  void on_negotiated();
  void read_control();
  void read_control_negotiating();
  void read_control_native();
  void read_control_stock();
  void handle_message(const protocol::Message& m);
  void deliver_mic(std::span<const std::byte> pcm);
  void send_state();
  void send_cork(bool cork);
  void send_mic(bool start);
  void send_message(const protocol::Message& m);
  void send_word(protocol::StockWord w);
  void queue_control(std::span<const std::byte> bytes);
  void flush_control();
  void pump_playback();
  void drop_stale_playback();
  bool splice_trim();
  void observe_backlog(Clock::time_point now);
  void set_wire_playback(StreamFormat f);
  void set_wire_capture(StreamFormat f);
  void on_timer();
  void report_latency();
  size_t channel_in_flight();
  void log_queue();
  void set_phase(SessionPhase p);

  EventLoop& loop_;
  AgentBackend& backend_;
  std::unique_ptr<Transport> transport_;
  AgentOptions opts_;
  SessionStats stats_;
  std::string fatal_;
  bool started_ = false;

  std::unique_ptr<Channel> play_ch_;
  std::unique_ptr<Channel> ctl_ch_;
  EventLoop::Id play_watch_ = 0;
  EventLoop::Id ctl_watch_ = 0;
  EventLoop::Id wake_watch_ = 0;
  EventLoop::Id timer_ = 0;
  EventLoop::Id cork_timer_ = 0;
  std::chrono::steady_clock::time_point last_serve_try_{};

  SessionPhase phase_ = SessionPhase::Waiting;
  std::optional<protocol::AgentNegotiator> neg_;
  std::optional<protocol::HeartbeatMonitor> heartbeat_;
  protocol::FrameBuffer frame_{};
  std::vector<std::byte> ctl_out_;  // control bytes waiting for channel space

  // Local state, kept across connections.
  bool output_active_ = false;
  bool mic_in_use_ = false;
  // What the daemon was told on this connection.
  bool sent_corked_ = false;
  bool sent_mic_ = false;

  // Playback path.
  bool playback_ready_ = false;  // the wire format is agreed
  bool playback_fallback_tried_ = false;
  StreamFormat wire_format_ = kStockFormat;
  std::unique_ptr<PcmConverter> play_conv_;  // null: pass through
  std::vector<std::byte> play_in_;           // ring -> converter input
  std::vector<std::byte> play_out_;          // converter output / pending write
  size_t play_out_off_ = 0;
  size_t play_out_len_ = 0;
  size_t play_capacity_ = 0;  // most room 4713 showed on this connection
  BacklogTrimmer trimmer_;
  size_t trim_frames_ = 0;           // a decided trim waiting for its frames
  std::vector<std::byte> trim_buf_;  // trim + fade frames, allocated with the format
  std::chrono::steady_clock::time_point last_queue_log_{};

  // Capture path.
  bool capture_ready_ = false;
  bool capture_fallback_tried_ = false;
  StreamFormat capture_wire_ = kStockFormat;
  std::unique_ptr<PcmConverter> cap_conv_;
  std::vector<std::byte> cap_carry_;  // partial frame carried between reads
  std::vector<std::byte> cap_buf_;
  std::vector<std::byte> cap_out_;

  // Latency bookkeeping (native).
  std::optional<protocol::Latency> last_latency_;
};

}  // namespace qaudio::agent

// Network channel endpoints (docs/protocol.md, "Network channel"): one UDP
// socket carrying authenticated, encrypted datagrams (net_wire + net_crypto)
// between an agent-side client and a daemon-side server, with per-peer
// sessions, an adaptive jitter buffer, Opus PLC/FEC, sample-granular drift
// compensation (net_drift.hpp) and per-session counters. Single-threaded: call every method
// of an endpoint (and of its sessions) from one thread, e.g. an EventLoop
// that polls fd(), calls handle_events() when readable and tick() from a
// timer, and pulls one frame per frame period.
//
//   NetEndpoint::Options o{.server = false, .bind = "0.0.0.0:0",
//                          .peer = "audio.example:4713", .keys = {{"audiovm", key}}};
//   auto ep = NetEndpoint::create(o);                 // Result<unique_ptr<NetEndpoint>>
//   loop: poll((*ep)->fd()) -> (*ep)->handle_events(now_us());  timer -> tick(now_us())
//   (*ep)->send_audio(*(*ep)->sessions()[0], pcm_frame, now_us());
//   session->pull(out_frame, now_us());               // jitter buffer playout
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "net_codec.hpp"
#include "net_crypto.hpp"
#include "net_drift.hpp"
#include "net_wire.hpp"
#include "qaudio/result.hpp"

namespace qaudio::net {

int64_t mono_us();  // CLOCK_MONOTONIC in microseconds

struct SessionCounters {
  uint64_t tx_packets = 0, tx_bytes = 0;  // datagrams and bytes on the wire
  uint64_t rx_packets = 0, rx_bytes = 0;  // authenticated datagrams accepted
  uint64_t tx_frames = 0, rx_frames = 0;  // audio frames sent / received
  uint64_t played = 0;                    // frames decoded from their own packet
  uint64_t red = 0;  // frames whose packet was lost, rebuilt from the next one's redundant copy
  uint64_t fec = 0;  // missing frames rebuilt from the next packet's FEC
  uint64_t plc = 0;  // missing frames concealed (lost or not yet arrived)
  uint64_t underruns = 0;  // of those: nothing newer had arrived (buffer ran dry)
  uint64_t late = 0;       // packets that arrived after their playout time
  uint64_t dropped = 0;    // frames skipped to trim a backlog of 2+ frames (after a stall)
  uint64_t replays = 0;    // authenticated datagrams refused as repeated or stale
  uint64_t address_changes = 0;
  uint64_t resets = 0;     // receive stream restarts (new peer session, long gap)
  uint64_t deepened = 0;   // jitter-buffer target raised after the buffer ran dry
  double loss_pct = 0;     // frames whose own packet was missing at playout, % of expected
  int64_t jitter_us = 0;   // interarrival jitter estimate (RFC 3550 style)
  int64_t rtt_us = -1;     // from keep-alive echoes; -1 until measured
  int64_t buffer_us = 0;   // mean time a played frame waited in the jitter buffer
  int64_t target_us = 0;   // jitter-buffer depth the adapter aims for
  int64_t boost_us = 0;    // of which: the stall allowance learnt from underruns
  int64_t depth_us = 0;    // smoothed depth held (jitter buffer + resampler input), sub-frame
  int32_t drift_ppm = 0;   // clock-drift correction now: > 0 the peer's clock runs fast
  int64_t latency_us = 0;  // reported end-to-end: frame + coder delay + rtt/2 + buffer + resampler
};

class NetEndpoint;

// One peer (a key): the daemon has one per configured qube, the agent one.
class NetSession {
 public:
  // speexdsp quality of the drift resampler: 48 taps; at a ratio within
  // 0.1 % of 1 its passband reaches ~21 kHz, above what Opus codes.
  static constexpr int kResamplerQuality = 3;
  const std::string& name() const { return name_; }
  // Authenticated traffic within the peer timeout.
  bool connected(int64_t now_us) const;
  // Writes one received frame (rx_channels() * rx_frame_samples() interleaved
  // S16) into out. Returns false, writing silence, while no stream plays
  // (nothing received yet, prefilling, or the peer went quiet). The audio is
  // resampled by the drift correction (counters().drift_ppm): no allocation,
  // bounded work.
  bool pull(std::span<int16_t> out, int64_t now_us);
  uint8_t rx_channels() const { return rx_channels_; }
  uint32_t rx_frame_samples() const { return frame_samples(rx_quarter_ms_); }
  SessionCounters counters() const;
  // Sequence number of the newest frame the last pull() took from the jitter
  // buffer into the resampler (for latency checks).
  uint32_t last_played_seq() const { return last_played_seq_; }
  uint64_t last_played_send_us() const { return last_played_send_us_; }
  std::string peer_address() const;
  // The peer's latest control state; all zero while not connected.
  StatePayload peer_state(int64_t now_us) const {
    return connected(now_us) ? peer_state_ : StatePayload{};
  }
  uint32_t peer_flags(int64_t now_us) const { return peer_state(now_us).flags; }

 private:
  friend class NetEndpoint;
  struct Slot {
    bool full = false;
    uint32_t seq = 0;
    Codec codec = Codec::Opus;
    uint16_t len = 0;
    int64_t arrival_us = 0;
    uint64_t send_us = 0;
    bool redundant = false;  // filled from the next packet's redundant copy
    std::array<std::byte, kMaxAudioData> data{};
  };
  static constexpr uint32_t kSlots = 64;

  void reset_rx();
  void on_audio(const AudioPayload& a, int64_t now_us);
  int32_t depth() const;  // frames received at or after next_seq_ (newest - next + 1)
  void play_slot(Slot& s, std::span<int16_t> out, int64_t now_us);
  // Takes the next frame from the jitter buffer (played, red, FEC or PLC)
  // into out: what pull() did before drift compensation.
  void next_frame(std::span<int16_t> out, int64_t now_us);
  // Samples held now, sub-frame: jitter-buffer frames + resampler input not
  // yet consumed + the time since the newest frame arrived (which keeps the
  // measure from jumping by a frame at each arrival).
  double held_samples(int64_t now_us) const;
  void steer(int64_t now_us);
  int64_t frame_us() const { return int64_t{rx_quarter_ms_} * 2500; }
  int32_t target_frames() const;
  void note_pull(bool ran_dry);

  // Underrun adaptation: a run of dry pulls (a stall of the path or of the
  // sender) raises the target by its length once audio resumes; one frame
  // of that allowance is given back per kBoostDecayUs without a dry pull.
  static constexpr int32_t kMaxBoostFrames = 20;
  static constexpr double kTargetTau = 4.0;  // s, smoothing of the drift loop's set point
  static constexpr int64_t kBoostDecayUs = 2'000'000;

  std::string name_;
  Key key_{};
  uint64_t key_id_ = 0;
  int64_t peer_timeout_us_ = 0;
  // Peer identity and freshness.
  uint64_t peer_session_ = 0;
  std::array<uint64_t, 8> retired_{};
  size_t retired_next_ = 0;
  ReplayWindow window_;
  sockaddr_storage addr_{};
  socklen_t addr_len_ = 0;
  int64_t last_rx_us_ = -1;
  int64_t last_hello_sent_us_ = -1'000'000'000;
  int64_t last_keepalive_us_ = -1'000'000'000;
  uint64_t peer_ka_send_us_ = 0;
  int64_t peer_ka_rx_us_ = 0;
  // Transmit.
  std::unique_ptr<AudioEncoder> enc_;
  uint64_t tx_counter_ = 0;
  uint32_t tx_seq_ = 0;
  std::array<std::byte, kMaxAudioData> prev_coded_{};  // the last frame sent, for redundancy
  size_t prev_len_ = 0;
  Codec prev_codec_ = Codec::Opus;
  // Receive stream and jitter buffer.
  StreamId rx_stream_ = StreamId::Playback;
  std::unique_ptr<AudioDecoder> dec_;
  std::unique_ptr<AudioDecoder> dec_other_;  // preallocated for the other channel count
  uint8_t rx_channels_ = 2;
  uint8_t rx_quarter_ms_ = 4;
  bool rx_active_ = false;
  bool rx_started_ = false;
  uint32_t next_seq_ = 0;
  uint32_t newest_seq_ = 0;
  uint32_t first_seq_ = 0;
  bool have_transit_ = false;
  int64_t prev_transit_ = 0;
  int64_t newest_arrival_us_ = 0;
  double jitter_us_ = 0;
  double window_min_held_ = 1e18;  // samples, over the current second
  uint32_t window_pulls_ = 0;
  // Drift compensation: decoded frames wait in fifo_ until the resampler
  // takes them (one frame at most; it is refilled only once empty).
  std::unique_ptr<DriftResampler> rs_;
  std::unique_ptr<DriftResampler> rs_other_;  // preallocated for the other channel count
  DriftLoop drift_;
  std::vector<int16_t> fifo_;
  uint32_t fifo_pos_ = 0, fifo_len_ = 0;  // frames
  bool rx_playing_ = false;               // the stream's first pull is done
  double fifo_hold_ = 0;                  // smoothed fifo content after a pull, frames
  double jitter_frames_avg_ = -1;         // 3 * jitter / frame, smoothed over kTargetTau
  double drift_avg_ppm_ = 0;              // the applied correction, smoothed (counters)
  double buffer_wait_us_ = 0;
  uint32_t last_played_seq_ = 0;
  uint64_t last_played_send_us_ = 0;
  int codec_delay_us_ = 0;
  int32_t boost_frames_ = 0;
  int32_t dry_run_ = 0;
  uint32_t calm_pulls_ = 0;
  // Control state (PacketType::State).
  StatePayload local_state_;
  StatePayload peer_state_;
  std::vector<Slot> slots_;
  std::vector<int16_t> scratch_;
  SessionCounters c_;
};

class NetEndpoint {
 public:
  struct Peer {
    std::string name;  // qube name (server) or a label for the server (client)
    Key key{};
  };
  struct Options {
    bool server = false;
    std::string bind = "0.0.0.0:0";  // HOST:PORT ([v6]:PORT) to bind; port 0 = any
    std::string peer;                // client: the server's HOST:PORT
    std::vector<Peer> keys;          // server: one per qube; client: exactly one
    CodecParams tx;                  // what this side sends
    int64_t keepalive_us = 250'000;
    int64_t peer_timeout_us = 2'000'000;
  };

  static Result<std::unique_ptr<NetEndpoint>> create(const Options& o);
  ~NetEndpoint();
  NetEndpoint(const NetEndpoint&) = delete;
  NetEndpoint& operator=(const NetEndpoint&) = delete;

  int fd() const { return fd_; }
  uint16_t local_port() const;
  std::string describe() const;
  // Drains the socket: every datagram is parsed, authenticated, checked for
  // freshness and dispatched; anything else is counted and dropped.
  void handle_events(int64_t now_us);
  // Hellos until the peer is known, keep-alives after; call every ~50 ms.
  void tick(int64_t now_us);
  // Encodes and sends one frame (tx.channels * frame samples, interleaved) to
  // the session's peer. Fails while the peer is not known yet.
  Result<void> send_audio(NetSession& s, std::span<const int16_t> frame, int64_t now_us);
  // Sets this side's control state toward the session's peer: sent at once
  // when its flags or volume changed and the peer is known (a latency that
  // moved travels with the next keep-alive), and with every keep-alive after,
  // so a lost datagram is repaired within one interval.
  void set_state(NetSession& s, const StatePayload& st);
  void set_state(NetSession& s, uint32_t flags) { set_state(s, StatePayload{flags, 0, 0}); }
  // Tells the peers this side leaves (best effort).
  void send_bye(int64_t now_us);

  NetSession* session(std::string_view name);
  std::vector<NetSession*> sessions();

  // Endpoint-level refusals (before a session could be attributed).
  uint64_t rejected_malformed() const { return rejected_malformed_; }
  uint64_t rejected_unknown_key() const { return rejected_unknown_key_; }
  uint64_t rejected_auth() const { return rejected_auth_; }
  uint64_t rejected_stale() const { return rejected_stale_; }

 private:
  NetEndpoint() = default;
  void on_datagram(std::span<const std::byte> d,
                   const sockaddr_storage& from,
                   socklen_t from_len,
                   int64_t now_us);
  void send_packet(NetSession& s,
                   PacketType type,
                   uint64_t receiver_session,
                   std::span<const std::byte> plain,
                   const sockaddr_storage& to,
                   socklen_t to_len);
  void send_hello(NetSession& s,
                  uint64_t receiver,
                  const sockaddr_storage& to,
                  socklen_t len,
                  int64_t now_us);
  void log_refusal(const char* what,
                   const sockaddr_storage& from,
                   socklen_t from_len,
                   int64_t now_us);

  bool server_ = false;
  int fd_ = -1;
  uint64_t my_session_ = 0;
  int64_t keepalive_us_ = 0;
  std::vector<std::unique_ptr<NetSession>> sessions_;
  std::array<std::byte, kMaxDatagram + 1> rx_buf_{};
  std::array<std::byte, kMaxDatagram> tx_buf_{};
  std::array<std::byte, kMaxPlain> plain_buf_{};
  std::array<std::byte, kMaxPlain> payload_buf_{};
  std::array<std::byte, kMaxAudioData> coded_buf_{};
  uint64_t rejected_malformed_ = 0, rejected_unknown_key_ = 0, rejected_auth_ = 0,
           rejected_stale_ = 0;
  int64_t last_refusal_log_us_ = -1'000'000'000;
  uint64_t refusals_since_log_ = 0;
};

// "HOST:PORT" or "[V6]:PORT" to a socket address (numeric or resolved).
Result<std::pair<sockaddr_storage, socklen_t>> resolve_address(std::string_view spec);
std::string address_to_string(const sockaddr_storage& a, socklen_t len);

}  // namespace qaudio::net

// Network channel wire format (docs/protocol.md, "Network channel"): the
// clear header every UDP datagram starts with, and the payloads that travel
// inside the AEAD (audio frames, keep-alives). Pure parsing, no crypto: this
// is everything that reads network bytes BEFORE authentication, and it is
// fuzzed (fuzz/net_wire_fuzzer.cpp).
//
//   auto h = qaudio::net::parse_header(datagram);   // Result<Header>
//   if (!h) { count it, drop it }                   // never answered
//   ... AEAD-open with the key h->key_id names, then parse_audio(plain) ...
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "qaudio/result.hpp"

namespace qaudio::net {

inline constexpr uint32_t kMagic = 0x314e4151;  // "QAN1" little-endian
inline constexpr uint8_t kVersion = 1;
inline constexpr size_t kHeaderSize = 40;
inline constexpr size_t kTagSize = 16;        // Poly1305
inline constexpr size_t kMaxDatagram = 1400;  // fits a 1500-byte MTU with IPv6+UDP
inline constexpr size_t kMaxPlain = kMaxDatagram - kHeaderSize - kTagSize;
inline constexpr size_t kAudioHeaderSize = 20;
inline constexpr size_t kMaxAudioData = kMaxPlain - kAudioHeaderSize;
inline constexpr size_t kKeepAliveSize = 24;
inline constexpr size_t kRedundantHeaderSize = 4;
inline constexpr uint8_t kAudioFlagRedundant = 1;
inline constexpr size_t kStateSize = 16;

enum class PacketType : uint8_t {
  Hello = 1,      // "here is my session"; answered with a Hello naming the sender
  Audio = 2,      // one coded audio frame
  KeepAlive = 3,  // liveness, NAT binding, round-trip time
  Bye = 4,        // the sender is leaving (orderly shutdown)
  State = 5,      // the sender's latest control state (idempotent, repeated)
};

// The 40 clear bytes, all little-endian, authenticated as associated data:
//   [0,4) magic "QAN1"  [4] version  [5] type  [6,8) zero
//   [8,16) key id  [16,24) sender session  [24,32) receiver session (0 = unknown)
//   [32,40) counter (strictly increasing per sender session; part of the nonce)
struct Header {
  PacketType type = PacketType::Hello;
  uint64_t key_id = 0;
  uint64_t sender_session = 0;
  uint64_t receiver_session = 0;
  uint64_t counter = 0;
};

// Checks size bounds (header + tag <= size <= kMaxDatagram), magic, version,
// known type, zero reserved bytes and a non-zero sender session. Says why not.
Result<Header> parse_header(std::span<const std::byte> datagram);
void write_header(const Header& h, std::span<std::byte, kHeaderSize> out);

// Silence: a frame of exact digital silence (all samples zero), sent as one
// zero byte; the receiver plays exact zeros (Opus would leave a faint tail,
// and a mic gate's silence must stay exactly silent).
enum class Codec : uint8_t { Opus = 0, Pcm16 = 1, Silence = 2 };
enum class StreamId : uint8_t { Playback = 0, Microphone = 1 };

// Audio payload (inside the AEAD):
//   [0] stream  [1] codec  [2] channels (1|2)  [3] frame duration in units of 2.5 ms
//   [4,8) sequence number  [8,16) sender monotonic time, us  [16,18) data length
//   [18] flags (bit 0: a redundant block follows)  [19] zero  [20, 20+len) coded frame
//   redundant block (RFC 2198 style: frame seq-1 again, so one loss is rebuilt
//   exactly): [0] codec [1] zero [2,4) length, then the coded frame.
struct AudioPayload {
  StreamId stream = StreamId::Playback;
  Codec codec = Codec::Opus;
  uint8_t channels = 2;
  uint8_t frame_quarter_ms = 4;  // 2.5 ms units: 2 = 5 ms, 4 = 10 ms, 8 = 20 ms
  uint32_t seq = 0;
  uint64_t send_us = 0;
  std::span<const std::byte> data;
  Codec red_codec = Codec::Opus;  // the redundant copy of frame seq-1, if red is not empty
  std::span<const std::byte> red;
};
Result<AudioPayload> parse_audio(std::span<const std::byte> plain);
// Returns the bytes written, or 0 if `out` is too small or data too long.
size_t write_audio(const AudioPayload& a, std::span<std::byte> out);

// Keep-alive payload: [0,8) sender time us, [8,16) echo of the peer's last
// sender time, [16,24) how long the echo was held, us (RTT = now - echo - held).
struct KeepAlivePayload {
  uint64_t send_us = 0;
  uint64_t echo_us = 0;
  uint64_t held_us = 0;
};
Result<KeepAlivePayload> parse_keepalive(std::span<const std::byte> plain);
void write_keepalive(const KeepAlivePayload& k, std::span<std::byte, kKeepAliveSize> out);

// State payload: the sender's latest control state, sent on every change of
// flags or volume and with every keep-alive (so a lost one is repaired within
// 250 ms). [0,4) flags, [4,8) playback latency in us, [8,10) volume in per
// mille, [10,16) zero. Unknown flag bits, a latency above 10 s, a volume
// above 1500 or non-zero reserved bytes refuse the payload (a newer peer must
// negotiate).
//   qube -> audio domain:  kStateMicWanted; latency and volume 0.
//   audio domain -> qube:  what the daemon tells its (native) agent about
//   this qube, so the remote agent hears it as a local one would: the mic
//   gate (attached by the user, allowed by policy), mute, volume, and the
//   playback latency from the qube side's send time to audible (network
//   leg + this bridge + the daemon's buffer and device).
inline constexpr uint32_t kStateMicWanted = 1u << 0;    // the qube's agent records
inline constexpr uint32_t kStateMicAttached = 1u << 1;  // the user attached the mic
inline constexpr uint32_t kStateMicAllowed = 1u << 2;   // policy allows it
inline constexpr uint32_t kStateMuted = 1u << 3;        // the daemon mutes this qube
inline constexpr uint32_t kStateKnownFlags =
    kStateMicWanted | kStateMicAttached | kStateMicAllowed | kStateMuted;
inline constexpr uint32_t kStateMaxLatencyUs = 10'000'000;
inline constexpr uint16_t kStateMaxVolumePermille = 1500;
struct StatePayload {
  uint32_t flags = 0;
  uint32_t latency_us = 0;       // 0 = not known
  uint16_t volume_permille = 0;  // 0 from a qube (it has no say)
  bool operator==(const StatePayload&) const = default;
};
Result<StatePayload> parse_state(std::span<const std::byte> plain);
void write_state(const StatePayload& st, std::span<std::byte, kStateSize> out);

// Frame length in samples per channel at 48 kHz for a 2.5 ms-unit duration.
inline uint32_t frame_samples(uint8_t quarter_ms) {
  return quarter_ms * 120u;
}

}  // namespace qaudio::net

// The qaudio wire protocol: stock Qubes control words and the native framed
// messages on vchan port 4714 (docs/protocol.md is the specification).
//
// Stock: 4713 = raw S16LE 44.1 kHz stereo playback (qube -> audio domain);
// 4714 = little-endian u32 control words (qube -> audio domain) and raw mic
// PCM (audio domain -> qube). Native (negotiated, see qaudio/negotiation.hpp):
// 4714 carries frames [u8 version][u8 flags=0][u16 type][u32 length] + payload
// both ways; 4713 carries raw PCM in the negotiated playback format.
//
// Nothing here allocates on the success path; decode never trusts a length.
//
//   FrameBuffer buf;                                   // fits any frame
//   auto n = encode(VolumeState{800, false}, buf);     // Result<size_t>
//   channel.write(std::span(buf).first(*n));
//
//   FrameDecoder dec;
//   size_t used = dec.feed(bytes);                     // keep bytes[used..] for later
//   for (;;) {
//     auto r = dec.next();
//     if (auto* m = std::get_if<Message>(&r)) { handle(*m); continue; }
//     if (auto* e = std::get_if<DecodeError>(&r)) { log(e->reason); close(); }
//     break;                                           // NeedMore
//   }
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "qaudio/format.hpp"
#include "qaudio/result.hpp"

namespace qaudio::protocol {

// ---------------------------------------------------------------- ports ----

inline constexpr uint32_t kPortPlayback = 4713;  // qube -> audio domain PCM
inline constexpr uint32_t kPortControl = 4714;   // control (+ mic PCM back)

// ------------------------------------------------------- stock protocol ----

// Little-endian u32 words a stock agent writes on 4714.
enum class StockWord : uint32_t {
  MicStop = 0x00010000,
  MicStart = 0x00010001,
  Unknown4 = 0x00010004,  // sent by one stock agent; no known meaning: ignored
  Cork = 0x00020000,
  Uncork = 0x00020001,
};

// What a control word read on 4714 means to a daemon.
enum class ControlKind : uint8_t {
  MicStart,
  MicStop,
  Cork,
  Uncork,
  Ignored,      // a known word without meaning (0x00010004)
  Unknown,      // any other word: ignored too, but counted
  NativeHello,  // the first word of a native agent's hello (kHelloMagic)
};

ControlKind classify(uint32_t word);
std::string_view to_string(ControlKind k);
std::array<std::byte, 4> word_bytes(uint32_t word);  // little-endian
inline std::array<std::byte, 4> word_bytes(StockWord w) {
  return word_bytes(static_cast<uint32_t>(w));
}

// Reassembles control words from bytes split at any point. Carries at most
// three bytes between calls.
//
//   StockControlDecoder d;
//   std::span<const std::byte> in = bytes;
//   while (auto w = d.next(in)) { act(classify(*w)); }
class StockControlDecoder {
 public:
  // Takes bytes from the front of `in` until a word is complete and returns
  // it; returns nullopt once `in` is empty (a partial word is kept).
  std::optional<uint32_t> next(std::span<const std::byte>& in);
  size_t pending() const { return pending_; }

 private:
  std::array<std::byte, 4> buf_{};
  size_t pending_ = 0;
};

// ---------------------------------------------- native hello (4714 words) ----

// A native agent opens 4714 with two words that stock daemons ignore:
//   word 0: kHelloMagic   (bytes "QAUD" on the wire)
//   word 1: (min_version << 8) | max_version, upper 16 bits zero
inline constexpr uint32_t kHelloMagic = 0x44554151;
inline constexpr size_t kHelloSize = 8;
inline constexpr uint8_t kProtocolVersion = 1;  // the highest version this code speaks
inline constexpr uint8_t kMinProtocolVersion = 1;

struct HelloWords {
  uint8_t min_version = kMinProtocolVersion;
  uint8_t max_version = kProtocolVersion;
  friend bool operator==(const HelloWords&, const HelloWords&) = default;
};
std::array<std::byte, kHelloSize> encode_hello(HelloWords h);
// Parses the version word (the second word). nullopt when it is not one:
// upper bits set, a zero version, or min > max.
std::optional<HelloWords> parse_version_word(uint32_t word);

// --------------------------------------------------------------- framing ----

inline constexpr size_t kFrameHeaderSize = 8;
inline constexpr size_t kMaxPayload = 4096;  // no message type may exceed this
inline constexpr size_t kMaxFrameSize = kFrameHeaderSize + kMaxPayload;
using FrameBuffer = std::array<std::byte, kMaxFrameSize>;

// Types 0x0000..0x000F are reserved and never sent, so the first four bytes
// of a frame header never read as a stock control word (0x0001xxxx, 0x0002xxxx).
enum class MessageType : uint16_t {
  Hello = 0x0010,           // agent -> daemon, first frame after Welcome
  Welcome = 0x0011,         // daemon -> agent, answers the hello words
  PlaybackFormat = 0x0020,  // agent -> daemon
  CaptureFormat = 0x0021,   // agent -> daemon
  FormatAccepted = 0x0022,  // daemon -> agent
  FormatRejected = 0x0023,  // daemon -> agent
  Cork = 0x0030,            // agent -> daemon (drain, then stop playback)
  Uncork = 0x0031,          // agent -> daemon
  MicStart = 0x0032,        // agent -> daemon
  MicStop = 0x0033,         // agent -> daemon
  Latency = 0x0040,         // daemon -> agent
  ClockTick = 0x0041,       // daemon -> agent
  VolumeState = 0x0050,     // daemon -> agent
  MicState = 0x0051,        // daemon -> agent
  MicData = 0x0060,         // daemon -> agent, capture PCM
  Heartbeat = 0x0070,       // both ways
  PeerError = 0x0080,       // both ways, then the sender closes
};

std::string_view to_string(MessageType t);
// Exact payload size of fixed messages; for MicData and PeerError the range.
struct PayloadBounds {
  size_t min;
  size_t max;
};
std::optional<PayloadBounds> payload_bounds(uint16_t type);  // nullopt: unknown type

// Capability bits (Hello: what the agent wants; Welcome: what the daemon offers).
// Unknown bits are carried and ignored.
inline constexpr uint32_t kCapLatency = 1u << 0;
inline constexpr uint32_t kCapClockTicks = 1u << 1;
inline constexpr uint32_t kCapVolumeState = 1u << 2;
inline constexpr uint32_t kCapMicState = 1u << 3;
inline constexpr uint32_t kCapCapture = 1u << 4;
inline constexpr uint32_t kCapHeartbeat = 1u << 5;
inline constexpr uint32_t kCapAll = (1u << 6) - 1;

// Bounds the decoder enforces on numbers.
inline constexpr uint32_t kMinDeviceRate = 8000;
inline constexpr uint32_t kMaxDeviceRate = 384000;
inline constexpr uint32_t kMaxPeriodFrames = 65536;
inline constexpr uint64_t kMaxLatencyNs = 10'000'000'000;  // 10 s
inline constexpr uint16_t kMaxVolumePermille = 1500;       // 1000 = unity
inline constexpr size_t kMaxMicData = kMaxPayload;
inline constexpr size_t kMaxErrorText = 200;

enum class StreamDirection : uint8_t { Playback = 0, Capture = 1 };

enum class RejectReason : uint16_t {
  Unsupported = 1,  // the daemon cannot do this format (try another)
  Busy = 2,         // not now (e.g. a stream is running): retry later
  Internal = 3,     // the daemon failed; keep the previous format
};

enum class ErrorCode : uint16_t {
  Protocol = 1,  // malformed input; the sender closes after this
  Version = 2,   // no common version
  Internal = 3,
  ShuttingDown = 4,  // daemon stopping / agent leaving
};

// ------------------------------------------------------------- messages ----

struct Hello {
  uint32_t capabilities = kCapAll;
  friend bool operator==(const Hello&, const Hello&) = default;
};
struct Welcome {
  uint8_t version = kProtocolVersion;  // chosen; header version of all later frames
  uint8_t daemon_min_version = kMinProtocolVersion;
  uint8_t daemon_max_version = kProtocolVersion;
  uint32_t capabilities = kCapAll;
  uint32_t device_rate = 48000;  // Hz, kMinDeviceRate..kMaxDeviceRate
  uint32_t period_frames = 480;  // device period, 1..kMaxPeriodFrames
  friend bool operator==(const Welcome&, const Welcome&) = default;
};
struct PlaybackFormat {
  StreamFormat format;
  friend bool operator==(const PlaybackFormat&, const PlaybackFormat&) = default;
};
struct CaptureFormat {
  StreamFormat format;
  friend bool operator==(const CaptureFormat&, const CaptureFormat&) = default;
};
struct FormatAccepted {
  StreamDirection direction = StreamDirection::Playback;
  StreamFormat format;
  friend bool operator==(const FormatAccepted&, const FormatAccepted&) = default;
};
struct FormatRejected {
  StreamDirection direction = StreamDirection::Playback;
  RejectReason reason = RejectReason::Unsupported;
  StreamFormat format;  // the format that was asked for
  friend bool operator==(const FormatRejected&, const FormatRejected&) = default;
};
struct Cork {
  friend bool operator==(const Cork&, const Cork&) = default;
};
struct Uncork {
  friend bool operator==(const Uncork&, const Uncork&) = default;
};
struct MicStart {
  friend bool operator==(const MicStart&, const MicStart&) = default;
};
struct MicStop {
  friend bool operator==(const MicStop&, const MicStop&) = default;
};
struct Latency {
  uint64_t device_latency_ns = 0;  // sample handed to the device -> audible
  uint64_t daemon_buffer_ns = 0;   // this qube's audio queued in the daemon
  friend bool operator==(const Latency&, const Latency&) = default;
};
struct ClockTick {
  uint64_t frames_played = 0;   // device frames played since the device started
  uint64_t device_time_ns = 0;  // audio domain CLOCK_MONOTONIC when sampled
  uint32_t device_rate = 48000;
  friend bool operator==(const ClockTick&, const ClockTick&) = default;
};
struct VolumeState {
  uint16_t volume_permille = 1000;  // 0..kMaxVolumePermille
  bool muted = false;
  friend bool operator==(const VolumeState&, const VolumeState&) = default;
};
struct MicState {
  bool attached = false;  // the user attached the mic to this qube
  bool allowed = false;   // policy permits it
  friend bool operator==(const MicState&, const MicState&) = default;
};
// Capture PCM in the accepted capture format. `pcm` points into the decoder's
// buffer (valid until its next feed()/write_space()) or into the caller's
// memory when encoding. 1..kMaxMicData bytes; whole frames is the receiver's
// check (the decoder does not know the format).
struct MicData {
  std::span<const std::byte> pcm;
  friend bool operator==(const MicData& a, const MicData& b);
};
struct Heartbeat {
  uint32_t seq = 0;
  friend bool operator==(const Heartbeat&, const Heartbeat&) = default;
};
// Printable ASCII text (0x20..0x7E), at most kMaxErrorText bytes.
struct PeerError {
  ErrorCode code = ErrorCode::Protocol;
  uint8_t text_len = 0;
  std::array<char, kMaxErrorText> text{};

  static PeerError make(ErrorCode code, std::string_view text);  // truncates, replaces
  std::string_view message() const { return {text.data(), text_len}; }
  friend bool operator==(const PeerError& a, const PeerError& b);
};

using Message = std::variant<Hello,
                             Welcome,
                             PlaybackFormat,
                             CaptureFormat,
                             FormatAccepted,
                             FormatRejected,
                             Cork,
                             Uncork,
                             MicStart,
                             MicStop,
                             Latency,
                             ClockTick,
                             VolumeState,
                             MicState,
                             MicData,
                             Heartbeat,
                             PeerError>;

MessageType type_of(const Message& m);

// --------------------------------------------------------------- codec ----

// Checks every field of `m` against the rules the decoder enforces; the
// error text names the field and the value.
Result<void> validate(const Message& m);

// Writes one frame (header + payload) to the front of `out`; returns its size.
// Fails when `m` is invalid or `out` is too small. Never allocates on success.
Result<size_t> encode(const Message& m,
                      std::span<std::byte> out,
                      uint8_t version = kProtocolVersion);
// Appends one frame to `out` (allocates; not for the real-time path).
Result<void> encode(const Message& m,
                    std::vector<std::byte>& out,
                    uint8_t version = kProtocolVersion);

// Decodes the payload of one frame whose header was already checked.
Result<Message> decode_payload(uint16_t type, std::span<const std::byte> payload);

struct NeedMore {};
struct DecodeError {
  std::string reason;
};
using DecodeResult = std::variant<NeedMore, Message, DecodeError>;

// Incremental frame decoder with a fixed buffer of one maximal frame.
// A protocol error is terminal: next() keeps returning it, feed() takes
// nothing. Unknown message types with a valid header are skipped.
class FrameDecoder {
 public:
  explicit FrameDecoder(uint8_t version = kProtocolVersion)
      : min_version_(version), max_version_(version) {}
  // Accept header versions in [min, max] (the agent before the Welcome).
  void accept_versions(uint8_t min, uint8_t max) {
    min_version_ = min;
    max_version_ = max;
  }

  // Copies as much of `in` as fits; returns the count taken. After next()
  // returned NeedMore, a non-empty `in` is always taken at least in part.
  size_t feed(std::span<const std::byte> in);
  // Zero-copy alternative: read into write_space(), then commit(n).
  std::span<std::byte> write_space();
  void commit(size_t n);

  DecodeResult next();

  bool failed() const { return failed_; }
  size_t buffered() const { return end_ - begin_; }
  uint64_t skipped_unknown() const { return skipped_; }
  // Version of the last frame returned (useful before negotiation ends).
  uint8_t last_version() const { return last_version_; }

 private:
  void compact();
  DecodeResult fail(std::string reason);

  std::array<std::byte, kMaxFrameSize> buf_{};
  size_t begin_ = 0;
  size_t end_ = 0;
  uint8_t min_version_;
  uint8_t max_version_;
  uint8_t last_version_ = 0;
  bool failed_ = false;
  std::string error_;
  uint64_t skipped_ = 0;
};

}  // namespace qaudio::protocol

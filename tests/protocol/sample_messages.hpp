// One message of every native type with non-default field values, and frame
// helpers, shared by the protocol tests and the fuzz corpus generator.
#pragma once

#include <array>
#include <cstddef>
#include <vector>

#include "qaudio/protocol.hpp"

namespace qaudio::protocol::testing {

inline const std::array<std::byte, 6>& mic_pcm() {
  static const std::array<std::byte, 6> pcm{std::byte{1}, std::byte{2},    std::byte{3},
                                            std::byte{4}, std::byte{0xfe}, std::byte{0xff}};
  return pcm;
}

inline std::vector<Message> sample_messages() {
  StreamFormat f48{SampleFormat::F32LE, 48000, 6};
  return {
      Hello{kCapLatency | kCapClockTicks | (1u << 30)},
      Welcome{1, 1, 1, kCapAll, 48000, 256},
      PlaybackFormat{f48},
      CaptureFormat{StreamFormat{SampleFormat::S16LE, 44100, 1}},
      FormatAccepted{StreamDirection::Capture, StreamFormat{SampleFormat::S32LE, 96000, 8}},
      FormatRejected{StreamDirection::Playback, RejectReason::Busy, f48},
      Cork{},
      Uncork{},
      MicStart{},
      MicStop{},
      Latency{3'500'000, 9'000'000},
      ClockTick{0x0123456789abcdefULL, 987654321012ULL, 44100},
      VolumeState{1500, true},
      MicState{true, false},
      MicData{std::span<const std::byte>(mic_pcm())},
      Heartbeat{0xfffffffe},
      PeerError::make(ErrorCode::ShuttingDown, "daemon stopping"),
  };
}

inline std::vector<std::byte> frame_of(const Message& m, uint8_t version = kProtocolVersion) {
  std::vector<std::byte> out;
  auto r = encode(m, out, version);
  (void)r;
  return out;
}

// A frame with an arbitrary header and payload, for malformed cases.
inline std::vector<std::byte> raw_frame(uint8_t version,
                                        uint8_t flags,
                                        uint16_t type,
                                        uint32_t length,
                                        std::vector<uint8_t> payload = {}) {
  std::vector<std::byte> out{std::byte(version),       std::byte(flags),
                             std::byte(type & 0xff),   std::byte(type >> 8),
                             std::byte(length & 0xff), std::byte(length >> 8),
                             std::byte(length >> 16),  std::byte(length >> 24)};
  for (uint8_t b : payload) {
    out.push_back(std::byte(b));
  }
  return out;
}

}  // namespace qaudio::protocol::testing

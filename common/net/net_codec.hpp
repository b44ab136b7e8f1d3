// Network channel audio coding: libopus (in-band FEC, packet-loss
// concealment) or S16 PCM passthrough for a LAN, 48 kHz, mono or stereo,
// 5/10/20 ms frames. Encoder and decoder allocate only in create().
//
//   auto enc = qaudio::net::AudioEncoder::create({.channels = 2, .frame_quarter_ms = 4});
//   size_t n = (*enc)->encode(pcm_frame, out);           // 0 on error
//   auto dec = qaudio::net::AudioDecoder::create(2);
//   (*dec)->decode(Codec::Opus, data, pcm_out, frame_samples, /*fec=*/false);
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "net_wire.hpp"
#include "qaudio/result.hpp"

struct OpusEncoder;
struct OpusDecoder;

namespace qaudio::net {

struct CodecParams {
  uint8_t channels = 2;
  uint8_t frame_quarter_ms = 4;  // 2.5 ms units: 2, 4 or 8 (5, 10, 20 ms)
  bool passthrough = false;      // S16 PCM, no Opus (LAN; 5 ms frames fit one datagram)
  int bitrate = 96000;           // bits/s for Opus
  bool fec = true;               // Opus in-band FEC
  int expected_loss_pct = 5;     // tunes the FEC the encoder spends bits on
  int complexity = 5;            // 0..10
  // Every packet also carries the previous frame (RFC 2198 style), so a
  // single lost packet is rebuilt exactly, not concealed: about twice the
  // bitrate for no gap at random loss. Skipped when both do not fit a datagram.
  bool redundancy = true;
};

// Checks channels, frame duration, bitrate, and that passthrough frames fit a datagram.
Result<void> validate(const CodecParams& p);

class AudioEncoder {
 public:
  static Result<std::unique_ptr<AudioEncoder>> create(const CodecParams& p);
  ~AudioEncoder();
  AudioEncoder(const AudioEncoder&) = delete;
  AudioEncoder& operator=(const AudioEncoder&) = delete;
  // pcm: exactly frame_samples() * channels interleaved samples.
  size_t encode(std::span<const int16_t> pcm, std::span<std::byte> out);
  const CodecParams& params() const { return p_; }
  uint32_t frame_samples() const { return net::frame_samples(p_.frame_quarter_ms); }
  // Algorithmic delay of the coder in samples (0 for passthrough).
  int lookahead() const { return lookahead_; }
  Codec codec() const { return p_.passthrough ? Codec::Pcm16 : Codec::Opus; }
  // What the last encode() produced: codec(), or Codec::Silence for an
  // all-zero frame (one zero byte; the Opus state restarts after it).
  Codec last_codec() const { return last_; }

 private:
  AudioEncoder() = default;
  CodecParams p_;
  OpusEncoder* enc_ = nullptr;
  int lookahead_ = 0;
  Codec last_ = Codec::Opus;
};

class AudioDecoder {
 public:
  static Result<std::unique_ptr<AudioDecoder>> create(uint8_t channels);
  ~AudioDecoder();
  AudioDecoder(const AudioDecoder&) = delete;
  AudioDecoder& operator=(const AudioDecoder&) = delete;
  // Decodes one frame into out (frame_samples * channels). With fec, data is
  // the NEXT packet and the frame before it is reconstructed from its FEC
  // (falls back to concealment when the packet carries none). Returns false
  // and writes concealment when the data does not decode.
  bool decode(Codec codec,
              std::span<const std::byte> data,
              std::span<int16_t> out,
              uint32_t frame_samples,
              bool fec);
  // Packet-loss concealment for one missing frame (exact silence while the
  // stream is in a run of Codec::Silence frames).
  void conceal(std::span<int16_t> out, uint32_t frame_samples);
  uint8_t channels() const { return channels_; }

 private:
  AudioDecoder() = default;
  OpusDecoder* dec_ = nullptr;
  uint8_t channels_ = 2;
  bool silent_ = false;
};

}  // namespace qaudio::net

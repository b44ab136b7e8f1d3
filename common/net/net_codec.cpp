// Network channel audio coding with libopus (see net_codec.hpp).
#include "net_codec.hpp"

#include <opus/opus.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace qaudio::net {

Result<void> validate(const CodecParams& p) {
  if (p.channels != 1 && p.channels != 2) {
    return fail("net codec: channels must be 1 or 2");
  }
  if (p.frame_quarter_ms != 2 && p.frame_quarter_ms != 4 && p.frame_quarter_ms != 8) {
    return fail("net codec: frame duration must be 5, 10 or 20 ms");
  }
  if (p.passthrough) {
    size_t bytes = size_t{frame_samples(p.frame_quarter_ms)} * p.channels * 2;
    if (bytes > kMaxAudioData) {
      return fail("net codec: a " + std::to_string(p.frame_quarter_ms * 2.5) +
                  " ms PCM frame needs " + std::to_string(bytes) +
                  " bytes, more than one datagram carries; use 5 ms frames for passthrough");
    }
  } else if (p.bitrate < 6000 || p.bitrate > 510000) {
    return fail("net codec: Opus bitrate must be 6000..510000 bit/s");
  }
  if (p.complexity < 0 || p.complexity > 10 || p.expected_loss_pct < 0 ||
      p.expected_loss_pct > 100) {
    return fail("net codec: complexity must be 0..10 and expected loss 0..100 %");
  }
  return {};
}

Result<std::unique_ptr<AudioEncoder>> AudioEncoder::create(const CodecParams& p) {
  if (auto v = validate(p); !v) {
    return fail(v.error());
  }
  std::unique_ptr<AudioEncoder> e(new AudioEncoder());
  e->p_ = p;
  if (p.passthrough) {
    return e;
  }
  int err = 0;
  e->enc_ = opus_encoder_create(48000, p.channels, OPUS_APPLICATION_AUDIO, &err);
  if (err != OPUS_OK || !e->enc_) {
    return fail(std::string("net codec: opus_encoder_create: ") + opus_strerror(err));
  }
  opus_encoder_ctl(e->enc_, OPUS_SET_BITRATE(p.bitrate));
  opus_encoder_ctl(e->enc_, OPUS_SET_INBAND_FEC(p.fec ? 1 : 0));
  opus_encoder_ctl(e->enc_, OPUS_SET_PACKET_LOSS_PERC(p.expected_loss_pct));
  opus_encoder_ctl(e->enc_, OPUS_SET_COMPLEXITY(p.complexity));
  opus_int32 la = 0;
  opus_encoder_ctl(e->enc_, OPUS_GET_LOOKAHEAD(&la));
  e->lookahead_ = la;
  return e;
}

AudioEncoder::~AudioEncoder() {
  if (enc_) {
    opus_encoder_destroy(enc_);
  }
}

size_t AudioEncoder::encode(std::span<const int16_t> pcm, std::span<std::byte> out) {
  const size_t n = size_t{frame_samples()} * p_.channels;
  if (pcm.size() != n) {
    return 0;
  }
  if (std::all_of(pcm.begin(), pcm.end(), [](int16_t v) { return v == 0; })) {
    if (out.empty()) {
      return 0;
    }
    if (last_ != Codec::Silence && enc_) {
      opus_encoder_ctl(enc_, OPUS_RESET_STATE);  // the next sound starts from a clean state
    }
    last_ = Codec::Silence;
    out[0] = std::byte{0};
    return 1;
  }
  last_ = codec();
  if (p_.passthrough) {
    if (out.size() < n * 2) {
      return 0;
    }
    for (size_t i = 0; i < n; ++i) {  // little-endian on the wire
      auto u = static_cast<uint16_t>(pcm[i]);
      out[2 * i] = static_cast<std::byte>(u & 0xff);
      out[2 * i + 1] = static_cast<std::byte>(u >> 8);
    }
    return n * 2;
  }
  int r = opus_encode(enc_, pcm.data(), static_cast<int>(frame_samples()),
                      reinterpret_cast<unsigned char*>(out.data()),
                      static_cast<opus_int32>(std::min(out.size(), kMaxAudioData)));
  return r > 0 ? static_cast<size_t>(r) : 0;
}

Result<std::unique_ptr<AudioDecoder>> AudioDecoder::create(uint8_t channels) {
  if (channels != 1 && channels != 2) {
    return fail("net codec: decoder channels must be 1 or 2");
  }
  std::unique_ptr<AudioDecoder> d(new AudioDecoder());
  d->channels_ = channels;
  int err = 0;
  d->dec_ = opus_decoder_create(48000, channels, &err);
  if (err != OPUS_OK || !d->dec_) {
    return fail(std::string("net codec: opus_decoder_create: ") + opus_strerror(err));
  }
  return d;
}

AudioDecoder::~AudioDecoder() {
  if (dec_) {
    opus_decoder_destroy(dec_);
  }
}

bool AudioDecoder::decode(Codec codec,
                          std::span<const std::byte> data,
                          std::span<int16_t> out,
                          uint32_t frame_samples,
                          bool fec) {
  const size_t n = size_t{frame_samples} * channels_;
  if (out.size() < n) {
    return false;
  }
  if (codec == Codec::Silence) {
    std::fill(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n), int16_t{0});
    if (!silent_) {
      opus_decoder_ctl(dec_, OPUS_RESET_STATE);  // as the encoder did: no stale tail later
      silent_ = true;
    }
    return !fec;
  }
  if (codec == Codec::Pcm16) {
    silent_ = false;
    if (fec || data.size() != n * 2) {
      conceal(out, frame_samples);
      return false;
    }
    for (size_t i = 0; i < n; ++i) {
      auto u = static_cast<uint16_t>(static_cast<uint8_t>(data[2 * i]) |
                                     (static_cast<uint8_t>(data[2 * i + 1]) << 8));
      out[i] = static_cast<int16_t>(u);
    }
    // Keep Opus's concealment state meaningful only for Opus; PCM loss is filled with silence.
    return true;
  }
  silent_ = false;
  int r = opus_decode(dec_, reinterpret_cast<const unsigned char*>(data.data()),
                      static_cast<opus_int32>(data.size()), out.data(),
                      static_cast<int>(frame_samples), fec ? 1 : 0);
  if (r != static_cast<int>(frame_samples)) {
    conceal(out, frame_samples);
    return false;
  }
  return true;
}

void AudioDecoder::conceal(std::span<int16_t> out, uint32_t frame_samples) {
  const size_t n = size_t{frame_samples} * channels_;
  if (silent_) {
    std::fill(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n), int16_t{0});
    return;
  }
  int r = opus_decode(dec_, nullptr, 0, out.data(), static_cast<int>(frame_samples), 0);
  if (r != static_cast<int>(frame_samples)) {
    std::fill(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n), int16_t{0});
  }
}

}  // namespace qaudio::net
